/* Unit tests for builder/imgmeta.c: the listing format (lines written out
 * by hand from the format in imgmeta.h, not copied from the code's output;
 * malformed lines refused), facts.toml's writer (reserved and repeated keys
 * refused), its reader (top level and [stack], the three ways archs are
 * written, ptx_jit), and the names allowed under .imgbuild/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgmeta.h"
#include "manifest.h"	/* struct ib_kv */
#include "sandbox.h"
#include "util.h"

/* sha256("abc"), FIPS 180-2 appendix B.1 */
#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

/* ---- listing: writing ---- */

static void expect_line(const struct ib_listing_entry *e, const char *want)
{
	cleanup_buf struct ib_buf b = { 0 };
	ib_listing_append(&b, e);
	ib_buf_addc(&b, '\0');
	assert_string_equal(b.s, want);
}

static void test_listing_append(void **state)
{
	struct ib_listing_entry e = { .type = 'f', .mode = 0100644, .uid = 0, .gid = 0, .size = 3 };
	memcpy(e.sha256, ABC_HEX, sizeof(e.sha256));
	/* ' ' is 040 */
	e.path = "./a b";
	expect_line(&e, "f 0644 0 0 3 " ABC_HEX " ./a\\040b -\n");

	/* the root; a sticky folder with a high owner */
	struct ib_listing_entry d = { .type = 'd', .mode = 041777, .uid = 65534, .gid = 4294967294LL, .path = "." };
	expect_line(&d, "d 1777 65534 4294967294 0 - . -\n");

	/* a link whose target is literally "-" must not read as "no target" */
	struct ib_listing_entry l = { .type = 'l', .mode = 0777, .path = "./lnk", .target = "-" };
	expect_line(&l, "l 0777 0 0 0 - ./lnk \\055\n");

	/* '\\' 134, '\n' 012, '\t' 011, DEL 177; bytes >= 0x80 stay as they are */
	struct ib_listing_entry h = { .type = 'h', .mode = 04755, .uid = 1000, .gid = 100,
				      .path = "./x\\y\nz", .target = "./t\tu\x7f\xc3\xa9" };
	expect_line(&h, "h 4755 1000 100 0 - ./x\\134y\\012z ./t\\011u\\177\xc3\xa9\n");
}

/* ---- listing: parsing ---- */

static void parse_ok(const char *line, struct ib_listing_entry *out)
{
	ib_error_t err = NULL;
	if (ib_listing_parse_line(line, strlen(line), out, &err) < 0)
		fail_msg("'%s' refused: %s", line, err->msg);
}

static void test_listing_parse(void **state)
{
	struct ib_listing_entry e;
	parse_ok("f 0644 0 0 3 " ABC_HEX " ./a\\040b -", &e);
	assert_int_equal(e.type, 'f');
	assert_int_equal(e.mode, 0644);
	assert_int_equal(e.size, 3);
	assert_string_equal(e.sha256, ABC_HEX);
	assert_string_equal(e.path, "./a b");
	assert_null(e.target);
	ib_listing_entry_free(&e);

	parse_ok("l 0777 0 0 0 - ./lnk \\055", &e);
	assert_string_equal(e.target, "-");
	assert_int_equal(e.sha256[0], '\0');
	ib_listing_entry_free(&e);

	parse_ok("h 4755 1000 100 0 - ./x\\134y\\012z ./t\\011u\\177\xc3\xa9", &e);
	assert_int_equal(e.mode, 04755);
	assert_int_equal(e.uid, 1000);
	assert_int_equal(e.gid, 100);
	assert_string_equal(e.path, "./x\\y\nz");
	assert_string_equal(e.target, "./t\tu\x7f\xc3\xa9");
	ib_listing_entry_free(&e);

	parse_ok("d 1777 65534 4294967294 0 - . -", &e);
	assert_int_equal(e.gid, 4294967294LL);
	ib_listing_entry_free(&e);

	/* The largest size there is, and leading zeros. */
	parse_ok("f 0644 00 0 9223372036854775807 " ABC_HEX " ./big -", &e);
	assert_true(e.size == INT64_MAX);
	assert_int_equal(e.uid, 0);
	ib_listing_entry_free(&e);
}

