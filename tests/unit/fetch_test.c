/* Unit tests for builder/fetch.c and builder/store.c without a network:
 * file:// downloads, the store's invariant (only verified bytes ever get a
 * name a caller can be handed) and mirror:// resolution. TAP output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "fetch.h"
#include "manifest.h"
#include "store.h"
#include "util.h"

static char tmpdir[] = "/tmp/imgbuild-fetch-test.XXXXXX";
static char *input_path, *input_url;
static char input_sha[IB_SHA256_HEX_LEN + 1];
static const char wrong_sha[] = "0000000000000000000000000000000000000000000000000000000000000000";

static int setup(void **state)
{
	(void)state;
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	cleanup_free char *cache = xasprintf("%s/cache", tmpdir);
	setenv("IMGBUILD_CACHE", cache, 1);
	setenv("IMGBUILD_FETCH_BACKOFF_MS", "1", 1);
	input_path = xasprintf("%s/input.bin", tmpdir);
	char data[5000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7);
	ib_error_t err = NULL;
	if (ib_write_file_atomic(input_path, data, sizeof(data), 0644, &err) < 0)
		return -1;
	if (ib_sha256_file(input_path, input_sha, &err) < 0)
		return -1;
	input_url = xasprintf("file://%s", input_path);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cleanup_free char *cmd = xasprintf("rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		return -1;
	free(input_path);
	free(input_url);
	return 0;
}

/* Entries of the store folder other than "." and "..". */
static size_t store_entries(void)
{
	ib_error_t err = NULL;
	cleanup_free char *dir = ib_store_dir(&err);
	assert_non_null(dir);
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void test_valid_digest(void **state)
{
	(void)state;
	assert_true(ib_store_valid_digest(input_sha));
	assert_false(ib_store_valid_digest("abc"));
	assert_false(ib_store_valid_digest("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
	assert_false(ib_store_valid_digest(NULL));
}

/* The security property: a download that fails its check is never handed out
 * and leaves nothing under any name in the store. */
static void test_mismatch_gives_no_path(void **state)
{
	(void)state;
	size_t before = store_entries();
	ib_error_t err = NULL;
	char *path = NULL;
	assert_int_equal(ib_fetch_file(input_url, NULL, wrong_sha, false, &path, &err), -1);
	assert_null(path);
	assert_non_null(err);
	assert_non_null(strstr(err->msg, wrong_sha));
	assert_non_null(strstr(err->msg, input_sha));
	assert_non_null(strstr(err->msg, input_url));
	ib_error_free(&err);
	assert_false(ib_store_has(wrong_sha));
	assert_false(ib_store_has(input_sha));
	assert_int_equal(store_entries(), before);
	struct ib_download d = { .name = "x", .url = input_url, .sha256 = (char *)wrong_sha };
	assert_null(ib_fetch_cached_path(&d));
}

static void test_good_file_url(void **state)
{
	(void)state;
	ib_error_t err = NULL;
	cleanup_free char *path = NULL;
	const char *mirrors[] = { input_url, NULL };
	/* A missing file first, then the good one as a mirror. */
	cleanup_free char *missing = xasprintf("file://%s/missing.bin", tmpdir);
	if (ib_fetch_file(missing, mirrors, input_sha, false, &path, &err) < 0)
		fail_msg("%s", err->msg);
	assert_non_null(path);
	char got[IB_SHA256_HEX_LEN + 1];
	assert_int_equal(ib_sha256_file(path, got, &err), 0);
	assert_string_equal(got, input_sha);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0444);
	assert_true(ib_store_has(input_sha));
	struct ib_download d = { .name = "x", .url = input_url, .sha256 = input_sha };
	cleanup_free char *cached = ib_fetch_cached_path(&d);
	assert_string_equal(cached, path);
	/* Offline, the cached entry is enough. */
	cleanup_free char *again = NULL;
	assert_int_equal(ib_fetch_file(missing, NULL, input_sha, true, &again, &err), 0);
	assert_string_equal(again, path);
}

static void test_offline_missing(void **state)
{
	(void)state;
	ib_error_t err = NULL;
	char *path = NULL;
	const char other[] = "1111111111111111111111111111111111111111111111111111111111111111";
	/* Nothing listens there: --offline must refuse before any attempt. */
	const char url[] = "http://127.0.0.1:9/input.bin";
	assert_int_equal(ib_fetch_file(url, NULL, other, true, &path, &err), -1);
	assert_null(path);
	assert_non_null(strstr(err->msg, "not in the cache"));
	assert_non_null(strstr(err->msg, url));
	ib_error_free(&err);
}

/* A file:// input (a project file) needs no network: --offline fetches it. */
static void test_offline_file_url(void **state)
{
	(void)state;
	cleanup_free char *local = xasprintf("%s/local.bin", tmpdir);
	ib_error_t err = NULL;
	assert_int_equal(ib_write_file_atomic(local, "local\n", 6, 0644, &err), 0);
	char sha[IB_SHA256_HEX_LEN + 1];
	assert_int_equal(ib_sha256_file(local, sha, &err), 0);
	assert_false(ib_store_has(sha));
	cleanup_free char *url = xasprintf("file://%s", local);
	cleanup_free char *path = NULL;
	assert_int_equal(ib_fetch_file(url, NULL, sha, true, &path, &err), 0);
	assert_non_null(path);
	assert_true(ib_store_has(sha));
}

static void test_commit_mismatch_removes_tmp(void **state)
{
	(void)state;
	ib_error_t err = NULL;
	cleanup_free char *tmp = NULL;
	int fd = ib_store_tmpfile(&tmp, &err);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "abc", 3), 3);
	close(fd);
	char actual[IB_SHA256_HEX_LEN + 1];
	assert_int_equal(ib_store_commit(tmp, wrong_sha, "test", actual, &err), IB_STORE_MISMATCH);
	ib_error_free(&err);
	assert_false(ib_path_exists(tmp));
	assert_false(ib_store_has(actual));
}

