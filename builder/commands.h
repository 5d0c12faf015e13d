#pragma once
/* One function per subcommand, each in builder/cmd_<name>.c. The table that
 * maps names to them is in builder/main.c (one place, one grep).
 * A command returns its exit status (>= 0), or < 0 with *err set. */
#include "error.h"

int ib_cmd_build(int argc, char **argv, ib_error_t *err);
int ib_cmd_plan(int argc, char **argv, ib_error_t *err);
int ib_cmd_fetch(int argc, char **argv, ib_error_t *err);
int ib_cmd_pin(int argc, char **argv, ib_error_t *err);
int ib_cmd_shell(int argc, char **argv, ib_error_t *err);
int ib_cmd_pack(int argc, char **argv, ib_error_t *err);
int ib_cmd_verify(int argc, char **argv, ib_error_t *err);
int ib_cmd_unpack(int argc, char **argv, ib_error_t *err);
int ib_cmd_run(int argc, char **argv, ib_error_t *err);
int ib_cmd_keygen(int argc, char **argv, ib_error_t *err);
int ib_cmd_driver(int argc, char **argv, ib_error_t *err);
int ib_cmd_pull(int argc, char **argv, ib_error_t *err);
int ib_cmd_trust(int argc, char **argv, ib_error_t *err);
int ib_cmd_mirror(int argc, char **argv, ib_error_t *err);
int ib_cmd_advise(int argc, char **argv, ib_error_t *err);

/* Shared by commands: prints "usage: ..." help for CMD when argv has --help/-h.
 * Returns true when help was printed (the command then returns 0). */
struct ib_cmd_help {
	const char *usage;	/* "imgbuild plan MANIFEST" */
	const char *summary;
	const char *options;	/* preformatted lines, may be NULL */
};
#include <stdbool.h>
bool ib_cmd_wants_help(int argc, char **argv, const struct ib_cmd_help *help);
