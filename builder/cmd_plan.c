/* imgbuild plan MANIFEST: everything a build would do, decided before it does
 * any of it - the base, the stages with their pinned inputs and cache keys, the
 * network each uses, the compatibility verdicts, and the host driver. Nothing
 * is downloaded and nothing runs; a failing rule makes the exit status 2 so
 * that a mistake like the seed's (CUDA 9.2 with cuDNN and magma built for 9.0)
 * is caught in a second rather than after hours of compiling. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "compat.h"
#include "driver.h"
#include "imgmeta.h"
#include "layers.h"
#include "manifest.h"
#include "overlay.h"
#include "util.h"

/* The manifest is untrusted: what plan prints of it passes through ib_escape,
 * so that an env value or URL cannot draw lines or move the cursor. */
__attribute__((format(printf, 1, 2))) static void out(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cleanup_free char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	cleanup_free char *shown = ib_escape(msg, true);
	fputs(shown, stdout);
}

static void print_list(const char *label, const struct ib_strv *v, const char *none)
{
	out("  %-11s", label);
	if (v->n == 0)
		out(" %s", none);
	for (size_t i = 0; i < v->n; i++)
		out(" %s", v->v[i]);
	out("\n");
}

/* A path as the user would write it: relative to the project when inside it. */
static const char *rel(const struct ib_manifest *m, const char *path)
{
	size_t n = strlen(m->project_root);
	if (strncmp(path, m->project_root, n) == 0 && path[n] == '/')
		return path + n + 1;
	return path;
}

static void print_base(const struct ib_manifest *m, const char *key)
{
	out("base       %s %s", m->base.distro, m->base.suite);
	for (size_t i = 0; i < m->base.extra_suites.n; i++)
		out(" + %s", m->base.extra_suites.v[i]);
	out(", variant %s\n", m->base.variant);
	if (m->base.mirrors.n > 0)
		print_list("mirrors", &m->base.mirrors, "");
	else if (strcmp(m->base.distro, "debian") == 0)
		out("  %-11s the host's apt mirror at build time (see `imgbuild mirror debian`)\n", "mirrors");
	else
		out("  %-11s the distribution's archive\n", "mirrors");
	print_list("components", &m->base.components, "main");
	out("  %-11s %s\n", "keyring", m->base.keyring ? rel(m, m->base.keyring) : "the host's keyring for the distribution");
	print_list("packages", &m->base.packages, "(none beyond the variant)");
	out("  %-11s %s\n", "key", key);
}

static void print_stack(const struct ib_manifest *m)
{
	out("toolchain  gcc %s\n", m->toolchain.gcc ? m->toolchain.gcc : "(the distribution's default)");
	out("stack     ");
	bool any = false;
	for (size_t i = 0; i < m->stack.pins.n; i++) {
		const struct ib_pin *p = &m->stack.pins.v[i];
		out(" %s %s", p->key, p->value);
		if (p->derived_from)
			out(" (derived from %s)", p->derived_from);
		any = true;
	}
	if (m->stack.archs.n) {
		out(" archs");
		for (size_t i = 0; i < m->stack.archs.n; i++)
			out("%s%s", i ? ";" : " ", m->stack.archs.v[i]);
		any = true;
	}
	out("%s\n", any ? "" : " (nothing declared)");
}

static void print_input(const struct ib_manifest *m, const char *name)
{
	const struct ib_download *d = ib_manifest_download(m, name);
	const struct ib_source *s = ib_manifest_source(m, name);
	if (d) {
		size_t root_len = strlen(m->project_root);
		const char *file = d->url + strlen("file://");
		if (d->project_file && strncmp(file, m->project_root, root_len) == 0 && file[root_len] == '/')
			out("     input %-10s project file %s\n", name, file + root_len + 1);
		else
			out("     input %-10s download %s\n", name, d->url);
		out("     %-16s sha256 %s\n", "", d->sha256 ? d->sha256 : "UNKNOWN (run imgbuild pin)");
		if (d->mirrors.n)
			out("     %-16s %zu fallback mirror%s\n", "", d->mirrors.n, d->mirrors.n > 1 ? "s" : "");
	} else if (s) {
		out("     input %-10s git %s\n", name, s->url);
		out("     %-16s tag %s = commit %s%s\n", "", s->tag, s->commit, s->submodules ? ", with submodules" : "");
		if (s->mirrors.n)
			out("     %-16s %zu fallback mirror%s%s\n", "", s->mirrors.n, s->mirrors.n > 1 ? "s" : "",
			    s->rewrites.n ? " (submodule URLs rewritten)" : "");
	}
}

