#!/usr/bin/env bash
# bench/pack-verify.sh [ROOT...] — imgbuild pack, pack --zstd and verify against the
# plain tools (issue 20), page-cached, real trees first:
#   minbase    a Debian bookworm minbase (mmdebstrap, made once into $BENCH_TMP/run-root)
#   demo       the demo image's tree (manifests/demo.toml built into the benchmark
#              cache with the test key, unpacked once into $BENCH_TMP/demo-tree)
#   torch      the torch layer of manifests/vision-cpu.toml, when a cache here holds it
#              (BENCH_VISION_LAYER=DIR names one); skipped with a note otherwise
#   synthetic  ~1 GB (BENCH_MB), 40% of the bytes in 4-64 KiB files, 60% in 50-200 MB
#              files; made once into $BENCH_TMP/synth-<MB> (BENCH_SYNTH=0 leaves it out)
# Trees given as arguments replace these. Rows, each beside the tool a user would use:
#   imgbuild pack                  vs  tar --sort=name ... -cf - . | sha256sum
#   imgbuild pack --zstd           vs  tar --sort=name ... -cf - . | zstd -T0 -3 | sha256sum (time and size)
#   imgbuild verify                    (GB/s of image)
# RUNS (default 5) interleaved rounds after one untimed warm-up: each round runs every
# row once, so a change in the machine's load hits all rows alike; median, min, max
# and the median CPU time (user + system) of each row. Before each run of a row that
# writes, its previous output is removed and synced (untimed). Every target is one
# "target ...: met|MISSED" line (bench/lib.sh verdict). Needs root (the trees hold
# root-owned files; mmdebstrap, unpack).
set -uo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-5}
MB=${BENCH_MB:-1024}
E=1577836800
[ "$(id -u)" = 0 ] || bench_skip "needs root (mmdebstrap, root-owned trees)"
need_commands pack verify unpack
command -v zstd >/dev/null || bench_skip "zstd not installed (make deps)"
WORK=$(mktemp -d "$BENCH_TMP/pack-verify.XXXXXX")
trap 'rm -rf --one-file-system "$WORK"' EXIT


