#!/bin/bash
# nvcc-probe.sh — compiles a small CUDA vector-add program with the image's nvcc
# for every arch of the manifest (SASS for each sm_XY, plus PTX for "+PTX" entries,
# so newer GPUs JIT it), with the CUDA runtime linked statically, and installs it
# as /usr/local/bin/cuda-vector-add. The program needs only the host's driver.
# No GPU is needed to build it.
#
# Reads:  PROBE_ARCHS    arch list like [stack] archs (default: IMGBUILD_ARCHS,
#                        else "3.0;3.5;5.0;6.1+PTX")
#         NVCC           nvcc to use (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc)
#         NVCC_CCBIN     host compiler for -ccbin (optional; default: nvcc's choice)
#         PROBE_OUTPUT   where to install (default /usr/local/bin/cuda-vector-add)
# Leaves: /.imgbuild/facts.d/cuda_vector_add_gencode (the -gencode flags used)
set -euo pipefail
me="nvcc-probe"
die() { echo "$me: $*" >&2; exit 1; }

archs=${PROBE_ARCHS:-${IMGBUILD_ARCHS:-3.0;3.5;5.0;6.1+PTX}}
nvcc=${NVCC:-}
if [ -z "$nvcc" ]; then
	if command -v nvcc >/dev/null; then nvcc=$(command -v nvcc)
	elif [ -x /usr/local/cuda/bin/nvcc ]; then nvcc=/usr/local/cuda/bin/nvcc
	else die "no nvcc on PATH or in /usr/local/cuda/bin (install the toolkit first)"; fi
fi
out=${PROBE_OUTPUT:-/usr/local/bin/cuda-vector-add}
work=${IMGBUILD_WORK:-/imgbuild/work}/nvcc-probe
rm -rf "$work" && mkdir -p "$work"

gencode=()
for a in ${archs//;/ }; do
	ptx=0
	case "$a" in *+PTX) ptx=1 a=${a%+PTX} ;; esac
	[[ "$a" =~ ^[0-9]+\.[0-9]$ ]] || die "arch '$a' is not X.Y (from '$archs')"
	n=${a/./}
	gencode+=("-gencode=arch=compute_$n,code=sm_$n")
	[ "$ptx" = 1 ] && gencode+=("-gencode=arch=compute_$n,code=compute_$n")
done
[ ${#gencode[@]} -gt 0 ] || die "no archs in '$archs'"

cat >"$work/vector-add.cu" <<'CU'
// cuda-vector-add: adds two vectors of 2^24 floats on GPU 0 and checks every
// element against the CPU. Exit 0: ok; 1: wrong result or CUDA error; 2: no GPU.
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cuda_runtime.h>

#define CK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
	fprintf(stderr, "cuda-vector-add: %s: %s (%s)\n", #call, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
	exit(1); } } while (0)

__global__ void add(const float *a, const float *b, float *c, int n)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		c[i] = a[i] + b[i];
}

int main(void)
{
	const int n = 1 << 24;
	int count = 0, drv = 0, rt = 0;
	cudaError_t e = cudaGetDeviceCount(&count);
	if (e != cudaSuccess || count == 0) {
		fprintf(stderr, "cuda-vector-add: no usable CUDA device: %s\n", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
		return 2;
	}
	cudaDeviceProp p;
	CK(cudaGetDeviceProperties(&p, 0));
	CK(cudaDriverGetVersion(&drv));
	CK(cudaRuntimeGetVersion(&rt));
	printf("cuda-vector-add: %s, compute capability %d.%d, driver API %d, runtime %d\n", p.name, p.major, p.minor, drv, rt);
	size_t bytes = (size_t)n * sizeof(float);
	float *a = (float *)malloc(bytes), *b = (float *)malloc(bytes), *c = (float *)malloc(bytes);
	if (!a || !b || !c) { fprintf(stderr, "cuda-vector-add: out of memory\n"); return 1; }
	for (int i = 0; i < n; i++) { a[i] = (float)i * 0.5f; b[i] = (float)(n - i) * 0.25f; }
	float *da, *db, *dc;
	CK(cudaMalloc((void **)&da, bytes));
	CK(cudaMalloc((void **)&db, bytes));
	CK(cudaMalloc((void **)&dc, bytes));
	CK(cudaMemcpy(da, a, bytes, cudaMemcpyHostToDevice));
	CK(cudaMemcpy(db, b, bytes, cudaMemcpyHostToDevice));
	add<<<(n + 255) / 256, 256>>>(da, db, dc, n);
	CK(cudaGetLastError());
	CK(cudaDeviceSynchronize());
	CK(cudaMemcpy(c, dc, bytes, cudaMemcpyDeviceToHost));
	long bad = 0;
	for (int i = 0; i < n; i++)
		if (c[i] != a[i] + b[i] && bad++ < 5)
			fprintf(stderr, "cuda-vector-add: c[%d] = %g, expected %g\n", i, c[i], a[i] + b[i]);
	CK(cudaFree(da)); CK(cudaFree(db)); CK(cudaFree(dc));
	free(a); free(b); free(c);
	if (bad) { fprintf(stderr, "cuda-vector-add: %ld of %d elements wrong\n", bad, n); return 1; }
	printf("cuda-vector-add: ok, %d elements\n", n);
	return 0;
}
CU

flags=(-O2 -cudart static "${gencode[@]}")
[ -n "${NVCC_CCBIN:-}" ] && flags+=(-ccbin "$NVCC_CCBIN")
"$nvcc" --version | tail -n 1
echo "$me: $nvcc ${flags[*]}"
(cd "$work" && "$nvcc" "${flags[@]}" -o cuda-vector-add vector-add.cu) || die "nvcc failed for archs '$archs'"
install -D -m 0755 "$work/cuda-vector-add" "$out"
if command -v ldd >/dev/null && ldd "$out" | grep -q 'libcudart'; then
	die "$out links libcudart dynamically; wanted -cudart static"
fi
mkdir -p /.imgbuild/facts.d
echo "${gencode[*]}" >/.imgbuild/facts.d/cuda_vector_add_gencode
rm -rf "$work"
echo "$me: installed $out for $archs"
