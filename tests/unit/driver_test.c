/* ld.so.cache parser (both formats, hostile input), driver version order and
 * GPU architecture coverage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "driver.h"
#include "version.h"
#include "util.h"

#define X8664 0x0303	/* FLAG_ELF_LIBC6 | FLAG_X8664_LIB64 */

struct buf {
	unsigned char d[4096];
	size_t n;
};
static void put(struct buf *b, const void *p, size_t n)
{
	memcpy(b->d + b->n, p, n);
	b->n += n;
}
static void put32(struct buf *b, uint32_t v) { put(b, &v, 4); }
static void put64(struct buf *b, uint64_t v) { put(b, &v, 8); }

static const char *const keys[] = { "libcuda.so.1", "libc.so.6" };
static const char *const paths[] = { "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/lib/x86_64-linux-gnu/libc.so.6" };

/* The new table at B's current end; string offsets count from its header. */
static void put_new(struct buf *b)
{
	size_t start = b->n;
	put(b, "glibc-ld.so.cache1.1", 20);
	put32(b, 2);
	size_t strings = 48 + 2 * 24;
	size_t off[4], o = strings;
	for (int i = 0; i < 2; i++) {
		off[2 * i] = o;
		o += strlen(keys[i]) + 1;
		off[2 * i + 1] = o;
		o += strlen(paths[i]) + 1;
	}
	put32(b, (uint32_t)(o - strings));
	unsigned char flags[4] = { 2, 0, 0, 0 };	/* little endian */
	put(b, flags, 4);
	put32(b, 0);
	put32(b, 0), put32(b, 0), put32(b, 0);
	for (int i = 0; i < 2; i++) {
		put32(b, X8664);
		put32(b, (uint32_t)off[2 * i]);
		put32(b, (uint32_t)off[2 * i + 1]);
		put32(b, 0);
		put64(b, 0);
	}
	assert_int_equal(b->n - start, strings);
	for (int i = 0; i < 2; i++) {
		put(b, keys[i], strlen(keys[i]) + 1);
		put(b, paths[i], strlen(paths[i]) + 1);
	}
}

/* The old table; string offsets count from the end of its entries. */
static void put_old(struct buf *b, bool with_new)
{
	put(b, "ld.so-1.7.0", 11);
	put(b, "\0", 1);
	put32(b, 2);
	size_t o = 0, off[4];
	for (int i = 0; i < 2; i++) {
		off[2 * i] = o;
		o += strlen(keys[i]) + 1;
		off[2 * i + 1] = o;
		o += strlen(paths[i]) + 1;
	}
	for (int i = 0; i < 2; i++) {
		put32(b, X8664);
		put32(b, (uint32_t)off[2 * i]);
		put32(b, (uint32_t)off[2 * i + 1]);
	}
	if (with_new) {
		while (b->n % 8)
			put(b, "\0", 1);
		put_new(b);
		return;
	}
	for (int i = 0; i < 2; i++) {
		put(b, keys[i], strlen(keys[i]) + 1);
		put(b, paths[i], strlen(paths[i]) + 1);
	}
}

static void expect_two(const struct buf *b)
{
	struct ib_ldcache c = { 0 };
	ib_error_t err = NULL;
	assert_int_equal(ib_ldcache_parse(b->d, b->n, &c, &err), 0);
	assert_int_equal(c.n, 2);
	for (int i = 0; i < 2; i++) {
		assert_string_equal(c.entries[i].key, keys[i]);
		assert_string_equal(c.entries[i].path, paths[i]);
		assert_true(ib_ldcache_native(c.entries[i].flags));
	}
	ib_ldcache_free(&c);
}

static void test_new_format(void **state)
{
	(void)state;
	struct buf b = { .n = 0 };
	put_new(&b);
	expect_two(&b);
}

static void test_old_format(void **state)
{
	(void)state;
	struct buf b = { .n = 0 };
	put_old(&b, false);
	expect_two(&b);
}

static void test_old_plus_new(void **state)
{
	(void)state;
	struct buf b = { .n = 0 };
	put_old(&b, true);
	expect_two(&b);
}

