#!/usr/bin/env bash
# bench/unpack-run.sh — the receiving side on real images (issue 20): verify, unpack
# (which verifies) and the first `imgbuild run` of a new image (verify, unpack into a
# fresh image cache, start /bin/true), beside what a user would run instead: plain
# `tar -xf IMAGE` into an empty folder, which checks nothing.
# Trees, real first: the bookworm minbase image of bench/lib.sh, the demo image
# (manifests/demo.toml, signed with the test key), an image of the vision-cpu torch
# layer when a cache holds one (bench_vision_layer), then a synthetic tree of
# BENCH_SYNTH_MB MB (default 256; 0 leaves it out).
# Each tree's rows are measured in ROUNDS interleaved rounds (default 3) of RUNS runs
# (default 1) after one warm-up, the image page-cached; before every run the previous
# output is set aside (renamed) and the file systems synced, untimed; what was set
# aside is deleted only when the script ends. Deleting it between runs would time
# ext4's reuse guard instead of the extraction: without a journal (this machine's
# root file system), ext4 skips inodes deleted less than 60 s ago (300 s while their
# inode table block is dirty; RECENTCY_MIN and RECENTCY_DIRTY in fs/ext4/ialloc.c),
# reading inode table blocks for every candidate, and tar -xf of the minbase then took
# 0.5-2.5 s instead of 0.35 s. Medians; CPU time beside.
# Where the outputs go: by default each tree gets a fresh ext4 file system of its own
# (mkfs.ext4's defaults, so with a journal, as a user's disk has), a sparse file
# loop-mounted in a private mount namespace and thrown away after the tree's rows.
# Deletions made before the benchmark (a test run deletes thousands of trees) would
# otherwise fall under that guard on this machine's journal-less root file system and
# time it for both tools. BENCH_UNPACK_FS=here keeps the outputs in BENCH_TMP.
set -uo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-1}
ROUNDS=${ROUNDS:-3}
SYNTH_MB=${BENCH_SYNTH_MB:-256}
[ "$(id -u)" = 0 ] || bench_skip "needs root (images hold root-owned files; run needs namespaces)"
need_commands verify unpack run pack
FRESH_FS=0
if [ "${BENCH_UNPACK_FS:-fresh}" != here ]; then
	if [ -z "${IB_BENCH_PRIVATE_NS:-}" ]; then
		# The loop mounts must never reach the host's mount table.
		if ! command -v mkfs.ext4 >/dev/null || ! command -v unshare >/dev/null; then
			bench_die "mkfs.ext4 and unshare are needed for a fresh file system (or BENCH_UNPACK_FS=here)"
		fi
		IB_BENCH_PRIVATE_NS=1 exec unshare --mount --propagation private bash "$0" "$@"
	fi
	FRESH_FS=1
fi
PUB=$BENCH_REPO/tests/fixtures/imgbuild-test.pub
OUT=$BENCH_TMP/unpack-run
FS_FILE=$BENCH_TMP/unpack-run.ext4
if [ $FRESH_FS = 1 ]; then CACHE=$OUT/cache; else CACHE=$BENCH_CACHE/unpack-run; fi
SPENT=$OUT/spent
SPENT_CACHE=$CACHE.spent
leave() {
	if [ $FRESH_FS = 1 ] && mountpoint -q "$OUT"; then umount "$OUT" || return 1; fi
	rm -f "$FS_FILE"
	rm -rf --one-file-system "$OUT" "$CACHE" "$SPENT_CACHE"
}
leave
mkdir -p "$OUT" "$CACHE" "$SPENT" "$SPENT_CACHE"
trap leave EXIT
# fresh_fs BYTES: an empty ext4 of BYTES on OUT (outputs, spent outputs, run's cache).
fresh_fs() {
	[ $FRESH_FS = 1 ] || return 0
	leave || bench_die "cannot unmount $OUT"
	mkdir -p "$OUT"
	# Inode tables and journal written now, not by ext4lazyinit during the rows.
	if ! { truncate -s "$1" "$FS_FILE" && mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$FS_FILE" >>"$BENCH_LOG" 2>&1 &&
		mount_fs; }; then
		bench_die "cannot make a file system in $FS_FILE"
	fi
	mkdir -p "$CACHE" "$SPENT" "$SPENT_CACHE"
}
mount_fs() {
	mount -o loop "$FS_FILE" "$OUT" || return 1
	# Without direct I/O the loop device caches every byte twice (its file system's
	# pages and the backing file's).
	losetup --direct-io=on "$(findmnt -no SOURCE "$OUT")" >>"$BENCH_LOG" 2>&1 ||
		bench_note "the loop device under $OUT refused direct I/O: its pages are cached twice"
}
set_aside() {	# PATH SPENT_DIR
	[ -e "$1" ] || return 0
	mv "$1" "$(mktemp -u -p "$2")"
}

