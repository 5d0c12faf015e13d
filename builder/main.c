/* imgbuild: argv parsing and dispatch only; every command lives in builder/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "log.h"
#include "util.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv, ib_error_t *err);
	const char *summary;
	bool hidden;
};

static const struct command commands[] = {
	{ "build", ib_cmd_build, "build an image from a manifest (the default command)", false },
	{ "plan", ib_cmd_plan, "check a manifest and print its stages and compatibility verdicts", false },
	{ "fetch", ib_cmd_fetch, "download every input a build needs into the cache", false },
	{ "pin", ib_cmd_pin, "download unpinned inputs once and record their sha256", false },
	{ "shell", ib_cmd_shell, "open a shell in a stage's sandbox", false },
	{ "pack", ib_cmd_pack, "pack a root file system folder into a checked image", false },
	{ "verify", ib_cmd_verify, "check an image's digest, signature and every entry", false },
	{ "unpack", ib_cmd_unpack, "verify and extract an image into a folder", false },
	{ "pull", ib_cmd_pull, "download an image, its .sha256 and .sig, and verify it before it lands", false },
	{ "run", ib_cmd_run, "run a command inside an image", false },
	{ "keygen", ib_cmd_keygen, "make an Ed25519 signing key pair", false },
	{ "trust", ib_cmd_trust, "trust, list or forget the public keys images are checked against", false },
	{ "advise", ib_cmd_advise, "say which CUDA/torch stack a GPU can use (name, PCI id or auto)", false },
	{ "driver", ib_cmd_driver, "show the host NVIDIA driver and what would be bound", false },
	{ "mirror", ib_cmd_mirror, "print the host's apt mirror for a distribution", true },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: imgbuild [-v|-q] [build] MANIFEST\n"
		     "       imgbuild [-v|-q] COMMAND [ARGS...]   (COMMAND --help for its options)\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!commands[i].hidden)
			fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
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

	const struct command *cmd = NULL;
	int first = 1;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) == 0) {
			cmd = &commands[i];
			first = 1;
			break;
		}
	}
	if (cmd == NULL) {
		/* "imgbuild manifests/x.toml" means build. */
		const char *dot = strrchr(argv[1], '.');
		if (argv[1][0] != '-' && dot && strcmp(dot, ".toml") == 0) {
			cmd = &commands[0];
			first = 0;
		} else {
			fprintf(stderr, "imgbuild: unknown command '%s' (see imgbuild --help)\n", argv[1]);
			return IB_EXIT_USAGE;
		}
	}
	/* The command sees argv[0] = its name. */
	argv[first] = (char *)cmd->name;
	ib_error_t err = NULL;
	int rc = cmd->fn(argc - first, argv + first, &err);
	if (rc < 0) {
		ib_log_status_clear();
		ib_log_error("%s", err ? err->msg : "unknown error");
		rc = err ? err->exit_code : IB_EXIT_FAIL;
		ib_error_free(&err);
	}
	return rc;
}