/* Every byte value in a name survives a write and a parse (but NUL, which
 * no path holds). */
static void test_listing_round_trip(void **state)
{
	char name[300];
	size_t n = 0;
	name[n++] = '.';
	name[n++] = '/';
	for (int c = 1; c < 256; c++)
		name[n++] = (char)c;
	name[n] = '\0';
	struct ib_listing_entry e = { .type = 'l', .mode = 0777, .path = name, .target = name };
	cleanup_buf struct ib_buf b = { 0 };
	ib_listing_append(&b, &e);
	assert_true(b.len > 0 && b.s[b.len - 1] == '\n');
	/* one line, 8 fields: no raw newline or space inside */
	assert_null(memchr(b.s, '\n', b.len - 1));
	size_t spaces = 0;
	for (size_t i = 0; i < b.len; i++)
		spaces += b.s[i] == ' ';
	assert_int_equal(spaces, 7);
	struct ib_listing_entry back;
	ib_error_t err = NULL;
	if (ib_listing_parse_line(b.s, b.len - 1, &back, &err) < 0)
		fail_msg("%s", err->msg);
	assert_string_equal(back.path, name);
	assert_string_equal(back.target, name);
	ib_listing_entry_free(&back);
}

static void parse_bad(const char *line, const char *why)
{
	struct ib_listing_entry e = { 0 };
	ib_error_t err = NULL;
	if (ib_listing_parse_line(line, strlen(line), &e, &err) == 0) {
		ib_listing_entry_free(&e);
		fail_msg("accepted: '%s'", line);
	}
	assert_non_null(err);
	if (strstr(err->msg, why) == NULL)
		fail_msg("'%s': message '%s' lacks '%s'", line, err->msg, why);
	ib_error_free(&err);
	assert_null(e.path);
	assert_null(e.target);
}

static void test_listing_bad_lines(void **state)
{
	parse_bad("f 0644 0 0 3 " ABC_HEX " ./a", "expected 8 fields");
	parse_bad("f 0644 0 0 3 " ABC_HEX " ./a - extra", "too many fields");
	parse_bad("", "expected 8 fields");
	parse_bad("x 0644 0 0 0 - ./a -", "bad type");
	parse_bad("ff 0644 0 0 0 - ./a -", "bad type");
	parse_bad("d 755 0 0 0 - ./a -", "bad mode");
	parse_bad("d 00755 0 0 0 - ./a -", "bad mode");
	parse_bad("d 0789 0 0 0 - ./a -", "bad mode");
	parse_bad("d -755 0 0 0 - ./a -", "bad mode");
	parse_bad("d \t755 0 0 0 - ./a -", "bad mode");
	parse_bad("d 0755 -1 0 0 - ./a -", "bad owner");
	parse_bad("d 0755 0 +1 0 - ./a -", "bad owner");
	parse_bad("d 0755 0 0 x - ./a -", "bad owner or size");
	parse_bad("d 0755 \t1 0 0 - ./a -", "bad owner");
	parse_bad("d 0755 0 0 99999999999999999999 - ./a -", "bad owner or size");
	parse_bad("f 0644 0 0 9223372036854775808 " ABC_HEX " ./a -", "bad owner or size");
	parse_bad("d 0755 0 0 000000000000000000001 - ./a -", "bad owner or size");
	parse_bad("d 0755 0 0 - - ./a -", "bad owner or size");
	parse_bad("d 0755 0 1: 0 - ./a -", "bad owner");
	parse_bad("f 0644 0 0 3 " ABC_HEX "0 ./a -", "bad sha256");
	parse_bad("f 0644 0 0 3 BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD ./a -", "bad sha256");
	parse_bad("f 0644 0 0 3 - ./a -", "missing for a file");
	parse_bad("d 0755 0 0 0 " ABC_HEX " ./a -", "sha256 given for a non-file");
	parse_bad("d 0755 0 0 0 - ./a\\09 -", "bad path escape");
	parse_bad("d 0755 0 0 0 - ./a\\000 -", "bad path escape");
	parse_bad("d 0755 0 0 0 - ./a\\400 -", "bad path escape");
	parse_bad("d 0755 0 0 0 - ./a\\05 -", "bad path escape");
	parse_bad("d 0755 0 0 0 - ./a\\ -", "bad path escape");
	parse_bad("d 0755 0 0 0 -  -", "bad path");
	parse_bad("d 0755 0 0 0 - ./a\tb -", "bad path");
	parse_bad("l 0777 0 0 0 - ./a \\1", "bad target escape");
	parse_bad("l 0777 0 0 0 - ./a -", "missing for a link");
	parse_bad("h 0644 0 0 0 - ./a -", "missing for a link");
	parse_bad("d 0755 0 0 0 - ./a ./b", "link target given for a non-link");
	/* a raw NUL inside a field would cut the name short */
	static const char nul[] = "d 0755 0 0 0 - ./a\0b -";
	struct ib_listing_entry e = { 0 };
	ib_error_t err = NULL;
	assert_true(ib_listing_parse_line(nul, sizeof(nul) - 1, &e, &err) < 0);
	ib_error_free(&err);
}