# An image packed from a folder (the vision layer, the synthetic tree), once.
pack_once() {	# DIR IMAGE
	[ -s "$2" ] && [ -s "$2.sha256" ] && [ "$2" -nt "$1" ] && return 0
	"$IMGBUILD" -q pack "$1" -o "$2" --epoch 1577836800 >>"$BENCH_LOG" 2>&1
}

TREES=()	# "label|image|trust option|run" (run: 1 when the tree has a userland to start /bin/true in)
if img=$(bench_minbase_image); then TREES+=("bookworm minbase|$img|--allow-unsigned|1"); else bench_note "no minbase image: its rows are left out"; fi
if img=$(bench_demo_image); then TREES+=("demo image|$img|--key $PUB|1"); else bench_note "no demo image: its rows are left out"; fi
if layer=$(bench_vision_layer) && pack_once "$layer" "$BENCH_TMP/vision-torch.tar"; then
	TREES+=("vision-cpu torch layer|$BENCH_TMP/vision-torch.tar|--allow-unsigned|0")
else
	bench_note "no vision-cpu torch layer built (BENCH_VISION_LAYER, or build manifests/vision-cpu.toml with IMGBUILD_CACHE=$BENCH_CACHE): its rows are left out"
fi
if [ "$SYNTH_MB" -gt 0 ] && bench_synth_tree "$BENCH_TMP/synth-$SYNTH_MB" "$SYNTH_MB" && pack_once "$BENCH_TMP/synth-$SYNTH_MB" "$BENCH_TMP/synth-$SYNTH_MB.tar"; then
	TREES+=("synthetic ${SYNTH_MB} MB|$BENCH_TMP/synth-$SYNTH_MB.tar|--allow-unsigned|0")
