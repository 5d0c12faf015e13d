/* cuda-probe: checks that the NVIDIA driver bound into an image can run GPU code,
 * without any CUDA toolkit. It dlopens the driver's libcuda.so.1, prints the
 * device and driver versions, JIT-compiles an embedded PTX vector-add kernel
 * (.target sm_30, so every GPU from Kepler on can JIT it) and checks 2^24 sums
 * against the CPU.
 *
 * Exit status: 0 ok; 1 a CUDA call failed or a result was wrong;
 *              2 no driver (libcuda.so.1 not found) or no CUDA device.
 *
 * Build: gcc -std=gnu11 -Wall -Wextra -Werror -O2 -o cuda-probe cuda-probe.c -ldl
 * The CUDA driver API types are declared here from the public ABI (cuda.h):
 * the _v2 entry points are the ones taking 64-bit CUdeviceptr / size_t. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef unsigned long long CUdeviceptr;

enum {
	CUDA_SUCCESS = 0,
	CUDA_ERROR_INSUFFICIENT_DRIVER = 35,
	CUDA_ERROR_NO_DEVICE = 100,
	CUDA_ERROR_UNKNOWN = 999,
	CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
	CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
	CU_JIT_INFO_LOG_BUFFER = 3,
	CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4,
	CU_JIT_ERROR_LOG_BUFFER = 5,
	CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
};

static struct {
	CUresult (*Init)(unsigned int flags);
	CUresult (*DriverGetVersion)(int *version);
	CUresult (*DeviceGetCount)(int *count);
	CUresult (*DeviceGet)(CUdevice *dev, int ordinal);
	CUresult (*DeviceGetName)(char *name, int len, CUdevice dev);
	CUresult (*DeviceGetAttribute)(int *value, int attrib, CUdevice dev);
	CUresult (*CtxCreate)(CUcontext *ctx, unsigned int flags, CUdevice dev);
	CUresult (*CtxDestroy)(CUcontext ctx);
	CUresult (*CtxSynchronize)(void);
	CUresult (*ModuleLoadDataEx)(CUmodule *mod, const void *image, unsigned int n, int *options, void **values);
	CUresult (*ModuleUnload)(CUmodule mod);
	CUresult (*ModuleGetFunction)(CUfunction *fn, CUmodule mod, const char *name);
	CUresult (*MemAlloc)(CUdeviceptr *p, size_t bytes);
	CUresult (*MemFree)(CUdeviceptr p);
	CUresult (*MemcpyHtoD)(CUdeviceptr dst, const void *src, size_t bytes);
	CUresult (*MemcpyDtoH)(void *dst, CUdeviceptr src, size_t bytes);
	CUresult (*LaunchKernel)(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
				 unsigned bz, unsigned shared, CUstream stream, void **params, void **extra);
	/* Optional: cuGetErrorString/Name exist from CUDA 6.0 drivers on. */
	CUresult (*GetErrorString)(CUresult e, const char **s);
	CUresult (*GetErrorName)(CUresult e, const char **s);
} cu;

static const struct {
	const char *name;
	void **slot;
	int required;
} symbols[] = {
	{ "cuInit", (void **)&cu.Init, 1 },
	{ "cuDriverGetVersion", (void **)&cu.DriverGetVersion, 1 },
	{ "cuDeviceGetCount", (void **)&cu.DeviceGetCount, 1 },
	{ "cuDeviceGet", (void **)&cu.DeviceGet, 1 },
	{ "cuDeviceGetName", (void **)&cu.DeviceGetName, 1 },
	{ "cuDeviceGetAttribute", (void **)&cu.DeviceGetAttribute, 1 },
	{ "cuCtxCreate_v2", (void **)&cu.CtxCreate, 1 },
	{ "cuCtxDestroy_v2", (void **)&cu.CtxDestroy, 1 },
	{ "cuCtxSynchronize", (void **)&cu.CtxSynchronize, 1 },
	{ "cuModuleLoadDataEx", (void **)&cu.ModuleLoadDataEx, 1 },
	{ "cuModuleUnload", (void **)&cu.ModuleUnload, 1 },
	{ "cuModuleGetFunction", (void **)&cu.ModuleGetFunction, 1 },
	{ "cuMemAlloc_v2", (void **)&cu.MemAlloc, 1 },
	{ "cuMemFree_v2", (void **)&cu.MemFree, 1 },
	{ "cuMemcpyHtoD_v2", (void **)&cu.MemcpyHtoD, 1 },
	{ "cuMemcpyDtoH_v2", (void **)&cu.MemcpyDtoH, 1 },
	{ "cuLaunchKernel", (void **)&cu.LaunchKernel, 1 },
	{ "cuGetErrorString", (void **)&cu.GetErrorString, 0 },
	{ "cuGetErrorName", (void **)&cu.GetErrorName, 0 },
};

