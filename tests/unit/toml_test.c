/* Unit tests for builder/toml.c: positions, lookup and the exact wording of
 * errors, which manifest errors build on. The conformance suite
 * (tests/toml/run-toml-test.py) covers the grammar itself. TAP output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "toml.h"
#include "util.h"

static struct ib_toml_value *parse_ok(const char *text)
{
	ib_error_t err = NULL;
	struct ib_toml_value *doc = ib_toml_parse(text, strlen(text), "t.toml", &err);
	if (doc == NULL)
		fail_msg("unexpected error: %s", err->msg);
	assert_null(err);
	return doc;
}

/* Parses TEXT, which must fail, and returns the message (caller frees). */
static char *parse_err(const char *text)
{
	ib_error_t err = NULL;
	struct ib_toml_value *doc = ib_toml_parse(text, strlen(text), "t.toml", &err);
	if (doc != NULL) {
		ib_toml_free(doc);
		fail_msg("accepted invalid input: %s", text);
	}
	assert_non_null(err);
	assert_int_equal(err->exit_code, IB_EXIT_USAGE);
	char *msg = xstrdup(err->msg);
	ib_error_free(&err);
	assert_null(strchr(msg, '\n'));
	return msg;
}

static void assert_err(const char *text, const char *want)
{
	cleanup_free char *msg = parse_err(text);
	if (strncmp(msg, want, strlen(want)) != 0)
		fail_msg("message \"%s\" does not start with \"%s\"", msg, want);
}

static void test_scalar_positions(void **state)
{
	(void)state;
	struct ib_toml_value *doc = parse_ok("a = 1\n\n  b =   \"x\"\nc = [\n  true,\n  2.5 ]\n");
	const struct ib_toml_value *a = ib_toml_get(doc, "a");
	const struct ib_toml_value *b = ib_toml_get(doc, "b");
	const struct ib_toml_value *c = ib_toml_get(doc, "c");
	assert_non_null(a);
	assert_int_equal(a->line, 1);
	assert_int_equal(a->col, 5);
	assert_int_equal(b->line, 3);
	assert_int_equal(b->col, 9);
	assert_int_equal(c->type, IB_TOML_ARRAY);
	assert_int_equal(c->len, 2);
	assert_int_equal(c->items[0]->line, 5);
	assert_int_equal(c->items[0]->col, 3);
	assert_int_equal(c->items[1]->line, 6);
	assert_int_equal(c->items[1]->col, 3);
	ib_toml_free(doc);
}

static void test_table_positions(void **state)
{
	(void)state;
	struct ib_toml_value *doc = parse_ok("[server]\nport = 80\n[[stage]]\nname = \"a\"\n[[stage]]\nname = \"b\"\n");
	const struct ib_toml_value *server = ib_toml_get(doc, "server");
	assert_int_equal(server->type, IB_TOML_TABLE);
	assert_int_equal(server->line, 1);
	assert_int_equal(server->col, 2);
	const struct ib_toml_value *stage = ib_toml_get(doc, "stage");
	assert_int_equal(stage->type, IB_TOML_ARRAY);
	assert_int_equal(stage->len, 2);
	assert_int_equal(stage->items[1]->line, 5);
	assert_int_equal(stage->items[1]->col, 3);
	assert_string_equal(ib_toml_get(stage->items[1], "name")->u.str, "b");
	ib_toml_free(doc);
}

/* Columns count characters, not bytes, so editors agree with the message. */
static void test_columns_count_characters(void **state)
{
	(void)state;
	assert_err("k = \"\xc3\xa9\xe2\x82\xac\" x = 1\n", "t.toml:1:10: expected newline");
}

static void test_get(void **state)
{
	(void)state;
	struct ib_toml_value *doc = parse_ok("a.b.c = 1\n\"quoted key\" = 2\n[t]\nx = 3\n");
	const struct ib_toml_value *a = ib_toml_get(doc, "a");
	assert_non_null(a);
	const struct ib_toml_value *c = ib_toml_get(ib_toml_get(a, "b"), "c");
	assert_non_null(c);
	assert_int_equal(c->u.integer, 1);
	assert_int_equal(ib_toml_get(doc, "quoted key")->u.integer, 2);
	assert_null(ib_toml_get(doc, "missing"));
	assert_null(ib_toml_get(c, "x"));	/* not a table */
	assert_null(ib_toml_get(NULL, "x"));
	assert_string_equal(doc->keys[0], "a");
	assert_string_equal(doc->keys[1], "quoted key");
	assert_string_equal(doc->keys[2], "t");
	ib_toml_free(doc);
}