fi
[ ${#TREES[@]} -gt 0 ] || bench_skip "no image to measure"

X=$OUT/x
# settle: written back, and on a fresh file system its page cache dropped (a
# remount) so that memory does not fill with the outputs set aside: on this VM
# the demo image's later rounds then ran up to 3x slower than its first, for
# tar and imgbuild alike.
settle() {
	sync
	[ $FRESH_FS = 1 ] || return 0
	umount "$OUT" && mount_fs
}
PREP_X="set_aside '$X' '$SPENT'; mkdir '$X'; settle"
PREP_U="set_aside '$X' '$SPENT'; settle"
PREP_C="set_aside '$CACHE' '$SPENT_CACHE'; mkdir -p '$CACHE'; settle"
where="in $OUT"
[ $FRESH_FS = 1 ] && where="on a fresh ext4 (journal) for each tree"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS interleaved rounds of $RUNS run(s) a row, after one warm-up; images page-cached; outputs $where"
for t in "${TREES[@]}"; do
	IFS='|' read -r label image trust runs_true <<<"$t"
	k=${label// /_}
	# Every output is set aside, none deleted: the warm-up's and each round's, three
	# trees (tar, unpack, run's cache) each, plus room for ext4's own tables.
	fresh_fs $(($(stat -c %s "$image") * 3 * (ROUNDS * RUNS + 1) * 5 / 4 + (512 << 20)))
	cat "$image" >/dev/null
	# shellcheck disable=SC2086
	{
		"$IMGBUILD" -q verify "$image" $trust >>"$BENCH_LOG" 2>&1 || bench_die "$label: verify failed (see $BENCH_LOG)"
		eval "$PREP_X"; tar -xf "$image" -C "$X"
		eval "$PREP_U"; "$IMGBUILD" -q unpack "$image" "$X" $trust >>"$BENCH_LOG" 2>&1 || bench_die "$label: unpack failed"
		if [ "$runs_true" = 1 ]; then eval "$PREP_C"; IMGBUILD_CACHE=$CACHE "$IMGBUILD" run "$image" $trust -- /bin/true >>"$BENCH_LOG" 2>&1 || bench_die "$label: run failed"; fi
		for ((r = 0; r < ROUNDS; r++)); do
			measure "$k.verify" "$RUNS" "$IMGBUILD" -q verify "$image" $trust
			BENCH_PREP=$PREP_X measure "$k.tar" "$RUNS" tar -xf "$image" -C "$X"
			BENCH_PREP=$PREP_U measure "$k.unpack" "$RUNS" "$IMGBUILD" -q unpack "$image" "$X" $trust
			[ "$runs_true" = 1 ] && BENCH_PREP=$PREP_C measure "$k.run" "$RUNS" env IMGBUILD_CACHE="$CACHE" "$IMGBUILD" run "$image" $trust -- /bin/true
		done
	}
	eval "$PREP_C"; eval "$PREP_U"
	bytes=$(stat -c %s "$image")
	files=$(tar -tvf "$image" | grep -c '^-')
	echo
	echo "$label: $image, $((bytes / 1000000)) MB, $files files"
	table_header ms
	row "imgbuild verify" "$k.verify" "$(awk -v b="$bytes" -v s="$(med "$k.verify")" 'BEGIN {printf "%.2f GB/s", b / 1e9 / s}')"
	row "tar -xf IMAGE -C EMPTY (checks nothing)" "$k.tar"
	row "imgbuild unpack IMAGE DIR (verifies)" "$k.unpack" "tar -xf / unpack: $(speedup "$k.unpack" "$k.tar")"
	if [ "$runs_true" = 1 ]; then row "imgbuild run IMAGE -- /bin/true, first run" "$k.run" "first run / tar -xf: $(ratio "$k.run" "$k.tar")"; fi
	gbs=$(awk -v b="$bytes" -v s="$(med "$k.verify")" 'BEGIN {printf "%.2f", b / 1e9 / s}')
	sp=$(awk -v a="$(med "$k.unpack")" -v b="$(med "$k.tar")" 'BEGIN {printf "%.2f", b / a}')
	rr=$(awk -v a="$(med "$k.run" 2>/dev/null)" -v b="$(med "$k.tar")" 'BEGIN {printf "%.2f", a / b}')
	cpu_v=$(awk -v b="$bytes" -v s="$(cpu "$k.verify")" 'BEGIN {printf "%.2f", b / 1e9 / s}')
	verdict "$gbs >= 1.5" "verify ($label) >= 1.5 GB/s, measured $gbs GB/s (bytes / CPU seconds $cpu_v GB/s)"
	verdict "$sp >= 1.5" "unpack ($label) >= 1.5x faster than tar -xf, measured $sp""x (CPU time $(awk -v a="$(cpu "$k.unpack")" -v b="$(cpu "$k.tar")" 'BEGIN {printf "%.2f", b / a}')x)"
	# A layer or a synthetic tree has no /bin/true with its libraries: no first-run row.
	if [ "$runs_true" = 1 ]; then verdict "$rr <= 1.2" "first run ($label) <= 1.2x tar -xf, measured $rr""x"; fi
done
