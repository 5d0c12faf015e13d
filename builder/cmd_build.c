/* imgbuild [build] MANIFEST: the build engine (build.c) on a manifest. */
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "commands.h"
#include "manifest.h"
#include "overlay.h"
#include "util.h"

enum { OPT_SIGN = IB_OPT_LONG, OPT_ZSTD, OPT_OFFLINE, OPT_BUILD_DIR, OPT_OVERRIDE, OPT_CCREMOTE, OPT_CCREMOTE_WRITE };

static const struct ib_opt options[] = {
	{ 'o', "output", "OUT", "where to write the image (default: the manifest's image.output)" },
	{ OPT_SIGN, "sign", "KEY", "sign with this secret key (signify format)" },
	{ OPT_ZSTD, "zstd", NULL, "compress with zstd" },
	{ OPT_OFFLINE, "offline", NULL, "use no network to fetch (everything must be cached)" },
	{ OPT_BUILD_DIR, "build-dir", "DIR", "logs and stage work folders (default: $cache/builds/NAME)" },
	{ OPT_OVERRIDE, "override", "FILE", "a TOML file merged over the manifest (same schema)" },
	{ OPT_CCREMOTE, "ccache-remote", "URL",
	  "the class's shared ccache, redis://[[USER:]PASSWORD@]HOST[:PORT][/DB] or redis+unix:/PATH\n"
	  "(default: $IMGBUILD_CCACHE_REMOTE, ~/.config/imgbuild/ccache-remote); read-only" },
	{ OPT_CCREMOTE_WRITE, "ccache-remote-write", NULL,
	  "let this build's stages write to the shared ccache (only for a manifest you wrote)" },
	{ 0 },
};

struct args {
	struct ib_build_opts opts;
	const char *manifest, *override;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	switch (key) {
	case 'o': a->opts.output = arg; break;
	case OPT_SIGN: a->opts.sign_key = arg; break;
	case OPT_ZSTD: a->opts.zstd = true; break;
	case OPT_OFFLINE: a->opts.offline = true; break;
	case OPT_BUILD_DIR: a->opts.build_dir = arg; break;
	case OPT_OVERRIDE: a->override = arg; break;
	case OPT_CCREMOTE: a->opts.ccache_remote = arg; break;
	case OPT_CCREMOTE_WRITE: a->opts.ccache_remote_write = true; break;
	case IB_OPT_OPERAND: a->manifest = arg; break;
	}
	return 0;
}

static int cmd_build(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	/* The pack step runs in a child that changes directory: a relative key
	 * path must be made absolute here, and a missing key caught before hours of build. */
	cleanup_free char *sign_key = NULL;
	if (a.opts.sign_key) {
		sign_key = realpath(a.opts.sign_key, NULL);
		if (sign_key == NULL)
			return ib_error_usage(err, "build: secret key '%s' not found (make one with imgbuild keygen NAME)",
					      a.opts.sign_key);
		a.opts.sign_key = sign_key;
	}
	struct ib_manifest *m = ib_overlay_load(a.manifest, a.override, err);
	if (m == NULL)
		return -1;
	int rc = ib_build_run(m, &a.opts, err);
	ib_manifest_free(m);
	return rc < 0 ? -1 : 0;
}

const struct ib_cmd ib_cmd_build = {
	.name = "build",
	.args_doc = "MANIFEST",
	.summary = "build an image from a manifest (the default command)",
	.doc = "Builds the image: bootstraps the base, runs each stage in the sandbox and packs the\n"
	       "result. Every stage is cached as a layer: an unchanged stage is reused, a changed\n"
	       "one runs again with every stage after it, and a failed build resumes where it failed.",
	.options = options,
	.min_operands = 1,
	.max_operands = 1,
	.main = cmd_build,
};
