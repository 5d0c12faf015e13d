#pragma once
/* Runs one command in a fresh set of namespaces with a given root file system.
 * All mounts are made inside the child's private mount namespace, so the kernel
 * removes them when the child dies, even after kill -9 of imgbuild.
 * Owner: builder/sandbox.c (namespaces, pivot_root, capabilities, signals),
 * builder/mounts.c (the mount journal), builder/seccomp.c (libseccomp). */
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

struct ib_driver; /* builder/driver.h */

enum ib_bind_flags {
	IB_BIND_RO = 1 << 0,
	IB_BIND_OPTIONAL = 1 << 1,     /* skip silently when the source is missing */
	IB_BIND_DEVICE = 1 << 2,       /* a device node: keep dev, nosuid, noexec */
	IB_BIND_NONRECURSIVE = 1 << 3, /* not the mounts below SRC (MS_BIND without MS_REC) */
};
/* Every bind is nosuid and nodev (a device bind keeps dev, adds noexec). */

struct ib_bind {
	const char *src; /* host path (not owned) */
	const char *dst; /* absolute path inside the root (not owned) */
	unsigned flags;
};

struct ib_sandbox_spec {
	/* The root: either a plain folder (root_dir) or an overlay of read-only
	 * layers (lower_dirs, top first) with a writable upper_dir/work_dir.
	 * With lower_dirs and no upper_dir, a throw-away tmpfs upper is used. */
	const char *root_dir;		  /* not owned */
	const char *const *lower_dirs;	  /* NULL-terminated, not owned */
	const char *upper_dir, *work_dir; /* not owned */
	const char *mount_point; /* empty folder on the host where the overlay is assembled (inside the private namespace) */
	bool read_only_root;

	const struct ib_bind *binds; /* not owned */
	size_t n_binds;
	const struct ib_driver *driver; /* bind the host NVIDIA driver when non-NULL (not owned) */

	char *const *argv;    /* not owned */
	char *const *envp;    /* the complete environment (not owned) */
	const char *cwd;      /* inside the root; default "/" */
	const char *hostname; /* default "imgbuild" */
	bool network;	      /* false: a new network namespace with only lo */
	/* MPI's hybrid model (docs/cluster.md): ranks in separate sandboxes that must
	 * see each other's PIDs (CMA single copy), System V IPC and host name (Open
	 * MPI's locality) keep the host's namespaces instead of new ones. */
	bool host_pid, host_ipc, host_uts;
	bool user_namespace; /* unprivileged: map the caller's uid/gid to root */
	/* With user_namespace: map the caller to its own uid/gid instead of root
	 * (and no subordinate range). An MPI rank must report the job's uid to the
	 * launcher's PMIx server, which checks it over TCP (docs/cluster.md). */
	bool keep_uid;
	bool seccomp;			    /* apply the filter of builder/ib_seccomp.h */
	bool allow_ptrace;		    /* with seccomp: let gdb and py-spy trace (see IB_SECCOMP_ALLOW_PTRACE) */
	int stdin_fd, stdout_fd, stderr_fd; /* -1: inherit */
};

/* Runs the command and waits for it. On return 0, *status holds the command's
 * exit status (128+N when killed by signal N). SIGINT/SIGTERM received by
 * imgbuild while waiting kill the sandbox and return -1 with exit code 130/143. */
int ib_sandbox_run(const struct ib_sandbox_spec *spec, int *status, ib_error_t *err);

/* Folders made by a sandbox may hold files owned by other uids and, after a
 * crash, may still be mount points in some other namespace: this removes a tree
 * without crossing into another file system and refuses if anything is mounted
 * below it in our namespace. */
int ib_remove_tree(const char *path, ib_error_t *err);