/* ---- facts.toml ---- */

static void test_facts_key_reserved(void **state)
{
	const char *reserved[] = { "name", "builder", "created", "archs", "", "a.b", "a b", "a=b", "\"q\"", "k\xc3\xa9", "[x]" };
	for (size_t i = 0; i < sizeof(reserved) / sizeof(*reserved); i++)
		if (!ib_facts_key_reserved(reserved[i]))
			fail_msg("'%s' is not reserved", reserved[i]);
	const char *free_keys[] = { "cuda", "min_driver", "ptx_jit", "my-key_2", "Name", "names" };
	for (size_t i = 0; i < sizeof(free_keys) / sizeof(*free_keys); i++)
		if (ib_facts_key_reserved(free_keys[i]))
			fail_msg("'%s' is reserved", free_keys[i]);
}

static void test_facts_write(void **state)
{
	const struct ib_kv facts[] = {
		{ .key = "cuda", .value = "10.2" },
		{ .key = "note", .value = "a\"b\\c\nd\x7f" },
		{ .key = "empty", .value = NULL },
	};
	const char *archs[] = { "5.0", "6.1+PTX", NULL };
	ib_error_t err = NULL;
	size_t len = 0;
	cleanup_free char *text = ib_facts_write("img \"1\"", 1577836800, facts, 3, archs, &len, &err);
	if (text == NULL)
		fail_msg("%s", err->msg);
	const char *want = "# written by imgbuild pack\n"
			   "name = \"img \\\"1\\\"\"\n"
			   "builder = \"imgbuild " IB_VERSION "\"\n"
			   "created = 1577836800\n"
			   "cuda = \"10.2\"\n"
			   "note = \"a\\\"b\\\\c\\u000ad\\u007f\"\n"
			   "empty = \"\"\n"
			   "archs = [\"5.0\", \"6.1+PTX\"]\n";
	assert_string_equal(text, want);
	assert_int_equal(len, strlen(want));

	/* what it wrote reads back */
	struct ib_facts f;
	if (ib_facts_parse(text, len, "facts.toml", &f, &err) < 0)
		fail_msg("%s", err->msg);
	assert_true(f.have_archs);
	assert_int_equal(f.archs.n, 2);
	assert_string_equal(f.archs.v[1], "6.1+PTX");
	ib_facts_free(&f);

	/* no archs: no archs key, and then a stage's archs fact is allowed */
	const struct ib_kv own_archs[] = { { .key = "archs", .value = "7.0" } };
	cleanup_free char *t2 = ib_facts_write("n", 0, own_archs, 1, NULL, &len, &err);
	if (t2 == NULL)
		fail_msg("%s", err->msg);
	assert_string_equal(t2, "# written by imgbuild pack\nname = \"n\"\nbuilder = \"imgbuild " IB_VERSION
				"\"\ncreated = 0\narchs = \"7.0\"\n");
}

