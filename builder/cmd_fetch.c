/* imgbuild fetch MANIFEST [--offline]: put every input a build needs in the cache.
 * imgbuild pin MANIFEST: record the sha256 of downloads marked "unknown". */
#include <stdio.h>

#include "commands.h"
#include "fetch.h"
#include "inputs.h"
#include "log.h"
#include "manifest.h"
#include "overlay.h"
#include "util.h"

enum { OPT_OFFLINE = IB_OPT_LONG };

static const struct ib_opt fetch_options[] = {
	{ OPT_OFFLINE, "offline", NULL, "use no network: check that everything is cached, naming what is not" },
	{ 0 },
};

struct args {
	const char *manifest;
	bool offline;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	if (key == OPT_OFFLINE)
		a->offline = true;
	else if (key == IB_OPT_OPERAND)
		a->manifest = arg;
	return 0;
}

static int cmd_fetch(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	cleanup_manifest struct ib_manifest *m = ib_overlay_load(a.manifest, NULL, err);
	if (m == NULL)
		return -1;
	cleanup_strv struct ib_strv trees = { 0 };
	if (ib_inputs_fetch(m, a.offline, &trees, err) < 0)
		return -1;
	for (size_t i = 0; i < m->n_downloads; i++) {
		cleanup_free char *p = ib_fetch_cached_path(&m->downloads[i]);
		printf("%s\t%s\n", m->downloads[i].name, p ? p : "?");
	}
	for (size_t i = 0; i < m->n_sources; i++)
		printf("%s\t%s\n", m->sources[i].name, trees.v[i]);
	ib_log_info("%s: %zu download%s and %zu source%s are in the cache", m->path, m->n_downloads,
		    m->n_downloads == 1 ? "" : "s", m->n_sources, m->n_sources == 1 ? "" : "s");
	return 0;
}

const struct ib_cmd ib_cmd_fetch = {
	.name = "fetch",
	.args_doc = "MANIFEST",
	.summary = "download every input a build needs into the cache",
	.doc = "Downloads every input the manifest's build needs (its downloads and git sources) into\n"
	       "the cache, checked against their pins, so that a later build can run offline.\n"
	       "Prints one line per input: NAME and its path in the cache.",
	.options = fetch_options,
	.min_operands = 1,
	.max_operands = 1,
	.main = cmd_fetch,
};

static int cmd_pin(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	cleanup_manifest struct ib_manifest *m = ib_overlay_load(a.manifest, NULL, err);
	if (m == NULL)
		return -1;
	size_t n = 0;
	if (ib_inputs_pin(m, stdout, &n, err) < 0)
		return ib_error_wrap(err, "pin '%s'", a.manifest);
	if (n == 0)
		ib_log_info("%s: nothing to pin, every download has a sha256", m->path);
	return 0;
}

const struct ib_cmd ib_cmd_pin = {
	.name = "pin",
	.args_doc = "MANIFEST",
	.summary = "download unpinned inputs once and record their sha256",
	.doc = "Downloads each download whose sha256 is \"unknown\" once, and writes the digest it got\n"
	       "into the manifest in place (nothing else in the file changes). This is trust on first\n"
	       "use: compare the recorded digests with a source you trust.",
	.min_operands = 1,
	.max_operands = 1,
	.main = cmd_pin,
};
