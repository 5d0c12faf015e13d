#pragma once
/* Command lines: every command declares one table of its options, and that
 * table drives both the parsing and the --help text, so the two cannot drift.
 * (After crun's argp tables in src/<cmd>.c and apk-tools' struct apk_applet.)
 *
 * A command file holds its struct ib_cmd (name, operands, help, options, main)
 * and a parse function that turns one option or operand into a field of its own
 * options struct; it then calls the engine. main.c lists the commands. */
#include <stdbool.h>
#include <stdio.h>

#include "error.h"

/* One option. KEY is what the parse function receives: a printable ASCII
 * letter also makes "-KEY" the short form; long-only options use keys from
 * IB_OPT_LONG up. ARG names the value in --help; NULL makes the option a flag. */
struct ib_opt {
	int key;
	const char *name; /* long name without "--" */
	const char *arg;
	const char *doc; /* may hold '\n': continuation lines are indented */
};

enum {
	IB_OPT_LONG = 256,   /* first key of a long-only option */
	IB_OPT_OPERAND = -1, /* the parse function's key for an operand (arg = the word) */
};

/* Returns 0, or < 0 with *err set. */
typedef int (*ib_opt_parse_fn)(int key, const char *arg, void *data, ib_error_t *err);

enum ib_cmd_flags {
	IB_CMD_HIDDEN = 1 << 0,	       /* not listed by imgbuild --help */
	IB_CMD_TRAILING = 1 << 1,      /* "-- CMD [ARGS...]" ends the line: a command to run */
	IB_CMD_TRAILING_BARE = 1 << 2, /* ... which may also start without "--", after the last operand */
};

struct ib_cmd {
	const char *name;
	const char *args_doc;		/* the operands, as in "MANIFEST" or "IMAGE DIR" */
	const char *summary;		/* one line for imgbuild --help */
	const char *doc;		/* the paragraph for imgbuild NAME --help */
	const struct ib_opt *options;	/* ends with { 0 }; NULL for none */
	int min_operands, max_operands; /* max < 0: no limit */
	unsigned flags;			/* enum ib_cmd_flags */
	/* Returns the exit status (>= 0), or < 0 with *err set. */
	int (*main)(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err);
};

/* The command to run (IB_CMD_TRAILING): the words after "--", or with
 * IB_CMD_TRAILING_BARE from the first word after max_operands operands. */
struct ib_cmd_rest {
	char **argv; /* not owned: points into argv; NULL when there is none */
	int argc;
};

/* Parses argv[1..] against CMD's table: "--name VALUE", "--name=VALUE", "-k VALUE",
 * "-kVALUE", flags, operands and "--". Calls PARSE for each; checks the operand
 * count. Returns 1 when --help was asked for and printed (the command then exits
 * 0), 0 when parsed, < 0 with a usage error (exit status 2) naming the fix. */
int ib_cmd_parse(const struct ib_cmd *cmd, int argc, char **argv, ib_opt_parse_fn parse, void *data, struct ib_cmd_rest *rest,
		 ib_error_t *err);

/* "imgbuild NAME [OPTION...] OPERANDS" */
void ib_cmd_print_usage(const struct ib_cmd *cmd, FILE *out);
/* The usage line, the paragraph and the option table. */
void ib_cmd_print_help(const struct ib_cmd *cmd, FILE *out);
/* A usage error that shows the usage line: "usage: imgbuild NAME ...". */
int ib_cmd_usage_error(const struct ib_cmd *cmd, ib_error_t *err);
/* Parses a decimal integer in [MIN, MAX] as option NAME's value. */
int ib_cmd_parse_int(const struct ib_cmd *cmd, const char *name, const char *s, long long min, long long max, long long *out,
		     ib_error_t *err);
