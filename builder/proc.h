#pragma once
/* Child processes, one way: spawning, waiting under one signal policy, output
 * capture and pumping, and running a function in a helper process.
 *
 * The signal policy: SIGINT and SIGTERM are blocked while imgbuild works and
 * read through a signalfd while it waits (after crun's and bubblewrap's
 * monitors; handlers do no work). When one arrives during ib_proc_wait the
 * child's whole process group gets SIGTERM, then SIGKILL after
 * IB_PROC_GRACE_SECONDS, and the wait fails with "interrupted by SIGINT" and
 * exit code 128+N. Between children, ib_proc_check_interrupt notices them. */
#include <stdbool.h>
#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"
#include "util.h"

#define IB_PROC_GRACE_SECONDS 10

/* Forks a child that leads its own process group (so that the wait's signals
 * reach everything it starts), dies with imgbuild (PR_SET_PDEATHSIG), and has
 * SIGINT, SIGTERM and SIGPIPE at their defaults and no signal blocked.
 * Returns 0 in the child, its pid in the parent, -1 with *err set. */
pid_t ib_proc_fork(ib_error_t *err);

enum {
	/* The child stays in imgbuild's process group: a sandbox whose command
	 * reads the terminal must stay in its foreground group. */
	IB_PROC_SAME_GROUP = 1 << 0,
	/* The caller is itself a forked child of a threaded imgbuild: no stdio
	 * flush and no allocation before the fork (ERR may be NULL). */
	IB_PROC_FROM_CHILD = 1 << 1,
};
/* ib_proc_fork with namespace flags for clone(2) (CLONE_NEWPID, ...: a raw
 * clone without a new stack behaves like fork, as bubblewrap's raw_clone) and
 * the IB_PROC_* options. Fails with the clone's errno in (*err)->status. */
pid_t ib_proc_clone(unsigned long ns_flags, int opts, ib_error_t *err);

/* Waits for PID under the signal policy above. *status gets its exit status,
 * or 128+N when it was killed by signal N. */
int ib_proc_wait(pid_t pid, int *status, ib_error_t *err);
/* ib_proc_wait with the grace period between SIGTERM and SIGKILL in ms. */
int ib_proc_wait_grace(pid_t pid, int grace_ms, int *status, ib_error_t *err);
/* Kills PID at once and reaps it: a child given up before it started work. */
void ib_proc_kill(pid_t pid);
/* A waitpid status as one exit code: the code, or 128+N for signal N (the
 * shell's convention, used for every child). */
int ib_proc_exit_code(int wstatus);
/* Reaps PID, retrying EINTR; its exit code (ib_proc_exit_code), or -1. For a
 * child's own children, where ib_proc_wait's signal policy does not apply. */
int ib_proc_reap(pid_t pid);

/* SIGINT and SIGTERM blocked (*old: the mask before), to be read by the
 * waits above; ib_proc_unblock_signals drains what is left pending first. */
void ib_proc_block_signals(sigset_t *old);
void ib_proc_unblock_signals(const sigset_t *old);
/* < 0 with the "interrupted" error when SIGINT or SIGTERM is pending. */
int ib_proc_check_interrupt(ib_error_t *err);
/* Discards pending SIGINT/SIGTERM: one noticed by a child's waiter is consumed
 * there, and one that came after must not kill imgbuild when it unblocks them. */
void ib_proc_drain_signals(void);
/* Sets *err to "interrupted by SIGINT|SIGTERM" with exit code 128+SIG. */
int ib_proc_interrupted(int sig, ib_error_t *err);

/* A command to run and capture: stdin is /dev/null. */
struct ib_proc_cmd {
	char *const *argv; /* argv[0] is looked up in PATH */
	char *const *envp; /* NULL: imgbuild's environment */
	const char *cwd;   /* NULL: imgbuild's */
	int exec_fd;	   /* > 0: run this file (fexecve), argv[0] only names it */
	bool merge_stderr; /* stderr into out, in the order written */
};
struct ib_proc_output {
	char *out; /* all of stdout (NUL-terminated) */
	size_t out_len;
	char *err_tail; /* the last 4 KiB of stderr, trimmed (NUL-terminated) */
	int status;	/* exit status, or 128+N when killed by signal N */
	int signal;	/* N when killed by signal N, else 0 */
};
void ib_proc_output_free(struct ib_proc_output *o);
#define cleanup_proc_output __attribute__((cleanup(ib_proc_output_free)))
/* Runs CMD to its end, capturing its output. A non-zero status is not an
 * error here; failing to start it or an interruption is. */
int ib_proc_capture(const struct ib_proc_cmd *cmd, struct ib_proc_output *out, ib_error_t *err);

/* Runs FN(ARG) in a helper process (ib_proc_fork) and hands back what it put in
 * its buffer, or its error (message, errno status and exit code kept). For work
 * that must not touch imgbuild itself: mounts in a namespace of its own, a
 * library that may crash or leave threads (libcuda). A helper that dies
 * without an answer is an error naming WHAT. */
typedef int (*ib_proc_fn)(void *arg, struct ib_buf *result, ib_error_t *err);
int ib_proc_call(const char *what, ib_proc_fn fn, void *arg, struct ib_buf *result, ib_error_t *err);

/* Output pump: a thread copies a child's output to LOG_FD and, on a terminal,
 * draws "[LABEL] m:ss last line" (with -v: echoes everything). The child
 * writes to *write_fd; the caller closes it after forking, waits for the child,
 * then calls ib_proc_pump_finish. */
struct ib_proc_pump;
struct ib_proc_pump *ib_proc_pump_start(const char *label, int log_fd, int *write_fd, ib_error_t *err);
void ib_proc_pump_finish(struct ib_proc_pump *p);
