/* imgbuild: argv parsing and dispatch only; every command lives in builder/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "log.h"
#include "util.h"

/* imgbuild-portable (make portable: one static file for the receiving side)
 * has every command of this table but those marked BUILDS(), and so links
 * none of the build machinery; there a BUILDS() command is only its name, so
 * that asking for it says where it is. A new command joins by being listed. */
#ifdef IB_PORTABLE
#define BUILDS(n) (&(const struct ib_cmd){ .name = #n, .flags = IB_CMD_HIDDEN })
#define PROG "imgbuild-portable"
#else
#define BUILDS(n) (&ib_cmd_##n)
#define PROG "imgbuild"
#endif

/* Every command, in the order imgbuild --help lists them; the first is the
 * default ("imgbuild x.toml" builds). Each is declared in its cmd_<name>.c. */
static const struct ib_cmd *const commands[] = {
	BUILDS(build),	&ib_cmd_plan,	BUILDS(fetch),	BUILDS(pin),	BUILDS(shell), BUILDS(pack),
	&ib_cmd_verify, &ib_cmd_unpack, &ib_cmd_pull,	&ib_cmd_export, &ib_cmd_run,   &ib_cmd_keygen,
	&ib_cmd_trust,	&ib_cmd_advise, &ib_cmd_driver, BUILDS(mirror),
};

static void usage(FILE *out)
{
#ifdef IB_PORTABLE
	fprintf(out, "usage: " PROG " [-v|-q] COMMAND [ARGS...]   (COMMAND --help for its options)\n"
		     "Receives images; builds none (that is imgbuild's).\n\ncommands:\n");
#else
	fprintf(out, "usage: imgbuild [-v|-q] [build] MANIFEST\n"
		     "       imgbuild [-v|-q] COMMAND [ARGS...]   (COMMAND --help for its options)\n\ncommands:\n");
#endif
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!(commands[i]->flags & IB_CMD_HIDDEN))
			fprintf(out, "  %-8s %s\n", commands[i]->name, commands[i]->summary);
	fprintf(out, "\noptions:\n"
		     "  -v, --verbose   more detail\n"
		     "  -q, --quiet     only errors\n"
		     "  --version       print the version\n"
		     "  -h, --help      this help\n"
		     "\nexit status: 0 success, 1 the build or a check failed, 2 bad usage or bad manifest\n"
		     "(run passes its command's status through)\n");
}

int main(int argc, char **argv)
{
	enum ib_log_level level = IB_LOG_NORMAL;
	/* Global flags may stand anywhere before "--"; strip them here. */
	int n = 1;
	bool after_dashdash = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!after_dashdash && strcmp(a, "--") == 0)
			after_dashdash = true;
		if (!after_dashdash && (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0)) {
			level = IB_LOG_VERBOSE;
			continue;
		}
		if (!after_dashdash && (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0)) {
			level = IB_LOG_QUIET;
			continue;
		}
		argv[n++] = argv[i];
	}
	argc = n;
	argv[argc] = NULL;
	ib_log_init(level);

	if (argc < 2) {
		usage(stderr);
		return IB_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return IB_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf(PROG " %s\n", IB_VERSION);
		return IB_EXIT_OK;
	}

	const struct ib_cmd *cmd = NULL;
	int first = 1;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i]->name) == 0) {
			cmd = commands[i];
			first = 1;
			break;
		}
	}
	if (cmd == NULL) {
		/* "imgbuild manifests/x.toml" means build. */
		const char *dot = strrchr(argv[1], '.');
		if (argv[1][0] != '-' && dot && strcmp(dot, ".toml") == 0) {
			cmd = commands[0];
			first = 0;
		} else {
			fprintf(stderr, PROG ": unknown command '%s' (see " PROG " --help)\n", argv[1]);
			return IB_EXIT_USAGE;
		}
	}
	if (cmd->main == NULL) {
		fprintf(stderr, PROG ": '%s' builds and is not in " PROG ", which only receives images: use imgbuild\n", cmd->name);
		return IB_EXIT_USAGE;
	}
	/* The command sees argv[0] = its name. */
	argv[first] = (char *)cmd->name;
	ib_error_t err = NULL;
	int rc = cmd->main(cmd, argc - first, argv + first, &err);
	if (rc < 0) {
		ib_log_status_clear();
		ib_log_error("%s", err ? err->msg : "unknown error");
		rc = err ? err->exit_code : IB_EXIT_FAIL;
		ib_error_free(&err);
	}
	return rc;
}
