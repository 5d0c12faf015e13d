#!/usr/bin/env bash
# bench/6-growth.sh — how pack and verify time grow with the tree: synthetic trees of
# 0.2, 1 and 4 GB (GROWTH_MB="200 1000 4000" to change), generated once into
# $BENCH_TMP/growth-<MB> and reused. Same mix in every tree: 40% of the bytes in
# 4..64 KiB files (about 30 000 files a GB), 60% in 50..200 MB files. Page-cached
# (every tree is read once before timing), so this is the tool's own cost.
# Beside each: the plain tools (tar --sort=name | sha256sum; sha256sum IMAGE).
# Prints seconds a GB per size and a least-squares fit t = a + b*GB; the growth is
# linear when the per-GB time of the largest tree is within 1.25x of the 1 GB one
# (judged on wall time and, since a 4 GB tree plus its image may not stay in the page
# cache of a busy machine, on CPU time too).
# RUNS (default 3) per row.
set -uo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-3}
SIZES=${GROWTH_MB:-200 1000 4000}
E=1577836800
need_commands pack verify
WORK=$(mktemp -d "$BENCH_TMP/growth-work.XXXXXX")
trap 'rm -rf --one-file-system "$WORK"' EXIT

gen_tree() {	# MB DIR: the tree, made once (a .done stamp marks a whole one)
	[ -f "$2.done" ] && return 0
	rm -rf --one-file-system "$2"
	python3 - "$2" "$1" <<'PY' || return 1
import os, random, sys
root, mb = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
total = mb * 1000 * 1000
small = total * 4 // 10
big = total - small
blob = os.urandom(4 << 20)
n = d = 0
while small > 0:
    if n % 250 == 0:
        d += 1
        os.makedirs(f"{root}/usr/lib/d{d}", exist_ok=True)
    size = min(small, rnd.randint(4096, 65536))
    off = rnd.randint(0, len(blob) - size)
    with open(f"{root}/usr/lib/d{d}/f{n}.so", "wb") as f:
        f.write(blob[off:off + size])
    small -= size
    n += 1
os.makedirs(f"{root}/opt/big", exist_ok=True)
i = 0
while big > 0:
    size = min(big, rnd.randint(50, 200) * 1000 * 1000)
    with open(f"{root}/opt/big/lib{i}.so", "wb") as f:
        left = size
        while left > 0:
            k = min(left, len(blob))
            f.write(os.urandom(64) + blob[64:k])
            left -= k
    big -= size
    i += 1
PY
	touch "$2.done"
}

write_floor() { cat "$1" >"$WORK/floor.tmp" && mv "$WORK/floor.tmp" "$WORK/floor.tar"; }
warm() { find "$1" -type f -print0 | xargs -0 cat >/dev/null; }
ref_tar() { cd "$1" && tar --sort=name --mtime=@$E --owner=0 --group=0 --numeric-owner -cf - . | sha256sum >/dev/null; }

declare -A BYTES IBYTES FILES
for mb in $SIZES; do
	tree=$BENCH_TMP/growth-$mb
	gen_tree "$mb" "$tree" || bench_die "could not make $tree"
	BYTES[$mb]=$(du -sb --apparent-size "$tree" | cut -f1)
	FILES[$mb]=$(find "$tree" -type f | wc -l)
	# Only this size's tree in the page cache: at 4 GB, the tree, the image
	# being written and the last one would not all stay cached beside
	# everything else (other sizes, other benchmarks' trees) in 23.5 GiB, and
	# a tree read back from the disk is a different measurement.
	sync
	echo 1 >/proc/sys/vm/drop_caches
	warm "$tree"
	img=$WORK/g$mb.tar
	# Before each pack (untimed): the last image removed (its pages free for
	# the new one, as when packing to a new name), written back, and the tree
	# read again in case anything of it was evicted.
	BENCH_PREP="rm -f '$img' '$img.sha256'; sync; warm '$tree'" \
		measure "pack$mb" "$RUNS" "$IMGBUILD" -q pack "$tree" -o "$img" --epoch $E || bench_die "pack failed"
	measure "tar$mb" "$RUNS" ref_tar "$tree"
	IBYTES[$mb]=$(stat -c %s "$img")
	measure "verify$mb" "$RUNS" "$IMGBUILD" -q verify "$img" --allow-unsigned || bench_die "verify failed"
	measure "sha$mb" "$RUNS" sha256sum "$img"
	# The floor under any pack: the image's bytes written to a new file, with
	# the same preparation as pack (the last copy removed, written back).
	BENCH_PREP="rm -f '$WORK/floor.tar'; sync" measure "floor$mb" "$RUNS" write_floor "$img"
	rm -f "$img" "$img.sha256" "$WORK/floor.tar" "$WORK/floor.tmp"
done

