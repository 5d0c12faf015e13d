/* imgbuild advise GPU|auto [--manifest OUT.toml] | advise --table
 * Students do not know their GPU's compute capability, and nvidia-smi on old
 * drivers cannot tell them. advise names every chip a marketing name or PCI id
 * can mean, and the newest stack compat.toml allows for each, with sources; it
 * can write a manifest from the nearest seed manifest that plan accepts. All
 * knowledge is data (builder/compat.toml, builder/chips.toml) read by compat.c. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "compat.h"
#include "gpus.h"
#include "manifest.h"
#include "paths.h"
#include "util.h"

/* One chip to advise on, with where it was found. */
struct target {
	struct ib_chip_match m;
	char *found;	/* "host GPU 0000:01:00.0" for auto, else NULL */
	char *own_name, *own_chip, *own_pci, *own_src;	/* storage when the match came from pci.ids */
};

static void targets_free(struct target *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(t[i].found);
		free(t[i].own_name);
		free(t[i].own_chip);
		free(t[i].own_pci);
		free(t[i].own_src);
	}
	free(t);
}

static void push(struct target **t, size_t *n, struct ib_chip_match m, const char *found)
{
	for (size_t i = 0; i < *n; i++)	/* the same device seen twice (auto: sysfs and /proc) */
		if ((*t)[i].m.pci && m.pci && strcmp((*t)[i].m.pci, m.pci) == 0 && m.chip && (*t)[i].m.chip &&
		    strcmp((*t)[i].m.chip, m.chip) == 0)
			return;
	*t = xrealloc(*t, (*n + 1) * sizeof(**t));
	(*t)[*n] = (struct target){ .m = m, .found = found ? xstrdup(found) : NULL };
	(*n)++;
}

/* auto: every NVIDIA GPU of this host (or of $IMGBUILD_HOST_ROOT, for tests). */
static int host_targets(const struct ib_compat *c, struct target **t, size_t *n, ib_error_t *err)
{
	const char *root = getenv("IMGBUILD_HOST_ROOT");
	struct ib_host_gpus g;
	if (ib_gpus_scan(root ? root : "", &g, err) < 0)
		return -1;
	for (size_t i = 0; i < g.n; i++) {
		const struct ib_host_gpu *h = &g.v[i];
		cleanup_free char *found = xasprintf("host GPU %s%s%s", h->bus, h->model ? ", model " : "",
						     h->model ? h->model : "");
		size_t before = *n;
		struct ib_chip_match *ms = NULL;
		size_t k = h->pci ? ib_compat_find_chips(c, h->pci, &ms) : 0;
		for (size_t j = 0; j < k; j++)
			push(t, n, ms[j], found);
		free(ms);
		if (*n == before && h->pciids_name) {
			/* Not in chips.toml: the chip as pci.ids names it ("GP108 [GeForce GT 1030]"). */
			struct target x = { 0 };
			const char *br = strchr(h->pciids_name, '[');
			x.own_chip = xstrndup(h->pciids_name, strcspn(h->pciids_name, " ["));
			x.own_name = br ? xstrndup(br + 1, strcspn(br + 1, "]")) : xstrdup(h->pciids_name);
			x.own_pci = xstrdup(h->pci);
			x.own_src = xasprintf("the host's pci.ids (%s); chip not in builder/chips.toml", g.pciids);
			x.m = (struct ib_chip_match){ x.own_pci, x.own_name, x.own_chip, NULL, x.own_src, NULL };
			x.m.cc = ib_compat_chip_cc(c, x.own_chip, &x.m.cc_source);
			x.found = xstrdup(found);
			*t = xrealloc(*t, (*n + 1) * sizeof(**t));
			(*t)[(*n)++] = x;
		}
		if (*n == before && h->model) {
			k = ib_compat_find_chips(c, h->model, &ms);
			for (size_t j = 0; j < k; j++)
				push(t, n, ms[j], found);
			free(ms);
		}
		if (*n == before)
			printf("%s: %s%s not in builder/chips.toml and no pci.ids names it\n", found,
			       h->model ? "model " : "", h->model ? h->model : "");
	}
	if (g.n == 0)
		printf("no NVIDIA GPU found (looked at %s/sys/bus/pci/devices and %s/proc/driver/nvidia/gpus)\n",
		       root ? root : "", root ? root : "");
	ib_gpus_free(&g);
	return 0;
}