static void write_refused(const struct ib_kv *facts, size_t n, const char *const *archs, const char *why)
{
	ib_error_t err = NULL;
	size_t len = 12345;
	char *text = ib_facts_write("n", 0, facts, n, archs, &len, &err);
	if (text) {
		free(text);
		fail_msg("accepted (%s)", why);
	}
	assert_non_null(err);
	assert_int_equal(err->exit_code, IB_EXIT_USAGE);
	if (strstr(err->msg, why) == NULL)
		fail_msg("message '%s' lacks '%s'", err->msg, why);
	ib_error_free(&err);
	assert_int_equal(len, 12345);	/* out-parameters only on success */
}

static void test_facts_write_refused(void **state)
{
	const char *archs[] = { "8.0", NULL };
	const struct ib_kv name[] = { { .key = "name", .value = "evil" } };
	write_refused(name, 1, NULL, "fact 'name'");
	const struct ib_kv created[] = { { .key = "cuda", .value = "1" }, { .key = "created", .value = "0" } };
	write_refused(created, 2, NULL, "fact 'created'");
	const struct ib_kv archs_twice[] = { { .key = "archs", .value = "7.0" } };
	write_refused(archs_twice, 1, archs, "fact 'archs'");
	/* a key with a dot or a newline would write a table or a second key */
	const struct ib_kv dotted[] = { { .key = "stack.min_driver", .value = "1" } };
	write_refused(dotted, 1, NULL, "not a plain key");
	const struct ib_kv nl[] = { { .key = "x = 1\nmin_driver", .value = "1" } };
	write_refused(nl, 1, NULL, "not a plain key");
	const struct ib_kv twice[] = { { .key = "cuda", .value = "1" }, { .key = "cuda", .value = "2" } };
	write_refused(twice, 2, NULL, "given twice");
}

static void facts_ok(const char *text, struct ib_facts *f)
{
	ib_error_t err = NULL;
	if (ib_facts_parse(text, strlen(text), "t/facts.toml", f, &err) < 0)
		fail_msg("%s", err->msg);
}

static void test_facts_parse(void **state)
{
	struct ib_facts f;
	facts_ok("name = \"x\"\n", &f);
	assert_null(f.min_driver);
	assert_false(f.have_archs);
	assert_int_equal(f.archs.n, 0);
	assert_false(f.ptx_jit);
	ib_facts_free(&f);

	/* the three separators TORCH_CUDA_ARCH_LIST is written with */
	facts_ok("min_driver = \"440.33\"\narchs = \"5.0;6.1+PTX 7.0,8.0\"\nptx_jit = true\n", &f);
	assert_string_equal(f.min_driver, "440.33");
	assert_true(f.have_archs);
	assert_int_equal(f.archs.n, 4);
	assert_string_equal(f.archs.v[0], "5.0");
	assert_string_equal(f.archs.v[1], "6.1+PTX");
	assert_string_equal(f.archs.v[2], "7.0");
	assert_string_equal(f.archs.v[3], "8.0");
	assert_true(f.ptx_jit);
	ib_facts_free(&f);

	/* under [stack]; ptx_jit as a string fact */
	facts_ok("name = \"x\"\n[stack]\nmin_driver = \"418.39\"\narchs = [\"3.7\", \"5.0 5.2\"]\nptx_jit = \"yes\"\n", &f);
	assert_string_equal(f.min_driver, "418.39");
	assert_int_equal(f.archs.n, 3);
	assert_string_equal(f.archs.v[2], "5.2");
	assert_true(f.ptx_jit);
	ib_facts_free(&f);

	/* the top level wins over [stack]; an empty archs is present but empty */
	facts_ok("min_driver = \"450.80.02\"\narchs = []\nptx_jit = \"no\"\n[stack]\nmin_driver = \"1\"\nptx_jit = true\n", &f);
	assert_string_equal(f.min_driver, "450.80.02");
	assert_true(f.have_archs);
	assert_int_equal(f.archs.n, 0);
	assert_false(f.ptx_jit);
	ib_facts_free(&f);

	/* an empty min_driver is no minimum */
	facts_ok("min_driver = \"\"\n", &f);
	assert_null(f.min_driver);
	ib_facts_free(&f);

	/* broken TOML: the error names the file and the line */
	ib_error_t err = NULL;
	const char *bad = "name = \"x\"\nmin_driver = 440.\n";
	assert_true(ib_facts_parse(bad, strlen(bad), "t/facts.toml", &f, &err) < 0);
	if (strstr(err->msg, "t/facts.toml") == NULL || strstr(err->msg, "2") == NULL)
		fail_msg("message lacks the file or line: %s", err->msg);
	ib_error_free(&err);
	ib_facts_free(&f);
}

