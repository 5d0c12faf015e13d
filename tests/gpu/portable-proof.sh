#!/bin/bash
# The GPU proof of imgbuild-portable, run on the device machine from the repository
# root, with build/gpu (tests/gpu/portable-images.sh) and build/imgbuild-portable
# carried: a static file that needs no library of the host runs CUDA work through
# the host driver as root and as an ordinary user, and refuses what cannot run.
# docs/gpu-proof.md holds its output.
set -u
W=$(mktemp -d /tmp/ibproof.XXXX); chmod 755 $W
cp build/gpu/*.tar* build/gpu/imgbuild-test.pub build/imgbuild-portable $W/
P=$W/imgbuild-portable
run() { echo "\$ $*"; "$@" 2>&1; echo "[exit $?]"; }
cd $W
run uname -r; run ldd --version; run nvidia-smi -L; run file $P
run ls -la /usr/bin/nvidia-smi "$(command -v nvidia-smi)"
run $P driver
run $P verify probe.tar --key imgbuild-test.pub
run $P trust add imgbuild-test.pub --name classmate
run $P run --gpu probe.tar -- /usr/local/bin/cuda-probe
run $P run --gpu probe.tar -- nvidia-smi -L
run $P run probe.tar -- /usr/local/bin/cuda-probe
run $P run --gpu kepler.tar -- /usr/local/bin/cuda-probe
run $P run --gpu newdrv.tar -- /usr/local/bin/cuda-probe
useradd -m ibgpu 2>/dev/null; cp imgbuild-test.pub /home/ibgpu/; chown ibgpu /home/ibgpu/imgbuild-test.pub
run runuser -u ibgpu -- $P trust add /home/ibgpu/imgbuild-test.pub
run runuser -u ibgpu -- $P run --gpu $W/probe.tar -- /usr/local/bin/cuda-probe