NAMES=()
declare -A TREE
if [ $# -gt 0 ]; then
	i=0
	for t in "$@"; do
		i=$((i + 1))
		NAMES+=("tree$i")
		TREE[tree$i]=$t
	done
else
	if t=$(bench_minbase); then NAMES+=(minbase); TREE[minbase]=$t; else echo "note: no bookworm minbase row (mmdebstrap failed)"; fi
	if img=$(bench_demo_image) && t=$(bench_unpacked "$img" "$BENCH_TMP/demo-tree"); then
		NAMES+=(demo)
		TREE[demo]=$t
	else
		echo "note: no demo row (the demo image did not build or unpack; see $BENCH_LOG)"
	fi
	if t=$(bench_vision_layer); then
		NAMES+=(torch)
		TREE[torch]=$t
	else
		echo "note: no torch row: the torch layer of manifests/vision-cpu.toml is not built on this machine" \
			"(imgbuild build manifests/vision-cpu.toml, or BENCH_VISION_LAYER=DIR)"
	fi
	if [ "${BENCH_SYNTH:-1}" != 0 ]; then
		if bench_synth_tree "$BENCH_TMP/synth-$MB" "$MB"; then NAMES+=(synthetic); TREE[synthetic]=$BENCH_TMP/synth-$MB; fi
	fi
fi
[ ${#NAMES[@]} -gt 0 ] || bench_die "no tree to measure"
declare -A LABEL=([minbase]="bookworm minbase" [demo]="demo image tree" [torch]="vision-cpu torch layer" [synthetic]="synthetic ${MB} MB")

echo "machine: $(bench_machine)"
echo "runs: $RUNS interleaved rounds after one warm-up (median, min, max wall seconds; median CPU seconds, user + system)"

bench_tree() {	# NAME
	local n=$1 root=${TREE[$1]} label=${LABEL[$1]:-$1}
	local img=$WORK/$n.tar zimg=$WORK/$n.tar.zst
	ref_tar() { (cd "$root" && tar --sort=name --mtime=@$E --owner=0 --group=0 --numeric-owner -cf - . | sha256sum); }
	ref_zstd() { (cd "$root" && tar --sort=name --mtime=@$E --owner=0 --group=0 --numeric-owner -cf - . | zstd -T0 -3 -q -c | sha256sum); }
	floor() { cat "$img" >"$WORK/copy.tar"; }
	local bytes files load0 r
	bytes=$(du -sb --apparent-size "$root" | cut -f1)
	files=$(find "$root" -type f | wc -l)
	find "$root" -type f -print0 | xargs -0 cat >/dev/null
	load0=$(cut -d' ' -f1-3 /proc/loadavg)
	# One untimed warm-up of each row (makes the images verify reads).
	"$IMGBUILD" -q pack "$root" -o "$img" --epoch $E >>"$BENCH_LOG" 2>&1 || { bench_note "pack of $root failed (see $BENCH_LOG)"; return 1; }
	"$IMGBUILD" -q pack "$root" -o "$zimg" --epoch $E --zstd >>"$BENCH_LOG" 2>&1 || { bench_note "pack --zstd of $root failed"; return 1; }
	ref_tar >/dev/null
	ref_zstd >/dev/null
	for ((r = 0; r < RUNS; r++)); do
		BENCH_PREP="rm -f '$img' '$img.sha256'; sync" measure "$n-pack" 1 "$IMGBUILD" -q pack "$root" -o "$img" --epoch $E
		BENCH_PREP='' measure "$n-tar" 1 ref_tar
		BENCH_PREP="rm -f '$zimg' '$zimg.sha256'; sync" measure "$n-zstd" 1 "$IMGBUILD" -q pack "$root" -o "$zimg" --epoch $E --zstd
		BENCH_PREP='' measure "$n-tarzstd" 1 ref_zstd
		BENCH_PREP="rm -f '$WORK/copy.tar'; sync" measure "$n-floor" 1 floor
		BENCH_PREP='' measure "$n-verify" 1 "$IMGBUILD" -q verify "$img" --allow-unsigned
		measure "$n-verifyzstd" 1 "$IMGBUILD" -q verify "$zimg" --allow-unsigned
	done
	rm -f "$WORK/copy.tar"
	local tb zb rzb
	tb=$(stat -c %s "$img")
	zb=$(stat -c %s "$zimg")
	rzb=$(cd "$root" && tar --sort=name --mtime=@$E --owner=0 --group=0 --numeric-owner -cf - . | zstd -T0 -3 -q -c | wc -c)
	echo
	echo "tree: $label ($root): $files files, $((bytes / 1000000)) MB; image $((tb / 1000000)) MB, zstd $((zb / 1000000)) MB"
	echo "load average before: $load0; after: $(cut -d' ' -f1-3 /proc/loadavg)"
	table_header s
	row "imgbuild pack (all hashing, .sha256)" "$n-pack"
	row "tar --sort=name ... | sha256sum" "$n-tar"
	row "  (floor: cat IMAGE > new file)" "$n-floor"
	row "imgbuild pack --zstd" "$n-zstd"
	row "tar --sort=name ... | zstd -T0 -3 | sha256sum" "$n-tarzstd"
	row "imgbuild verify" "$n-verify" "$(awk -v b="$tb" -v t="$(med "$n-verify")" 'BEGIN {printf "%.2f GB/s", b / 1e9 / t}')"
	row "imgbuild verify (zstd image)" "$n-verifyzstd"
	local sp zsp pct gbs
	sp=$(awk -v a="$(med "$n-pack")" -v b="$(med "$n-tar")" 'BEGIN {printf "%.2f", b / a}')
	zsp=$(awk -v a="$(med "$n-zstd")" -v b="$(med "$n-tarzstd")" 'BEGIN {printf "%.2f", b / a}')
	pct=$(awk -v a="$zb" -v b="$rzb" 'BEGIN {printf "%+.2f", (a / b - 1) * 100}')
	gbs=$(awk -v b="$tb" -v t="$(med "$n-verify")" 'BEGIN {printf "%.2f", b / 1e9 / t}')
	echo "CPU time: pack $(cpu "$n-pack") s vs $(cpu "$n-tar") s; pack --zstd $(cpu "$n-zstd") s vs $(cpu "$n-tarzstd") s; zstd sizes: imgbuild $zb, tar|zstd -T0 -3 $rzb bytes"
	verdict "$sp >= 4" "pack ($label) >= 4x tar --sort=name | sha256sum, measured ${sp}x"
	verdict "$zsp >= 1" "pack --zstd ($label) at least as fast as tar | zstd -T0 -3, measured ${zsp}x"
	verdict "$pct <= 1" "pack --zstd ($label) within 1% of tar | zstd -T0 -3's size, measured ${pct}%"
	verdict "$gbs >= 1.5" "verify ($label) >= 1.5 GB/s page-cached, measured $gbs GB/s"
	rm -f "$img" "$img.sha256" "$zimg" "$zimg.sha256"
}

for n in "${NAMES[@]}"; do
	bench_tree "$n" || echo "target pack ($n): MISSED (the benchmark failed, see $BENCH_LOG)"
done
