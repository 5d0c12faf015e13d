#!/usr/bin/env bash
# bench/pack-verify.sh [ROOT] — imgbuild pack/verify throughput against the
# plain tools, on a page-cached tree. ROOT defaults to a synthetic tree of
# about 1 GB (BENCH_MB to change), a mix of many small files and a few large
# ones; a debootstrapped root given as ROOT works too (run as root).
# Prints median, min and max of RUNS (default 5) runs, and the ratio of the
# medians (imgbuild / reference; > 1 means imgbuild is faster).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
IMGBUILD=${IMGBUILD:-$REPO/build/imgbuild}
RUNS=${RUNS:-5}
MB=${BENCH_MB:-1024}
E=1577836800
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgbuild-bench.XXXXXX")
trap 'rm -rf --one-file-system "$WORK"' EXIT

ROOT=${1:-}
if [ -z "$ROOT" ]; then
	ROOT=$WORK/root
	mkdir -p "$ROOT"
	# 40% of the bytes in 4 KiB..64 KiB files (like /usr/lib, /usr/share),
	# 60% in a few 50-200 MB files (like libcudnn, libtorch).
	python3 - "$ROOT" "$MB" <<'PY'
import os, random, sys
root, mb = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
small = mb * 1024 * 1024 * 4 // 10
big = mb * 1024 * 1024 - small
blob = os.urandom(1 << 20)
n = 0
d = 0
while small > 0:
    if n % 200 == 0:
        d += 1
        os.makedirs(f"{root}/usr/lib/d{d}", exist_ok=True)
    size = rnd.randint(4096, 65536)
    off = rnd.randint(0, len(blob) - size)
    with open(f"{root}/usr/lib/d{d}/f{n}.so", "wb") as f:
        f.write(blob[off:off + size])
    small -= size
    n += 1
os.makedirs(f"{root}/opt/big", exist_ok=True)
i = 0
while big > 0:
    size = min(big, rnd.randint(50, 200) << 20)
    with open(f"{root}/opt/big/lib{i}.so", "wb") as f:
        left = size
        while left > 0:
            k = min(left, len(blob))
            f.write(os.urandom(16) + blob[16:k])
            left -= k
    big -= size
    i += 1
PY
fi
BYTES=$(du -sb --apparent-size "$ROOT" | cut -f1)
FILES=$(find "$ROOT" -type f | wc -l)
# Warm the page cache.
find "$ROOT" -type f -print0 | xargs -0 cat >/dev/null

# Wall seconds and CPU seconds (user + sys, children included). On a machine
# shared with other work, wall time follows the load; CPU time barely moves,
# so both are reported.
timeit() {	# prints "wall cpu"
	local TIMEFORMAT='%R %U %S' t
	t=$( { time "$@" >/dev/null 2>&1; } 2>&1)
	echo "$t" | awk '{printf "%.3f %.3f", $1, $2 + $3}'
}
stats() {	# seconds... -> "median min max"
	printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "%.3f %.3f %.3f", a[int((NR+1)/2)], a[1], a[NR]}'
}
# Each row: one untimed warm-up run, then RUNS timed ones. BEFORE_EACH (if
# set) runs untimed before every run: the rows that write remove the previous
# output, so each writes a new file as a first pack does (replacing an
# existing image adds the kernel's freeing of the old one's pages, ~0.08 s
# per GB here, to the pack that replaces it), and sync, so that the kernel's
# writeback of the previous run's gigabyte does not compete for the 2 CPUs.
BEFORE_EACH=
run() {	# name, command...: RUNS timings
	local name=$1
	shift
	local w=() c=() r
	[ -z "$BEFORE_EACH" ] || eval "$BEFORE_EACH"
	"$@" >/dev/null 2>&1 || true
	for _ in $(seq "$RUNS"); do
		[ -z "$BEFORE_EACH" ] || eval "$BEFORE_EACH"
		r=$(timeit "$@")
		w+=("${r% *}")
		c+=("${r#* }")
	done
	RESULT[$name]=$(stats "${w[@]}")
	CPU[$name]=$(stats "${c[@]}")
}
declare -A RESULT CPU

ref_tar() { cd "$ROOT" && tar --sort=name --mtime=@$E --owner=0 --group=0 --numeric-owner -cf - . | sha256sum; }
ref_zstd() { cd "$ROOT" && tar --sort=name --mtime=@$E --owner=0 --group=0 --numeric-owner -cf - . | zstd -T0 -3 -q -c | sha256sum; }

