/* Unit tests for builder/uring.c on files made here: more files than one
 * batch, of sizes up to pack's 64 KiB, read whole and only to their length;
 * a missing file, a file shorter than asked and a symlink in the last
 * component each fail with an error naming the file. Skipped where the
 * kernel refuses io_uring (pack then reads the plain way, and pack_test
 * checks that the image is the same). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"
#include "uring.h"

static char dir[64];
static int dirfd_ = -1;

#define N_FILES 150 /* more than one batch of 64 */

static size_t size_of(int i)
{
	return i == 0 ? 65536 : (size_t)(i * 397) % 65536 + 1;
}

static void fill(uint8_t *buf, size_t len, int seed)
{
	for (size_t j = 0; j < len; j++)
		buf[j] = (uint8_t)(j * 31 + (size_t)seed * 7 + j / 251);
}

static void make(const char *name, const void *data, size_t len)
{
	int fd = openat(dirfd_, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static int setup(void **state)
{
	struct ib_uring_reads *probe = ib_uring_reads_new();
	if (probe == NULL) {
		print_message("# skipped: this kernel refuses io_uring\n");
		return -1;
	}
	ib_uring_reads_free(probe);
	unit_tmpdir_make(dir, "uring");
	dirfd_ = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dirfd_ >= 0);
	assert_int_equal(mkdirat(dirfd_, "sub", 0755), 0);
	uint8_t *buf = xmalloc(65536);
	for (int i = 0; i < N_FILES; i++) {
		char name[32];
		snprintf(name, sizeof(name), "sub/f%03d", i);
		fill(buf, size_of(i), i);
		make(name, buf, size_of(i));
	}
	free(buf);
	make("short", "12345", 5);
	assert_int_equal(symlinkat("sub/f001", dirfd_, "link"), 0);
	return 0;
}

static int teardown(void **state)
{
	if (dirfd_ >= 0)
		close(dirfd_);
	if (dir[0])
		unit_tmpdir_remove(dir);
	return 0;
}

static void test_reads_many_files(void **state)
{
	struct ib_uring_reads *u = ib_uring_reads_new();
	assert_non_null(u);
	/* One buffer, each file at its own place, with a guard byte after it
	 * that must stay untouched. */
	size_t total = 0;
	for (int i = 0; i < N_FILES; i++)
		total += size_of(i) + 1;
	uint8_t *buf = xmalloc(total);
	memset(buf, 0xa5, total);
	char names[N_FILES][32];
	size_t at = 0;
	ib_error_t err = NULL;
	for (int i = 0; i < N_FILES; i++) {
		snprintf(names[i], sizeof(names[i]), "sub/f%03d", i);
		if (ib_uring_reads_add(u, dirfd_, names[i], buf + at, size_of(i), &err) < 0)
			fail_msg("%s", err->msg);
		at += size_of(i) + 1;
	}
	if (ib_uring_reads_wait(u, &err) < 0)
		fail_msg("%s", err->msg);
	uint8_t *want = xmalloc(65536);
	at = 0;
	for (int i = 0; i < N_FILES; i++) {
		fill(want, size_of(i), i);
		if (memcmp(buf + at, want, size_of(i)) != 0)
			fail_msg("%s: wrong content", names[i]);
		assert_int_equal(buf[at + size_of(i)], 0xa5);
		at += size_of(i) + 1;
	}
	/* The ring is reusable after a wait, and reads only LEN bytes. */
	memset(buf, 0, 4);
	if (ib_uring_reads_add(u, dirfd_, "short", buf, 3, &err) < 0 || ib_uring_reads_wait(u, &err) < 0)
		fail_msg("%s", err->msg);
	assert_memory_equal(buf, "123\0", 4);
	free(want);
	free(buf);
	ib_uring_reads_free(u);
}

/* NAME read as LEN bytes must fail with an error holding WANT and NAME;
 * a good file queued before it must not hide the failure. */
static void expect_failure(const char *name, size_t len, const char *want)
{
	struct ib_uring_reads *u = ib_uring_reads_new();
	assert_non_null(u);
	uint8_t a[8], b[16];
	ib_error_t err = NULL;
	if (ib_uring_reads_add(u, dirfd_, "short", a, 5, &err) < 0)
		fail_msg("%s", err->msg);
	if (ib_uring_reads_add(u, dirfd_, name, b, len, &err) < 0)
		fail_msg("%s", err->msg);
	assert_int_equal(ib_uring_reads_wait(u, &err), -1);
	if (strstr(err->msg, want) == NULL || strstr(err->msg, name) == NULL)
		fail_msg("'%s': not the expected error (%s): %s", name, want, err->msg);
	assert_memory_equal(a, "12345", 5);
	ib_error_free(&err);
	ib_uring_reads_free(u);
}

static void test_missing_file(void **state)
{
	expect_failure("sub/nothing", 4, "No such file");
}

static void test_shorter_than_asked(void **state)
{
	expect_failure("short", 9, "shrank while being read");
}

/* A symlink put where a file was is not followed (O_NOFOLLOW). */
static void test_symlink_refused(void **state)
{
	expect_failure("link", 4, "Too many levels of symbolic links");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_many_files),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_shorter_than_asked),
		cmocka_unit_test(test_symlink_refused),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
