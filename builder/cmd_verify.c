/* imgbuild verify IMAGE: digest, signature, listing and entry safety. */
#include "commands.h"
#include "log.h"
#include "util.h"
#include "verify.h"

enum { OPT_KEY = IB_OPT_LONG, OPT_ALLOW_UNSIGNED, OPT_HOST };

static const struct ib_opt options[] = {
	{ OPT_KEY, "key", "PUB",
	  "trust this public key only (default: the project's keys/ and\n"
	  "~/.config/imgbuild/trusted/)" },
	{ OPT_ALLOW_UNSIGNED, "allow-unsigned", NULL, "accept an image without IMAGE.sig (every other check still runs)" },
	{ OPT_HOST, "host", NULL, "also check this host's driver against the image" },
	{ 0 },
};

struct args {
	struct ib_verify_opts opts;
	const char *image;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	switch (key) {
	case OPT_KEY: a->opts.key = arg; break;
	case OPT_ALLOW_UNSIGNED: a->opts.allow_unsigned = true; break;
	case OPT_HOST: a->opts.host = true; break;
	case IB_OPT_OPERAND: a->image = arg; break;
	}
	return 0;
}

static int cmd_verify(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	/* -q: only errors, so no report; the failure still comes as the error. */
	a.opts.quiet = ib_log_level() == IB_LOG_QUIET;
	struct ib_verify_report rep;
	int rc = ib_verify(a.image, &a.opts, &rep, err);
	ib_verify_report_free(&rep);
	return rc < 0 ? -1 : 0;
}

const struct ib_cmd ib_cmd_verify = {
	.name = "verify",
	.args_doc = "IMAGE",
	.summary = "check an image's digest, signature and every entry",
	.doc = "Check an image: IMAGE.sha256, IMAGE.sig against the trusted keys, every entry against\n"
	       "the listing, and that no entry is unsafe. Exits 0 only when everything holds.",
	.options = options,
	.min_operands = 1,
	.max_operands = 1,
	.main = cmd_verify,
};