static void print_driver(const struct ib_manifest *m)
{
	struct ib_driver d;
	memset(&d, 0, sizeof(d));
	ib_error_t err = NULL;
	if (ib_driver_discover(&d, &err) < 0) {
		out("driver     discovery failed (%s); see `imgbuild driver`\n", err ? err->msg : "?");
		ib_error_free(&err);
		return;
	}
	if (!d.found)
		out("driver     no NVIDIA driver on this host: stages run without one, nothing is bound\n");
	else {
		out("driver     host driver %s: bound read-only into every stage and `imgbuild run --gpu`\n", d.version);
		/* The image's facts as pack will write them, through run --gpu's own preflight. */
		struct ib_facts f = { 0 };
		const char *min_driver = ib_manifest_pin_value(m, "min_driver");
		f.min_driver = min_driver ? xstrdup(min_driver) : NULL;
		for (size_t i = 0; i < m->stack.archs.n; i++)
			ib_strv_push(&f.archs, m->stack.archs.v[i]);
		f.have_archs = m->stack.archs.n > 0;
		if (ib_driver_preflight(&d, &f, &err) < 0) {
			out("           run --gpu on this host would refuse the image: %s\n", err->msg);
			ib_error_free(&err);
		} else {
			out("           run --gpu on this host: ok%s\n",
			    f.min_driver || f.have_archs ? " (driver version and GPU architectures checked)" : "");
		}
		ib_facts_free(&f);
	}
	out("           details: `imgbuild driver`\n");
	ib_driver_free(&d);
}

enum { OPT_DRIVER = IB_OPT_LONG };

static const struct ib_opt options[] = {
	{ OPT_DRIVER, "driver", "VERSION",
	  "also check a host running NVIDIA driver VERSION (e.g. 470.82.01):\n"
	  "new enough for the image, and not past the last driver branch\n"
	  "of the image's GPU architectures" },
	{ 0 },
};

struct args {
	const char *manifest, *host_driver;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	if (key == OPT_DRIVER)
		a->host_driver = arg;
	else
		a->manifest = arg;
	return 0;
}

/* The stages in order, each with its inputs, env and key, then who uses
 * the network. PARENT is the base key, NULL when it is unknown. */
static void print_stages(const struct ib_manifest *m, const char *parent)
{
	out("stages     %zu, in order\n", m->n_stages);
	char key[IB_KEY_LEN + 1];
	ib_error_t kerr = NULL;
	cleanup_strv struct ib_strv net = { 0 };
	for (size_t i = 0; i < m->n_stages; i++) {
		const struct ib_stage *s = &m->stages[i];
		out("  %2zu %-12s %-32s %s\n", i + 1, s->name, rel(m, s->script), s->network ? "network" : "no network");
		if (s->retries)
			out("     retries %d%s%s\n", s->retries, s->clean ? ", clean: " : "", s->clean ? s->clean : "");
		for (size_t k = 0; k < s->inputs.n; k++)
			print_input(m, s->inputs.v[k]);
		for (size_t k = 0; k < s->env.n; k++)
			out("     env   %s=%s\n", s->env.v[k].key, s->env.v[k].value);
		if (parent && ib_layers_stage_key(m, s, parent, key, &kerr) == 0) {
			out("     key   %s\n", key);
			parent = key;
		} else {
			if (parent)
				out("     key   unknown: %s\n", kerr ? kerr->msg : "?");
			else
				out("     key   unknown until the stages before it have keys\n");
			ib_error_free(&kerr);
			parent = NULL;
		}
		if (s->network)
			ib_strv_push(&net, s->name);
	}
	out("\nnetwork    ");
	if (net.n == 0)
		out("no stage uses the network");
	else {
		out("stage%s", net.n > 1 ? "s" : "");
		for (size_t i = 0; i < net.n; i++)
			out("%s%s", i ? ", " : " ", net.v[i]);
		out(" use%s the network; the other%s run%s in an empty network namespace", net.n > 1 ? "" : "s",
		    m->n_stages - net.n == 1 ? "" : "s", m->n_stages - net.n == 1 ? "s" : "");
	}
	out("\n           the base and every input are fetched before any stage runs\n");
}

