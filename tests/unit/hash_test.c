/* Unit tests for builder/hash.c: the scan, the hash pipe (both modes), the follower
 * with its per-extent digests and helper, and the parallel file hasher.
 * Expected digests are the FIPS 180-2 / NIST example vectors, not the code's
 * own output. The program runs its tests once as the CPU allows (SHA-NI when
 * present), then again in a child with IMGBUILD_NO_SHA_NI=1 for the OpenSSL
 * path (ib_sha256ni_available() caches its answer per process). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hash.h"
#include "sha256ni.h"
#include "sandbox.h"
#include "util.h"

/* FIPS 180-2 appendix B: "abc", the 448-bit message, one million 'a'; and
 * the empty message (NIST CSRC examples). */
#define ABC "abc"
#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define MSG448 "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
#define MSG448_HEX "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define MILLION_A_HEX "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
#define EMPTY_HEX "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define MILLION 1000000

static void assert_digest(const uint8_t d[IB_SHA256_LEN], const char *want)
{
	char hex[IB_SHA256_HEX_LEN + 1];
	ib_hex(d, IB_SHA256_LEN, hex);
	assert_string_equal(hex, want);
}

static char tmpdir[64];

static int group_setup(void **state)
{
	unit_tmpdir_make(tmpdir, "hash");
	return 0;
}

static int group_teardown(void **state)
{
	unit_tmpdir_remove(tmpdir);
	return 0;
}

static char *million_a(void)
{
	char *s = xmalloc(MILLION);
	memset(s, 'a', MILLION);
	return s;
}

/* A file in tmpdir holding LEN bytes of DATA; its path (caller frees). */
static char *write_tmp(const char *name, const void *data, size_t len)
{
	char *path = ib_path_join(tmpdir, name);
	ib_error_t err = NULL;
	if (ib_write_file_atomic(path, data, len, 0644, &err) < 0)
		fail_msg("%s", err->msg);
	return path;
}

/* Hands DATA to a producer-mode pipe in pieces of STEP bytes, so pieces
 * straddle the pipe's blocks. */
static void pipe_put_all(struct ib_hash_pipe *p, const char *data, size_t len, size_t step)
{
	size_t off = 0;
	while (off < len) {
		size_t cap = 0;
		uint8_t *b = ib_hash_pipe_get(p, &cap);
		assert_non_null(b);
		assert_true(cap > 0);
		size_t n = len - off < step ? len - off : step;
		if (n > cap)
			n = cap;
		memcpy(b, data + off, n);
		ib_hash_pipe_put(p, n);
		off += n;
	}
}

static void test_pipe_vectors(void **state)
{
	ib_error_t err = NULL;
	uint8_t d[IB_SHA256_LEN];
	uint64_t total = 99;

	cleanup_hash_pipe struct ib_hash_pipe *p = ib_hash_pipe_new(64, 3);
	assert_int_equal(ib_hash_pipe_finish(p, d, &total, &err), 0);
	assert_digest(d, EMPTY_HEX);
	assert_int_equal(total, 0);

	cleanup_hash_pipe struct ib_hash_pipe *q = ib_hash_pipe_new(64, 3);
	pipe_put_all(q, MSG448, strlen(MSG448), 7);
	assert_int_equal(ib_hash_pipe_finish(q, d, &total, &err), 0);
	assert_digest(d, MSG448_HEX);
	assert_int_equal(total, strlen(MSG448));

	/* A million bytes through a small ring: the thread must keep the order. */
	cleanup_free char *a = million_a();
	cleanup_hash_pipe struct ib_hash_pipe *r = ib_hash_pipe_new(4096, 3);
	pipe_put_all(r, a, MILLION, 1000);
	assert_int_equal(ib_hash_pipe_finish(r, d, &total, &err), 0);
	assert_digest(d, MILLION_A_HEX);
	assert_int_equal(total, MILLION);
}

/* Reader mode: the parser sees exactly the file's bytes, in order, and the
 * digest covers also what it left unread. */