BEFORE_EACH='rm -f "$WORK/img.tar" "$WORK/img.tar.sha256"; sync'
run pack "$IMGBUILD" -q pack "$ROOT" -o "$WORK/img.tar" --epoch $E
BEFORE_EACH=
run tar ref_tar
# The floor under any pack: writing the image's bytes into a new file (on a VM
# whose fresh page-cache pages fault to the host, this alone is slow).
write_floor() { cat "$WORK/img.tar" >"$WORK/copy.tar"; }
BEFORE_EACH='rm -f "$WORK/copy.tar"; sync'
run floor write_floor
rm -f "$WORK/copy.tar"; BEFORE_EACH=

run verify "$IMGBUILD" -q verify "$WORK/img.tar" --allow-unsigned
run sha256sum sha256sum "$WORK/img.tar"
BEFORE_EACH='rm -f "$WORK/img.tar.zst" "$WORK/img.tar.zst.sha256"; sync'
run packzstd "$IMGBUILD" -q pack "$ROOT" -o "$WORK/img.tar.zst" --epoch $E --zstd
BEFORE_EACH=
run tarzstd ref_zstd
run verifyzstd "$IMGBUILD" -q verify "$WORK/img.tar.zst" --allow-unsigned

TAR_BYTES=$(stat -c %s "$WORK/img.tar")
ZST_BYTES=$(stat -c %s "$WORK/img.tar.zst")
REF_ZST_BYTES=$(cd "$ROOT" && tar --sort=name --mtime=@$E --owner=0 --group=0 --numeric-owner -cf - . | zstd -T0 -3 -q -c | wc -c)
mbps() { echo "$1 $2" | awk '{printf "%.0f", $1 / 1e6 / $2}'; }
row() {	# label, key, bytes
	read -r med min max <<<"${RESULT[$2]}"
	printf '%-40s %8.3f %8.3f %8.3f %8s %8.3f\n' "$1" "$med" "$min" "$max" "$(mbps "$3" "$med")" "${CPU[$2]%% *}"
}
ratio() { awk -v a="${RESULT[$1]%% *}" -v b="${RESULT[$2]%% *}" -v c="${CPU[$1]%% *}" -v d="${CPU[$2]%% *}" \
	'BEGIN {printf "%.2fx (CPU time %.2fx)", b / a, d / c}'; }

echo "tree: $ROOT: $FILES files, $((BYTES / 1000000)) MB; image $((TAR_BYTES / 1000000)) MB, zstd $((ZST_BYTES / 1000000)) MB"
echo "cpus: $(nproc); runs: $RUNS (median, min, max wall seconds; MB/s of tree bytes for pack, image bytes for verify; median CPU seconds)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-40s %8s %8s %8s %8s %8s\n' "" median min max "MB/s" "CPU s"
row "imgbuild pack (all hashing, .sha256)" pack "$BYTES"
row "tar --sort=name ... | sha256sum" tar "$BYTES"
row "  (floor: cat IMAGE > new file)" floor "$TAR_BYTES"
row "imgbuild verify" verify "$TAR_BYTES"
row "sha256sum IMAGE" sha256sum "$TAR_BYTES"
row "imgbuild pack --zstd" packzstd "$BYTES"
row "tar ... | zstd -T0 -3 | sha256sum" tarzstd "$BYTES"
row "imgbuild verify (zstd image)" verifyzstd "$ZST_BYTES"
echo "pack vs tar|sha256sum:          $(ratio pack tar)"
echo "verify vs sha256sum:            $(ratio verify sha256sum)"
echo "pack --zstd vs tar|zstd -T0 -3: $(ratio packzstd tarzstd)"
echo "zstd size: imgbuild $ZST_BYTES bytes, tar|zstd -T0 -3 $REF_ZST_BYTES bytes"
# The image issue's targets (speed-ups from the medians above).
target() {	# condition (awk), text
	if awk "BEGIN {exit !($1)}"; then echo "target $2: met"; else echo "target $2: MISSED"; fi
}
sp() { awk -v a="${RESULT[$1]%% *}" -v b="${RESULT[$2]%% *}" 'BEGIN {printf "%.2f", b / a}'; }
vmbps=$(mbps "$TAR_BYTES" "${RESULT[verify]%% *}")
target "$(sp pack tar) >= 4" "pack at least 4x tar|sha256sum ($(sp pack tar)x)"
target "$vmbps >= 1000" "verify at least 1 GB/s page-cached ($vmbps MB/s)"
target "$(sp packzstd tarzstd) >= 1 && $ZST_BYTES <= $REF_ZST_BYTES" "pack --zstd as fast and as small as tar|zstd -T0 -3 ($(sp packzstd tarzstd)x, $ZST_BYTES vs $REF_ZST_BYTES bytes)"
