#!/usr/bin/env bash
# bench/export.sh [IMAGE [PUB]] — imgbuild export against what a user would run
# instead, on the same tree, in one run (issue 16):
#   export (gzip, verification included)    vs  tar -cf - | pigz -n -6 of the image's tree
#   export --compression none (verified)    vs  skopeo copy oci:DIR oci-archive:OUT of the same tree
#     (with --dest-oci-accept-uncompressed-layers: by default skopeo gzips an
#     uncompressed layer on the way, on one thread, and the outputs would differ)
# IMAGE defaults to the demo image (manifests/demo.toml: bookworm minbase plus
# gcc and hello), built into the benchmark cache, signed with the test key.
# With BENCH_SYNTH_MB=N a synthetic tree of N MB (packed by imgbuild) follows.
# Prints median, min and max wall seconds of RUNS (default 3) runs, the CPU
# seconds, and the ratio of the medians (reference / imgbuild: > 1 means
# imgbuild is faster). The machine's load average is printed with them.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"	# verdict, the shared demo image; run, row and ratio are this script's own
REPO=$BENCH_REPO
RUNS=${RUNS:-3}
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/imgbuild-bench-export.XXXXXX")
trap 'rm -rf --one-file-system "$WORK"' EXIT
for t in pigz skopeo tar; do
	command -v "$t" >/dev/null || { echo "SKIPPED: $t not installed (make deps)"; exit 0; }
done
[ "$(id -u)" -eq 0 ] || { echo "SKIPPED: needs root (the image's tree has root-owned files)"; exit 0; }

IMAGE=${1:-}
PUB=${2:-$REPO/tests/fixtures/imgbuild-test.pub}
if [ -z "$IMAGE" ]; then
	echo "the demo image (benchmark cache, bench/lib.sh bench_demo_image)..." >&2
	IMAGE=$(bench_demo_image) || { echo "the demo image did not build (see $BENCH_LOG)"; exit 1; }
fi

timeit() {	# prints "wall cpu"
	local TIMEFORMAT='%R %U %S' t
	t=$( { time "$@" >/dev/null 2>&1; } 2>&1)
	echo "$t" | awk '{printf "%.3f %.3f", $1, $2 + $3}'
}
stats() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "%.3f %.3f %.3f", a[int((NR+1)/2)], a[1], a[NR]}'; }
declare -A RESULT CPU
# One untimed warm-up, then RUNS timed runs, BEFORE_EACH (untimed) before each:
# the outputs are removed, so every run writes new files, and synced, so that
# the previous run's writeback does not compete with the next.
BEFORE_EACH=
run() {
	local name=$1 w=() c=() r
	shift
	eval "$BEFORE_EACH"
	"$@" >/dev/null 2>&1 || { echo "$name failed: $*" >&2; "$@" >&2 || true; exit 1; }
	for _ in $(seq "$RUNS"); do
		eval "$BEFORE_EACH"
		r=$(timeit "$@")
		w+=("${r% *}")
		c+=("${r#* }")
	done
	RESULT[$name]=$(stats "${w[@]}")
	CPU[$name]=$(stats "${c[@]}")
}
row() { read -r med min max <<<"${RESULT[$2]}"; printf '%-58s %8.3f %8.3f %8.3f %8.3f\n' "$1" "$med" "$min" "$max" "${CPU[$2]%% *}"; }
ratio() { awk -v a="${RESULT[$1]%% *}" -v b="${RESULT[$2]%% *}" -v c="${CPU[$1]%% *}" -v d="${CPU[$2]%% *}" \
	'BEGIN {printf "%.2fx (CPU time %.2fx)", b / a, d / c}'; }