gb() { awk -v b="$1" 'BEGIN {printf "%.3f", b / 1e9}'; }
per_gb() { awk -v t="$(med "$1")" -v b="$2" 'BEGIN {printf "%.2f s/GB", t / (b / 1e9)}'; }
echo "trees: $(for mb in $SIZES; do printf '%s GB (%s files)  ' "$(gb "${BYTES[$mb]}")" "${FILES[$mb]}"; done)"
echo "runs: $RUNS a row; page-cached trees; threads: default (one per CPU, $(nproc) CPUs)"
table_header s "per GB of tree (pack) / of image (verify)"
for mb in $SIZES; do
	row "imgbuild pack, $(gb "${BYTES[$mb]}") GB" "pack$mb" "$(per_gb "pack$mb" "${BYTES[$mb]}")"
	row "  tar --sort=name ... | sha256sum" "tar$mb" "$(per_gb "tar$mb" "${BYTES[$mb]}"); time pack/tar $(ratio "pack$mb" "tar$mb")"
	row "  floor: cat IMAGE > new file, renamed" "floor$mb" "$(per_gb "floor$mb" "${IBYTES[$mb]}")"
	row "imgbuild verify, $(gb "${IBYTES[$mb]}") GB image" "verify$mb" "$(per_gb "verify$mb" "${IBYTES[$mb]}")"
	row "  sha256sum IMAGE" "sha$mb" "$(per_gb "sha$mb" "${IBYTES[$mb]}"); time verify/sha256sum $(ratio "verify$mb" "sha$mb")"
done

# Least-squares fit of the medians against GB: intercept (fixed cost) and slope (s/GB).
fit() {	# prefix, bytes-array-name
	local prefix=$1 arr=$2 mb pts=""
	for mb in $SIZES; do
		local -n b=$arr
		pts+="$(gb "${b[$mb]}") $(med "$prefix$mb")\n"
	done
	printf '%b' "$pts" | awk '{x[NR] = $1; y[NR] = $2; sx += $1; sy += $2}
		END { n = NR; mx = sx / n; my = sy / n
		      for (i = 1; i <= n; i++) { sxy += (x[i] - mx) * (y[i] - my); sxx += (x[i] - mx) ^ 2; syy += (y[i] - my) ^ 2 }
		      b = sxy / sxx; a = my - b * mx; r2 = syy > 0 ? sxy * sxy / (sxx * syy) : 1
		      printf "t = %.3f s + %.3f s/GB x GB (R^2 %.4f)", a, b, r2 }'
}
echo "fit, imgbuild pack:   $(fit pack BYTES)"
echo "fit, write floor:     $(fit floor IBYTES)"
echo "fit, tar | sha256sum: $(fit tar BYTES)"
echo "fit, imgbuild verify: $(fit verify IBYTES)"
echo "fit, sha256sum:       $(fit sha IBYTES)"
read -r -a sizes <<<"$SIZES"
first_big=""
for mb in "${sizes[@]}"; do [ "$mb" -ge 1000 ] && { first_big=$mb; break; }; done
last=${sizes[-1]}
if [ -n "$first_big" ] && [ "$first_big" != "$last" ]; then
	for op in pack verify; do
		if [ $op = pack ]; then declare -n bb=BYTES; else declare -n bb=IBYTES; fi
		g=$(awk -v t1="$(med "$op$first_big")" -v b1="${bb[$first_big]}" -v t2="$(med "$op$last")" -v b2="${bb[$last]}" \
			'BEGIN {printf "%.2f", (t2 / b2) / (t1 / b1)}')
		verdict "$g <= 1.25" "$op grows linearly (per-GB time at $((last / 1000)) GB / at $((first_big / 1000)) GB = ${g}x, <= 1.25x)"
		gc=$(awk -v t1="$(cpu "$op$first_big")" -v b1="${bb[$first_big]}" -v t2="$(cpu "$op$last")" -v b2="${bb[$last]}" \
			'BEGIN {printf "%.2f", (t2 / b2) / (t1 / b1)}')
		verdict "$gc <= 1.25" "$op CPU time grows linearly (per-GB CPU at $((last / 1000)) GB / at $((first_big / 1000)) GB = ${gc}x, <= 1.25x)"
		unset -n bb
	done
	# The same ratio for writing the image's bytes alone: how much of pack's
	# growth is this machine's cost of new page-cache pages (docs/performance.md).
	gf=$(awk -v t1="$(med "floor$first_big")" -v b1="${IBYTES[$first_big]}" -v t2="$(med "floor$last")" -v b2="${IBYTES[$last]}" \
		'BEGIN {printf "%.2f", (t2 / b2) / (t1 / b1)}')
	echo "for comparison, the write floor: per-GB time at $((last / 1000)) GB / at $((first_big / 1000)) GB = ${gf}x"
fi
