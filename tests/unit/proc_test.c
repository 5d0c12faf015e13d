/* proc.c: capture, the helper call, waiting and its signal policy, with real
 * child processes (sh, sleep) and real signals. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"
#include "util.h"

static void test_capture(void **state)
{
	(void)state;
	char *argv[] = { "sh", "-c", "printf 'out\\0put'; echo to-err >&2; echo second >&2; exit 3", NULL };
	struct ib_proc_cmd cmd = { .argv = argv };
	struct ib_proc_output o;
	ib_error_t err = NULL;
	assert_int_equal(ib_proc_capture(&cmd, &o, &err), 0);
	assert_int_equal(o.status, 3);
	assert_int_equal(o.signal, 0);
	assert_int_equal(o.out_len, 7);	/* binary-safe */
	assert_memory_equal(o.out, "out\0put", 7);
	assert_string_equal(o.err_tail, "to-err\nsecond");
	ib_proc_output_free(&o);

	/* cwd and a given environment; stdin is /dev/null */
	char *argv2[] = { "sh", "-c", "pwd; echo \"$X\"; cat", NULL };
	char *envp[] = { "X=y", "PATH=/usr/bin:/bin", NULL };
	struct ib_proc_cmd cmd2 = { .argv = argv2, .envp = envp, .cwd = "/tmp" };
	assert_int_equal(ib_proc_capture(&cmd2, &o, &err), 0);
	assert_string_equal(o.out, "/tmp\ny\n");
	ib_proc_output_free(&o);

	/* killed by a signal: 128+N and the signal */
	char *argv3[] = { "sh", "-c", "kill -9 $$", NULL };
	struct ib_proc_cmd cmd3 = { .argv = argv3 };
	assert_int_equal(ib_proc_capture(&cmd3, &o, &err), 0);
	assert_int_equal(o.status, 128 + 9);
	assert_int_equal(o.signal, 9);
	ib_proc_output_free(&o);

	/* a command that does not exist: 127 and the message */
	char *argv4[] = { "/nonexistent/imgbuild-test", NULL };
	struct ib_proc_cmd cmd4 = { .argv = argv4 };
	assert_int_equal(ib_proc_capture(&cmd4, &o, &err), 0);
	assert_int_equal(o.status, 127);
	assert_non_null(strstr(o.err_tail, "cannot run"));
	ib_proc_output_free(&o);
}

static int answer(void *arg, struct ib_buf *result, ib_error_t *err)
{
	const char *what = arg;
	if (strcmp(what, "value") == 0) {
		ib_buf_printf(result, "pid %d", (int)getpid());
		return 0;
	}
	if (strcmp(what, "error") == 0) {
		ib_error_usage(err, "bad input in the helper");
		(*err)->status = 42;
		return -1;
	}
	if (strcmp(what, "big") == 0) {
		for (int i = 0; i < 100000; i++)	/* more than a pipe holds */
			ib_buf_adds(result, "0123456789");
		return 0;
	}
	if (strcmp(what, "slow") == 0) {
		sleep(30);	/* SIGTERM (default action) ends it first */
		ib_buf_adds(result, "finished");
		return 0;
	}
	abort();	/* "crash": dies without an answer */
}

static void test_call(void **state)
{
	(void)state;
	struct ib_buf r = { 0 };
	ib_error_t err = NULL;
	assert_int_equal(ib_proc_call("t", answer, "value", &r, &err), 0);
	int pid = 0;
	assert_int_equal(sscanf(r.s, "pid %d", &pid), 1);
	assert_int_not_equal(pid, (int)getpid());	/* it ran elsewhere */
	ib_buf_free(&r);

	assert_int_equal(ib_proc_call("t", answer, "error", &r, &err), -1);
	assert_string_equal(err->msg, "bad input in the helper");
	assert_int_equal(err->exit_code, IB_EXIT_USAGE);	/* kept across the process */
	assert_int_equal(err->status, 42);
	ib_error_free(&err);

	assert_int_equal(ib_proc_call("t", answer, "big", &r, &err), 0);
	assert_int_equal(r.len, 1000000);
	ib_buf_free(&r);

	assert_int_equal(ib_proc_call("the test helper", answer, "crash", &r, &err), -1);
	assert_non_null(strstr(err->msg, "the test helper: the helper process died"));
	ib_error_free(&err);
}

static void test_wait_status(void **state)
{
	(void)state;
	ib_error_t err = NULL;
	pid_t pid = ib_proc_fork(&err);
	assert_true(pid >= 0);
	if (pid == 0) {
		/* the child leads its own group and has SIGTERM at its default */
		_exit(getpgrp() == getpid() ? 7 : 1);
	}
	int status = -1;
	assert_int_equal(ib_proc_wait(pid, &status, &err), 0);
	assert_int_equal(status, 7);
}

/* SIGTERM to us while waiting: the child's group gets SIGTERM, and the wait
 * fails with exit code 143. A child that ignores SIGTERM is killed after the
 * grace period; this one (sleep) dies at once. */
