/* Unit tests for builder/unpack_writer.c in a folder made here: more files
 * than the queue holds at once (the byte ring wraps several times), each with
 * its content, exact mode (past the umask), mtime and, as root, owner; what
 * the thread does not take; a symlink on the way (the attack: a file made
 * outside the folder) and an existing name each fail naming the file, and
 * nothing after a failure is written. */
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
#include "unpack_writer.h"

static char dir[64];

#define N_FILES 400 /* 400 files of up to 64 KiB: more than the 4 MiB queue */

static size_t size_of(int i)
{
	return i == 0 ? IB_UNPACK_WRITER_MAX : i == 1 ? 0 : (size_t)(i * 977) % IB_UNPACK_WRITER_MAX + 1;
}

/* Fast (a memset), so that the queue fills faster than the thread writes
 * and the ring is reused while files are still in it; each file distinct. */
static void fill(uint8_t *buf, size_t len, int seed)
{
	memset(buf, (uint8_t)(seed * 7 + 1), len);
	for (size_t j = 0; j < len && j < 4; j++)
		buf[j] = (uint8_t)(seed >> (8 * j));
	if (len > 4)
		buf[len - 1] = (uint8_t)~seed;
}

static int open_fresh(const char *name)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(mkdir(path, 0755), 0);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static struct ib_tar_entry file_entry(const char *path, int64_t size, mode_t mode)
{
	return (struct ib_tar_entry){ .path = path, .type = IB_ENTRY_FILE, .mode = mode, .size = size, .mtime = 1000000 + size };
}

/* Queues PATH with SIZE bytes of pattern SEED; false when the writer did not
 * take it. */
static bool put(struct ib_unpack_writer *w, const char *path, size_t size, mode_t mode, int seed, int64_t uid)
{
	struct ib_tar_entry e = file_entry(path, (int64_t)size, mode);
	e.uid = uid;
	e.gid = uid + 1;
	uint8_t *buf = ib_unpack_writer_reserve(w, &e, path);
	if (buf == NULL)
		return false;
	fill(buf, size, seed);
	ib_unpack_writer_commit(w);
	return true;
}

static int setup(void **state)
{
	unit_tmpdir_make(dir, "unpack-writer");
	return 0;
}

static int teardown(void **state)
{
	if (dir[0])
		unit_tmpdir_remove(dir);
	return 0;
}

