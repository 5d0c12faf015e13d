#pragma once
/* The build filter: compiled to BPF in the parent (libseccomp may allocate and
 * fail), applied in the sandboxed child with one syscall just before exec.
 * Only builder/seccomp.c includes <seccomp.h>. */
#include <stddef.h>

#include "error.h"

struct ib_seccomp_prog {
	void *filter;	/* struct sock_filter[len] */
	size_t len;	/* number of instructions */
};

/* Refuses with EPERM: mount and the new mount API, umount2, pivot_root,
 * swapon/swapoff, reboot, kexec_*, *_module, open_by_handle_at, bpf,
 * perf_event_open, keyctl/add_key/request_key, ptrace, unshare, setns, clone
 * with namespace flags, clock_settime/clock_adjtime/adjtimex/settimeofday.
 * clone3 gets ENOSYS so that libc falls back to clone, whose flags we can see. */
int ib_seccomp_compile(struct ib_seccomp_prog *prog, ib_error_t *err);
void ib_seccomp_prog_free(struct ib_seccomp_prog *prog);
/* Async-signal-safe (for the forked child): installs the program. Does not set
 * NO_NEW_PRIVS, so the caller must hold CAP_SYS_ADMIN in its user namespace.
 * Returns 0, or -errno. */
int ib_seccomp_apply(const struct ib_seccomp_prog *prog);

/* builder/ is on the include path, so <seccomp.h> finds this file first; the
 * one module that wraps libseccomp asks for the library's header through it. */
#ifdef IB_SECCOMP_IMPL
#include_next <seccomp.h>
#endif
