/* The shared ccache's URL parser and request filter (ccremote.c): what a
 * stage may send through the socket, byte by byte and in one piece. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ccremote.h"
#include "util.h"

static void test_parse(void **state)
{
	struct ib_ccremote_target t;
	ib_error_t err = NULL;
	assert_int_equal(ib_ccremote_parse("redis://me:s3cret@cache.example:7000/3|connect-timeout=200|read-only", &t, &err), 0);
	assert_string_equal(t.host, "cache.example");
	assert_string_equal(t.port, "7000");
	assert_string_equal(t.user, "me");
	assert_string_equal(t.password, "s3cret");
	assert_string_equal(t.db, "3");
	assert_string_equal(t.attrs, "|connect-timeout=200");
	assert_null(strstr(t.shown, "s3cret"));
	ib_ccremote_target_free(&t);

	assert_int_equal(ib_ccremote_parse("redis://:pw@10.0.0.1", &t, &err), 0);
	assert_null(t.user);
	assert_string_equal(t.password, "pw");
	assert_string_equal(t.port, "6379");
	assert_string_equal(t.shown, "redis://***@10.0.0.1:6379");
	ib_ccremote_target_free(&t);

	assert_int_equal(ib_ccremote_parse("redis+unix:/run/redis/sock?db=2", &t, &err), 0);
	assert_string_equal(t.path, "/run/redis/sock");
	assert_string_equal(t.db, "2");
	assert_null(t.host);
	ib_ccremote_target_free(&t);

	const char *bad[] = { "http://cache:8080/", "file:/srv/ccache", "redis://", "redis://h:port",
			      "redis+unix:relative", "redis://h|shards=a,b", "redis://:hunter2@h/x" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(ib_ccremote_parse(bad[i], &t, &err), -1);
		assert_non_null(err);
		assert_null(strstr(err->msg, "hunter2"));
		ib_error_free(&err);
	}
}

/* Feeds S whole and then byte by byte; both must agree. Returns the output
 * (or NULL when refused). */
static char *feed_n(const char *s, size_t n, bool writable)
{
	char *results[2] = { NULL, NULL };
	for (int bytewise = 0; bytewise < 2; bytewise++) {
		struct ib_ccremote_filter f;
		ib_ccremote_filter_init(&f, writable);
		struct ib_buf out = { 0 };
		ib_buf_adds(&out, "");
		int rc = 0;
		if (bytewise) {
			for (size_t i = 0; i < n && rc == 0; i++)
				rc = ib_ccremote_filter_feed(&f, s + i, 1, &out);
		} else {
			rc = ib_ccremote_filter_feed(&f, s, n, &out);
		}
		if (rc < 0) {
			assert_non_null(f.refused);
			ib_buf_free(&out);
		} else {
			results[bytewise] = ib_buf_steal(&out);
		}
		ib_ccremote_filter_free(&f);
	}
	if (results[0] == NULL || results[1] == NULL) {
		assert_null(results[0]);
		assert_null(results[1]);
		return NULL;
	}
	assert_string_equal(results[0], results[1]);
	free(results[1]);
	return results[0];
}

static char *feed(const char *s, bool writable)
{
	return feed_n(s, strlen(s), writable);
}

#define GET "*2\r\n$3\r\nGET\r\n$10\r\nccache:abc\r\n"
#define SET "*3\r\n$3\r\nset\r\n$10\r\nccache:abc\r\n$5\r\nhello\r\n"

static void test_filter(void **state)
{
	char *o = feed(GET GET "*1\r\n$4\r\nPING\r\n", false);
	assert_string_equal(o, GET GET "*1\r\n$4\r\nPING\r\n");
	free(o);
	o = feed(GET SET, true);
	assert_string_equal(o, GET SET);
	free(o);

	const char *refused_ro[] = {
		SET,
		"*2\r\n$3\r\nDEL\r\n$10\r\nccache:abc\r\n",
		"*1\r\n$8\r\nFLUSHALL\r\n",
		"FLUSHALL\r\n",
		"*2\r\n$3\r\nGET\r\n$6\r\nsecret\r\n",
		"*3\r\n$3\r\nGET\r\n$10\r\nccache:abc\r\n$1\r\nx\r\n",
		"*2\r\n$4\r\nKEYS\r\n$8\r\nccache:*\r\n",
		"*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n",
		"*2\r\n$3\r\nGET\r\n$999\r\nccache:",
	};
	for (size_t i = 0; i < sizeof(refused_ro) / sizeof(refused_ro[0]); i++)
		assert_null(feed(refused_ro[i], false));
	static const char nul[] = "*2\r\n$3\r\nGET\r\n$11\r\nccache:a\0bc\r\n";
	assert_null(feed_n(nul, sizeof(nul) - 1, false));
	/* Writing allows SET and DEL, nothing else. */
	assert_null(feed("*1\r\n$8\r\nFLUSHALL\r\n", true));
	assert_null(feed("*3\r\n$3\r\nSET\r\n$6\r\nsecret\r\n$1\r\nx\r\n", true));

	/* A refused command after an allowed one: the allowed one went out, no
	 * byte of the refused one did. */
	struct ib_ccremote_filter f;
	ib_ccremote_filter_init(&f, false);
	struct ib_buf out = { 0 };
	assert_int_equal(ib_ccremote_filter_feed(&f, GET SET, strlen(GET SET), &out), -1);
	assert_int_equal(out.len, strlen(GET));
	assert_memory_equal(out.s, GET, strlen(GET));
	ib_buf_free(&out);
	ib_ccremote_filter_free(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_filter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
