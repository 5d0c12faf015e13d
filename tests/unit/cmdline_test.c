/* The option tables (cmdline.c): one table parses and prints --help, so every
 * form of an option, every usage error and the help text are checked here once
 * for all commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cmdline.h"
#include "util.h"

enum { OPT_FLAG = IB_OPT_LONG, OPT_VALUE };

static const struct ib_opt options[] = {
	{ 'o', "output", "OUT", "where to\nwrite it" },
	{ OPT_FLAG, "flag", NULL, "a flag" },
	{ OPT_VALUE, "value", "V", "a value" },
	{ 0 },
};

struct seen {
	const char *output, *value, *operands[4];
	int flag, n;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct seen *s = data;
	switch (key) {
	case 'o': s->output = arg; break;
	case OPT_FLAG: s->flag++; break;
	case OPT_VALUE:
		if (strcmp(arg, "bad") == 0)
			return ib_error_usage(err, "t: --value cannot be bad");
		s->value = arg;
		break;
	case IB_OPT_OPERAND: s->operands[s->n++] = arg; break;
	}
	return 0;
}

static const struct ib_cmd cmd = {
	.name = "t",
	.args_doc = "A [B]",
	.doc = "A test command.",
	.options = options,
	.min_operands = 1,
	.max_operands = 2,
};

static const struct ib_cmd cmd_trailing = {
	.name = "r", .args_doc = "IMAGE", .options = options, .min_operands = 1, .max_operands = 1,
	.flags = IB_CMD_TRAILING | IB_CMD_TRAILING_BARE,
};

#define ARGV(...) ((char *[]){ __VA_ARGS__, NULL })

static int run(const struct ib_cmd *c, char **argv, int argc, struct seen *s, struct ib_cmd_rest *rest,
	       ib_error_t *err)
{
	memset(s, 0, sizeof(*s));
	return ib_cmd_parse(c, argc, argv, parse, s, rest, err);
}

static void test_forms(void **state)
{
	(void)state;
	struct seen s;
	ib_error_t err = NULL;
	char **a = ARGV("t", "-o", "x", "--value=v=1", "one", "--flag", "--", "-two");
	assert_int_equal(run(&cmd, a, 8, &s, NULL, &err), 0);
	assert_string_equal(s.output, "x");
	assert_string_equal(s.value, "v=1");
	assert_int_equal(s.flag, 1);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.operands[0], "one");
	assert_string_equal(s.operands[1], "-two");	/* after "--": an operand */

	char **b = ARGV("t", "-oy", "--output", "z", "--value", "w", "one");
	assert_int_equal(run(&cmd, b, 7, &s, NULL, &err), 0);
	assert_string_equal(s.output, "z");
	assert_string_equal(s.value, "w");
}

static void expect_usage(char **argv, int argc, const char *needle)
{
	struct seen s;
	ib_error_t err = NULL;
	assert_int_equal(run(&cmd, argv, argc, &s, NULL, &err), -1);
	assert_non_null(err);
	assert_int_equal(err->exit_code, IB_EXIT_USAGE);
	if (strstr(err->msg, needle) == NULL)
		fail_msg("'%s' does not contain '%s'", err->msg, needle);
	ib_error_free(&err);
}

static void test_errors(void **state)
{
	(void)state;
	expect_usage(ARGV("t", "--nope", "a"), 3, "t: unknown option '--nope' (see imgbuild t --help)");
	expect_usage(ARGV("t", "-x", "a"), 3, "unknown option '-x'");
	expect_usage(ARGV("t", "a", "--value"), 3, "option '--value' needs a value (V)");
	expect_usage(ARGV("t", "a", "-o"), 3, "option '-o' needs a value");
	expect_usage(ARGV("t", "--flag=1", "a"), 3, "option '--flag' takes no value");
	expect_usage(ARGV("t", "--value", "bad", "a"), 4, "--value cannot be bad");
	expect_usage(ARGV("t"), 1, "usage: imgbuild t A [B] [OPTION...]");
	expect_usage(ARGV("t", "a", "b", "c"), 4, "unexpected argument 'c'");
	/* a prefix of a long name is not that option */
	expect_usage(ARGV("t", "--out", "x", "a"), 4, "unknown option '--out'");
}

static void test_trailing(void **state)
{
	(void)state;
	struct seen s;
	struct ib_cmd_rest rest;
	ib_error_t err = NULL;
	char **a = ARGV("r", "img", "--flag", "--", "ls", "--flag");
	assert_int_equal(run(&cmd_trailing, a, 6, &s, &rest, &err), 0);
	assert_int_equal(s.flag, 1);
	assert_int_equal(rest.argc, 2);
	assert_string_equal(rest.argv[0], "ls");
	assert_string_equal(rest.argv[1], "--flag");
	char **b = ARGV("r", "--flag", "img", "sh", "-c", "true");
	assert_int_equal(run(&cmd_trailing, b, 6, &s, &rest, &err), 0);
	assert_int_equal(rest.argc, 3);
	assert_string_equal(rest.argv[0], "sh");
	assert_string_equal(s.operands[0], "img");
	char **c = ARGV("r", "img");
	assert_int_equal(run(&cmd_trailing, c, 2, &s, &rest, &err), 0);
	assert_null(rest.argv);
	assert_int_equal(rest.argc, 0);
}

static void test_help(void **state)
{
	(void)state;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	ib_cmd_print_help(&cmd, f);
	fclose(f);
	assert_non_null(strstr(text, "usage: imgbuild t A [B] [OPTION...]\nA test command.\n"));
	/* every option of the table, continuation lines under the text */
	assert_non_null(strstr(text, "  -o, --output OUT  where to\n                    write it\n"));
	assert_non_null(strstr(text, "      --flag        a flag\n"));
	assert_non_null(strstr(text, "      --value V     a value\n"));
	free(text);

	/* --help anywhere before "--" prints help and parses nothing */
	struct seen s;
	ib_error_t err = NULL;
	char **a = ARGV("t", "--nope", "--help");
	FILE *saved = stdout;
	stdout = fopen("/dev/null", "w");
	int r = run(&cmd, a, 3, &s, NULL, &err);
	fclose(stdout);
	stdout = saved;
	assert_int_equal(r, 1);
	assert_null(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forms),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_trailing),
		cmocka_unit_test(test_help),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
