#!/usr/bin/env bash
# manifests/cuda-probe.toml for real, and the CPU-only part of the GPU proof
# (tests/gpu/device-run.sh --cpu-only): builds the image (Ubuntu 18.04 from the
# Ubuntu archive; ~1 GB of CUDA 9.1 packages the first time, then every layer
# and the packed image are cached: build/gpu-proof/cuda-probe.tar.zst), verifies
# it with the test key, checks its size (< 40 MiB), the facts cuobjdump recorded,
# that no toolkit and no driver is inside, runs cuda-probe through a fixture
# driver whose libcuda.so.1 computes on the CPU, and the refusals against
# fixture drivers. Skipped when the Ubuntu archive does not answer.
. "$(dirname "$0")/../lib.sh"
require_root
if ! ubuntu_archive_answers; then
	skip "skipped: Ubuntu archive unreachable"
	finish
fi
export IMGBUILD_CACHE=${IMGBUILD_CACHE:-/var/cache/imgbuild}
OUT=$REPO/build/gpu-proof
IMAGE=$OUT/cuda-probe.tar.zst
mkdir -p "$OUT"
run() { "$IMGBUILD" run --key "$TEST_PUB" "$IMAGE" "$@"; }

start=$SECONDS
if "$IMGBUILD" build "$REPO/manifests/cuda-probe.toml" -o "$IMAGE" --sign "$TEST_KEY" >"$TMP/build.log" 2>&1; then
	ok "imgbuild build manifests/cuda-probe.toml ($((SECONDS - start)) s)"
else
	not_ok "imgbuild build manifests/cuda-probe.toml"
	tail -n 25 "$TMP/build.log" | sed 's/^/# /'
	finish
fi
check "imgbuild verify --key imgbuild-test.pub" "$IMGBUILD" verify "$IMAGE" --key "$TEST_PUB"
size=$(stat -c %s "$IMAGE")
if [ "$size" -lt $((40 * 1024 * 1024)) ]; then ok "the image is $size bytes (< 40 MiB)"; else not_ok "the image is $size bytes (>= 40 MiB)"; fi

run -- cat /.imgbuild/facts.toml >"$TMP/facts.toml" 2>&1 || true
facts_has() { grep -qxF -- "$1" "$TMP/facts.toml"; }
check "facts: min_driver = \"390.46\"" facts_has 'min_driver = "390.46"'
check "facts: archs with 6.1+PTX (covers sm_90)" facts_has 'archs = ["3.0", "3.5", "5.0", "6.1+PTX"]'
check "facts: ptx_jit = \"true\"" facts_has 'ptx_jit = "true"'
check "facts from cuobjdump: SASS sm_30 sm_35 sm_50 sm_61" facts_has 'sass_archs = "sm_30 sm_35 sm_50 sm_61"'
check "facts from cuobjdump: PTX sm_61" facts_has 'ptx_archs = "sm_61"'
check "no toolkit, no compiler, no driver library inside" run -- sh -c \
	'! command -v nvcc && ! command -v gcc && ! dpkg -l | grep -E "^ii +(nvidia-cuda|libcuda|imgbuild-libcuda)" && [ -z "$(find / -xdev -name "libcuda.so*" -o -xdev -name "libnvidia-*")" ]'
check "both probes present, cudart static" run -- sh -c \
	'test -x /usr/local/bin/cuda-probe && test -x /usr/local/bin/cuda-vector-add && ! ldd /usr/local/bin/cuda-vector-add | grep -q cudart'
check_fails "without --gpu, cuda-probe exits 2: no driver" 2 'libcuda.so.1 not found' run -- cuda-probe

# ---- a fixture driver whose libcuda.so.1 runs cuda-probe's kernel on the CPU
VER=580.159.04
HOST=$TMP/host
LIBDIR=$HOST/usr/lib/x86_64-linux-gnu
mkdir -p "$LIBDIR" "$HOST/usr/bin" "$HOST/etc" "$HOST/proc/driver/nvidia" "$HOST/dev"
cat >"$TMP/cpucuda.c" <<'EOF'
/* Enough of the driver API for imgbuild's preflight and for cuda-probe, whose
 * "vadd" kernel it runs on the CPU. Built here, loaded in the bionic image:
 * only old glibc symbols. */