static void test_resolve_mirror(void **state)
{
	(void)state;
	struct ib_manifest m = { 0 };
	m.base.distro = "ubuntu";
	ib_strv_push(&m.base.mirrors, "http://one.invalid/ubuntu/");
	ib_strv_push(&m.base.mirrors, "http://two.invalid/ubuntu");
	struct ib_strv out = { 0 };
	ib_error_t err = NULL;
	assert_int_equal(ib_fetch_resolve_url(&m, "mirror://ubuntu/pool/x.deb", &out, &err), 0);
	assert_int_equal(out.n, 2);
	assert_string_equal(out.v[0], "http://one.invalid/ubuntu/pool/x.deb");
	assert_string_equal(out.v[1], "http://two.invalid/ubuntu/pool/x.deb");
	ib_strv_free(&out);
	/* No ubuntu mirror when the manifest's distro is debian. */
	m.base.distro = "debian";
	assert_int_equal(ib_fetch_resolve_url(&m, "mirror://ubuntu/pool/x.deb", &out, &err), -1);
	ib_error_free(&err);
	assert_int_equal(ib_fetch_resolve_url(&m, "ftp://x.invalid/y", &out, &err), -1);
	assert_int_equal(err->exit_code, IB_EXIT_USAGE);
	ib_error_free(&err);
	assert_int_equal(ib_fetch_resolve_url(&m, "mirror://gentoo/x", &out, &err), -1);
	ib_error_free(&err);
	assert_int_equal(out.n, 0);
	ib_strv_free(&out);
	ib_strv_free(&m.base.mirrors);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_digest),
		cmocka_unit_test(test_mismatch_gives_no_path),
		cmocka_unit_test(test_good_file_url),
		cmocka_unit_test(test_offline_missing),
		cmocka_unit_test(test_offline_file_url),
		cmocka_unit_test(test_commit_mismatch_removes_tmp),
		cmocka_unit_test(test_resolve_mirror),
	};
	return cmocka_run_group_tests_name("fetch", tests, setup, teardown);
}
