#!/usr/bin/env bash
# manifests/bionic-cuda91.toml for real (make test-long: the first build downloads
# ~1 GB of CUDA 9.1 packages from the Ubuntu archive and packs a 1.6 GB image;
# later builds reuse every layer and the packed image in build/gpu-proof/): the
# CUDA 9.1 toolkit installs without the driver (the libcuda-stub stage),
# nvcc compiles the vector-add probe, and cuobjdump shows SASS for all four
# architectures plus PTX. Skipped when the Ubuntu archive does not answer.
. "$(dirname "$0")/../lib.sh"
require_root
if ! ubuntu_archive_answers; then
	skip "skipped: Ubuntu archive unreachable"
	finish
fi
export IMGBUILD_CACHE=${IMGBUILD_CACHE:-/var/cache/imgbuild}
OUT=$REPO/build/gpu-proof
IMAGE=$OUT/bionic-cuda91.tar
mkdir -p "$OUT"
start=$SECONDS
if "$IMGBUILD" build "$REPO/manifests/bionic-cuda91.toml" -o "$IMAGE" --sign "$TEST_KEY" >"$TMP/build.log" 2>&1; then
	ok "imgbuild build manifests/bionic-cuda91.toml ($((SECONDS - start)) s)"
else
	not_ok "imgbuild build manifests/bionic-cuda91.toml"
	tail -n 25 "$TMP/build.log" | sed 's/^/# /'
	finish
fi
check "imgbuild verify --key imgbuild-test.pub" "$IMGBUILD" verify "$IMAGE" --key "$TEST_PUB"
"$IMGBUILD" run --key "$TEST_PUB" "$IMAGE" -- sh -c \
	'nvcc --version | tail -n 1; cuobjdump --list-elf /usr/local/bin/cuda-vector-add; cuobjdump --list-ptx /usr/local/bin/cuda-vector-add' \
	>"$TMP/cuobjdump.txt" 2>&1 || true
sed 's/^/# /' "$TMP/cuobjdump.txt"
check "nvcc is CUDA 9.1" grep -q 'release 9.1' "$TMP/cuobjdump.txt"
for sm in sm_30 sm_35 sm_50 sm_61; do
	check "cuobjdump: SASS for $sm" grep -qE "^ELF file +[0-9]+: .*\\.$sm\\.cubin" "$TMP/cuobjdump.txt"
done
check "cuobjdump: PTX for sm_61 (compute_61, JIT-compiled by newer GPUs)" grep -qE '^PTX file +[0-9]+: .*\.sm_61\.ptx' "$TMP/cuobjdump.txt"
# (the toolkit's link-time stub, stubs/libcuda.so, and its man page are not the driver)
check "no driver library in the image (the stub package provides libcuda1)" "$IMGBUILD" run --key "$TEST_PUB" "$IMAGE" -- sh -c \
	'dpkg-query -W imgbuild-libcuda-stub && [ -z "$(find / -xdev -name "libcuda.so*" ! -path "*/stubs/*" ! -path "/usr/share/man/*")" ]'
finish