static void line(const char *what, const struct ib_advice_item *it)
{
	printf("  %-13s %s\n", what, it->value);
	printf("  %-13s   source: %s\n", "", it->source ? it->source : "builder/compat.toml");
}

static void print_target(const struct ib_compat *c, const struct target *t)
{
	printf("%s%s%s%s: chip %s", t->m.name, t->m.pci ? " (" : "", t->m.pci ? t->m.pci : "", t->m.pci ? ")" : "",
	       t->m.chip);
	if (t->found)
		printf(", found as %s", t->found);
	printf("\n  %-13s   source: %s\n", "", t->m.source ? t->m.source : "-");
	if (t->m.cc == NULL) {
		printf("  compute capability unknown: no [[chip]] row in builder/chips.toml for %s\n\n", t->m.chip);
		return;
	}
	struct ib_advice a;
	ib_compat_advise(c, t->m.cc, &a);
	struct ib_advice_item cc = { "", t->m.cc_source };
	snprintf(cc.value, sizeof(cc.value), "%s", t->m.cc);
	line("compute cap.", &cc);
	line("driver branch", &a.branch);
	line("CUDA range", &a.cuda_range);
	if (!a.have_stack) {
		printf("  newest stack  none: %s\n\n", a.why_none);
		return;
	}
	printf("  newest stack compat.toml allows:\n");
	line("driver", &a.driver);
	line("CUDA", &a.cuda);
	line("cuDNN", &a.cudnn);
	line("gcc", &a.gcc);
	line("torch", &a.torch);
	line("torchvision", &a.torchvision);
	line("python", &a.python);
	line("magma", &a.magma);
	char torch[32];
	snprintf(torch, sizeof(torch), "%.*s", (int)strcspn(a.torch.value, " "), a.torch.value);
	struct ib_advice_item note = { "", NULL };
	const char *fix = ib_compat_ext_arch_fix(c, t->m.cc, torch, &note.source);
	if (fix) {
		snprintf(note.value, sizeof(note.value), "torch %s's extension builder rejects %s: %s", torch, t->m.cc, fix);
		line("note", &note);
	}
	printf("\n");
}

/* "10.2 (built for ...)" -> "10.2" */
static const char *first_word(const char *s, char *buf, size_t len)
{
	snprintf(buf, len, "%.*s", (int)strcspn(s, " "), s);
	return buf;
}

static void print_table(const struct ib_compat *c)
{
	struct ib_chip_match *d = NULL;
	size_t n = ib_compat_devices(c, &d);
	printf("| GPU | PCI id | chip | compute capability | last driver branch | CUDA (nvcc) | newest stack: CUDA, cuDNN, gcc, torch, torchvision, python |\n");
	printf("|---|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < n; i++) {
		if (d[i].cc == NULL) {
			printf("| %s | %s | %s | ? | ? | ? | ? |\n", d[i].name, d[i].pci, d[i].chip);
			continue;
		}
		struct ib_advice a;
		ib_compat_advise(c, d[i].cc, &a);
		char b1[64], b2[64], b3[64], b4[64], b5[64], b6[64], range[64];
		snprintf(range, sizeof(range), "%.*s", (int)strcspn(a.cuda_range.value, " "), a.cuda_range.value);
		printf("| %s | %s | %s | %s | %s%s | %s | ", d[i].name, d[i].pci, d[i].chip, d[i].cc,
		       a.last_branch ? "R" : "current", a.last_branch ? a.last_branch : "", range);
		if (a.have_stack)
			printf("%s, %s, %s, %s, %s, %s |\n", first_word(a.cuda.value, b1, sizeof(b1)),
			       first_word(a.cudnn.value, b2, sizeof(b2)), first_word(a.gcc.value, b3, sizeof(b3)),
			       first_word(a.torch.value, b4, sizeof(b4)), first_word(a.torchvision.value, b5, sizeof(b5)),
			       first_word(a.python.value, b6, sizeof(b6)));
		else
			printf("none in compat.toml |\n");
	}
	free(d);
	printf("\nSources: PCI id -> chip from pci.ids @c1c12547d626ebf05fd0223144ad87fab5e95d06 and chip ->\n"
	       "compute capability from the Wikipedia CUDA table (compat-facts §4c), in `builder/chips.toml`;\n"
	       "last driver branch `[[arch_driver]]` (§1d); CUDA range `[[cuda_arch]]` (§4a); the stack from\n"
	       "`[[cuda_driver]]` (§1a), `[[cudnn]]` (§5a), `[[cuda_gcc]]` (§2) and `[[torch]]` (§3) — the newest\n"
	       "CUDA the card's last driver branch runs that has a cuDNN and a torch row. `imgbuild advise GPU`\n"
	       "prints each value with its own source.\n");
}

