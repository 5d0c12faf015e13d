/* imgbuild: argv parsing and dispatch only; every command lives in builder/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "log.h"
#include "util.h"

/* Every command, in the order imgbuild --help lists them; the first is the
 * default ("imgbuild x.toml" builds). Each is declared in its cmd_<name>.c. */
static const struct ib_cmd *const commands[] = {
	&ib_cmd_build,	&ib_cmd_plan, &ib_cmd_fetch,  &ib_cmd_pin,   &ib_cmd_shell,  &ib_cmd_pack,	 &ib_cmd_verify, &ib_cmd_unpack,
	&ib_cmd_pull,	&ib_cmd_export, &ib_cmd_run,  &ib_cmd_keygen, &ib_cmd_trust, &ib_cmd_advise, &ib_cmd_driver, &ib_cmd_mirror,
};

static void usage(FILE *out)
{
	fprintf(out, "usage: imgbuild [-v|-q] [build] MANIFEST\n"
		     "       imgbuild [-v|-q] COMMAND [ARGS...]   (COMMAND --help for its options)\n\ncommands:\n");
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
		printf("imgbuild %s\n", IB_VERSION);
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
			fprintf(stderr, "imgbuild: unknown command '%s' (see imgbuild --help)\n", argv[1]);
			return IB_EXIT_USAGE;
		}
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
