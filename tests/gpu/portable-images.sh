#!/usr/bin/env bash
# Makes build/gpu/: three small signed images for the GPU proof of
# imgbuild-portable (tests/gpu/portable-proof.sh runs them on the device):
# build/cuda-probe with the Debian glibc libraries it and the host's libcuda
# load, plus busybox; probe.tar (archs 6.1+PTX, ptx_jit: runs on any newer GPU),
# kepler.tar (sm_30 only: must be refused on a newer GPU) and newdrv.tar
# (min_driver 999.1: must be refused by every driver).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x build/imgbuild ] && [ -x build/cuda-probe ] && [ -x build/imgbuild-portable ] ||
	{ echo "portable-images: run 'make all portable' first" >&2; exit 2; }
T=build/gpu/tree
rm -rf --one-file-system build/gpu && mkdir -p $T/bin $T/lib/x86_64-linux-gnu $T/lib64 $T/usr/local/bin $T/tmp $T/proc $T/dev $T/etc
cp "$(command -v busybox)" $T/bin/
for a in sh ls cat id echo; do ln -s busybox $T/bin/$a; done
cp build/cuda-probe $T/usr/local/bin/
# The host driver's libcuda and nvidia-smi load these from the image's glibc.
for l in libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libgcc_s.so.1; do
	cp -L /lib/x86_64-linux-gnu/$l $T/lib/x86_64-linux-gnu/
done
cp -L /lib64/ld-linux-x86-64.so.2 $T/lib64/
echo 'root:x:0:0:root:/root:/bin/sh' >$T/etc/passwd
cp tests/fixtures/imgbuild-test.pub build/gpu/
pack() { build/imgbuild pack $T -o "build/gpu/$1.tar" --sign tests/fixtures/imgbuild-test.sec --epoch 1577836800 --name "$1" "${@:2}"; }
pack probe --arch 6.1+PTX --fact ptx_jit=true --fact min_driver=390.46
pack kepler --arch 3.0 --fact min_driver=390.46
pack newdrv --arch 6.1+PTX --fact ptx_jit=true --fact min_driver=999.1