/* c[i] = a[i] + b[i] for i < n; written for PTX ISA 6.0 (CUDA 9.0, driver >= 384)
 * and sm_30, the oldest target of this project, so any newer GPU JITs it. */
static const char ptx[] =
	".version 6.0\n"
	".target sm_30\n"
	".address_size 64\n"
	"\n"
	".visible .entry vadd(.param .u64 pa, .param .u64 pb, .param .u64 pc, .param .u32 pn)\n"
	"{\n"
	"	.reg .pred %p<2>;\n"
	"	.reg .b32 %r<6>;\n"
	"	.reg .f32 %f<4>;\n"
	"	.reg .b64 %rd<11>;\n"
	"	ld.param.u64 %rd1, [pa];\n"
	"	ld.param.u64 %rd2, [pb];\n"
	"	ld.param.u64 %rd3, [pc];\n"
	"	ld.param.u32 %r2, [pn];\n"
	"	mov.u32 %r3, %ctaid.x;\n"
	"	mov.u32 %r4, %ntid.x;\n"
	"	mov.u32 %r5, %tid.x;\n"
	"	mad.lo.s32 %r1, %r3, %r4, %r5;\n"
	"	setp.ge.s32 %p1, %r1, %r2;\n"
	"	@%p1 bra DONE;\n"
	"	cvta.to.global.u64 %rd4, %rd1;\n"
	"	cvta.to.global.u64 %rd5, %rd2;\n"
	"	cvta.to.global.u64 %rd6, %rd3;\n"
	"	mul.wide.s32 %rd7, %r1, 4;\n"
	"	add.s64 %rd8, %rd4, %rd7;\n"
	"	add.s64 %rd9, %rd5, %rd7;\n"
	"	add.s64 %rd10, %rd6, %rd7;\n"
	"	ld.global.f32 %f1, [%rd8];\n"
	"	ld.global.f32 %f2, [%rd9];\n"
	"	add.rn.f32 %f3, %f1, %f2;\n"
	"	st.global.f32 [%rd10], %f3;\n"
	"DONE:\n"
	"	ret;\n"
	"}\n";

static void explain(CUresult r, char *buf, size_t len)
{
	const char *name = NULL, *text = NULL;
	if (cu.GetErrorName == NULL || cu.GetErrorName(r, &name) != CUDA_SUCCESS)
		name = NULL;
	if (cu.GetErrorString == NULL || cu.GetErrorString(r, &text) != CUDA_SUCCESS)
		text = NULL;
	snprintf(buf, len, "error %d%s%s%s%s", r, name ? " " : "", name ? name : "", text ? ": " : "",
		 text ? text : "");
}

/* Prints the failing call with the driver's own words for the error, plus the
 * hint users need most (docs/sources.md §1: nvidia_uvm, driver too old). */