static void test_pipe_reader(void **state)
{
	cleanup_free char *a = million_a();
	cleanup_free char *path = write_tmp("million", a, MILLION);
	cleanup_fd int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	cleanup_hash_pipe struct ib_hash_pipe *p = ib_hash_pipe_new_reader(fd, 10000, 4);
	size_t seen = 0;
	while (seen < MILLION / 2) {
		const void *buf;
		ssize_t n = ib_hash_pipe_next(p, &buf);
		assert_true(n > 0);
		assert_true((size_t)n <= 10000);
		for (ssize_t i = 0; i < n; i++)
			if (((const char *)buf)[i] != 'a')
				fail_msg("byte %zu is not the file's", seen + (size_t)i);
		seen += (size_t)n;
	}
	uint8_t d[IB_SHA256_LEN];
	uint64_t total = 0;
	ib_error_t err = NULL;
	assert_int_equal(ib_hash_pipe_finish(p, d, &total, &err), 0);
	assert_digest(d, MILLION_A_HEX);
	assert_int_equal(total, MILLION);

	/* From the fd's current offset: skipping the first 997000 bytes leaves
	 * 3000 'a's, a digest computed below independently of the pipe. */
	assert_int_equal(lseek(fd, MILLION - 3000, SEEK_SET), MILLION - 3000);
	cleanup_hash_pipe struct ib_hash_pipe *q = ib_hash_pipe_new_reader(fd, 1024, 3);
	assert_int_equal(ib_hash_pipe_finish(q, d, &total, &err), 0);
	uint8_t want[IB_SHA256_LEN];
	ib_sha256_buf(a, 3000, want);
	assert_memory_equal(d, want, sizeof(want));
	assert_int_equal(total, 3000);
}

/* A read error is the finish's error, not a short digest. */
static void test_pipe_reader_error(void **state)
{
	cleanup_free char *path = write_tmp("abc", ABC, 3);
	cleanup_fd int fd = open(path, O_WRONLY | O_CLOEXEC);	/* read(2) gives EBADF */
	assert_true(fd >= 0);
	cleanup_hash_pipe struct ib_hash_pipe *p = ib_hash_pipe_new_reader(fd, 4096, 3);
	const void *buf;
	ssize_t n = ib_hash_pipe_next(p, &buf);
	assert_int_equal(n, -1);
	uint8_t d[IB_SHA256_LEN];
	ib_error_t err = NULL;
	assert_true(ib_hash_pipe_finish(p, d, NULL, &err) < 0);
	assert_non_null(err);
	ib_error_free(&err);
}

/* "abc" | MSG448 | a million 'a's | "xyz": three parts with known digests
 * (the extents of the follower's and the scan's tests) and a tail. */
static char *four_parts(size_t *total)
{
	size_t l1 = 3, l2 = strlen(MSG448), l3 = MILLION;
	*total = l1 + l2 + l3 + 3;
	char *all = xmalloc(*total);
	memcpy(all, ABC, l1);
	memcpy(all + l1, MSG448, l2);
	memset(all + l1 + l2, 'a', l3);
	memcpy(all + l1 + l2 + l3, "xyz", 3);
	return all;
}

/* The follower: the file's digest, and each extent's, while the "writer"
 * appends in pieces; extents straddle the advances. */
static void follow_run(bool help)
{
	size_t l1 = 3, l2 = strlen(MSG448), l3 = MILLION, total;
	cleanup_free char *all = four_parts(&total);

	cleanup_free char *path = ib_path_join(tmpdir, help ? "follow-help" : "follow");
	cleanup_fd int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	cleanup_hash_follow struct ib_hash_follow *h = ib_hash_follow_new(fd, 3);
	assert_non_null(h);
	uint8_t d1[IB_SHA256_LEN], d2[IB_SHA256_LEN], d3[IB_SHA256_LEN];
	memset(d1, 0, sizeof(d1));
	memset(d2, 0, sizeof(d2));
	memset(d3, 0, sizeof(d3));
	ib_hash_follow_extent(h, 0, l1, d1);
	ib_hash_follow_extent(h, l1, l2, d2);
	ib_hash_follow_extent(h, l1 + l2, l3, d3);
	size_t off = 0;
	while (off < total) {
		size_t n = total - off < 65536 ? total - off : 65536;
		assert_int_equal(pwrite(fd, all + off, n, (off_t)off), (ssize_t)n);
		off += n;
		ib_hash_follow_advance(h, off);
	}
	ib_error_t err = NULL;
	if (help && ib_hash_follow_help(h, &err) < 0)
		fail_msg("%s", err->msg);
	if (ib_hash_follow_wait(h, total, &err) < 0)
		fail_msg("%s", err->msg);
	assert_digest(d1, ABC_HEX);
	assert_digest(d2, MSG448_HEX);
	assert_digest(d3, MILLION_A_HEX);
	uint8_t d[IB_SHA256_LEN], want[IB_SHA256_LEN];
	if (ib_hash_follow_finish(h, d, &err) < 0)
		fail_msg("%s", err->msg);
	ib_sha256_buf(all, total, want);
	assert_memory_equal(d, want, sizeof(want));
}

