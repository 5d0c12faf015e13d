#!/bin/bash
# cuda-runfile.sh — installs the CUDA toolkit from NVIDIA's pinned runfile,
# toolkit only, silently, NEVER the driver (the driver comes from the host at
# run time; a driver inside the image gives "driver/library version mismatch").
# Then checks that nvcc reports the manifest's CUDA version and that the stub
# libcuda.so is where build stages link against it (LIBRARY_PATH), while no
# libcuda.so.1 is visible to the dynamic loader.
#
# Reads:  IMGBUILD_CUDA        expected version "X.Y" (required; from [stack] cuda)
#         CUDA_INPUT           name of the runfile download (default "cuda")
#         CUDA_PREFIX          install folder (default /usr/local/cuda-X.Y); /usr/local/cuda links to it
#         CUDA_RUNFILE_STYLE   "gnu" (default: --silent --toolkit --toolkitpath=DIR --override,
#                              what spack uses for 9.x too) or "single" (the 9.x guide's
#                              -silent -toolkit -toolkitpath=DIR -override)
#         CUDA_RUNFILE_EXTRA   extra installer flags (optional, e.g. --no-opengl-libs)
# Needs:  writable /var/log (the installer logs there), /tmp, /usr/local.
# Leaves: /.imgbuild/facts.d/cuda_version (e.g. 10.0.130)
# Build stages that link CUDA code set LIBRARY_PATH=/usr/local/cuda/lib64/stubs in
# their env (or [env]); it is never put into /etc/ld.so.conf*.
set -euo pipefail
me="cuda-runfile"
die() { echo "$me: $*" >&2; exit 1; }

ver=${IMGBUILD_CUDA:-}
[ -n "$ver" ] || die "IMGBUILD_CUDA is not set (add [stack] cuda = \"X.Y\")"
case "$ver" in [0-9]*.[0-9]*) ;; *) die "IMGBUILD_CUDA '$ver' is not X.Y" ;; esac
mm=$(echo "$ver" | cut -d. -f1,2)
inputs=${IMGBUILD_INPUTS:-/imgbuild/inputs}
runfile=$inputs/${CUDA_INPUT:-cuda}
[ -f "$runfile" ] || die "runfile input '${CUDA_INPUT:-cuda}' not found at $runfile (list it in the stage's inputs)"
prefix=${CUDA_PREFIX:-/usr/local/cuda-$mm}
work=${IMGBUILD_WORK:-/imgbuild/work}
tmp=$work/cuda-tmp

# The installer dies half-way, with a log nobody sees, when these are not writable.
for d in /var/log /tmp /usr/local; do
	mkdir -p "$d" 2>/dev/null || true
	probe="$d/.imgbuild-write-test.$$"
	(: >"$probe") 2>/dev/null || die "$d is not writable (the CUDA installer needs it)"
	rm -f "$probe"
done
rm -rf "$tmp" && mkdir -p "$tmp"
# CUDA >= 10.1's installer segfaults when an old /tmp/cuda-installer.log exists (spack).
rm -f /tmp/cuda-installer.log

case "${CUDA_RUNFILE_STYLE:-gnu}" in
gnu) flags=(--silent --toolkit "--toolkitpath=$prefix" --override "--tmpdir=$tmp") ;;
single) flags=(-silent -toolkit "-toolkitpath=$prefix" -override) ;;
*) die "CUDA_RUNFILE_STYLE '${CUDA_RUNFILE_STYLE}' is neither gnu nor single" ;;
esac
# shellcheck disable=SC2206
[ -n "${CUDA_RUNFILE_EXTRA:-}" ] && flags+=(${CUDA_RUNFILE_EXTRA})
for f in "${flags[@]}"; do
	case "$f" in -driver | --driver | -driver=* | --driver=*) die "refusing to install the driver into an image ($f)" ;; esac
done

echo "$me: sh $(basename "$runfile") ${flags[*]}"
# makeself unpacks the payload under TMPDIR.
if ! TMPDIR=$tmp sh "$runfile" "${flags[@]}"; then
	for log in /var/log/cuda-installer.log /tmp/cuda-installer.log "$tmp"/cuda_install_*.log; do
		[ -f "$log" ] && { echo "--- $log" >&2; tail -n 30 "$log" >&2; }
	done
	die "runfile failed (toolkit-only install into $prefix)"
fi
rm -rf "$tmp"

[ -x "$prefix/bin/nvcc" ] || die "no $prefix/bin/nvcc after the install"
if [ "$prefix" != /usr/local/cuda ]; then
	if [ -e /usr/local/cuda ] && [ ! -L /usr/local/cuda ]; then
		die "/usr/local/cuda exists and is not a symlink (an earlier install?)"
	fi
	ln -sfn "$prefix" /usr/local/cuda
fi

out=$(/usr/local/cuda/bin/nvcc --version) || die "nvcc --version failed"
echo "$out" | grep -q "release $mm," || die "nvcc reports '$(echo "$out" | tail -n 1)', expected release $mm"
full=$(echo "$out" | sed -n 's/.*, V\([0-9][0-9.]*\).*/\1/p' | head -n 1)

stub=/usr/local/cuda/lib64/stubs/libcuda.so
[ -e "$stub" ] || die "no stub $stub in the toolkit (build stages link against it)"
# The stub must never be found at run time: it would shadow the host driver's libcuda.so.1.
for conf in /etc/ld.so.conf /etc/ld.so.conf.d/*; do
	[ -f "$conf" ] || continue
	if grep -q 'stubs' "$conf"; then
		sed -i '/stubs/d' "$conf"
		echo "$me: warning: removed a stubs folder from $conf" >&2
	fi
done
[ ! -e /usr/local/cuda/lib64/stubs/libcuda.so.1 ] ||
	die "the toolkit ships stubs/libcuda.so.1; it must not be on any runtime path"
ldconfig
if ldconfig -p | grep -q 'libcuda\.so\.1 '; then
	die "a libcuda.so.1 is in the image's ld.so cache ($(ldconfig -p | grep 'libcuda\.so\.1 ' | head -n 1)); the driver's must come from the host"
fi

# Logs hold build-time paths and dates; keep them out of the image.
rm -f /var/log/cuda-installer.log /tmp/cuda-installer.log /var/log/nvidia-installer.log
mkdir -p /.imgbuild/facts.d
echo "${full:-$mm}" >/.imgbuild/facts.d/cuda_version
echo "$me: CUDA ${full:-$mm} toolkit in $prefix (no driver)"
