/* imgbuild unpack IMAGE DIR: verify, then extract beside DIR and rename. */
#include <stdio.h>

#include "commands.h"
#include "log.h"
#include "unpack.h"
#include "util.h"

enum { OPT_NO_VERIFY = IB_OPT_LONG, OPT_KEY, OPT_ALLOW_UNSIGNED };

static const struct ib_opt options[] = {
	{ OPT_NO_VERIFY, "no-verify", NULL,
	  "extract without checking digest, signature or listing (path safety\n"
	  "is still enforced)" },
	{ OPT_KEY, "key", "PUB", "trust this public key only" },
	{ OPT_ALLOW_UNSIGNED, "allow-unsigned", NULL, "accept an image without IMAGE.sig" },
	{ 0 },
};

struct args {
	struct ib_verify_opts opts;
	bool no_verify;
	const char *pos[2];
	int npos;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	switch (key) {
	case OPT_NO_VERIFY: a->no_verify = true; break;
	case OPT_KEY: a->opts.key = arg; break;
	case OPT_ALLOW_UNSIGNED: a->opts.allow_unsigned = true; break;
	case IB_OPT_OPERAND: a->pos[a->npos++] = arg; break;
	}
	return 0;
}

static int cmd_unpack(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	/* -q: only errors, so neither the verify report nor the last line. */
	a.opts.quiet = ib_log_level() == IB_LOG_QUIET;
	if (ib_unpack(a.pos[0], a.pos[1], &a.opts, a.no_verify, err) < 0)
		return -1;
	if (!a.opts.quiet)
		printf("unpacked %s into %s\n", a.pos[0], a.pos[1]);
	return 0;
}

const struct ib_cmd ib_cmd_unpack = {
	.name = "unpack",
	.args_doc = "IMAGE DIR",
	.summary = "verify and extract an image into a folder",
	.doc = "Verify IMAGE, then extract it into DIR (which must not exist or be empty). Owners and\n"
	       "file capabilities are kept when run as root.",
	.options = options,
	.min_operands = 2,
	.max_operands = 2,
	.main = cmd_unpack,
};