/* ---- --manifest ---- */

/* The path from folder FROM to file TO, both absolute and resolved. */
static char *relpath(const char *from, const char *to)
{
	size_t common = 0;
	for (size_t i = 0; from[i] && from[i] == to[i]; i++)
		if (from[i] == '/')
			common = i;
	if (from[strlen(from)] == '\0' && strncmp(from, to, strlen(from)) == 0 && to[strlen(from)] == '/')
		common = strlen(from);
	char *out = xstrdup("");
	for (const char *p = from + common; *p; p++)
		if (*p == '/') {
			char *next = xasprintf("%s../", out);
			free(out);
			out = next;
		}
	char *next = xasprintf("%s%s", out, to + common + 1);
	free(out);
	return next;
}

/* The seed's text with paths re-pointed from SEED_DIR to OUT_DIR and ARCHS (when
 * not NULL) as its archs line, under a header saying where it came from. */
static char *rewrite(const char *text, const char *seed_dir, const char *out_dir, const char *archs,
		     const char *header)
{
	char *out = xstrdup(header);
	const char *p = text;
	while (*p) {
		size_t len = strcspn(p, "\n");
		cleanup_free char *ln = xstrndup(p, len);
		p += len + (p[len] == '\n');
		char *piece = NULL;
		static const char *const keys[] = { "script = \"", "keyring = \"", "path = \"", NULL };
		for (const char *const *k = keys; *k && !piece; k++) {
			char *at = strstr(ln, *k);
			if (at == NULL || (at != ln && at[-1] != ' ' && at[-1] != '{'))
				continue;
			char *v = at + strlen(*k), *end = strchr(v, '"');
			if (end == NULL || *v == '/' || end == v)
				continue;
			cleanup_free char *rel = xstrndup(v, (size_t)(end - v));
			cleanup_free char *joined = ib_path_join(seed_dir, rel);
			char real[PATH_MAX];
			if (realpath(joined, real) == NULL)
				continue;
			cleanup_free char *np = relpath(out_dir, real);
			piece = xasprintf("%.*s%s%s", (int)(v - ln), ln, np, end);
		}
		if (!piece && archs && strncmp(ln, "archs = [", 9) == 0)
			piece = xasprintf("archs = [%s]", archs);
		char *next = xasprintf("%s%s\n", out, piece ? piece : ln);
		free(piece);
		free(out);
		out = next;
	}
	return out;
}

struct seed {
	char *path;
	struct ib_manifest *m;
	bool exact;	/* its archs already cover every chip */
};

static int cmp_seed(const void *a, const void *b)
{
	const struct seed *x = a, *y = b;
	if (x->exact != y->exact)
		return x->exact ? -1 : 1;
	return -ib_version_cmp(x->m->stack.cuda, y->m->stack.cuda);
}

/* Writes OUT from the nearest seed manifest (DATADIR/manifests) that plan accepts
 * for every chip in T that has a stack. */