static void test_hostile(void **state)
{
	(void)state;
	struct buf b = { .n = 0 };
	put_new(&b);
	ib_error_t err = NULL;
	struct ib_ldcache c = { 0 };
	/* every truncation fails cleanly or parses a prefix-free result */
	for (size_t n = 0; n < b.n; n++) {
		int rc = ib_ldcache_parse(b.d, n, &c, &err);
		assert_true(rc < 0);
		ib_error_free(&err);
	}
	/* an offset pointing past the end */
	struct buf bad = b;
	uint32_t huge = 0x7fffffff;
	memcpy(bad.d + 48 + 4, &huge, 4);
	assert_true(ib_ldcache_parse(bad.d, bad.n, &c, &err) < 0);
	ib_error_free(&err);
	/* an entry count that cannot fit */
	bad = b;
	memcpy(bad.d + 20, &huge, 4);
	assert_true(ib_ldcache_parse(bad.d, bad.n, &c, &err) < 0);
	ib_error_free(&err);
	/* a string without its NUL at the very end */
	bad = b;
	bad.n--;
	assert_true(ib_ldcache_parse(bad.d, bad.n, &c, &err) < 0);
	ib_error_free(&err);
	/* old format with a huge count */
	struct buf old = { .n = 0 };
	put_old(&old, false);
	memcpy(old.d + 12, &huge, 4);
	assert_true(ib_ldcache_parse(old.d, old.n, &c, &err) < 0);
	ib_error_free(&err);
	assert_true(ib_ldcache_parse("garbage", 7, &c, &err) < 0);
	ib_error_free(&err);
}

static void test_host_cache(void **state)
{
	(void)state;
	size_t len = 0;
	ib_error_t err = NULL;
	char *data = ib_read_file("/etc/ld.so.cache", &len, &err);
	if (data == NULL) {
		ib_error_free(&err);
		skip();
	}
	struct ib_ldcache c = { 0 };
	assert_int_equal(ib_ldcache_parse(data, len, &c, &err), 0);
	bool libc = false;
	for (size_t i = 0; i < c.n; i++)
		libc |= !strcmp(c.entries[i].key, "libc.so.6") && ib_ldcache_native(c.entries[i].flags);
	assert_true(libc);
	ib_ldcache_free(&c);
	free(data);
}

static void test_version_compare(void **state)
{
	(void)state;
	assert_true(ib_version_cmp("580.159.04", "410.48") > 0);
	assert_true(ib_version_cmp("470.82.01", "525.60.13") < 0);
	assert_true(ib_version_cmp("525.60.13", "525.60.13") == 0);
	assert_true(ib_version_cmp("525.60", "525.60.13") < 0);
	assert_true(ib_version_cmp("450.80.02", "450.8") > 0);
}

static void test_archs(void **state)
{
	(void)state;
	struct ib_gpu h100 = { .index = 0, .major = 9, .minor = 0, .name = "H100" };
	struct ib_gpu p40 = { .index = 0, .major = 6, .minor = 1, .name = "P40" };
	struct ib_gpu m60 = { .index = 0, .major = 5, .minor = 2, .name = "M60" };
	const char *old[] = { "5.0", "6.1" };
	ib_error_t err = NULL;
	assert_true(ib_driver_check_archs(&h100, 1, old, 2, false, &err) < 0);
	assert_non_null(strstr(err->msg, "this image was compiled for sm_50, sm_61; this GPU is sm_90"));
	ib_error_free(&err);
	assert_int_equal(ib_driver_check_archs(&p40, 1, old, 2, false, &err), 0);
	assert_int_equal(ib_driver_check_archs(&m60, 1, old, 2, false, &err), 0);
	assert_int_equal(ib_driver_check_archs(&h100, 1, old, 2, true, &err), 0);
	const char *ptx[] = { "5.0", "6.1+PTX" };
	assert_int_equal(ib_driver_check_archs(&h100, 1, ptx, 2, false, &err), 0);
	const char *exact[] = { "9.0a" };
	struct ib_gpu b200 = { .index = 1, .major = 10, .minor = 0, .name = "B200" };
	assert_int_equal(ib_driver_check_archs(&h100, 1, exact, 1, false, &err), 0);
	assert_true(ib_driver_check_archs(&b200, 1, exact, 1, false, &err) < 0);
	ib_error_free(&err);
	const char *junk[] = { "sixty-one" };
	assert_true(ib_driver_check_archs(&h100, 1, junk, 1, false, &err) < 0);
	ib_error_free(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_format),	cmocka_unit_test(test_old_format),
		cmocka_unit_test(test_old_plus_new),	cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_host_cache),	cmocka_unit_test(test_version_compare),
		cmocka_unit_test(test_archs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
