/* Unit tests for builder/store.c, the content-addressed download cache, in
 * a private $IMGBUILD_CACHE under /tmp: an entry appears only with the
 * content its name says; a mismatch leaves nothing behind; an entry whose
 * bytes changed after it was stored is refused with the fix in the message.
 * Digests are the FIPS 180-2 vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "sandbox.h"
#include "store.h"
#include "util.h"

#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define MSG448 "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
#define MSG448_HEX "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define EMPTY_HEX "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static char cache[64];

static int setup(void **state)
{
	strcpy(cache, "/tmp/ib-store-unit.XXXXXX");
	assert_non_null(mkdtemp(cache));
	setenv("IMGBUILD_CACHE", cache, 1);
	return 0;
}

static int teardown(void **state)
{
	ib_error_t err = NULL;
	if (ib_remove_tree(cache, &err) < 0)
		ib_error_free(&err);
	unsetenv("IMGBUILD_CACHE");
	return 0;
}

/* Files in the store folder other than entries (temporary, .part). */
static int stray_files(void)
{
	cleanup_free char *dir = xasprintf("%s/downloads/sha256", cache);
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n += !ib_store_valid_digest(e->d_name);
	closedir(d);
	return n;
}

/* A temporary store file holding TEXT; its path (caller frees). */
static char *tmp_with(const char *text)
{
	char *path = NULL;
	ib_error_t err = NULL;
	int fd = ib_store_tmpfile(&path, &err);
	if (fd < 0)
		fail_msg("%s", err->msg);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void test_valid_digest(void **state)
{
	assert_true(ib_store_valid_digest(ABC_HEX));
	assert_true(ib_store_valid_digest(EMPTY_HEX));
	assert_false(ib_store_valid_digest(NULL));
	assert_false(ib_store_valid_digest(""));
	assert_false(ib_store_valid_digest("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
	assert_false(ib_store_valid_digest(ABC_HEX "0"));
	assert_false(ib_store_valid_digest("a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
	assert_false(ib_store_valid_digest("../816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
	assert_false(ib_store_valid_digest("g a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a"));
}

static void test_paths(void **state)
{
	ib_error_t err = NULL;
	cleanup_free char *p = ib_store_path(ABC_HEX, &err);
	cleanup_free char *want = xasprintf("%s/downloads/sha256/%s", cache, ABC_HEX);
	assert_string_equal(p, want);
	cleanup_free char *part = ib_store_part_path(ABC_HEX, &err);
	cleanup_free char *want_part = xasprintf("%s.part", want);
	assert_string_equal(part, want_part);
	/* a name that is no digest never becomes a path (it could climb out) */
	assert_null(ib_store_path("../../etc/passwd", &err));
	assert_int_equal(err->exit_code, IB_EXIT_USAGE);
	assert_non_null(strstr(err->msg, "invalid sha256 '../../etc/passwd'"));
	ib_error_free(&err);
	assert_false(ib_store_has("../../etc/passwd"));
	assert_true(ib_store_check("nope", NULL, &err) < 0);
	ib_error_free(&err);
}

static void test_commit_and_check(void **state)
{
	ib_error_t err = NULL;
	assert_false(ib_store_has(ABC_HEX));
	assert_int_equal(ib_store_check(ABC_HEX, NULL, &err), 0);

	cleanup_free char *tmp = tmp_with("abc");
	char actual[IB_SHA256_HEX_LEN + 1] = "";
	if (ib_store_commit(tmp, ABC_HEX, "https://example.invalid/abc", actual, &err) < 0)
		fail_msg("%s", err->msg);
	assert_string_equal(actual, ABC_HEX);
	assert_int_equal(access(tmp, F_OK), -1);	/* renamed, not copied */
	assert_true(ib_store_has(ABC_HEX));

	cleanup_free char *path = NULL;
	assert_int_equal(ib_store_check(ABC_HEX, &path, &err), 1);
	cleanup_free char *want = xasprintf("%s/downloads/sha256/%s", cache, ABC_HEX);
	assert_string_equal(path, want);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0444);	/* read-only: nothing rewrites an entry by mistake */
	size_t len = 0;
	cleanup_free char *content = ib_read_file(path, &len, &err);
	assert_int_equal(len, 3);
	assert_memory_equal(content, "abc", 3);

	/* trust on first use: no digest given, the entry is named by its content */
	cleanup_free char *tmp2 = tmp_with(MSG448);
	if (ib_store_commit(tmp2, NULL, "file:///x", actual, &err) < 0)
		fail_msg("%s", err->msg);
	assert_string_equal(actual, MSG448_HEX);
	assert_int_equal(ib_store_check(MSG448_HEX, NULL, &err), 1);
	assert_int_equal(stray_files(), 0);
}

static void test_commit_mismatch(void **state)
{
	ib_error_t err = NULL;
	cleanup_free char *tmp = tmp_with("abd");
	char actual[IB_SHA256_HEX_LEN + 1] = "";
	int rc = ib_store_commit(tmp, ABC_HEX, "https://example.invalid/abc", actual, &err);
	assert_int_equal(rc, IB_STORE_MISMATCH);
	assert_non_null(strstr(err->msg, "sha256 mismatch for 'https://example.invalid/abc'"));
	assert_non_null(strstr(err->msg, "expected " ABC_HEX));
	uint8_t d[IB_SHA256_LEN];
	char got[IB_SHA256_HEX_LEN + 1];
	ib_sha256_buf("abd", 3, d);
	ib_hex(d, sizeof(d), got);
	assert_string_equal(actual, got);
	assert_non_null(strstr(err->msg, got));
	ib_error_free(&err);
	/* nothing is left: neither under the expected name, nor the real one, nor the temporary file */
	assert_int_equal(access(tmp, F_OK), -1);
	assert_false(ib_store_has(ABC_HEX));
	assert_false(ib_store_has(got));
	assert_int_equal(ib_store_check(ABC_HEX, NULL, &err), 0);
	assert_int_equal(stray_files(), 0);
}

static void corrupt(const char *path, const char *text)
{
	assert_int_equal(chmod(path, 0644), 0);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void expect_corrupt(const char *hex, const char *path)
{
	ib_error_t err = NULL;
	cleanup_free char *got = NULL;
	assert_int_equal(ib_store_check(hex, &got, &err), -1);
	assert_null(got);
	assert_non_null(err);
	if (strstr(err->msg, "is corrupt") == NULL || strstr(err->msg, path) == NULL ||
	    strstr(err->msg, "rm -f") == NULL)
		fail_msg("message lacks what, where or the fix: %s", err->msg);
	ib_error_free(&err);
}

/* The digest of TEXT from OpenSSL (crypto.c), independent of the store. */
static void digest_of(const char *text, char hex[IB_SHA256_HEX_LEN + 1])
{
	uint8_t d[IB_SHA256_LEN];
	ib_sha256_buf(text, strlen(text), d);
	ib_hex(d, sizeof(d), hex);
}

/* Bytes changed after the entry was stored: refused, with the fix. The
 * contents are new to this process, so no earlier check is remembered. */
static void test_check_corrupt(void **state)
{
	ib_error_t err = NULL;
	char hex1[IB_SHA256_HEX_LEN + 1], hex2[IB_SHA256_HEX_LEN + 1];
	digest_of("corrupt me 1", hex1);
	digest_of("corrupt me 2", hex2);

	/* same size, never checked before */
	cleanup_free char *tmp = tmp_with("corrupt me 1");
	assert_int_equal(ib_store_commit(tmp, hex1, "o", NULL, &err), 0);
	cleanup_free char *path = ib_store_path(hex1, &err);
	corrupt(path, "corrupt me 9");
	expect_corrupt(hex1, path);

	/* checked (and remembered) first, then changed: the change is seen */
	cleanup_free char *tmp2 = tmp_with("corrupt me 2");
	assert_int_equal(ib_store_commit(tmp2, hex2, "o", NULL, &err), 0);
	cleanup_free char *path2 = ib_store_path(hex2, &err);
	assert_int_equal(ib_store_check(hex2, NULL, &err), 1);
	corrupt(path2, "corrupt me 2, more");
	expect_corrupt(hex2, path2);

	/* replaced by another file (a new inode) with the wrong bytes */
	assert_int_equal(unlink(path2), 0);
	cleanup_free char *tmp3 = tmp_with("abc");
	assert_int_equal(rename(tmp3, path2), 0);
	expect_corrupt(hex2, path2);
}

/* What is not a regular file under an entry's name is never used. */
static void test_check_not_a_file(void **state)
{
	ib_error_t err = NULL;
	cleanup_free char *path = ib_store_path(ABC_HEX, &err);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_false(ib_store_has(ABC_HEX));
	assert_int_equal(ib_store_check(ABC_HEX, NULL, &err), -1);
	assert_non_null(strstr(err->msg, "not a regular file"));
	ib_error_free(&err);
	assert_int_equal(rmdir(path), 0);

	/* a link to a file with the right bytes is still refused (O_NOFOLLOW):
	 * the store's entries are its own files */
	char target[] = "/tmp/ib-store-unit-target.XXXXXX";
	int fd = mkstemp(target);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "abc", 3), 3);
	close(fd);
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(ib_store_check(ABC_HEX, NULL, &err), -1);
	assert_non_null(strstr(err->msg, "delete it"));
	ib_error_free(&err);
	unlink(target);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_valid_digest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_and_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_not_a_file, setup, teardown),
	};
	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