static int write_manifest(const struct ib_compat *c, const struct target *t, size_t n, const char *out,
			  ib_error_t *err)
{
	cleanup_strv struct ib_strv ccs = { 0 };
	for (size_t i = 0; i < n; i++) {
		if (t[i].m.cc == NULL)
			continue;
		struct ib_advice a;
		ib_compat_advise(c, t[i].m.cc, &a);
		bool dup = false;
		for (size_t k = 0; k < ccs.n; k++)
			dup = dup || strcmp(ccs.v[k], t[i].m.cc) == 0;
		if (a.have_stack && !dup)
			ib_strv_push(&ccs, t[i].m.cc);
	}
	if (ccs.n == 0)
		return ib_error_set(err, EINVAL, "advise: no stack in compat.toml for this GPU, so no manifest to write");
	cleanup_free char *dir = xasprintf("%s/manifests", ib_data_dir());
	DIR *d = opendir(dir);
	if (d == NULL)
		return ib_error_set(err, errno, "advise: open the seed manifests in '%s'", dir);
	struct seed *seeds = NULL;
	size_t ns = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		const char *dot = strrchr(e->d_name, '.');
		if (e->d_name[0] == '.' || dot == NULL || strcmp(dot, ".toml") != 0)
			continue;
		char *path = xasprintf("%s/%s", dir, e->d_name);
		ib_error_t lerr = NULL;
		struct ib_manifest *m = ib_manifest_load(path, &lerr);
		ib_error_free(&lerr);
		/* A seed builds torch against CUDA for listed archs. */
		if (m == NULL || !m->stack.cuda || !m->stack.torch || m->stack.archs.n == 0) {
			ib_manifest_free(m);
			free(path);
			continue;
		}
		bool usable = true, exact = true;
		for (size_t k = 0; k < ccs.n; k++) {
			/* the image's driver must still drive the GPU (plan's arch-driver) */
			const char *branch = ib_compat_last_branch(c, ccs.v[k], NULL, NULL);
			if (branch && m->stack.min_driver && ib_version_cmp_n(m->stack.min_driver, branch, 1) > 0)
				usable = false;
			exact = exact && ib_compat_arch_covered(ccs.v[k], &m->stack.archs);
		}
		if (!usable) {
			ib_manifest_free(m);
			free(path);
			continue;
		}
		seeds = xrealloc(seeds, (ns + 1) * sizeof(*seeds));
		seeds[ns++] = (struct seed){ path, m, exact };
	}
	closedir(d);
	if (ns > 1)
		qsort(seeds, ns, sizeof(*seeds), cmp_seed);

	char outdir[PATH_MAX];
	cleanup_free char *tmp = NULL;
	cleanup_free char *why = NULL;
	cleanup_free char *out_parent = xstrdup(out);
	char *slash = strrchr(out_parent, '/');
	if (slash)
		*slash = '\0';
	int rc = -1;
	if (realpath(slash ? (out_parent[0] ? out_parent : "/") : ".", outdir) == NULL) {
		ib_error_set(err, errno, "advise: the folder of '%s'", out);
		goto done;
	}
	tmp = xasprintf("%s/.%s.tmp-%d.toml", outdir, slash ? slash + 1 : out, (int)getpid());
	for (size_t s = 0; s < ns && rc < 0; s++) {
		const struct ib_manifest *m = seeds[s].m;
		cleanup_free char *archs = NULL;
		if (!seeds[s].exact) {
			for (size_t i = 0; i < m->stack.archs.n; i++) {
				char *next = xasprintf("%s%s\"%s\"", archs ? archs : "", archs ? ", " : "", m->stack.archs.v[i]);
				free(archs);
				archs = next;
			}
			for (size_t k = 0; k < ccs.n; k++)
				if (!ib_compat_arch_covered(ccs.v[k], &m->stack.archs)) {
					char *next = xasprintf("%s, \"%s\"", archs, ccs.v[k]);
					free(archs);
					archs = next;
				}
		}
		cleanup_free char *names = NULL;
		for (size_t i = 0; i < n; i++) {
			char *next = xasprintf("%s%s%s (%s, %s)", names ? names : "", names ? ", " : "", t[i].m.name,
					       t[i].m.chip, t[i].m.cc ? t[i].m.cc : "?");
			free(names);
			names = next;
		}
		cleanup_free char *header = xasprintf("# Written by `imgbuild advise` for %s from %s%s.\n# Check it with "
						      "`imgbuild plan`; the comments below are the seed's.\n\n",
						      names, seeds[s].path, archs ? " (with the GPU's arch added)" : "");
		cleanup_free char *text = rewrite(m->text, m->dir, outdir, archs, header);
		if (ib_write_file_atomic(tmp, text, strlen(text), 0644, err) < 0)
			goto done;
		ib_error_t perr = NULL;
		struct ib_manifest *w = ib_manifest_load(tmp, &perr);
		struct ib_verdicts v = { 0 };
		const char *fail = NULL;
		if (w && ib_compat_check(c, w, &v, &perr) == 0)
			for (size_t i = 0; i < v.n && !fail; i++)
				if (v.v[i].level == IB_VERDICT_FAIL)
					fail = v.v[i].message;
		if (w == NULL || fail) {
			free(why);
			why = xasprintf("%s: %s", seeds[s].path, w ? fail : (perr ? perr->msg : "?"));
		} else if (rename(tmp, out) < 0) {
			ib_error_set(err, errno, "advise: rename '%s' to '%s'", tmp, out);
			unlink(tmp);
			ib_verdicts_free(&v);
			ib_manifest_free(w);
			goto done;
		} else {
			printf("wrote %s from %s%s; `imgbuild plan %s` accepts it\n", out, seeds[s].path,
			       archs ? " (archs extended)" : "", out);
			rc = 0;
		}
		ib_verdicts_free(&v);
		ib_manifest_free(w);
		ib_error_free(&perr);
		unlink(tmp);
	}
	if (rc < 0 && (err == NULL || *err == NULL))
		ib_error_set(err, EINVAL, "advise: no seed manifest in %s gives a manifest plan accepts%s%s", dir,
			     why ? "; last: " : "", why ? why : "");
