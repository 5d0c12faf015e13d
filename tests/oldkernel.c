/* oldkernel: run a command as if on Ubuntu 18.04's Linux 4.15.
 *
 *   build/oldkernel COMMAND [ARG...]
 *
 * Every system call added after 4.15 (pidfd_open, clone3, openat2,
 * close_range, mount_setattr, the new mount API, io_uring, listxattrat, ...)
 * answers ENOSYS, as an old kernel does, and mounting overlayfs outside the
 * initial user namespace answers EPERM (unprivileged overlayfs came with
 * 5.11). The filter is inherited by everything the command starts,
 * sandboxes included.
 *
 * A seccomp filter cannot read mount(2)'s fstype string nor tell which user
 * namespace the caller is in, so mount goes to this process through a user
 * notification (SECCOMP_RET_USER_NOTIF, Linux 5.0): it reads the string from
 * /proc/PID/mem, compares /proc/PID/ns/user with its own, and either refuses
 * or lets the call go on (SECCOMP_USER_NOTIF_FLAG_CONTINUE, Linux 5.5). This
 * process stays the command's parent, passes SIGINT and SIGTERM on, and exits
 * with its status. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SECCOMP_USER_NOTIF_FLAG_CONTINUE
#define SECCOMP_USER_NOTIF_FLAG_CONTINUE (1UL << 0)
#endif

/* Added after 4.15, by the kernel release that brought them. */
static const char *const newer[] = {
	"io_pgetevents", "rseq",				/* 4.18 */
	"pidfd_send_signal", "io_uring_setup", "io_uring_enter", "io_uring_register",	/* 5.1 */
	"open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",	/* 5.2 */
	"pidfd_open", "clone3",					/* 5.3 */
	"openat2", "pidfd_getfd",				/* 5.6 */
	"faccessat2",						/* 5.8 */
	"close_range",						/* 5.9 */
	"process_madvise",					/* 5.10 */
	"epoll_pwait2",						/* 5.11 */
	"mount_setattr",					/* 5.12 */
	"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",	/* 5.13 */
	"memfd_secret",						/* 5.14 */
	"process_mrelease",					/* 5.15 */
	"futex_waitv",						/* 5.16 */
	"set_mempolicy_home_node",				/* 5.17 */
	"cachestat", "fchmodat2",				/* 6.5, 6.6 */
};

#ifdef __x86_64__
/* Newer than the names Debian 12's libseccomp (2.5.4) resolves: by number
 * (arch/x86/entry/syscalls/syscall_64.tbl). pack's walk asks for listxattrat
 * first (builder/pack.c), and these make it take its fallback. */
static const struct {
	const char *name;
	int nr;
} newer_by_number[] = {
	{ "setxattrat", 463 }, { "getxattrat", 464 }, { "listxattrat", 465 }, { "removexattrat", 466 },	/* 6.13 */
};
#endif

static pid_t child = -1;

/* The command gets what this process gets (a test's kill -INT). */
static void forward(int sig)
{
	if (child > 0)
		kill(child, sig);
}

static void die(const char *what)
{
	fprintf(stderr, "oldkernel: %s: %s\n", what, strerror(errno));
	exit(125);
}

static int send_fd(int sock, int fd)
{
	char c = 0;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char c;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	if (recvmsg(sock, &msg, 0) != 1)
		return -1;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	if (cm == NULL || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/* The user namespace of PID differs from ours. */
static int other_userns(pid_t pid)
{
	char p[64];
	struct stat a, b;
	snprintf(p, sizeof(p), "/proc/%d/ns/user", (int)pid);
	if (stat(p, &a) < 0 || stat("/proc/self/ns/user", &b) < 0)
		return 1;	/* gone or hidden: refuse, the safe answer */
	return a.st_ino != b.st_ino || a.st_dev != b.st_dev;
}

static int read_string(pid_t pid, unsigned long addr, char *buf, size_t len)
{
	if (addr == 0)
		return -1;
	char p[64];
	snprintf(p, sizeof(p), "/proc/%d/mem", (int)pid);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = pread(fd, buf, len - 1, (off_t)addr);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

static void answer(int nfd, struct seccomp_notif *req, struct seccomp_notif_resp *resp)
{
	memset(resp, 0, sizeof(*resp));
	resp->id = req->id;
	char fstype[32];
	if (read_string(req->pid, req->data.args[2], fstype, sizeof(fstype)) == 0 && strcmp(fstype, "overlay") == 0 &&
	    other_userns(req->pid)) {
		resp->error = -EPERM;
		return;
	}
	resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: oldkernel COMMAND [ARG...]\n");
		return 2;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair");
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		close(sv[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
		if (ctx == NULL)
			die("seccomp_init");
		for (size_t i = 0; i < sizeof(newer) / sizeof(newer[0]); i++) {
			int nr = seccomp_syscall_resolve_name(newer[i]);
			if (nr != __NR_SCMP_ERROR && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0) < 0) {
				errno = EINVAL;
				die(newer[i]);
			}
		}
#ifdef __x86_64__
		for (size_t i = 0; i < sizeof(newer_by_number) / sizeof(newer_by_number[0]); i++) {
			if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), newer_by_number[i].nr, 0) < 0) {
				errno = EINVAL;
				die(newer_by_number[i].name);
			}
		}
#endif
		if (seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, SCMP_SYS(mount), 0) < 0 || seccomp_load(ctx) < 0) {
			errno = EINVAL;
			die("load the seccomp filter");
		}
		int nfd = seccomp_notify_fd(ctx);
		if (nfd < 0 || send_fd(sv[1], nfd) < 0)
			die("hand over the notification fd");
		close(nfd);
		close(sv[1]);
		execvp(argv[1], argv + 1);
		die(argv[1]);
	}
	close(sv[1]);
	int nfd = recv_fd(sv[0]);
	if (nfd < 0) {
		int st;
		waitpid(child, &st, 0);
		return WIFEXITED(st) ? WEXITSTATUS(st) : 125;
	}
	struct sigaction sa = { .sa_handler = forward, .sa_flags = SA_RESTART };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct seccomp_notif *req = NULL;
	struct seccomp_notif_resp *resp = NULL;
	if (seccomp_notify_alloc(&req, &resp) < 0)
		die("seccomp_notify_alloc");
	for (;;) {
		int st;
		pid_t w = waitpid(child, &st, WNOHANG);
		if (w == child)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		struct pollfd pf = { .fd = nfd, .events = POLLIN };
		if (poll(&pf, 1, 100) <= 0 || !(pf.revents & POLLIN))
			continue;
		memset(req, 0, sizeof(*req));
		if (seccomp_notify_receive(nfd, req) < 0)
			continue;	/* the caller died meanwhile */
		answer(nfd, req, resp);
		seccomp_notify_respond(nfd, resp);
	}
}
