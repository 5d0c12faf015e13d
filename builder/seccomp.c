#include "ib_seccomp.h"
#include <seccomp.h>
#include "util.h"
#include "version.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

static void release_ctx(scmp_filter_ctx *ctx)
{
	if (*ctx)
		seccomp_release(*ctx);
}
#define cleanup_seccomp __attribute__((cleanup(release_ctx)))

static const char *const refused[] = {
	"mount",
	"umount",
	"umount2",
	"pivot_root",
	"swapon",
	"swapoff",
	"reboot",
	"kexec_load",
	"kexec_file_load",
	"init_module",
	"finit_module",
	"delete_module",
	"open_by_handle_at",
	"bpf",
	"perf_event_open",
	"keyctl",
	"add_key",
	"request_key",
	"ptrace",
	"unshare",
	"setns",
	"clock_settime",
	"clock_settime64",
	"clock_adjtime",
	"clock_adjtime64",
	"adjtimex",
	"settimeofday",
	"stime",
	/* The new mount API would otherwise get around the refusal of mount(2). */
	"fsopen",
	"fsconfig",
	"fsmount",
	"fspick",
	"move_mount",
	"open_tree",
	"mount_setattr",
	"open_tree_attr",
};

/* Answered ENOSYS, as a kernel without them would, so that programs fall back
 * instead of failing. clone3: libc retries with clone, whose flags the rules
 * below can see. io_uring: a large kernel surface that has been the source
 * of many privilege escalations, which no build or GPU program here needs;
 * Docker's and podman's default profiles refuse it too. liburing, libuv and
 * imgbuild's own pack (uring.h) all fall back on ENOSYS. */
static const char *const absent[] = {
	"clone3",
	"io_uring_setup",
	"io_uring_enter",
	"io_uring_register",
};

/* One rule per name in NAMES answering ERRNO; SKIP (may be NULL) is left
 * allowed. Names this libseccomp does not know are left out. */
static int refuse_names(scmp_filter_ctx ctx, const char *const *names, size_t n, int errnum, const char *skip, ib_error_t *err)
{
	for (size_t i = 0; i < n; i++) {
		if (skip && !strcmp(names[i], skip))
			continue;
		int nr = seccomp_syscall_resolve_name(names[i]);
		if (nr == __NR_SCMP_ERROR)
			continue;
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(errnum), nr, 0);
		if (rc < 0 && rc != -EDOM)
			return ib_error_errno(err, -rc, "seccomp: rule for %s", names[i]);
	}
	return 0;
}

static const unsigned long ns_flags[] = {
	CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP,
};

/* Linux >= 4.8 runs seccomp again after a tracer changed a syscall, so an
 * allowed ptrace no longer gets around the filter. */
static bool ptrace_safe_kernel(void)
{
	struct utsname u;
	return uname(&u) == 0 && ib_version_cmp(u.release, "4.8") >= 0;
}

int ib_seccomp_compile(struct ib_seccomp_prog *prog, unsigned flags, ib_error_t *err)
{
	bool allow_ptrace = (flags & IB_SECCOMP_ALLOW_PTRACE) && ptrace_safe_kernel();
	cleanup_seccomp scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (ctx == NULL)
		return ib_error_set(err, ENOMEM, "seccomp: cannot create a filter");
	/* NO_NEW_PRIVS would break setuid programs that package scripts run (su);
	 * the sandbox loads the filter while it still holds CAP_SYS_ADMIN instead. */
	int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (rc < 0)
		return ib_error_errno(err, -rc, "seccomp: clear NO_NEW_PRIVS");
		/* A 64-bit process can still enter the kernel through the 32-bit tables
	 * (int 0x80): give those the same rules, as flatpak does. */
#if defined(__x86_64__)
	static const uint32_t extra[] = { SCMP_ARCH_X86, SCMP_ARCH_X32 };
#elif defined(__aarch64__)
	static const uint32_t extra[] = { SCMP_ARCH_ARM };
#else
	static const uint32_t extra[] = { 0 };
#endif
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		if (extra[i] == 0)
			continue;
		rc = seccomp_arch_add(ctx, extra[i]);
		if (rc < 0 && rc != -EEXIST)
			return ib_error_errno(err, -rc, "seccomp: add architecture");
	}
	if (refuse_names(ctx, refused, sizeof(refused) / sizeof(refused[0]), EPERM, allow_ptrace ? "ptrace" : NULL, err) < 0 ||
	    refuse_names(ctx, absent, sizeof(absent) / sizeof(absent[0]), ENOSYS, NULL, err) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++) {
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
		if (rc < 0)
			return ib_error_errno(err, -rc, "seccomp: rule for clone");
	}
	/* Device nodes: the mode is mknod's second and mknodat's third argument. */
	static const unsigned long dev_types[] = { S_IFCHR, S_IFBLK };
	for (size_t i = 0; i < sizeof(dev_types) / sizeof(dev_types[0]); i++) {
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mknod), 1,
				      SCMP_A1(SCMP_CMP_MASKED_EQ, S_IFMT, dev_types[i]));
		if (rc < 0 && rc != -EDOM)
			return ib_error_errno(err, -rc, "seccomp: rule for mknod");
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mknodat), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, S_IFMT, dev_types[i]));
		if (rc < 0)
			return ib_error_errno(err, -rc, "seccomp: rule for mknodat");
	}

	/* libseccomp 2.5 exports only to a file descriptor. */
	cleanup_fd int fd = memfd_create("imgbuild-seccomp", MFD_CLOEXEC);
	if (fd < 0)
		return ib_error_errno(err, errno, "seccomp: memfd_create");
	rc = seccomp_export_bpf(ctx, fd);
	if (rc < 0)
		return ib_error_errno(err, -rc, "seccomp: export the filter");
	off_t size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size % sizeof(struct sock_filter) != 0)
		return ib_error_set(err, EINVAL, "seccomp: exported filter has a bad size %lld", (long long)size);
	cleanup_free void *buf = xmalloc((size_t)size);
	if (pread(fd, buf, (size_t)size, 0) != size)
		return ib_error_errno(err, errno, "seccomp: read the filter back");
	prog->filter = steal_pointer(&buf);
	prog->len = (size_t)size / sizeof(struct sock_filter);
	return 0;
}

void ib_seccomp_prog_free(struct ib_seccomp_prog *prog)
{
	if (prog == NULL)
		return;
	free(prog->filter);
	prog->filter = NULL;
	prog->len = 0;
}

int ib_seccomp_apply(const struct ib_seccomp_prog *prog)
{
	struct sock_fprog fprog = { .len = (unsigned short)prog->len, .filter = prog->filter };
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0)
		return -errno;
	return 0;
}