static int check(CUresult r, const char *call)
{
	if (r == CUDA_SUCCESS)
		return 0;
	char why[256];
	explain(r, why, sizeof(why));
	fprintf(stderr, "cuda-probe: %s failed: %s\n", call, why);
	if (r == CUDA_ERROR_UNKNOWN)
		fprintf(stderr, "cuda-probe: hint: is the nvidia_uvm module loaded (/dev/nvidia-uvm)?\n");
	if (r == CUDA_ERROR_INSUFFICIENT_DRIVER)
		fprintf(stderr, "cuda-probe: hint: the kernel driver is older than this libcuda.so.1\n");
	return -1;
}
#define CK(call)                            \
	do {                                \
		if (check((call), #call) < 0) \
			goto out;           \
	} while (0)

static void print_host_driver(void)
{
	FILE *f = fopen("/proc/driver/nvidia/version", "r");
	if (f == NULL)
		return;
	char line[512];
	if (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		printf("cuda-probe: host driver: %s\n", line);
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	int ordinal = argc > 1 ? atoi(argv[1]) : 0;
	const unsigned n = 1u << 24;
	const size_t bytes = (size_t)n * sizeof(float);

	void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		const char *why = dlerror();
		fprintf(stderr, "cuda-probe: libcuda.so.1 not found (%s): no NVIDIA driver is bound\n",
			why ? why : "dlopen failed");
		return 2;
	}
	for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
		*symbols[i].slot = dlsym(lib, symbols[i].name);
		if (*symbols[i].slot == NULL && symbols[i].required) {
			fprintf(stderr, "cuda-probe: libcuda.so.1 lacks %s (driver too old?)\n", symbols[i].name);
			return 1;
		}
	}
	print_host_driver();

	int status = 1;
	CUcontext ctx = NULL;
	CUmodule mod = NULL;
	CUdeviceptr da = 0, db = 0, dc = 0;
	float *a = NULL, *b = NULL, *c = NULL;

	CUresult r = cu.Init(0);
	if (r == CUDA_ERROR_NO_DEVICE) {
		fprintf(stderr, "cuda-probe: cuInit: no CUDA device\n");
		return 2;
	}
	CK(r);
	int drv = 0, count = 0;
	CK(cu.DriverGetVersion(&drv));
	printf("cuda-probe: driver supports CUDA %d.%d (cuDriverGetVersion %d)\n", drv / 1000, drv % 1000 / 10, drv);
	CK(cu.DeviceGetCount(&count));
	if (count == 0) {
		fprintf(stderr, "cuda-probe: no CUDA device\n");
		return 2;
	}
	if (ordinal < 0 || ordinal >= count) {
		fprintf(stderr, "cuda-probe: device %d does not exist (%d devices)\n", ordinal, count);
		return 1;
	}
	CUdevice dev;
	char name[256] = "";
	int major = 0, minor = 0;
	CK(cu.DeviceGet(&dev, ordinal));
	CK(cu.DeviceGetName(name, (int)sizeof(name), dev));
	CK(cu.DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
	CK(cu.DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
	printf("cuda-probe: device %d of %d: %s, compute capability %d.%d\n", ordinal, count, name, major, minor);

	CK(cu.CtxCreate(&ctx, 0, dev));

	char info_log[4096] = "", error_log[4096] = "";
	int opts[] = { CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
		       CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES };
	void *vals[] = { info_log, (void *)(uintptr_t)sizeof(info_log), error_log,
			 (void *)(uintptr_t)sizeof(error_log) };
	r = cu.ModuleLoadDataEx(&mod, ptx, 4, opts, vals);
	if (r != CUDA_SUCCESS) {
		if (error_log[0])
			fprintf(stderr, "cuda-probe: PTX JIT log: %s\n", error_log);
		CK(r);
	}
	CUfunction fn;
	CK(cu.ModuleGetFunction(&fn, mod, "vadd"));
	printf("cuda-probe: PTX JIT (.version 6.0, .target sm_30) ok\n");

	a = malloc(bytes);
	b = malloc(bytes);
	c = malloc(bytes);
	if (a == NULL || b == NULL || c == NULL) {
		fprintf(stderr, "cuda-probe: out of host memory\n");
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		a[i] = (float)i * 0.5f;
		b[i] = (float)(n - i) * 0.25f + 1.0f;
		c[i] = -1.0f;
	}
	CK(cu.MemAlloc(&da, bytes));
	CK(cu.MemAlloc(&db, bytes));
	CK(cu.MemAlloc(&dc, bytes));
	CK(cu.MemcpyHtoD(da, a, bytes));
	CK(cu.MemcpyHtoD(db, b, bytes));
	CK(cu.MemcpyHtoD(dc, c, bytes));
	unsigned nn = n;
	void *params[] = { &da, &db, &dc, &nn };
	const unsigned block = 256;
	CK(cu.LaunchKernel(fn, (n + block - 1) / block, 1, 1, block, 1, 1, 0, NULL, params, NULL));
	CK(cu.CtxSynchronize());
	CK(cu.MemcpyDtoH(c, dc, bytes));

	unsigned long bad = 0;
	for (unsigned i = 0; i < n; i++) {
		float want = a[i] + b[i];
		if (c[i] != want && bad++ < 5)
			fprintf(stderr, "cuda-probe: c[%u] = %.9g, expected %.9g\n", i, (double)c[i], (double)want);
	}
	if (bad) {
		fprintf(stderr, "cuda-probe: %lu of %u elements wrong\n", bad, n);
		goto out;
	}
	printf("cuda-probe: vector add of %u floats ok\n", n);
	status = 0;
out:
	if (dc && check(cu.MemFree(dc), "cuMemFree_v2(c)") < 0)
		status = 1;
	if (db && check(cu.MemFree(db), "cuMemFree_v2(b)") < 0)
		status = 1;
	if (da && check(cu.MemFree(da), "cuMemFree_v2(a)") < 0)
		status = 1;
	if (mod && check(cu.ModuleUnload(mod), "cuModuleUnload") < 0)
		status = 1;
	if (ctx && check(cu.CtxDestroy(ctx), "cuCtxDestroy_v2") < 0)
		status = 1;
	free(a);
	free(b);
	free(c);
	return status;
}
