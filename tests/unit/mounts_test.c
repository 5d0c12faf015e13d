/* ib_resolve_in_root: links in an image never lead a mount point out of it,
 * both with openat2 (RESOLVE_IN_ROOT) and with the per-component O_NOFOLLOW
 * fallback that kernels before 5.6 get. mounts.c is included so that the
 * fallback can be forced (ib_have_openat2 = false). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <linux/filter.h>
#include <linux/fs.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "../../builder/mounts.c"
#include "sandbox.h"

struct fixture {
	char root[64];
	char outside[64];
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	strcpy(f->root, "/tmp/ib-mounts-root.XXXXXX");
	strcpy(f->outside, "/tmp/ib-mounts-host.XXXXXX");
	assert_non_null(mkdtemp(f->root));
	assert_non_null(mkdtemp(f->outside));
	cleanup_free char *etc = ib_path_join(f->root, "etc");
	cleanup_free char *abs_link = ib_path_join(f->root, "mnt");
	cleanup_free char *rel_link = ib_path_join(f->root, "up");
	cleanup_free char *host_link = ib_path_join(f->root, "host");
	cleanup_free char *dangling = ib_path_join(f->root, "dangling");
	assert_int_equal(mkdir(etc, 0755), 0);
	assert_int_equal(symlink("/etc", abs_link), 0);
	assert_int_equal(symlink("../../../../../../../etc", rel_link), 0);
	assert_int_equal(symlink(f->outside, host_link), 0);
	assert_int_equal(symlink("/nowhere/x", dangling), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	ib_error_t err = NULL;
	ib_remove_tree(f->root, &err);
	ib_error_free(&err);
	ib_remove_tree(f->outside, &err);
	ib_error_free(&err);
	free(f);
	ib_have_openat2 = true;
	return 0;
}

static void expect_in_root(struct fixture *f, const char *path, enum ib_in_root_create create, const char *want)
{
	ib_error_t err = NULL;
	cleanup_free char *got = ib_resolve_in_root(f->root, path, create, &err);
	if (got == NULL)
		fail_msg("%s: %s", path, err->msg);
	cleanup_free char *expected = ib_path_join(f->root, want);
	assert_string_equal(got, expected);
}

static void expect_refused(struct fixture *f, const char *path, enum ib_in_root_create create, const char *msg)
{
	ib_error_t err = NULL;
	cleanup_free char *got = ib_resolve_in_root(f->root, path, create, &err);
	if (got)
		fail_msg("%s resolved to %s", path, got);
	assert_non_null(strstr(err->msg, msg));
	ib_error_free(&err);
}

static void test_plain_and_created(void **state)
{
	struct fixture *f = *state;
	expect_in_root(f, "/etc", IB_IN_ROOT_NONE, "etc");
	expect_in_root(f, "/a/b/c", IB_IN_ROOT_DIR, "a/b/c");
	expect_in_root(f, "/a/b/file", IB_IN_ROOT_FILE, "a/b/file");
	struct stat st;
	cleanup_free char *file = ib_path_join(f->root, "a/b/file");
	assert_int_equal(lstat(file, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	expect_refused(f, "/a/../etc", IB_IN_ROOT_DIR, "'..' is not allowed");
	expect_refused(f, "/missing", IB_IN_ROOT_NONE, "No such file");
}

/* With openat2: links are followed, but as if the image root were '/'. */
static void test_links_stay_inside(void **state)
{
	struct fixture *f = *state;
	if (!ib_have_openat2)
		skip();
	expect_in_root(f, "/mnt/newfile", IB_IN_ROOT_FILE, "etc/newfile");
	expect_in_root(f, "/up/dir", IB_IN_ROOT_DIR, "etc/dir");
	/* "/tmp/ib-mounts-host.X" is looked up inside the root, where it is missing. */
	ib_error_t err = NULL;
	cleanup_free char *got = ib_resolve_in_root(f->root, "/host/x", IB_IN_ROOT_DIR, &err);
	if (got) {
		/* made inside the root, under its own tmp folder */
		assert_true(strncmp(got, f->root, strlen(f->root)) == 0);
	} else
		ib_error_free(&err);
	expect_refused(f, "/dangling", IB_IN_ROOT_FILE, "open '/dangling'");
	cleanup_free char *host_new = ib_path_join(f->outside, "x");
	assert_int_equal(access(host_new, F_OK), -1);
	assert_int_equal(access("/etc/newfile", F_OK), -1);
}