static void tap_collect(void *ctx, const void *buf, size_t len)
{
	ib_buf_add(ctx, buf, len);
}

/* The scan: the parser (this thread) reads the blocks and announces where
 * content lies by pointer, as verify does; the thread gives the image's digest
 * and each extent's, and the tap sees every byte once, in order. Extents out
 * of order and unlocatable pointers are refused, not hashed wrongly; _same
 * compares a copy with the image's bytes, across two blocks too. */
static void test_scan(void **state)
{
	size_t l1 = 3, l2 = strlen(MSG448), l3 = MILLION, total;
	cleanup_free char *all = four_parts(&total);
	const char *a = all + l1 + l2; /* a million 'a's */
	cleanup_free char *path = write_tmp("scan", all, total);
	cleanup_fd int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	cleanup_buf struct ib_buf tapped = { 0 };
	cleanup_hash_scan struct ib_hash_scan *s = ib_hash_scan_new(fd, 1024, 4096, 5, tap_collect, &tapped);
	const void *buf;
	ssize_t n = ib_hash_scan_next(s, &buf);
	assert_int_equal(n, 4096);
	uint64_t off = 99;
	assert_int_equal(ib_hash_scan_locate(s, (const char *)buf + l1, l2, &off), 1);
	assert_int_equal(off, l1);
	assert_int_equal(ib_hash_scan_locate(s, a, 10, &off), 0);
	assert_int_equal(ib_hash_scan_locate(s, (const char *)buf + 4000, 200, &off), 0); /* runs past the block */
	assert_true(ib_hash_scan_same(s, l1, MSG448, l2));
	assert_false(ib_hash_scan_same(s, l1, "abd", 3));
	assert_false(ib_hash_scan_same(s, 4000, a, 200)); /* 4096.. not read yet */
	assert_int_equal(ib_hash_scan_extent(s, 0, l1), 0);
	assert_int_equal(ib_hash_scan_extent(s, l1, l2), 1);
	assert_int_equal(ib_hash_scan_extent(s, l1 + 1, 1), -1); /* inside the one before */
	assert_int_equal(ib_hash_scan_extent(s, l1 + l2, l3), 2);
	size_t got = (size_t)n;
	assert_int_equal(ib_hash_scan_next(s, &buf), 4096);
	got += 4096;
	assert_true(ib_hash_scan_same(s, 4000, a, 200)); /* across two blocks */
	while ((n = ib_hash_scan_next(s, &buf)) > 0)
		got += (size_t)n;
	assert_int_equal(n, 0);
	assert_int_equal(got, total);
	uint8_t d[IB_SHA256_LEN], want[IB_SHA256_LEN];
	uint64_t size = 0;
	ib_error_t err = NULL;
	if (ib_hash_scan_finish(s, d, &size, &err) < 0)
		fail_msg("%s", err->msg);
	ib_sha256_buf(all, total, want);
	assert_memory_equal(d, want, sizeof(want));
	assert_int_equal(size, total);
	assert_digest(ib_hash_scan_digest(s, 0), ABC_HEX);
	assert_digest(ib_hash_scan_digest(s, 1), MSG448_HEX);
	assert_digest(ib_hash_scan_digest(s, 2), MILLION_A_HEX);
	assert_int_equal(tapped.len, total);
	assert_memory_equal(tapped.s, all, total);
}

/* Only as many extents as the hint allows; one past the end of the image is
 * the finish's error (a truncated image), and a read error is too. */