done:
	for (size_t s = 0; s < ns; s++) {
		free(seeds[s].path);
		ib_manifest_free(seeds[s].m);
	}
	free(seeds);
	return rc;
}

enum { OPT_MANIFEST = IB_OPT_LONG, OPT_TABLE };

static const struct ib_opt options[] = {
	{ OPT_MANIFEST, "manifest", "OUT", "also write OUT from the nearest seed manifest that plan accepts\n"
					   "(OUT must be inside a project: a folder with stages/ above it)" },
	{ OPT_TABLE, "table", NULL, "print the table of every known GPU (docs/compat.md's)" },
	{ 0 },
};

struct args {
	const char *gpu, *out;
	bool table;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	switch (key) {
	case OPT_MANIFEST: a->out = arg; break;
	case OPT_TABLE: a->table = true; break;
	case IB_OPT_OPERAND: a->gpu = arg; break;
	}
	return 0;
}

static int cmd_advise(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : IB_EXIT_OK;
	const char *gpu = a.gpu, *out = a.out;
	bool table = a.table;
	if (table == (gpu != NULL) || (table && out))
		return ib_cmd_usage_error(cmd, err);
	const struct ib_compat *c = ib_compat_default(err);
	if (c == NULL)
		return -1;
	if (table) {
		print_table(c);
		return IB_EXIT_OK;
	}
	struct target *t = NULL;
	size_t n = 0;
	if (strcmp(gpu, "auto") == 0) {
		if (host_targets(c, &t, &n, err) < 0)
			return -1;
	} else {
		struct ib_chip_match *ms = NULL;
		size_t k = ib_compat_find_chips(c, gpu, &ms);
		for (size_t i = 0; i < k; i++)
			push(&t, &n, ms[i], NULL);
		free(ms);
	}
	if (n == 0) {
		targets_free(t, n);
		if (strcmp(gpu, "auto") == 0)
			return IB_EXIT_FAIL;
		return ib_error_set(err, ENOENT,
				    "advise: no GPU in builder/chips.toml matches '%s' (try its PCI id from `lspci -nn`, "
				    "e.g. 10de:1392, or `imgbuild advise auto`)",
				    gpu);
	}
	if (n > 1)
		printf("'%s' can mean %zu chips; each is listed:\n\n", gpu, n);
	for (size_t i = 0; i < n; i++)
		print_target(c, &t[i]);
	int rc = IB_EXIT_OK;
	if (out && write_manifest(c, t, n, out, err) < 0)
		rc = -1;
	targets_free(t, n);
	return rc;
}

const struct ib_cmd ib_cmd_advise = {
	.name = "advise",
	.args_doc = "GPU|auto",
	.summary = "say which CUDA/torch stack a GPU can use (name, PCI id or auto)",
	.doc = "say which stack an NVIDIA GPU can use. GPU is a marketing name (\"GeForce GTX 860M\"),\n"
	       "a PCI id (10de:1392) or auto (this host's GPUs, from /sys/bus/pci/devices,\n"
	       "/proc/driver/nvidia/gpus and pci.ids). Prints every chip the name can mean, its compute\n"
	       "capability, last driver branch, CUDA range and the newest stack builder/compat.toml\n"
	       "allows, each with its source. imgbuild advise --table prints every known GPU.\n"
	       "exit status: 0 advice printed, 1 no GPU matches, 2 bad usage",
	.options = options,
	.min_operands = 0,
	.max_operands = 1,
	.main = cmd_advise,
};
