/* imgbuild-portable only: the GPU query of `run --gpu` and `driver`.
 *
 *   LD_PRELOAD=LIBCUDA cuda-query
 *
 * A static binary cannot dlopen the host's libcuda (a static dlopen needs the
 * very glibc it was linked with), so imgbuild-portable carries this small
 * dynamic program inside itself, writes it to a memfd and executes it: the
 * host's own ld.so and libc then load libcuda as for any CUDA program. It is
 * linked against a stand-in libcuda.so.1 (NEEDED libcuda.so.1); LD_PRELOAD
 * names the host's file, whose SONAME satisfies that NEEDED entry.
 *
 * It must run on glibc 2.27 (Ubuntu 18.04) and older although built with
 * Debian 12's 2.36, so it uses only symbols of version GLIBC_2.2.5: no crt1.o
 * (its __libc_start_main is GLIBC_2.34) but its own _start (ld.so has
 * initialised libc before it jumps there), and no dlopen (GLIBC_2.34 in
 * libc.so.6). `make portable` checks the versions with readelf. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int cuInit(unsigned flags);
int cuDeviceGetCount(int *count);
int cuDeviceGetAttribute(int *value, int attr, int dev);
/* Optional: older drivers' or a fixture's libcuda may lack them. */
int cuDeviceGet(int *dev, int ordinal) __attribute__((weak));
int cuDeviceGetName(char *name, int len, int dev) __attribute__((weak));

/* Output, one line each: "gpus N" and N lines "MAJOR MINOR NAME"; or
 * "cuda CALL RC" when a driver call failed (imgbuild words the message); or
 * nothing when ld.so could not load libcuda (its message goes to stderr). */
static int query(void)
{
	int rc, n = 0;
	if ((rc = cuInit(0)) != 0)
		return printf("cuda cuInit %d\n", rc), 1;
	if ((rc = cuDeviceGetCount(&n)) != 0)
		return printf("cuda cuDeviceGetCount %d\n", rc), 1;
	printf("gpus %d\n", n);
	for (int i = 0; i < n; i++) {
		int dev = i, major = 0, minor = 0;
		char nm[256] = "";
		if (cuDeviceGet && (rc = cuDeviceGet(&dev, i)) != 0)
			return printf("cuda cuDeviceGet %d\n", rc), 1;
		/* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76 */
		if ((rc = cuDeviceGetAttribute(&major, 75, dev)) != 0 || (rc = cuDeviceGetAttribute(&minor, 76, dev)) != 0)
			return printf("cuda cuDeviceGetAttribute %d\n", rc), 1;
		if (cuDeviceGetName == NULL || cuDeviceGetName(nm, (int)sizeof(nm), dev) != 0)
			snprintf(nm, sizeof(nm), "GPU %d", i);
		nm[sizeof(nm) - 1] = '\0';
		for (char *c = nm; *c; c++)
			if (*c == '\n')
				*c = ' ';
		printf("%d %d %s\n", major, minor, nm);
	}
	return 0;
}

__attribute__((used)) void cuda_query_main(void)
{
	int rc = query();
	fflush(stdout);
	_exit(rc); /* no atexit handlers: libcuda's threads may still run */
}

__asm__(".text\n.global _start\n_start:\n"
	"\txor %rbp, %rbp\n"
	"\tand $-16, %rsp\n"
	"\tcall cuda_query_main\n"
	"\thlt\n");