static void test_scan_limits(void **state)
{
	cleanup_free char *path = write_tmp("scan-small", MSG448, strlen(MSG448));
	cleanup_fd int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	cleanup_hash_scan struct ib_hash_scan *s = ib_hash_scan_new(fd, 0, 4096, 5, NULL, NULL);
	const void *buf;
	assert_int_equal(ib_hash_scan_next(s, &buf), (ssize_t)strlen(MSG448));
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(ib_hash_scan_extent(s, i, 1), (ssize_t)i);
	assert_int_equal(ib_hash_scan_extent(s, 16, 1), -1);
	uint8_t d[IB_SHA256_LEN];
	ib_error_t err = NULL;
	assert_int_equal(ib_hash_scan_finish(s, d, NULL, &err), 0);
	assert_digest(d, MSG448_HEX);

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	cleanup_hash_scan struct ib_hash_scan *t = ib_hash_scan_new(fd, 4096, 4096, 5, NULL, NULL);
	assert_int_equal(ib_hash_scan_next(t, &buf), (ssize_t)strlen(MSG448));
	assert_int_equal(ib_hash_scan_extent(t, 50, 100), 0); /* 6 bytes are there */
	assert_true(ib_hash_scan_finish(t, d, NULL, &err) < 0);
	assert_non_null(strstr(err->msg, "past the end"));
	ib_error_free(&err);

	cleanup_fd int wfd = open(path, O_WRONLY | O_CLOEXEC); /* read(2) gives EBADF */
	assert_true(wfd >= 0);
	cleanup_hash_scan struct ib_hash_scan *u = ib_hash_scan_new(wfd, 0, 4096, 5, NULL, NULL);
	assert_int_equal(ib_hash_scan_next(u, &buf), -1);
	assert_true(ib_hash_scan_finish(u, d, NULL, &err) < 0);
	ib_error_free(&err);
}

static void test_follow(void **state)
{
	follow_run(false);
}

static void test_follow_help(void **state)
{
	follow_run(true);
}

static void test_files(void **state)
{
	cleanup_free char *a = million_a();
	free(write_tmp("f-abc", ABC, 3));
	free(write_tmp("f-empty", "", 0));
	free(write_tmp("f-448", MSG448, strlen(MSG448)));
	free(write_tmp("f-million", a, MILLION));
	cleanup_fd int dirfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dirfd >= 0);
	const char *paths[] = { "f-abc", "f-empty", "f-448", "f-million", "f-abc" };
	const char *want[] = { ABC_HEX, EMPTY_HEX, MSG448_HEX, MILLION_A_HEX, ABC_HEX };
	const int64_t want_size[] = { 3, 0, (int64_t)strlen(MSG448), MILLION, 3 };
	for (int threads = 1; threads <= 3; threads++) {
		uint8_t digests[5][IB_SHA256_LEN];
		int64_t sizes[5] = { -1, -1, -1, -1, -1 };
		ib_error_t err = NULL;
		if (ib_hash_files(dirfd, paths, 5, threads, digests, sizes, &err) < 0)
			fail_msg("%s", err->msg);
		for (int i = 0; i < 5; i++) {
			assert_digest(digests[i], want[i]);
			assert_int_equal(sizes[i], want_size[i]);
		}
	}
}

/* A symlink is not followed (a tree's link must never make pack hash a host
 * file), and a missing file is an error naming it. */
static void test_files_refused(void **state)
{
	cleanup_free char *link = ib_path_join(tmpdir, "f-link");
	assert_int_equal(symlink("/etc/hostname", link), 0);
	cleanup_fd int dirfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(write_tmp("f-ok", ABC, 3));
	const char *paths[][2] = { { "f-ok", "f-link" }, { "f-ok", "f-missing" } };
	for (int k = 0; k < 2; k++) {
		uint8_t digests[2][IB_SHA256_LEN];
		int64_t sizes[2];
		ib_error_t err = NULL;
		assert_true(ib_hash_files(dirfd, paths[k], 2, 2, digests, sizes, &err) < 0);
		assert_non_null(err);
		if (strstr(err->msg, paths[k][1]) == NULL)
			fail_msg("message does not name '%s': %s", paths[k][1], err->msg);
		ib_error_free(&err);
	}
}

static void test_ncpus(void **state)
{
	int n = ib_hash_ncpus();
	assert_true(n >= 1);
	assert_true(n <= sysconf(_SC_NPROCESSORS_CONF));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipe_vectors),	   cmocka_unit_test(test_pipe_reader),
		cmocka_unit_test(test_pipe_reader_error),  cmocka_unit_test(test_follow),
		cmocka_unit_test(test_follow_help),	   cmocka_unit_test(test_scan),
		cmocka_unit_test(test_scan_limits),
		cmocka_unit_test(test_files),		   cmocka_unit_test(test_files_refused),
		cmocka_unit_test(test_ncpus),
	};
	bool ni = ib_sha256ni_available();
	int failed = cmocka_run_group_tests_name(ni ? "hash (SHA-NI)" : "hash (OpenSSL)", tests, group_setup,
						 group_teardown);
	if (!ni)
		return failed;
	/* Once more without SHA-NI, in a child (the choice is cached per process). */
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		setenv("IMGBUILD_NO_SHA_NI", "1", 1);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return failed + 1;
	return failed + WEXITSTATUS(status);
}