# bench_image NAME IMAGE PUB: both comparisons on IMAGE and its unpacked tree.
bench_image() {
	local name=$1 img=$2 pub=$3 keyopt=()
	[ -n "$pub" ] && keyopt=(--key "$pub") || keyopt=(--allow-unsigned)
	local tree=$WORK/tree-$name
	"$IMGBUILD" -q unpack "$img" "$tree" "${keyopt[@]}" >&2
	# The same tree as an OCI folder with an uncompressed layer, skopeo's input.
	"$IMGBUILD" -q export "$img" -o "$WORK/layout-$name/" --compression none "${keyopt[@]}" >/dev/null
	find "$tree" -type f -print0 | xargs -0 cat >/dev/null
	cat "$img" >/dev/null
	local files bytes
	files=$(find "$tree" -type f | wc -l)
	bytes=$(du -sb --apparent-size "$tree" | cut -f1)

	ref_pigz() { (cd "$tree" && tar -cf - . | pigz -n -6 >"$WORK/ref.tar.gz"); }
	BEFORE_EACH='rm -f "$WORK/out.tar" "$WORK/ref.tar.gz"; sync'
	run "$name-export" "$IMGBUILD" -q export "$img" -o "$WORK/out.tar" "${keyopt[@]}"
	local gz_size ref_size
	gz_size=$(stat -c %s "$WORK/out.tar")
	run "$name-pigz" ref_pigz
	ref_size=$(stat -c %s "$WORK/ref.tar.gz")
	BEFORE_EACH='rm -rf "$WORK/out.tar" "$WORK/skopeo.tar"; sync'
	run "$name-none" "$IMGBUILD" -q export "$img" -o "$WORK/out.tar" --compression none "${keyopt[@]}"
	run "$name-skopeo" skopeo copy -q --dest-oci-accept-uncompressed-layers "oci:$WORK/layout-$name" "oci-archive:$WORK/skopeo.tar"
	BEFORE_EACH=
	rm -rf --one-file-system "$tree" "$WORK/layout-$name" "$WORK/out.tar" "$WORK/skopeo.tar" "$WORK/ref.tar.gz"

	echo
	echo "tree: $name: $files files, $((bytes / 1000000)) MB; image $(($(stat -c %s "$img") / 1000000)) MB"
	echo "load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
	printf '%-58s %8s %8s %8s %8s\n' "" median min max "CPU s"
	row "imgbuild export (verify + gzip layer, OCI archive)" "$name-export"
	row "tar -cf - . | pigz -n -6 (the tree)" "$name-pigz"
	row "imgbuild export --compression none" "$name-none"
	row "skopeo copy (uncompressed kept) oci:DIR oci-archive:OUT" "$name-skopeo"
	echo "export gzip vs tar|pigz -n -6:         $(ratio "$name-export" "$name-pigz")   (sizes: OCI archive $gz_size, tar.gz $ref_size bytes)"
	echo "export none vs skopeo copy:            $(ratio "$name-none" "$name-skopeo")"
	local sg sn
	sg=$(awk -v a="${RESULT[$name-export]%% *}" -v b="${RESULT[$name-pigz]%% *}" 'BEGIN {printf "%.2f", b / a}')
	sn=$(awk -v a="${RESULT[$name-none]%% *}" -v b="${RESULT[$name-skopeo]%% *}" 'BEGIN {printf "%.2f", b / a}')
	verdict "$sg >= 1" "export gzip ($name) at least as fast as tar -cf - | pigz -n -6 of the tree, measured ${sg}x"
	verdict "$sn >= 1" "export --compression none ($name) at least as fast as skopeo copy oci: to oci-archive:, measured ${sn}x"
}

echo "machine: $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), pigz $(pigz --version 2>&1 | awk '{print $2}'), skopeo $(skopeo --version | awk '{print $3}'); runs: $RUNS (median, min, max wall seconds; median CPU seconds)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
bench_image real "$IMAGE" "$PUB"

if [ -n "${BENCH_SYNTH_MB:-}" ]; then
	mkdir -p "$WORK/synth"
	python3 - "$WORK/synth" "$BENCH_SYNTH_MB" <<'PY'
import os, random, sys
# Compressible like a software tree: text-like small files and larger binaries
# made of repeated, slightly varied chunks.
root, mb = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz_./") for _ in range(rnd.randint(3, 12))) for _ in range(4000)]
left = mb << 20
n = 0
while left > 0:
    d = f"{root}/usr/lib/d{n // 200}"
    os.makedirs(d, exist_ok=True)
    size = rnd.choice([rnd.randint(512, 65536)] * 9 + [rnd.randint(1 << 20, 8 << 20)])
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rnd.choices(words, k=64)) + b"\n" if rnd.random() < 0.7 else os.urandom(64)
    with open(f"{d}/f{n}", "wb") as f:
        f.write(out[:size])
    left -= size
    n += 1
PY
	"$IMGBUILD" -q pack "$WORK/synth" -o "$WORK/synth.tar" --epoch 1700000000 >/dev/null
	rm -rf --one-file-system "$WORK/synth"
	LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
	bench_image synth "$WORK/synth.tar" ""
fi
