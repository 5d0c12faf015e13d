#pragma once
/* The host's NVIDIA driver: what is running, which of its files a sandbox needs,
 * and the checks `run --gpu` makes before it starts anything.
 * Discovery reads /proc/driver/nvidia/version and parses /etc/ld.so.cache itself
 * (as libnvidia-container's nvc_info.c does); $IMGBUILD_HOST_ROOT prefixes every
 * host path (tests point it at a fixture tree). Driver files are never copied
 * into an image: they are bound at run time under /imgbuild/driver (on the
 * sandbox-only tmpfs) and found through LD_LIBRARY_PATH and PATH (Apptainer's way). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "util.h"

#define IB_DRIVER_LIB_DIR "/imgbuild/driver/lib"
#define IB_DRIVER_BIN_DIR "/imgbuild/driver/bin"
#define IB_DRIVER_SOCKET "/var/run/nvidia-persistenced/socket"

struct ib_driver_lib {
	char *path;   /* host path of the versioned file (with the host root prefix) */
	char *name;   /* its file name: libcuda.so.580.159.04 */
	char *soname; /* the ld.so.cache key: libcuda.so.1 (NULL when none) */
};

struct ib_driver_dev {
	char *path; /* host path (with the prefix) */
	char *dst;  /* path inside the sandbox: /dev/nvidia0 */
};

struct ib_driver {
	bool found;	 /* false: no NVIDIA kernel module on this host */
	char *host_root; /* "" or $IMGBUILD_HOST_ROOT without a trailing '/' */
	char *version;	 /* "580.159.04" */
	struct ib_driver_lib *libs;
	size_t n_libs;
	struct ib_strv bins;	  /* host paths of nvidia-smi, ...: the files that run, wrappers and links followed */
	struct ib_strv bin_names; /* the name each is bound as (the tool's: nvidia-smi) */
	struct ib_driver_dev *devs;
	size_t n_devs;
	char *socket;  /* host path of the persistenced socket, or NULL */
	char *libcuda; /* host path of libcuda.so.<version>, or NULL (not owned separately: points into libs) */
};

/* Returns 0 with d->found == false when the host has no driver. */
int ib_driver_discover(struct ib_driver *d, ib_error_t *err);
void ib_driver_free(struct ib_driver *d);
/* What was found and what would be bound where (the text of `imgbuild driver`). */
void ib_driver_print(const struct ib_driver *d, FILE *out);

/* For the sandbox child, inside its private mount namespace, before pivot_root:
 * ROOT is the new root as seen from the host, whose /imgbuild and /dev are
 * already sandbox-only tmpfs mounts. Binds libraries and binaries read-only
 * into /imgbuild/driver/{lib,bin}, makes the SONAME links there, binds the
 * device nodes and the persistenced socket (when ROOT/run is a folder, on a tmpfs
 * mounted there). */
struct ib_mount_journal;
int ib_driver_bind(const struct ib_driver *d, const char *root, struct ib_mount_journal *j, ib_error_t *err);
/* A copy of ENVP with IB_DRIVER_LIB_DIR put first in LD_LIBRARY_PATH and
 * IB_DRIVER_BIN_DIR first in PATH. The caller frees it with ib_strv_free. */
void ib_driver_env(const struct ib_driver *d, char *const *envp, struct ib_strv *out);

/* Preflight for `run --gpu`, each failing with a message that says what to do. */
int ib_driver_check_present(const struct ib_driver *d, const char *min_driver, ib_error_t *err);
int ib_driver_check_uvm(const struct ib_driver *d, ib_error_t *err);

/* The one GPU preflight, for run --gpu, verify --host and plan: D (discovered
 * by the caller) is present and at least F's min_driver, /dev/nvidia-uvm exists,
 * and when F has archs (or ptx_jit) every GPU is covered by them. F may be NULL
 * (nothing known of the image: the driver alone is checked). */
struct ib_facts;
int ib_driver_preflight(const struct ib_driver *d, const struct ib_facts *f, ib_error_t *err);

struct ib_gpu {
	int index, major, minor;
	char name[256];
};
/* Reads every GPU's compute capability through libcuda.so.1 (dlopen; no link-time
 * CUDA dependency): $IMGBUILD_LIBCUDA, else the discovered libcuda, else the
 * loader's search. *gpus is freed with free(). */
int ib_driver_query_gpus(const struct ib_driver *d, struct ib_gpu **gpus, size_t *n, ib_error_t *err);
/* ARCHS are TORCH_CUDA_ARCH_LIST entries ("5.0", "6.1+PTX", "9.0a"). A GPU of
 * capability M.m is covered by X.Y when M == X and m >= Y (SASS compatibility
 * within a major version), by X.Y+PTX or PTX_JIT when M.m >= X.Y, and by X.Ya only
 * when equal. Refuses with "this image was compiled for sm_50, sm_61; this GPU is sm_90". */
int ib_driver_check_archs(const struct ib_gpu *gpus, size_t n_gpus, const char *const *archs, size_t n_archs, bool ptx_jit,
			  ib_error_t *err);

/* The two ld.so.cache formats: the old "ld.so-1.7.0" (optionally followed by a
 * new table) and the new "glibc-ld.so.cache1.1". Every offset is bounds-checked. */
struct ib_ldcache_entry {
	char *key;     /* the SONAME: libcuda.so.1 */
	char *path;    /* /usr/lib/x86_64-linux-gnu/libcuda.so.1 */
	int32_t flags; /* FLAG_ELF_LIBC6 | FLAG_X8664_LIB64 ... */
};
struct ib_ldcache {
	struct ib_ldcache_entry *entries;
	size_t n;
};
int ib_ldcache_parse(const void *data, size_t len, struct ib_ldcache *out, ib_error_t *err);
void ib_ldcache_free(struct ib_ldcache *c);
/* True when FLAGS describe a library this process could load (native word size and ABI). */
bool ib_ldcache_native(int32_t flags);