/* Without openat2: any link is refused, nothing is made outside. */
static void test_fallback_refuses_links(void **state)
{
	struct fixture *f = *state;
	ib_have_openat2 = false;
	expect_in_root(f, "/etc", IB_IN_ROOT_NONE, "etc");
	expect_in_root(f, "/d/e", IB_IN_ROOT_DIR, "d/e");
	expect_refused(f, "/mnt/newfile", IB_IN_ROOT_FILE, "is a symbolic link");
	expect_refused(f, "/up/dir", IB_IN_ROOT_DIR, "is a symbolic link");
	expect_refused(f, "/host/x", IB_IN_ROOT_DIR, "is a symbolic link");
	cleanup_free char *host_new = ib_path_join(f->outside, "x");
	assert_int_equal(access(host_new, F_OK), -1);
	assert_int_equal(access("/etc/newfile", F_OK), -1);
}

/* A refusal of one path (here an immutable folder) is that path's error; it
 * must not turn openat2 off, and with it RESOLVE_BENEATH and RESOLVE_IN_ROOT,
 * for the rest of the process. */
static void test_one_refusal_keeps_openat2(void **state)
{
	struct fixture *f = *state;
	if (!ib_have_openat2)
		skip();
	cleanup_free char *dir = ib_path_join(f->outside, "frozen");
	assert_int_equal(mkdir(dir, 0755), 0);
	cleanup_fd int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	int attr = FS_IMMUTABLE_FL;
	if (ioctl(dfd, FS_IOC_SETFLAGS, &attr) < 0)
		skip(); /* a file system without the flag */
	errno = 0;
	int fd = ib_openat2(dfd, "x", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644, IB_RESOLVE_BENEATH);
	int e = errno;
	attr = 0;
	assert_int_equal(ioctl(dfd, FS_IOC_SETFLAGS, &attr), 0);
	assert_int_equal(fd, -1);
	assert_int_equal(e, EPERM);
	assert_true(ib_have_openat2);
	expect_in_root(f, "/mnt/newfile", IB_IN_ROOT_FILE, "etc/newfile");
}

/* A seccomp profile older than openat2 answers EPERM to every call: that
 * turns openat2 off (ENOSYS), and the walk of one component at a time takes
 * over. In a child, since a filter cannot be removed. */
static void test_filter_turns_openat2_off(void **state)
{
	struct fixture *f = *state;
	if (!ib_have_openat2)
		skip();
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sock_filter prog_f[] = {
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 437 /* openat2 */, 0, 1),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		};
		struct sock_fprog prog = { .len = sizeof(prog_f) / sizeof(prog_f[0]), .filter = prog_f };
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
			_exit(10);
		errno = 0;
		if (ib_openat2(AT_FDCWD, "/", O_PATH | O_CLOEXEC, 0, 0) != -1 || errno != ENOSYS)
			_exit(11);
		if (ib_have_openat2)
			_exit(12);
		ib_error_t err = NULL;
		cleanup_free char *got = ib_resolve_in_root(f->root, "/mnt/newfile", IB_IN_ROOT_FILE, &err);
		if (got != NULL || strstr(err->msg, "is a symbolic link") == NULL)
			_exit(13);
		ib_error_free(&err);
		_exit(0);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(ib_have_openat2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plain_and_created, setup, teardown),
		cmocka_unit_test_setup_teardown(test_links_stay_inside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fallback_refuses_links, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_refusal_keeps_openat2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filter_turns_openat2_off, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
