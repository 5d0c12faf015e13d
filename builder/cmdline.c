/* Option tables: one parser and one --help printer for every command.
 * Kept apart from main.c so that each cmd_*.c links without it (tests, fuzzers). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cmdline.h"
#include "util.h"

static bool has_short(const struct ib_opt *o)
{
	return o->key > 0 && o->key < 128 && isalnum(o->key);
}

/* "imgbuild NAME OPERANDS [OPTION...] [-- CMD...]": the options after the
 * operands, as the commands' help always wrote them, but before a trailing command. */
void ib_cmd_print_usage(const struct ib_cmd *cmd, FILE *out)
{
	const char *doc = cmd->args_doc ? cmd->args_doc : "";
	const char *trail = strstr(doc, " [-- ");
	int head = trail ? (int)(trail - doc) : (int)strlen(doc);
	fprintf(out, "imgbuild %s%s%.*s%s%s\n", cmd->name, head ? " " : "", head, doc,
		cmd->options && cmd->options[0].name ? " [OPTION...]" : "", trail ? trail : "");
}

/* "  -o, --output OUT" as the left column of --help. */
static char *opt_label(const struct ib_opt *o)
{
	if (has_short(o))
		return xasprintf("  -%c, --%s%s%s", o->key, o->name, o->arg ? " " : "", o->arg ? o->arg : "");
	return xasprintf("      --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
}

void ib_cmd_print_help(const struct ib_cmd *cmd, FILE *out)
{
	fprintf(out, "usage: ");
	ib_cmd_print_usage(cmd, out);
	if (cmd->doc)
		fprintf(out, "%s\n", cmd->doc);
	if (cmd->options == NULL || cmd->options[0].name == NULL)
		return;
	size_t width = 0;
	for (const struct ib_opt *o = cmd->options; o->name; o++) {
		cleanup_free char *label = opt_label(o);
		if (strlen(label) > width)
			width = strlen(label);
	}
	fprintf(out, "\noptions:\n");
	for (const struct ib_opt *o = cmd->options; o->name; o++) {
		cleanup_free char *label = opt_label(o);
		fprintf(out, "%-*s  ", (int)width, label);
		for (const char *p = o->doc; *p; p++) {
			fputc(*p, out);
			if (*p == '\n')
				fprintf(out, "%-*s  ", (int)width, "");
		}
		fputc('\n', out);
	}
}

int ib_cmd_usage_error(const struct ib_cmd *cmd, ib_error_t *err)
{
	cleanup_free char *line = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&line, &len);
	if (f == NULL)
		ib_die_oom();
	ib_cmd_print_usage(cmd, f);
	fclose(f);
	if (len > 0 && line[len - 1] == '\n')
		line[len - 1] = '\0';
	return ib_error_usage(err, "usage: %s (see imgbuild %s --help)", line, cmd->name);
}

int ib_cmd_parse_int(const struct ib_cmd *cmd, const char *name, const char *s, long long min, long long max, long long *out,
		     ib_error_t *err)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *s == '\0' || *end || v < min || v > max)
		return ib_error_usage(err, "%s: %s wants a number from %lld to %lld, not '%s'", cmd->name, name, min, max, s);
	*out = v;
	return 0;
}

static const struct ib_opt *find_long(const struct ib_cmd *cmd, const char *name, size_t len)
{
	for (const struct ib_opt *o = cmd->options; o && o->name; o++)
		if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
			return o;
	return NULL;
}

static const struct ib_opt *find_short(const struct ib_cmd *cmd, int c)
{
	for (const struct ib_opt *o = cmd->options; o && o->name; o++)
		if (has_short(o) && o->key == c)
			return o;
	return NULL;
}

static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	}
	return false;
}

/* One option word at argv[*i]; its value may be the next word. */
static int parse_option(const struct ib_cmd *cmd, int argc, char **argv, int *i, ib_opt_parse_fn parse, void *data, ib_error_t *err)
{
	const char *a = argv[*i];
	const struct ib_opt *o;
	const char *value = NULL;
	if (a[1] == '-') {
		const char *name = a + 2;
		const char *eq = strchr(name, '=');
		o = find_long(cmd, name, eq ? (size_t)(eq - name) : strlen(name));
		if (o && eq) {
			if (o->arg == NULL)
				return ib_error_usage(err, "%s: option '--%s' takes no value", cmd->name, o->name);
			value = eq + 1;
		}
	} else {
		o = find_short(cmd, (unsigned char)a[1]);
		if (o && a[2] != '\0') {
			if (o->arg == NULL)
				return ib_error_usage(err, "%s: unknown option '%s' (see imgbuild %s --help)", cmd->name, a,
						      cmd->name);
			value = a[2] == '=' ? a + 3 : a + 2;
		}
	}
	if (o == NULL)
		return ib_error_usage(err, "%s: unknown option '%s' (see imgbuild %s --help)", cmd->name, a, cmd->name);
	if (o->arg && value == NULL) {
		if (*i + 1 >= argc)
			return ib_error_usage(err, "%s: option '%s' needs a value (%s)", cmd->name, a, o->arg);
		value = argv[++*i];
	}
	return parse(o->key, value, data, err);
}

int ib_cmd_parse(const struct ib_cmd *cmd, int argc, char **argv, ib_opt_parse_fn parse, void *data, struct ib_cmd_rest *rest,
		 ib_error_t *err)
{
	struct ib_cmd_rest none = { 0 };
	if (rest == NULL)
		rest = &none;
	*rest = (struct ib_cmd_rest){ NULL, 0 };
	if (wants_help(argc, argv)) {
		ib_cmd_print_help(cmd, stdout);
		return 1;
	}
	int operands = 0;
	bool dashdash = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!dashdash && strcmp(a, "--") == 0) {
			if (cmd->flags & IB_CMD_TRAILING) {
				rest->argv = argv + i + 1;
				rest->argc = argc - i - 1;
				break;
			}
			dashdash = true;
			continue;
		}
		if (!dashdash && a[0] == '-' && a[1] != '\0') {
			if (parse_option(cmd, argc, argv, &i, parse, data, err) < 0)
				return -1;
			continue;
		}
		if (cmd->max_operands >= 0 && operands >= cmd->max_operands) {
			if (cmd->flags & IB_CMD_TRAILING_BARE) {
				rest->argv = argv + i;
				rest->argc = argc - i;
				break;
			}
			if (cmd->flags & IB_CMD_TRAILING)
				return ib_error_usage(err, "%s: unexpected argument '%s' (put the command after --)", cmd->name, a);
			return ib_error_usage(err, "%s: unexpected argument '%s' (see imgbuild %s --help)", cmd->name, a,
					      cmd->name);
		}
		if (parse(IB_OPT_OPERAND, a, data, err) < 0)
			return -1;
		operands++;
	}
	if (operands < cmd->min_operands)
		return ib_cmd_usage_error(cmd, err);
	return 0;
}
