#!/bin/bash
# cuda-probe.sh — compiles the toolkit-free GPU probe (tests/gpu/cuda-probe.c, which
# the manifest hands in as a project-file input: [[download]] path = ...) with the
# image's gcc and installs it as /usr/local/bin/cuda-probe. It dlopens the host
# driver's libcuda.so.1 at run time, so no CUDA is needed to build or ship it.
#
# Reads:  PROBE_SOURCE  the probe's C source (default /imgbuild/inputs/cuda-probe.c)
#         CC            compiler (default gcc)
#         PROBE_OUTPUT  where to install (default /usr/local/bin/cuda-probe)
# Checks: without a driver the probe must say "libcuda.so.1 not found" and exit 2.
set -euo pipefail
me="cuda-probe"
die() { echo "$me: $*" >&2; exit 1; }
cc=${CC:-gcc}
command -v "${cc%% *}" >/dev/null || die "no $cc in the image (toolchain stage first)"
out=${PROBE_OUTPUT:-/usr/local/bin/cuda-probe}
work=${IMGBUILD_WORK:-/imgbuild/work}/cuda-probe
rm -rf "$work" && mkdir -p "$work"
src=${PROBE_SOURCE:-${IMGBUILD_INPUTS:-/imgbuild/inputs}/cuda-probe.c}
[ -f "$src" ] || die "no probe source at $src (add the input: [[download]] name = \"cuda-probe.c\" path = \"../tests/gpu/cuda-probe.c\", and inputs = [\"cuda-probe.c\"] on this stage)"
# shellcheck disable=SC2086
$cc -std=gnu11 -Wall -Wextra -O2 -o "$work/cuda-probe" "$src" -ldl || die "$cc failed on $src"
install -D -m 0755 "$work/cuda-probe" "$out"
if [ ! -e /dev/nvidiactl ]; then
	rc=0
	"$out" >"$work/run.log" 2>&1 || rc=$?
	[ "$rc" -eq 2 ] && grep -q 'libcuda.so.1 not found\|no CUDA device' "$work/run.log" ||
		die "without a driver $out should exit 2 with 'libcuda.so.1 not found'; got $rc: $(cat "$work/run.log")"
fi
rm -rf "$work"
echo "$me: installed $out"
