/* imgbuild shell MANIFEST --stage NAME [-- CMD...]: a stage's sandbox, by hand. */
#include "build.h"
#include "commands.h"
#include "log.h"
#include "manifest.h"
#include "overlay.h"
#include "util.h"

enum { OPT_STAGE = IB_OPT_LONG, OPT_OFFLINE, OPT_BUILD_DIR, OPT_OVERRIDE };

static const struct ib_opt options[] = {
	{ OPT_STAGE, "stage", "NAME", "the stage whose sandbox to enter" },
	{ OPT_OFFLINE, "offline", NULL, "use no network to fetch" },
	{ OPT_BUILD_DIR, "build-dir", "DIR", "as for build" },
	{ OPT_OVERRIDE, "override", "FILE", "as for build" },
	{ 0 },
};

struct args {
	struct ib_build_opts opts;
	const char *manifest, *override, *stage;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	switch (key) {
	case OPT_STAGE: a->stage = arg; break;
	case OPT_OFFLINE: a->opts.offline = true; break;
	case OPT_BUILD_DIR: a->opts.build_dir = arg; break;
	case OPT_OVERRIDE: a->override = arg; break;
	case IB_OPT_OPERAND: a->manifest = arg; break;
	}
	return 0;
}

static int cmd_shell(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	struct ib_cmd_rest rest;
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, &rest, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	if (a.stage == NULL)
		return ib_error_usage(err, "shell: which stage? (--stage NAME)");

	struct ib_manifest *m = ib_overlay_load(a.manifest, a.override, err);
	if (m == NULL)
		return -1;
	int rc = -1, status = 0;
	struct ib_build *b = NULL;
	int index = ib_build_find_stage(m, a.stage, err);
	if (index < 0)
		goto out;
	b = ib_build_new(m, &a.opts, err);
	if (b == NULL)
		goto out;
	if (ib_build_stages(b, (size_t)index, err) < 0)
		goto out;
	if (rest.argc == 0)
		ib_log_info("shell in stage %s's sandbox: the tree before it, changes thrown away on exit", a.stage);
	if (ib_build_shell(b, (size_t)index, rest.argc ? rest.argv : NULL, &status, err) < 0)
		goto out;
	rc = status;
out:
	ib_build_free(b);
	ib_manifest_free(m);
	return rc;
}

const struct ib_cmd ib_cmd_shell = {
	.name = "shell",
	.args_doc = "MANIFEST --stage NAME [-- CMD [ARGS...]]",
	.summary = "open a shell in a stage's sandbox",
	.doc = "Opens an interactive shell (or runs CMD) in the sandbox of stage NAME, on the tree as it\n"
	       "was before that stage, with the stage's inputs, work folder, ccache, environment and\n"
	       "network setting. Changes to the tree are thrown away; the work folder is the stage's\n"
	       "own (as a failed run left it). Earlier stages are built first when not cached.",
	.options = options,
	.min_operands = 1,
	.max_operands = 1,
	.flags = IB_CMD_TRAILING,
	.main = cmd_shell,
};