static void test_wait_interrupted(void **state)
{
	(void)state;
	ib_error_t err = NULL;
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, &old);
	char mark[] = "/tmp/ib-proc-term.XXXXXX";
	int mfd = mkstemp(mark);
	assert_true(mfd >= 0);
	close(mfd);
	pid_t pid = ib_proc_fork(&err);
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Notes the SIGTERM it gets, so the test sees the policy's first
		 * signal rather than how long the wait took. */
		sigprocmask(SIG_SETMASK, &old, NULL);
		execlp("sh", "sh", "-c", "trap 'echo TERM >>\"$0\"; exit 0' TERM; echo READY >\"$0\"; sleep 30 & wait", mark,
		       (char *)NULL);
		_exit(127);
	}
	char got[16] = { 0 };
	for (int i = 0; i < 3000 && strcmp(got, "READY\n") != 0; i++) {	/* until sh's trap is set */
		usleep(10 * 1000);
		FILE *r = fopen(mark, "r");
		assert_non_null(r);
		got[fread(got, 1, sizeof(got) - 1, r)] = '\0';
		fclose(r);
	}
	assert_string_equal(got, "READY\n");
	kill(getpid(), SIGTERM);	/* pending until the wait reads it */
	int status = -1;
	assert_int_equal(ib_proc_wait(pid, &status, &err), -1);
	assert_non_null(err);
	assert_int_equal(err->exit_code, 128 + SIGTERM);
	assert_non_null(strstr(err->msg, "interrupted by SIGTERM"));
	ib_error_free(&err);
	assert_int_equal(kill(pid, 0), -1);	/* reaped */
	FILE *f = fopen(mark, "r");
	assert_non_null(f);
	got[fread(got, 1, sizeof(got) - 1, f)] = '\0';
	fclose(f);
	unlink(mark);
	assert_string_equal(got, "READY\nTERM\n");	/* the policy's first signal is SIGTERM */

	/* between children: a pending signal is noticed once */
	kill(getpid(), SIGTERM);
	assert_int_equal(ib_proc_check_interrupt(&err), -1);
	assert_int_equal(err->exit_code, 143);
	ib_error_free(&err);
	assert_int_equal(ib_proc_check_interrupt(&err), 0);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

static void note_term(int sig)
{
	(void)sig;
	static const char t = 'T';
	(void)!write(3, &t, 1);
}

/* The stop policy on a child that outlives SIGTERM: its group gets SIGTERM
 * first (the handler notes it), then SIGKILL after the grace period (a
 * parameter here, so the test waits 0.3 s, not 10), and a grandchild that
 * ignores SIGTERM goes with the group. We are the grandchild's subreaper, so
 * its death by SIGKILL is seen, not assumed. */
static void test_term_then_kill(void **state)
{
	(void)state;
	alarm(60);	/* a broken policy fails the test instead of hanging it */
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	int p[2];
	assert_int_equal(pipe(p), 0);
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, &old);
	ib_error_t err = NULL;
	pid_t pid = ib_proc_fork(&err);
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 3);
		signal(SIGTERM, SIG_IGN);	/* before the fork: the grandchild has it at once */
		pid_t gc = fork();
		if (gc == 0) {
			for (;;)
				pause();
		}
		signal(SIGTERM, note_term);
		char ready[16];
		int n = snprintf(ready, sizeof(ready), "%d\n", (int)gc);
		(void)!write(3, ready, (size_t)n);
		for (;;)
			pause();	/* never exits on its own */
	}
	close(p[1]);
	char line[32] = { 0 };
	size_t got = 0;
	while (got < sizeof(line) - 1 && read(p[0], line + got, 1) == 1 && line[got] != '\n')
		got++;
	pid_t gc = (pid_t)atoi(line);
	assert_true(gc > 0);
	kill(getpid(), SIGTERM);	/* pending until the wait reads it */
	int status = -1;
	assert_int_equal(ib_proc_wait_grace(pid, 300, &status, &err), -1);
	assert_int_equal(err->exit_code, 143);
	ib_error_free(&err);
	char t = 0;
	assert_int_equal(read(p[0], &t, 1), 1);
	assert_int_equal(t, 'T');	/* SIGTERM came first and was survived */
	close(p[0]);
	assert_int_equal(kill(pid, 0), -1);	/* reaped by the wait */
	int ws = 0;
	assert_int_equal(waitpid(gc, &ws, 0), gc);
	assert_true(WIFSIGNALED(ws));
	assert_int_equal(WTERMSIG(ws), SIGKILL);
	sigprocmask(SIG_SETMASK, &old, NULL);
	prctl(PR_SET_CHILD_SUBREAPER, 0);
	alarm(0);
}

/* A helper is a child like any other: SIGTERM while it works stops it, and it
 * never gets to finish (an interrupted pack must leave no image). */
static void test_call_interrupted(void **state)
{
	(void)state;
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, &old);
	kill(getpid(), SIGTERM);
	struct ib_buf r = { 0 };
	ib_error_t err = NULL;
	assert_int_equal(ib_proc_call("t", answer, "slow", &r, &err), -1);
	assert_int_equal(err->exit_code, 143);
	assert_null(r.s);
	ib_error_free(&err);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

static void test_write_read_all(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_true(ib_write_all(p[1], "abcdef", 6));
	close(p[1]);
	char buf[8];
	assert_true(ib_read_all(p[0], buf, 6));
	assert_memory_equal(buf, "abcdef", 6);
	assert_false(ib_read_all(p[0], buf, 1));	/* EOF */
	close(p[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capture),
		cmocka_unit_test(test_call),
		cmocka_unit_test(test_wait_status),
		cmocka_unit_test(test_wait_interrupted),
		cmocka_unit_test(test_call_interrupted),
		cmocka_unit_test(test_term_then_kill),
		cmocka_unit_test(test_write_read_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
