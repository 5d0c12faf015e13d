/* Child processes: spawn, wait (one signal policy), capture, pump, call. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "proc.h"

extern char **environ;

#define GRACE_MS (IB_PROC_GRACE_SECONDS * 1000)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- signals ---- */

int ib_proc_interrupted(int sig, ib_error_t *err)
{
	ib_error_set(err, EINTR, "interrupted by %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	return ib_error_exit_code(err, 128 + sig);
}

int ib_proc_check_interrupt(ib_error_t *err)
{
	sigset_t pending;
	if (sigpending(&pending) < 0)
		return 0;
	int sig = sigismember(&pending, SIGINT) ? SIGINT : sigismember(&pending, SIGTERM) ? SIGTERM : 0;
	if (sig == 0)
		return 0;
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, sig);
	struct timespec zero = { 0, 0 };
	sigtimedwait(&one, NULL, &zero);
	return ib_proc_interrupted(sig, err);
}

void ib_proc_drain_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	struct timespec zero = { 0, 0 };
	while (sigtimedwait(&set, NULL, &zero) > 0)
		;
}

/* While a child runs: SIGINT and SIGTERM blocked and read from a signalfd,
 * and a pidfd that says when the child is gone. Without pidfd_open (Linux 5.3;
 * Ubuntu 18.04 runs 4.15) SIGCHLD comes through the same signalfd and
 * waitid(WNOWAIT) asks without reaping. */
struct watch {
	sigset_t old;
	int sfd, pfd;
	pid_t pid;
};

static void watch_start(struct watch *w, pid_t pid)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	w->pid = pid;
	w->pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (w->pfd < 0)
		sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, &w->old);
	w->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

static void watch_end(struct watch *w)
{
	if (w->sfd >= 0)
		close(w->sfd);
	if (w->pfd >= 0)
		close(w->pfd);
	sigprocmask(SIG_SETMASK, &w->old, NULL);
}