/* Past eight keys the table switches to a hash index; lookups must agree. */
static void test_get_many_keys(void **state)
{
	(void)state;
	struct ib_strv lines = { 0 };
	size_t total = 0;
	for (int i = 0; i < 500; i++) {
		ib_strv_push_owned(&lines, xasprintf("k%d = %d\n", i, i));
		total += strlen(lines.v[i]);
	}
	cleanup_free char *text = xmalloc(total + 1);
	text[0] = '\0';
	for (int i = 0; i < 500; i++)
		strcat(text, lines.v[i]);
	ib_strv_free(&lines);
	struct ib_toml_value *doc = parse_ok(text);
	assert_int_equal(doc->len, 500);
	for (int i = 0; i < 500; i++) {
		char key[16];
		snprintf(key, sizeof(key), "k%d", i);
		const struct ib_toml_value *v = ib_toml_get(doc, key);
		assert_non_null(v);
		assert_int_equal(v->u.integer, i);
		assert_int_equal(v->line, i + 1);
	}
	assert_null(ib_toml_get(doc, "k500"));
	ib_toml_free(doc);
	assert_err("k1 = 1\nk2 = 2\nk3 = 3\nk4 = 4\nk5 = 5\nk6 = 6\nk7 = 7\nk8 = 8\nk9 = 9\nk3 = 0\n",
		   "t.toml:10:1: duplicate key 'k3', first defined at 3:1");
}

static void test_error_format(void **state)
{
	(void)state;
	assert_err("a = 1\nb = \n", "t.toml:2:5: expected value, found newline");
	assert_err("a = 1\nb = tru\n", "t.toml:2:5: expected value");
	assert_err("x = [1 2]\n", "t.toml:1:8: expected ',' or ']' in the array opened at 1:5, found '2'");
	assert_err("s = \"abc\n", "t.toml:1:9: expected '\"' to close the string opened at 1:5, found newline");
	assert_err("d = 2023-02-29\n", "t.toml:1:13: expected day 01-28 for 2023-02, found 29");
	assert_err("n = 0x_1\n", "t.toml:1:5: expected a number, found '0x_1'");
	assert_err("n = 9223372036854775808\n", "t.toml:1:5: expected a number, found '9223372036854775808' (integer does not fit in 64 bits)");
}

static void test_redefinition_errors(void **state)
{
	(void)state;
	assert_err("[a]\nx = 1\n\n[a]\n", "t.toml:4:2: table [a] already defined at 1:2");
	assert_err("a = {b = 1}\n[a.c]\n", "t.toml:2:2: cannot extend inline table 'a' defined at 1:1");
	assert_err("a = {b = 1}\na.c = 2\n", "t.toml:2:1: cannot add keys to inline table 'a'");
	assert_err("[a.b.c]\n[a]\nb.c.d = 1\n", "t.toml:3:1: cannot add to table [a.b] (defined at 1:4) with a dotted key; add the key under a [a.b] header");
	assert_err("[s]\nx = {y = 1, y = 2}\n", "t.toml:2:13: duplicate key 's.x.y', first defined at 2:6");
	assert_err("a = [1]\n[[a]]\n", "t.toml:2:3: cannot extend 'a', an array written as a value at 1:5");
	assert_err("a = 1\n[a.b]\n", "t.toml:2:2: expected 'a' to be a table, found an integer defined at 1:5");
}

static void test_depth_limit(void **state)
{
	(void)state;
	enum { N = 1000 };
	cleanup_free char *deep = xmalloc(2 * N + 8);
	memcpy(deep, "a = ", 4);
	memset(deep + 4, '[', N);
	memset(deep + 4 + N, ']', N);
	deep[4 + 2 * N] = '\0';
	cleanup_free char *msg = parse_err(deep);
	assert_non_null(strstr(msg, "expected at most 128 levels of nesting"));
	assert_int_equal(strncmp(msg, "t.toml:1:", 9), 0);
	/* 128 levels are fine. */
	memset(deep + 4, '[', 128);
	memset(deep + 4 + 128, ']', 128);
	deep[4 + 256] = '\0';
	ib_toml_free(parse_ok(deep));
}

