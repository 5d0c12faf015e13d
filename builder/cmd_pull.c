/* imgbuild pull URL [-o FILE]: parses, then calls pull.h. */
#include "commands.h"
#include "pull.h"
#include "util.h"

enum { OPT_MIRROR = IB_OPT_LONG, OPT_KEY, OPT_ALLOW_UNSIGNED };

static const struct ib_opt options[] = {
	{ 'o', "output", "FILE",
	  "where to put the image (default: the URL's file name here; a folder:\n"
	  "that name in it)" },
	{ OPT_MIRROR, "mirror", "URL",
	  "another URL of the same image, tried in order when one fails (a URL\n"
	  "ending in '/' is a folder holding it); repeatable" },
	{ OPT_KEY, "key", "PUB", "trust this public key only (default: the trusted keys, see imgbuild trust)" },
	{ OPT_ALLOW_UNSIGNED, "allow-unsigned", NULL, "accept an image without URL.sig (every other check still runs)" },
	{ 0 },
};

struct args {
	struct ib_pull_opts o;
	struct ib_strv mirrors;
	const char *url;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	switch (key) {
	case 'o': a->o.out = arg; break;
	case OPT_MIRROR: ib_strv_push(&a->mirrors, arg); break;
	case OPT_KEY: a->o.key = arg; break;
	case OPT_ALLOW_UNSIGNED: a->o.allow_unsigned = true; break;
	case IB_OPT_OPERAND: a->url = arg; break;
	}
	return 0;
}

static int cmd_pull(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	int rc = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	if (rc == 0) {
		a.o.mirrors = (const char *const *)a.mirrors.v;
		rc = ib_pull(a.url, &a.o, NULL, err) < 0 ? -1 : 0;
	} else if (rc > 0) {
		rc = 0;
	}
	ib_strv_free(&a.mirrors);
	return rc;
}

const struct ib_cmd ib_cmd_pull = {
	.name = "pull",
	.args_doc = "URL",
	.summary = "download an image, its .sha256 and .sig, and verify it before it lands",
	.doc = "Download an image with its URL.sha256 and URL.sig (http, https or file), resuming a cut\n"
	       "transfer, and check it as verify does (digest, trusted signer, every entry) before it\n"
	       "appears as FILE: a failure never leaves a partial or unverified image there. A cut\n"
	       "transfer is kept in DIR/.NAME.pull/ and the same pull resumes it.",
	.options = options,
	.min_operands = 1,
	.max_operands = 1,
	.main = cmd_pull,
};
