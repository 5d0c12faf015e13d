#pragma once
/* The build filter: compiled to BPF in the parent (libseccomp may allocate and
 * fail), applied in the sandboxed child with one syscall just before exec.
 * Only builder/seccomp.c includes <seccomp.h>. Named ib_seccomp.h so that it
 * cannot shadow libseccomp's <seccomp.h> on the -Ibuilder path. */
#include <stddef.h>

#include "error.h"

struct ib_seccomp_prog {
	void *filter; /* struct sock_filter[len] */
	size_t len;   /* number of instructions */
};

enum ib_seccomp_flags {
	/* `run`: gdb and py-spy may trace processes of the same sandbox. Only
	 * honoured on Linux >= 4.8, where a tracer can no longer change a
	 * syscall after seccomp has checked it (Docker's default profile allows
	 * ptrace from 4.8 on for the same reason). */
	IB_SECCOMP_ALLOW_PTRACE = 1 << 0,
};

/* Refuses with EPERM: mount and the new mount API, umount2, pivot_root,
 * swapon/swapoff, reboot, kexec_*, *_module, open_by_handle_at, bpf,
 * perf_event_open, keyctl/add_key/request_key, ptrace (unless FLAGS allow
 * it), unshare, setns, clone with namespace flags,
 * clock_settime/clock_adjtime/adjtimex/settimeofday, and mknod/mknodat of a
 * block or character device (FIFOs and sockets stay allowed: a device node
 * made in a bound host folder would be a door to the host's disks).
 * clone3 gets ENOSYS so that libc falls back to clone, whose flags we can see;
 * so do the io_uring calls (a kernel surface no stage needs, refused by
 * Docker's default profile too), so that programs fall back to plain calls. */
int ib_seccomp_compile(struct ib_seccomp_prog *prog, unsigned flags, ib_error_t *err);
void ib_seccomp_prog_free(struct ib_seccomp_prog *prog);
/* Async-signal-safe (for the forked child): installs the program. Does not set
 * NO_NEW_PRIVS, so the caller must hold CAP_SYS_ADMIN in its user namespace.
 * Returns 0, or -errno. */
int ib_seccomp_apply(const struct ib_seccomp_prog *prog);
