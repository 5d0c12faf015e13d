/* imgbuild shell MANIFEST --stage NAME [--offline] [--build-dir DIR] [--override FILE] [-- CMD...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build.h"
#include "commands.h"
#include "log.h"
#include "manifest.h"
#include "overlay.h"
#include "util.h"

int ib_cmd_shell(int argc, char **argv, ib_error_t *err)
{
	static const struct ib_cmd_help help = {
		.usage = "imgbuild shell MANIFEST --stage NAME [-- CMD [ARGS...]]",
		.summary = "Opens an interactive shell (or runs CMD) in the sandbox of stage NAME, on the tree as it\n"
			   "was before that stage, with the stage's inputs, work folder, ccache, environment and\n"
			   "network setting. Changes to the tree are thrown away; the work folder is the stage's\n"
			   "own (as a failed run left it). Earlier stages are built first when not cached.",
		.options = "  --stage NAME       the stage whose sandbox to enter\n"
			   "  --offline          use no network to fetch\n"
			   "  --build-dir DIR    as for build\n"
			   "  --override FILE    as for build\n",
	};
	if (ib_cmd_wants_help(argc, argv, &help))
		return 0;
	struct ib_build_opts opts = { 0 };
	const char *manifest = NULL, *override = NULL, *stage = NULL;
	char **cmd = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;
		size_t n = 0;
		if (strcmp(a, "--") == 0) {
			cmd = argv + i + 1;
			break;
		} else if (strcmp(a, "--offline") == 0) {
			opts.offline = true;
			continue;
		} else if (strncmp(a, "--stage", n = 7) == 0 && (a[n] == '\0' || a[n] == '=')) {
			slot = &stage;
		} else if (strncmp(a, "--build-dir", n = 11) == 0 && (a[n] == '\0' || a[n] == '=')) {
			slot = &opts.build_dir;
		} else if (strncmp(a, "--override", n = 10) == 0 && (a[n] == '\0' || a[n] == '=')) {
			slot = &override;
		} else if (a[0] == '-' && a[1] != '\0') {
			return ib_error_usage(err, "shell: unknown option '%s' (see imgbuild shell --help)", a);
		} else if (manifest == NULL) {
			manifest = a;
			continue;
		} else {
			return ib_error_usage(err, "shell: unexpected argument '%s' (put a command after --)", a);
		}
		if (a[n] == '=') {
			*slot = a + n + 1;
		} else {
			if (i + 1 >= argc)
				return ib_error_usage(err, "shell: option '%s' needs a value", a);
			*slot = argv[++i];
		}
	}
	if (manifest == NULL)
		return ib_error_usage(err, "shell: no MANIFEST given (see imgbuild shell --help)");
	if (stage == NULL)
		return ib_error_usage(err, "shell: which stage? (--stage NAME)");

	struct ib_manifest *m = ib_overlay_load(manifest, override, err);
	if (m == NULL)
		return -1;
	int rc = -1, status = 0;
	struct ib_build *b = NULL;
	int index = ib_build_find_stage(m, stage, err);
	if (index < 0)
		goto out;
	b = ib_build_new(m, &opts, err);
	if (b == NULL)
		goto out;
	if (ib_build_stages(b, (size_t)index, err) < 0)
		goto out;
	if (cmd == NULL || cmd[0] == NULL)
		ib_log_info("shell in stage %s's sandbox: the tree before it, changes thrown away on exit", stage);
	if (ib_build_shell(b, (size_t)index, cmd, &status, err) < 0)
		goto out;
	rc = status;
out:
	ib_build_free(b);
	ib_manifest_free(m);
	return rc;
}