static void test_writes_many_files(void **state)
{
	int into = open_fresh("many");
	assert_int_equal(mkdirat(into, "sub", 0755), 0);
	bool root = geteuid() == 0;
	struct ib_unpack_writer *w = ib_unpack_writer_new(into, root);
	assert_non_null(w);
	char names[N_FILES][32];
	ib_error_t err = NULL;
	size_t full = 0;
	for (int i = 0; i < N_FILES; i++) {
		snprintf(names[i], sizeof(names[i]), "./sub/f%03d", i);
		/* 0666 and 0600 around the umask; 1234:1235 as root. */
		int64_t uid = root ? 1234 : (int64_t)geteuid();
		if (put(w, names[i], size_of(i), i % 2 ? 0666 : 0600, i, uid))
			continue;
		/* The queue is full (unpack would write this one itself): once
		 * drained, it takes it. */
		full++;
		if (ib_unpack_writer_drain(w, &err) < 0)
			fail_msg("%s", err->msg);
		assert_true(put(w, names[i], size_of(i), i % 2 ? 0666 : 0600, i, uid));
	}
	if (ib_unpack_writer_drain(w, &err) < 0)
		fail_msg("%s", err->msg);
	assert_int_equal(ib_unpack_writer_files(w), N_FILES);
	print_message("# the queue was full %zu times\n", full);
	uint8_t *want = xmalloc(IB_UNPACK_WRITER_MAX), *got = xmalloc(IB_UNPACK_WRITER_MAX + 1);
	for (int i = 0; i < N_FILES; i++) {
		struct stat st;
		assert_int_equal(fstatat(into, names[i], &st, AT_SYMLINK_NOFOLLOW), 0);
		assert_true(S_ISREG(st.st_mode));
		assert_int_equal(st.st_mode & 07777, i % 2 ? 0666 : 0600);
		assert_int_equal(st.st_mtim.tv_sec, 1000000 + (int64_t)size_of(i));
		if (root) {
			assert_int_equal(st.st_uid, 1234);
			assert_int_equal(st.st_gid, 1235);
		}
		int fd = openat(into, names[i], O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		ssize_t n = read(fd, got, IB_UNPACK_WRITER_MAX + 1);
		close(fd);
		assert_int_equal(n, (ssize_t)size_of(i));
		fill(want, size_of(i), i);
		if (memcmp(got, want, size_of(i)) != 0)
			fail_msg("%s: wrong content", names[i]);
	}
	free(want);
	free(got);
	ib_unpack_writer_free(w);
	close(into);
}

/* Set-id and sticky bits, xattrs, what is larger than the limit and what is
 * not a file stay with the caller (libarchive). A cancelled reservation
 * writes nothing. */
static void test_what_it_leaves(void **state)
{
	int into = open_fresh("leaves");
	struct ib_unpack_writer *w = ib_unpack_writer_new(into, false);
	assert_non_null(w);
	struct ib_tar_entry e = file_entry("./a", 10, 04755);
	assert_null(ib_unpack_writer_reserve(w, &e, "./a"));
	e = file_entry("./a", 10, 01644);
	assert_null(ib_unpack_writer_reserve(w, &e, "./a"));
	e = file_entry("./a", IB_UNPACK_WRITER_MAX + 1, 0644);
	assert_null(ib_unpack_writer_reserve(w, &e, "./a"));
	struct ib_xattr x = { 0 };
	e = file_entry("./a", 10, 0644);
	e.xattrs = &x;
	e.n_xattrs = 1;
	assert_null(ib_unpack_writer_reserve(w, &e, "./a"));
	e = file_entry("./a", 0, 0755);
	e.type = IB_ENTRY_DIR;
	assert_null(ib_unpack_writer_reserve(w, &e, "./a"));
	e = file_entry("./cancelled", 3, 0644);
	uint8_t *b = ib_unpack_writer_reserve(w, &e, "./cancelled");
	assert_non_null(b);
	memcpy(b, "abc", 3);
	ib_unpack_writer_cancel(w);
	ib_error_t err = NULL;
	assert_int_equal(ib_unpack_writer_drain(w, &err), 0);
	assert_int_equal(faccessat(into, "cancelled", F_OK, AT_SYMLINK_NOFOLLOW), -1);
	assert_int_equal(ib_unpack_writer_files(w), 0);
	ib_unpack_writer_free(w);
	close(into);
}

/* PATH, queued after a good file and before another, must fail with WANT
 * and PATH in the error; the file after it is not written. */
static void expect_failure(int into, const char *path, const char *want)
{
	struct ib_unpack_writer *w = ib_unpack_writer_new(into, false);
	assert_non_null(w);
	assert_true(put(w, "./before", 4, 0644, 1, 0));
	assert_true(put(w, path, 4, 0644, 2, 0));
	assert_true(put(w, "./after", 4, 0644, 3, 0));
	ib_error_t err = NULL;
	assert_int_equal(ib_unpack_writer_drain(w, &err), -1);
	if (strstr(err->msg, want) == NULL || strstr(err->msg, path) == NULL)
		fail_msg("'%s': not the expected error (%s): %s", path, want, err->msg);
	ib_error_free(&err);
	assert_int_equal(faccessat(into, "before", F_OK, AT_SYMLINK_NOFOLLOW), 0);
	/* "./after" may be written: the thread and the drain both take files,
	 * and one may have had it in hand when the other failed. Later
	 * reservations are refused: the caller stops at the drain. */
	struct ib_tar_entry e = file_entry("./later", 1, 0644);
	assert_null(ib_unpack_writer_reserve(w, &e, "./later"));
	ib_unpack_writer_free(w);
}

/* The attack: a folder of the tree replaced by a symlink to a folder
 * outside it; the file must not appear there. */
static void test_symlink_on_the_way(void **state)
{
	int into = open_fresh("through-link");
	int outside = open_fresh("outside");
	char target[128];
	snprintf(target, sizeof(target), "%s/outside", dir);
	assert_int_equal(symlinkat(target, into, "etc"), 0);
	expect_failure(into, "./etc/passwd", "create './etc/passwd'");
	assert_int_equal(faccessat(outside, "passwd", F_OK, AT_SYMLINK_NOFOLLOW), -1);
	close(outside);
	close(into);
}

static void test_existing_name(void **state)
{
	int into = open_fresh("existing");
	int fd = openat(into, "taken", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "old", 3), 3);
	close(fd);
	expect_failure(into, "./taken", "File exists");
	char buf[8] = { 0 };
	fd = openat(into, "taken", O_RDONLY | O_CLOEXEC);
	assert_int_equal(read(fd, buf, sizeof(buf)), 3);
	close(fd);
	assert_string_equal(buf, "old");
	close(into);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writes_many_files),
		cmocka_unit_test(test_what_it_leaves),
		cmocka_unit_test(test_symlink_on_the_way),
		cmocka_unit_test(test_existing_name),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