static void test_facts_read_tree(void **state)
{
	char tree[] = "/tmp/ib-imgmeta-unit.XXXXXX";
	assert_non_null(mkdtemp(tree));
	struct ib_facts f;
	bool found = true;
	ib_error_t err = NULL;
	assert_int_equal(ib_facts_read_tree(tree, &f, &found, &err), 0);
	assert_false(found);

	cleanup_free char *dir = ib_path_join(tree, IB_META_DIR);
	cleanup_free char *path = ib_path_join(tree, IB_META_FACTS);
	assert_int_equal(mkdir(dir, 0755), 0);
	const char *text = "min_driver = \"525.60.13\"\narchs = [\"9.0\"]\n";
	assert_int_equal(ib_write_file_atomic(path, text, strlen(text), 0644, &err), 0);
	assert_int_equal(ib_facts_read_tree(tree, &f, &found, &err), 0);
	assert_true(found);
	assert_string_equal(f.min_driver, "525.60.13");
	assert_int_equal(f.archs.n, 1);
	ib_facts_free(&f);

	const char *broken = "archs = [\n";
	assert_int_equal(ib_write_file_atomic(path, broken, strlen(broken), 0644, &err), 0);
	assert_true(ib_facts_read_tree(tree, &f, &found, &err) < 0);
	if (strstr(err->msg, path) == NULL)
		fail_msg("message does not name '%s': %s", path, err->msg);
	ib_error_free(&err);

	assert_int_equal(ib_remove_tree(tree, &err), 0);
}

static void test_meta_name_ok(void **state)
{
	const char *ok[] = { "sbom.json", "a", "A-b_c.1", "lock" };
	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
		if (!ib_meta_name_ok(ok[i]))
			fail_msg("'%s' refused", ok[i]);
	char longname[202];
	memset(longname, 'x', 201);
	longname[201] = '\0';
	const char *bad[] = { "", ".hidden", "..", "facts.toml", "listing", "a/b", "a b", "a\nb", "k\xc3\xa9", longname };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		if (ib_meta_name_ok(bad[i]))
			fail_msg("'%s' accepted", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listing_append),	   cmocka_unit_test(test_listing_parse),
		cmocka_unit_test(test_listing_round_trip), cmocka_unit_test(test_listing_bad_lines),
		cmocka_unit_test(test_facts_key_reserved), cmocka_unit_test(test_facts_write),
		cmocka_unit_test(test_facts_write_refused), cmocka_unit_test(test_facts_parse),
		cmocka_unit_test(test_facts_read_tree),	   cmocka_unit_test(test_meta_name_ok),
	};
	return cmocka_run_group_tests_name("imgmeta", tests, NULL, NULL);
}