/* SIGINT or SIGTERM read from the signalfd, or 0 (SIGCHLD is only a wake-up). */
static int watch_signal(struct watch *w)
{
	struct signalfd_siginfo si;
	while (w->sfd >= 0 && read(w->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		if (si.ssi_signo != SIGCHLD)
			return (int)si.ssi_signo;
	return 0;
}

static bool exited(struct watch *w)
{
	siginfo_t si = { 0 };
	return waitid(P_PID, (id_t)w->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == w->pid;
}

/* True once the child has exited (a zombie left for reap), waiting at most
 * TIMEOUT_MS (-1: forever) or until SIGINT/SIGTERM arrives (*sig, when SIG is
 * not NULL; else signals are ignored). */
static bool wait_exit(struct watch *w, int timeout_ms, int *sig)
{
	double deadline = timeout_ms < 0 ? -1 : now_s() + timeout_ms / 1000.0;
	for (;;) {
		if (w->pfd < 0 && exited(w))
			return true;
		int left = -1;
		if (deadline >= 0) {
			double d = (deadline - now_s()) * 1000;
			if (d <= 0)
				return false;
			left = (int)d + 1;
		}
		struct pollfd fds[2] = { { .fd = w->sfd, .events = POLLIN }, { .fd = w->pfd, .events = POLLIN } };
		if (poll(fds, w->pfd >= 0 ? 2 : 1, left) < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		if (w->pfd >= 0 && fds[1].revents)
			return true;
		if (fds[0].revents & POLLIN) {
			int s = watch_signal(w);
			if (s && sig && *sig == 0) {
				*sig = s;
				return false;
			}
		}
	}
}

int ib_proc_exit_code(int ws)
{
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : 1;
}

static int reap(pid_t pid, int *status, int *signo)
{
	int ws;
	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	*status = ib_proc_exit_code(ws);
	if (signo)
		*signo = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
	return 0;
}

int ib_proc_reap(pid_t pid)
{
	int status;
	return reap(pid, &status, NULL) < 0 ? -1 : status;
}

void ib_proc_kill(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	ib_proc_reap(pid);
}

/* The policy: the child leads its own process group, so SIGTERM to the group
 * takes everything it started; SIGKILL after the grace period. */
static void stop_child(struct watch *w, int sig, int grace_ms)
{
	ib_log_status_clear();
	ib_log_info("stopping (%s)...", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	kill(-w->pid, SIGTERM);
	kill(w->pid, SIGTERM);
	if (!wait_exit(w, grace_ms, NULL))
		kill(-w->pid, SIGKILL), kill(w->pid, SIGKILL);
}

/* Reaps the child; after a signal, also whatever of its group outlived it
 * (apt, dpkg), and answers with the interruption. */
static int finish(struct watch *w, int sig, int *status, int *signo, ib_error_t *err)
{
	int st = 0;
	int rc = reap(w->pid, &st, signo);
	int saved = errno;
	if (sig != 0)
		kill(-w->pid, SIGKILL);
	watch_end(w);
	if (sig != 0)
		return ib_proc_interrupted(sig, err);
	if (rc < 0)
		return ib_error_errno(err, saved, "wait for process %d", (int)w->pid);
	*status = st;
	return 0;
}

int ib_proc_wait_grace(pid_t pid, int grace_ms, int *status, ib_error_t *err)
{
	struct watch w;
	watch_start(&w, pid);
	int sig = 0;
	if (w.sfd >= 0)
		wait_exit(&w, -1, &sig);
	if (sig != 0)
		stop_child(&w, sig, grace_ms);
	return finish(&w, sig, status, NULL, err);
}

int ib_proc_wait(pid_t pid, int *status, ib_error_t *err)
{
	return ib_proc_wait_grace(pid, GRACE_MS, status, err);
}

void ib_proc_block_signals(sigset_t *old)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, old);
}

void ib_proc_unblock_signals(const sigset_t *old)
{
	/* A signal noticed by a child's waiter is consumed there; one that came
	 * after must not kill imgbuild with its default action now. */
	ib_proc_drain_signals();
	sigprocmask(SIG_SETMASK, old, NULL);
}

pid_t ib_proc_clone(unsigned long ns_flags, int opts, ib_error_t *err)
{
	pid_t parent = getpid();
	if (!(opts & IB_PROC_FROM_CHILD))
		fflush(NULL);
	/* glibc's fork when no namespace is asked for: its atfork handlers leave
	 * malloc usable in the child of a threaded imgbuild (ib_proc_call's
	 * function allocates); a sandbox's child execs soon after setting up. */
	pid_t pid = ns_flags ? (pid_t)syscall(SYS_clone, ns_flags | SIGCHLD, NULL, NULL, NULL, NULL) : fork();
	if (pid < 0) {
		int e = errno;
		if (!(opts & IB_PROC_FROM_CHILD))
			ib_error_errno(err, e, "clone");
		errno = e;
		return -1;
	}
	bool own_group = !(opts & IB_PROC_SAME_GROUP);
	if (pid > 0) {
		/* Also here, so that a signal sent before the child ran finds its group. */
		if (own_group)
			setpgid(pid, pid);
		return pid;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* The parent died before the line above (0: it is in an outer PID
	 * namespace, and the caller's sync pipe tells). */
	pid_t pp = getppid();
	if (pp != 0 && pp != parent)
		_exit(1);
	if (own_group)
		setpgid(0, 0);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	return 0;
}

pid_t ib_proc_fork(ib_error_t *err)
{
	return ib_proc_clone(0, 0, err);
}

/* ---- capture ---- */

void ib_proc_output_free(struct ib_proc_output *o)
{
	free(o->out);
	free(o->err_tail);
	memset(o, 0, sizeof(*o));
}

#define ERR_TAIL 4096

static void keep_tail(struct ib_buf *b, const char *data, size_t n)
{
	ib_buf_add(b, data, n);
	if (b->len > ERR_TAIL) {
		memmove(b->s, b->s + b->len - ERR_TAIL, ERR_TAIL);
		b->len = ERR_TAIL;
		b->s[b->len] = '\0';
	}
}

static char *trimmed(struct ib_buf *b)
{
	char *s = ib_buf_steal(b);
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

int ib_proc_capture(const struct ib_proc_cmd *cmd, struct ib_proc_output *out, ib_error_t *err)
{
	memset(out, 0, sizeof(*out));
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		int saved = errno;
		if (outp[0] >= 0)
			close(outp[0]), close(outp[1]);
		return ib_error_errno(err, saved, "pipe");
	}
	/* Everything the child needs is prepared before fork: after it, only
	 * async-signal-safe calls. */
	static const char exec_failed[] = "imgbuild: cannot run the command\n";
	pid_t pid = ib_proc_fork(err);
	if (pid < 0) {
		close(outp[0]), close(outp[1]), close(errp[0]), close(errp[1]);
		return -1;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(outp[1], 1) < 0 ||
		    dup2(cmd->merge_stderr ? outp[1] : errp[1], 2) < 0)
			_exit(127);
		if (cmd->cwd && chdir(cmd->cwd) < 0)
			_exit(127);
		if (cmd->exec_fd > 0)
			fexecve(cmd->exec_fd, cmd->argv, cmd->envp ? cmd->envp : environ);
		else if (cmd->envp)
			execvpe(cmd->argv[0], cmd->argv, cmd->envp);
		else
			execvp(cmd->argv[0], cmd->argv);
		(void)!write(2, exec_failed, sizeof(exec_failed) - 1);
		_exit(127);
	}
	close(outp[1]);
	close(errp[1]);
	struct watch w;
	watch_start(&w, pid);
	cleanup_buf struct ib_buf obuf = { 0 }, ebuf = { 0 };
	struct pollfd fds[3] = { { .fd = outp[0], .events = POLLIN },
				 { .fd = errp[0], .events = POLLIN },
				 { .fd = w.sfd, .events = POLLIN } };
	int open_fds = 2, sig = 0;
	char chunk[8192];
	while (open_fds > 0 && sig == 0) {
		if (poll(fds, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if ((fds[2].revents & POLLIN) && (sig = watch_signal(&w)) != 0)
			break;
		for (int k = 0; k < 2; k++) {
			if (fds[k].fd < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t r = read(fds[k].fd, chunk, sizeof(chunk));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				close(fds[k].fd);
				fds[k].fd = -1;
				open_fds--;
			} else if (k == 0) {
				ib_buf_add(&obuf, chunk, (size_t)r);
			} else {
				keep_tail(&ebuf, chunk, (size_t)r);
			}
		}
	}
	for (int k = 0; k < 2; k++)
		if (fds[k].fd >= 0)
			close(fds[k].fd);
	if (sig != 0)
		stop_child(&w, sig, GRACE_MS);
	if (finish(&w, sig, &out->status, &out->signal, err) < 0)
		return -1;
	out->out_len = obuf.len;
	out->out = ib_buf_steal(&obuf);
	out->err_tail = trimmed(&ebuf);
	return 0;
}

/* ---- a function in a helper process ---- */

/* The answer on the pipe: a header, then LEN bytes of value or message. */
struct answer {
	int32_t failed, status, exit_code;
	uint32_t len;
};

int ib_proc_call(const char *what, ib_proc_fn fn, void *arg, struct ib_buf *result, ib_error_t *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return ib_error_errno(err, errno, "pipe");
	pid_t pid = ib_proc_fork(err);
	if (pid < 0) {
		close(p[0]), close(p[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		struct ib_buf value = { 0 };
		ib_error_t e = NULL;
		struct answer a = { 0 };
		const char *data;
		if (fn(arg, &value, &e) < 0) {
			data = e && e->msg ? e->msg : "failed";
			a = (struct answer){ 1, e ? e->status : 0, e ? e->exit_code : IB_EXIT_FAIL, (uint32_t)strlen(data) };
		} else {
			data = value.s ? value.s : "";
			a.len = (uint32_t)value.len;
		}
		ib_write_all(p[1], &a, sizeof(a));
		ib_write_all(p[1], data, a.len);
		_exit(0); /* no atexit handlers: a library's stay in this helper */
	}
	close(p[1]);
	/* The answer is read while the helper runs (a large one would fill the
	 * pipe), and SIGINT/SIGTERM are watched meanwhile: the policy applies to
	 * a helper as to any child, and an interrupted pack must not finish. */
	struct watch w;
	watch_start(&w, pid);
	cleanup_buf struct ib_buf raw = { 0 };
	struct pollfd fds[2] = { { .fd = p[0], .events = POLLIN }, { .fd = w.sfd, .events = POLLIN } };
	char chunk[65536];
	int sig = 0;
	for (;;) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if ((fds[1].revents & POLLIN) && (sig = watch_signal(&w)) != 0)
			break;
		if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(p[0], chunk, sizeof(chunk));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			ib_buf_add(&raw, chunk, (size_t)r);
		}
	}
	close(p[0]);
	if (sig != 0)
		stop_child(&w, sig, GRACE_MS);
	int status = 0;
	if (finish(&w, sig, &status, NULL, err) < 0)
		return -1;
	struct answer a;
	bool answered = raw.len >= sizeof(a);
	const char *data = "";
	if (answered) {
		memcpy(&a, raw.s, sizeof(a));
		answered = raw.len - sizeof(a) == a.len;
		data = raw.s + sizeof(a);
	}
	if (!answered)
		return ib_error_set(err, EIO, "%s: the helper process died (exit status %d) without an answer", what, status);
	if (a.failed) {
		ib_error_set(err, a.status, "%s", data);
		return ib_error_exit_code(err, a.exit_code);
	}
	ib_buf_add(result, data, a.len);
	return 0;
}

/* ---- output pump: child output -> log file + live status line ---- */

struct ib_proc_pump {
	pthread_t thread;
	int read_fd, log_fd;
	char *label;
	double start;
	char cur[256];
	size_t cur_len;
	char last[256];
	char drawn[512]; /* the status line on screen now */
};

static void pump_status(struct ib_proc_pump *p)
{
	if (!ib_log_is_tty())
		return;
	int secs = (int)(now_s() - p->start);
	struct winsize ws;
	int width = 80;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
		width = ws.ws_col;
	char head[128];
	int hl = snprintf(head, sizeof(head), "[%s] %d:%02d  ", p->label, secs / 60, secs % 60);
	int room = width - 1 - hl;
	if (room < 0)
		room = 0;
	char line[512];
	snprintf(line, sizeof(line), "%s%.*s", head, room, p->last);
	if (strcmp(line, p->drawn) == 0)
		return;
	memcpy(p->drawn, line, sizeof(p->drawn));
	ib_log_status("%s", line);
}

static void pump_feed(struct ib_proc_pump *p, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c == '\n' || c == '\r') {
			if (p->cur_len > 0) {
				memcpy(p->last, p->cur, p->cur_len);
				p->last[p->cur_len] = '\0';
				p->cur_len = 0;
			}
		} else if (p->cur_len + 1 < sizeof(p->cur)) {
			p->cur[p->cur_len++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
		}
	}
}

static void *pump_main(void *arg)
{
	struct ib_proc_pump *p = arg;
	char buf[16384];
	double last_draw = 0;
	bool echo = ib_log_level() >= IB_LOG_VERBOSE;
	for (;;) {
		struct pollfd pf = { .fd = p->read_fd, .events = POLLIN };
		int r = poll(&pf, 1, 250);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0) {
			ssize_t n = read(p->read_fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			ib_write_all(p->log_fd, buf, (size_t)n);
			if (echo) {
				ib_log_status_clear();
				ib_write_all(STDERR_FILENO, buf, (size_t)n);
			}
			pump_feed(p, buf, (size_t)n);
		}
		double t = now_s();
		if (!echo && t - last_draw >= 0.2) {
			pump_status(p);
			last_draw = t;
		}
	}
	return NULL;
}

struct ib_proc_pump *ib_proc_pump_start(const char *label, int log_fd, int *write_fd, ib_error_t *err)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		ib_error_errno(err, errno, "pipe");
		return NULL;
	}
	struct ib_proc_pump *p = xcalloc(1, sizeof(*p));
	p->read_fd = fds[0];
	p->log_fd = log_fd;
	p->label = xstrdup(label);
	p->start = now_s();
	/* The thread must never take SIGINT/SIGTERM: they belong to the waiter. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&p->thread, NULL, pump_main, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		close(fds[0]);
		close(fds[1]);
		free(p->label);
		free(p);
		ib_error_errno(err, rc, "start a thread");
		return NULL;
	}
	*write_fd = fds[1];
	return p;
}

void ib_proc_pump_finish(struct ib_proc_pump *p)
{
	if (p == NULL)
		return;
	pthread_join(p->thread, NULL);
	ib_log_status_clear();
	close(p->read_fd);
	free(p->label);
	free(p);
}
