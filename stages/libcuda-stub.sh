#!/bin/bash
# libcuda-stub.sh — installs an empty package that stands in for the NVIDIA
# driver's libcuda1, so distribution CUDA packages install without the driver.
# Ubuntu 18.04's nvidia-cuda-toolkit needs nvidia-cuda-dev, which needs
# libcuinj64-9.1, which Depends (not Recommends) on "libcuda1 (>= 387.26) |
# libcuda-9.1-1": packages of the restricted component that ship the driver's
# own libcuda.so.1. A driver library must never be inside an image (imgbuild
# run --gpu binds the host's at run time), so the dependency is satisfied by
# this stub, which holds no files. Run it before the stage that installs the
# toolkit.
#
# Reads:  STUB_PROVIDES  what the stub provides (default
#                        "libcuda1 (= $IMGBUILD_MIN_DRIVER), libcuda-9.1-1";
#                        IMGBUILD_MIN_DRIVER is [stack] min_driver, derived from cuda)
#         STUB_NAME      package name (default imgbuild-libcuda-stub)
# Leaves: /.imgbuild/lock.d/libcuda-stub.txt
set -euo pipefail
me="libcuda-stub"
die() { echo "$me: $*" >&2; exit 1; }
command -v dpkg-deb >/dev/null || die "no dpkg-deb: not a Debian/Ubuntu image"
name=${STUB_NAME:-imgbuild-libcuda-stub}
[[ "$name" =~ ^[a-z0-9][a-z0-9.+-]+$ ]] || die "STUB_NAME '$name' is not a package name"
ver=${IMGBUILD_MIN_DRIVER:-390.46}
provides=${STUB_PROVIDES:-libcuda1 (= $ver), libcuda-9.1-1}
work=${IMGBUILD_WORK:-/imgbuild/work}/libcuda-stub
rm -rf "$work" && mkdir -p "$work/pkg/DEBIAN"
cat >"$work/pkg/DEBIAN/control" <<EOF
Package: $name
Version: $ver
Architecture: all
Maintainer: imgbuild <imgbuild@localhost>
Priority: optional
Section: misc
Provides: $provides
Description: stand-in for the NVIDIA driver's libcuda1 (no files)
 imgbuild images never contain the driver: imgbuild run --gpu binds the
 host's libcuda.so.1 at run time. This empty package satisfies the
 dependency of the distribution's CUDA packages on it.
EOF
# Reproducible: the package's mtimes are SOURCE_DATE_EPOCH.
find "$work/pkg" -exec touch -h -d "@${SOURCE_DATE_EPOCH:-0}" {} +
dpkg-deb --root-owner-group -Zgzip --build "$work/pkg" "$work/$name.deb" >/dev/null 2>&1 ||
	dpkg-deb -Zgzip --build "$work/pkg" "$work/$name.deb" >/dev/null || die "dpkg-deb --build failed"
dpkg -i "$work/$name.deb" || die "dpkg -i $name failed"
if dpkg -L "$name" 2>/dev/null | grep '^/' | grep -qvx '/\.'; then die "$name installed files: $(dpkg -L "$name" | tr '\n' ' ')"; fi
mkdir -p /.imgbuild/lock.d
echo "$name $ver provides: $provides" >/.imgbuild/lock.d/libcuda-stub.txt
rm -rf "$work"
echo "$me: installed $name $ver (provides $provides; no files)"
