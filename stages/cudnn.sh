#!/bin/bash
# cudnn.sh — unpacks NVIDIA's pinned cuDNN tarball (cudnn-X.Y-linux-x64-vA.B.C.D.tgz,
# layout cuda/include, cuda/lib64) into the CUDA tree: ALL headers (cuDNN 8 splits
# cudnn.h into cudnn_*.h and cudnn_version.h) and ALL of lib64 (symlinks kept),
# owned by root and readable by everyone, as the seed did by hand.
#
# Reads:  CUDNN_INPUT    name of the tarball download (default "cudnn")
#         CUDA_HOME      CUDA tree (default /usr/local/cuda)
#         IMGBUILD_CUDNN expected version "A.B.C" (optional; from [stack] cudnn)
# Leaves: /.imgbuild/facts.d/cudnn_version
set -euo pipefail
me="cudnn"
die() { echo "$me: $*" >&2; exit 1; }

inputs=${IMGBUILD_INPUTS:-/imgbuild/inputs}
tarball=$inputs/${CUDNN_INPUT:-cudnn}
[ -f "$tarball" ] || die "cuDNN input '${CUDNN_INPUT:-cudnn}' not found at $tarball"
cuda=${CUDA_HOME:-/usr/local/cuda}
[ -d "$cuda/include" ] && [ -d "$cuda/lib64" ] || die "no CUDA tree at $cuda (run the cuda stage first)"
work=${IMGBUILD_WORK:-/imgbuild/work}/cudnn
rm -rf "$work" && mkdir -p "$work"

# Owners and modes in NVIDIA's tarball are whatever their build machine had.
tar -xf "$tarball" -C "$work" --no-same-owner --no-same-permissions || die "cannot unpack $tarball"
[ -d "$work/cuda/include" ] && [ -d "$work/cuda/lib64" ] || die "$tarball has no cuda/include and cuda/lib64"
shopt -s nullglob
headers=("$work"/cuda/include/*.h)
libs=("$work"/cuda/lib64/*)
[ ${#headers[@]} -gt 0 ] || die "$tarball has no headers in cuda/include"
[ ${#libs[@]} -gt 0 ] || die "$tarball has no libraries in cuda/lib64"
[ -f "$work/cuda/include/cudnn.h" ] || die "$tarball has no cuda/include/cudnn.h"

cp -P "${headers[@]}" "$cuda/include/"
cp -P "${libs[@]}" "$cuda/lib64/"
for f in "${headers[@]}" "${libs[@]}"; do
	dst=$cuda/$(basename "$(dirname "$f")")/$(basename "$f")
	chown -h 0:0 "$dst"
	[ -L "$dst" ] || chmod a+r,go-w "$dst"
done
ls "$cuda"/lib64/libcudnn.so* >/dev/null 2>&1 || die "no libcudnn.so* in $cuda/lib64 after the copy"

# The version lives in cudnn.h (7.x) or cudnn_version.h (8.x).
vh=$cuda/include/cudnn_version.h
[ -f "$vh" ] || vh=$cuda/include/cudnn.h
get() { sed -n "s/^#define CUDNN_$1 *\([0-9][0-9]*\).*/\1/p" "$vh" | head -n 1; }
found="$(get MAJOR).$(get MINOR).$(get PATCHLEVEL)"
if [ -n "${IMGBUILD_CUDNN:-}" ]; then
	case "$found" in
	"$IMGBUILD_CUDNN" | "$IMGBUILD_CUDNN".*) ;;
	*) die "$(basename "$tarball") is cuDNN $found, the manifest says $IMGBUILD_CUDNN" ;;
	esac
fi
rm -rf "$work"
mkdir -p /.imgbuild/facts.d
echo "$found" >/.imgbuild/facts.d/cudnn_version
echo "$me: cuDNN $found: ${#headers[@]} headers, ${#libs[@]} library files into $cuda"