/* The verdicts of the compat rules; counts the failures and warnings. */
static void print_checks(const struct ib_verdicts *v, size_t *fails_out, size_t *warns_out)
{
	size_t fails = 0, warns = 0;
	out("\nchecks     (rules: builder/compat.toml)\n");
	for (size_t i = 0; i < v->n; i++) {
		const struct ib_verdict *x = &v->v[i];
		fails += x->level == IB_VERDICT_FAIL;
		warns += x->level == IB_VERDICT_WARN;
		if (x->level == IB_VERDICT_FAIL && x->fix)
			out("  %-5s %-15s %s: %s\n", ib_verdict_level_name(x->level), x->rule, x->message, x->fix);
		else
			out("  %-5s %-15s %s\n", ib_verdict_level_name(x->level), x->rule, x->message);
		if (x->level == IB_VERDICT_WARN && x->fix)
			out("  %-5s %-15s fix: %s\n", "", "", x->fix);
		if (x->level != IB_VERDICT_OK)
			out("  %-5s %-15s source: %s\n", "", "", x->source);
	}
	*fails_out = fails;
	*warns_out = warns;
}

static int cmd_plan(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : IB_EXIT_OK;
	const char *manifest = a.manifest, *host_driver = a.host_driver;
	if (host_driver && !ib_version_valid(host_driver))
		return ib_error_usage(err, "--driver '%s' is not a driver version like 470.82.01", host_driver);

	cleanup_manifest struct ib_manifest *m = ib_overlay_load(manifest, NULL, err);
	if (m == NULL)
		return -1;
	const struct ib_compat *compat = ib_compat_default(err);
	if (compat == NULL)
		return -1;

	out("manifest   %s\n", m->path);
	out("project    %s\n", m->project_root);
	out("image      %s -> %s (compression %s, SOURCE_DATE_EPOCH %lld)\n", m->image.name, m->image.output,
	    m->image.compression == IB_COMPRESS_ZSTD ? "zstd" : "none", (long long)m->image.source_date_epoch);
	if (m->image.sign_key)
		out("sign       %s\n", m->image.sign_key);
	out("\n");

	/* Keys chain: a stage's key covers its parent's, so one unknown pin leaves
	 * every later key unknown too. */
	char base_key[IB_KEY_LEN + 1] = "";
	cleanup_free char *key_problem = NULL;
	ib_error_t kerr = NULL;
	if (ib_layers_base_key(m, base_key, &kerr) < 0) {
		key_problem = xstrdup(kerr ? kerr->msg : "?");
		ib_error_free(&kerr);
		snprintf(base_key, sizeof(base_key), "unknown (%s)", "see below");
	}
	print_base(m, key_problem ? key_problem : base_key);
	out("\n");
	print_stack(m);
	out("\n");

	print_stages(m, key_problem ? NULL : base_key);

	struct ib_verdicts v = { 0 };
	if (ib_compat_check(compat, m, &v, err) < 0) {
		ib_verdicts_free(&v);
		return -1;
	}
	if (host_driver)
		ib_compat_check_host(compat, m, host_driver, &v);
	size_t fails = 0, warns = 0;
	print_checks(&v, &fails, &warns);
	out("\n");
	print_driver(m);
	out("\n");

	if (fails) {
		out("plan: %zu check%s failed%s", fails, fails > 1 ? "s" : "", warns ? "," : "\n");
		if (warns)
			out(" %zu warning%s\n", warns, warns > 1 ? "s" : "");
		/* The summary on stdout stays whole when both go to one file. */
		fflush(stdout);
		for (size_t i = 0; i < v.n; i++)
			if (v.v[i].level == IB_VERDICT_FAIL)
				fprintf(stderr, "imgbuild: plan: rule %s failed: %s\n  fix: %s\n  source: %s\n", v.v[i].rule,
					v.v[i].message, v.v[i].fix ? v.v[i].fix : "-", v.v[i].source);
		ib_verdicts_free(&v);
		return IB_EXIT_USAGE;
	}
	out("plan: ok, %zu warning%s\n", warns, warns == 1 ? "" : "s");
	ib_verdicts_free(&v);
	return IB_EXIT_OK;
}

const struct ib_cmd ib_cmd_plan = {
	.name = "plan",
	.args_doc = "MANIFEST",
	.summary = "check a manifest and print its stages and compatibility verdicts",
	.doc = "check a manifest and print what a build would do: the base, the stages in order with\n"
	       "their pinned inputs, network use and cache keys, every compatibility rule's verdict,\n"
	       "and the host driver. Downloads and runs nothing.\n"
	       "exit status: 0 no rule fails (warnings allowed), 2 a rule fails or the manifest is invalid",
	.options = options,
	.min_operands = 1,
	.max_operands = 1,
	.main = cmd_plan,
};