/* The input is counted, not NUL-terminated: bytes past LEN must be ignored. */
static void test_counted_input(void **state)
{
	(void)state;
	const char text[] = "a = 12garbage";
	ib_error_t err = NULL;
	struct ib_toml_value *doc = ib_toml_parse(text, 6, "t.toml", &err);
	assert_non_null(doc);
	assert_int_equal(ib_toml_get(doc, "a")->u.integer, 12);
	ib_toml_free(doc);
	doc = ib_toml_parse("", 0, "t.toml", &err);
	assert_non_null(doc);
	assert_int_equal(doc->len, 0);
	ib_toml_free(doc);
}

static void test_string_values(void **state)
{
	(void)state;
	struct ib_toml_value *doc = parse_ok("a = \"x\\u0000y\\t\"\nb = '''\nline1\r\nline2'''\nc = \"\"\"a \\\n   b\"\"\"\n\"\\u0000\" = 1\n");
	const struct ib_toml_value *a = ib_toml_get(doc, "a");
	assert_int_equal(a->len, 4);
	assert_memory_equal(a->u.str, "x\0y\t", 4);
	assert_string_equal(ib_toml_get(doc, "b")->u.str, "line1\nline2");
	assert_string_equal(ib_toml_get(doc, "c")->u.str, "a b");
	assert_int_equal(ib_toml_key_len(doc, 3), 1);
	assert_int_equal(doc->keys[3][0], '\0');
	assert_int_equal(ib_toml_key_len(doc, 99), 0);
	ib_toml_free(doc);
}

static void test_numbers_and_dates(void **state)
{
	(void)state;
	struct ib_toml_value *doc = parse_ok("i = -9223372036854775808\nh = 0xDEAD_beef\nf = -1_0.5e-1\nn = -nan\n"
					     "d = 1979-05-27 07:32:00.50z\nt = 07:32:00\nl = 2024-02-29\n");
	assert_int_equal(ib_toml_get(doc, "i")->u.integer, INT64_MIN);
	assert_int_equal(ib_toml_get(doc, "h")->u.integer, 0xdeadbeef);
	assert_true(ib_toml_get(doc, "f")->u.real == -1.05);
	assert_true(isnan(ib_toml_get(doc, "n")->u.real));
	const struct ib_toml_value *d = ib_toml_get(doc, "d");
	assert_int_equal(d->type, IB_TOML_DATETIME);
	assert_string_equal(d->u.str, "1979-05-27T07:32:00.50Z");
	assert_int_equal(ib_toml_get(doc, "t")->type, IB_TOML_TIME_LOCAL);
	assert_int_equal(ib_toml_get(doc, "l")->type, IB_TOML_DATE_LOCAL);
	ib_toml_free(doc);
}

static void test_utf8_checks(void **state)
{
	(void)state;
	assert_err("a = 1\nb = \"\xff\"\n", "t.toml:2:6: expected UTF-8 text, found byte 0xFF");
	/* An encoded surrogate (U+D800) is not UTF-8. */
	assert_err("b = \"\xed\xa0\x80\"\n", "t.toml:1:6: expected UTF-8 text");
	assert_err("b = 1 # \x01\n", "t.toml:1:9: expected comment text");
	ib_toml_free(parse_ok("\xef\xbb\xbf" "a = 1\n"));
}

static void test_type_names(void **state)
{
	(void)state;
	assert_string_equal(ib_toml_type_name(IB_TOML_TABLE), "table");
	assert_string_equal(ib_toml_type_name(IB_TOML_BOOL), "boolean");
	assert_string_equal(ib_toml_type_name(IB_TOML_DATETIME), "offset date-time");
	assert_string_equal(ib_toml_type_name(IB_TOML_TIME_LOCAL), "local time");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scalar_positions),
		cmocka_unit_test(test_table_positions),
		cmocka_unit_test(test_columns_count_characters),
		cmocka_unit_test(test_get),
		cmocka_unit_test(test_get_many_keys),
		cmocka_unit_test(test_error_format),
		cmocka_unit_test(test_redefinition_errors),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_counted_input),
		cmocka_unit_test(test_string_values),
		cmocka_unit_test(test_numbers_and_dates),
		cmocka_unit_test(test_utf8_checks),
		cmocka_unit_test(test_type_names),
	};
	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests_name("toml", tests, NULL, NULL);
}