#include <stdlib.h>
#include <string.h>
typedef unsigned long long dptr;
static int num(const char *n, int d) { const char *v = getenv(n); return v ? atoi(v) : d; }
int cuInit(unsigned f) { (void)f; return 0; }
int cuDriverGetVersion(int *v) { *v = 13000; return 0; }
int cuDeviceGetCount(int *c) { *c = 1; return 0; }
int cuDeviceGet(int *d, int o) { *d = o; return 0; }
int cuDeviceGetAttribute(int *v, int attr, int dev)
{
	(void)dev;
	if (attr == 75) *v = num("FAKE_CUDA_MAJOR", 9);
	else if (attr == 76) *v = num("FAKE_CUDA_MINOR", 0);
	else return 1;
	return 0;
}
int cuDeviceGetName(char *name, int len, int dev) { (void)dev; strncpy(name, "Fixture GPU (CPU)", (size_t)len - 1); name[len - 1] = 0; return 0; }
static int ctx, mod, fn;
int cuCtxCreate_v2(void **c, unsigned f, int d) { (void)f; (void)d; *c = &ctx; return 0; }
int cuCtxDestroy_v2(void *c) { (void)c; return 0; }
int cuCtxSynchronize(void) { return 0; }
int cuModuleLoadDataEx(void **m, const void *img, unsigned n, int *o, void **v)
{
	(void)n; (void)o; (void)v;
	if (strstr((const char *)img, ".entry vadd") == NULL) return 218;
	*m = &mod;
	return 0;
}
int cuModuleUnload(void *m) { (void)m; return 0; }
int cuModuleGetFunction(void **f, void *m, const char *name) { (void)m; if (strcmp(name, "vadd")) return 500; *f = &fn; return 0; }
int cuMemAlloc_v2(dptr *p, size_t b) { void *q = malloc(b); if (!q) return 2; *p = (dptr)(size_t)q; return 0; }
int cuMemFree_v2(dptr p) { free((void *)(size_t)p); return 0; }
int cuMemcpyHtoD_v2(dptr d, const void *s, size_t b) { memcpy((void *)(size_t)d, s, b); return 0; }
int cuMemcpyDtoH_v2(void *d, dptr s, size_t b) { memcpy(d, (void *)(size_t)s, b); return 0; }
int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
		   unsigned sh, void *st, void **params, void **extra)
{
	(void)f; (void)gy; (void)gz; (void)by; (void)bz; (void)sh; (void)st; (void)extra;
	const float *a = (const float *)(size_t)*(dptr *)params[0], *b = (const float *)(size_t)*(dptr *)params[1];
	float *c = (float *)(size_t)*(dptr *)params[2];
	unsigned n = *(unsigned *)params[3];
	for (unsigned long i = 0; i < (unsigned long)gx * bx && i < n; i++)
		c[i] = a[i] + b[i];
	return 0;
}
EOF
gcc -O2 -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LIBDIR/libcuda.so.$VER" "$TMP/cpucuda.c"
echo /usr/lib/x86_64-linux-gnu >"$HOST/etc/ld.so.conf"
ldconfig -r "$HOST" -C /etc/ld.so.cache
echo "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  $VER  Release Build  (fixture)" >"$HOST/proc/driver/nvidia/version"
mknod "$HOST/dev/nvidiactl" c 195 255
mknod "$HOST/dev/nvidia0" c 195 0
mknod "$HOST/dev/nvidia-uvm" c 237 0
export IMGBUILD_HOST_ROOT=$HOST
check_fails "run --gpu -- cuda-probe through a fixture driver (CPU libcuda): 2^24 sums checked" 0 \
	'cuda-probe: vector add of 16777216 floats ok' run --gpu -- cuda-probe

# ---- the CPU-only steps of the device script: verify, run --gpu, refusals, imgbuild driver
start=$SECONDS
IMGBUILD=$IMGBUILD DEVICE_RUN_WORK=$TMP/device-run bash "$REPO/tests/gpu/device-run.sh" --cpu-only "$OUT" >"$TMP/device-run.log" 2>&1
rc=$?
diag "tests/gpu/device-run.sh --cpu-only: exit $rc in $((SECONDS - start)) s"
while IFS= read -r line; do
	case "$line" in
	PASS:*) ok "device-run: ${line#PASS: }" ;;
	FAIL:*) not_ok "device-run: ${line#FAIL: }" ;;
	esac
done <"$TMP/device-run.log"
n=$(grep -c '^PASS:' "$TMP/device-run.log")
if [ "$rc" -eq 0 ] && [ "$n" -ge 9 ]; then ok "device-run.sh --cpu-only passed ($n checks)"; else
	not_ok "device-run.sh --cpu-only: exit $rc, $n checks passed"
	tail -n 40 "$TMP/device-run.log" | sed 's/^/# /'
fi
finish
