/* imgbuild advise's engine (advise.h): targets from chips.toml or the host's
 * GPUs, and the manifest written from the nearest seed. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "advise.h"
#include "gpus.h"
#include "manifest.h"
#include "overlay.h"
#include "paths.h"
#include "util.h"

void ib_advise_targets_free(struct ib_advise_target *t, size_t n)
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

static void push(struct ib_advise_target **t, size_t *n, struct ib_chip_match m, const char *found)
{
	for (size_t i = 0; i < *n; i++) /* the same device seen twice (auto: sysfs and /proc) */
		if ((*t)[i].m.pci && m.pci && strcmp((*t)[i].m.pci, m.pci) == 0 && m.chip && (*t)[i].m.chip &&
		    strcmp((*t)[i].m.chip, m.chip) == 0)
			return;
	*t = xrealloc(*t, (*n + 1) * sizeof(**t));
	(*t)[*n] = (struct ib_advise_target){ .m = m, .found = found ? xstrdup(found) : NULL };
	(*n)++;
}

/* auto: every NVIDIA GPU of this host (or of $IMGBUILD_HOST_ROOT, for tests). */
static int host_targets(const struct ib_compat *c, struct ib_advise_target **t, size_t *n, ib_error_t *err)
{
	const char *root = getenv("IMGBUILD_HOST_ROOT");
	struct ib_host_gpus g;
	if (ib_gpus_scan(root ? root : "", &g, err) < 0)
		return -1;
	for (size_t i = 0; i < g.n; i++) {
		const struct ib_host_gpu *h = &g.v[i];
		cleanup_free char *found =
			xasprintf("host GPU %s%s%s", h->bus, h->model ? ", model " : "", h->model ? h->model : "");
		size_t before = *n;
		struct ib_chip_match *ms = NULL;
		size_t k = h->pci ? ib_compat_find_chips(c, h->pci, &ms) : 0;
		for (size_t j = 0; j < k; j++)
			push(t, n, ms[j], found);
		free(ms);
		if (*n == before && h->pciids_name) {
			/* Not in chips.toml: the chip as pci.ids names it ("GP108 [GeForce GT 1030]"). */
			struct ib_advise_target x = { 0 };
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
			printf("%s: %s%s not in builder/chips.toml and no pci.ids names it\n", found, h->model ? "model " : "",
			       h->model ? h->model : "");
	}
	if (g.n == 0)
		printf("no NVIDIA GPU found (looked at %s/sys/bus/pci/devices and %s/proc/driver/nvidia/gpus)\n",
		       root ? root : "", root ? root : "");
	ib_gpus_free(&g);
	return 0;
}

int ib_advise_targets(const struct ib_compat *c, const char *gpu, struct ib_advise_target **t, size_t *n, ib_error_t *err)
{
	*t = NULL;
	*n = 0;
	if (strcmp(gpu, "auto") == 0)
		return host_targets(c, t, n, err);
	struct ib_chip_match *ms = NULL;
	size_t k = ib_compat_find_chips(c, gpu, &ms);
	for (size_t i = 0; i < k; i++)
		push(t, n, ms[i], NULL);
	free(ms);
	return 0;
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
static char *rewrite(const char *text, const char *seed_dir, const char *out_dir, const char *archs, const char *header)
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
	bool exact; /* its archs already cover every chip */
};

static int cmp_seed(const void *a, const void *b)
{
	const struct seed *x = a, *y = b;
	if (x->exact != y->exact)
		return x->exact ? -1 : 1;
	return -ib_version_cmp(ib_compat_seed_rank(x->m), ib_compat_seed_rank(y->m));
}

/* The compute capabilities in T that have a stack, once each. */
static void stack_ccs(const struct ib_compat *c, const struct ib_advise_target *t, size_t n, struct ib_strv *ccs)
{
	for (size_t i = 0; i < n; i++) {
		if (t[i].m.cc == NULL)
			continue;
		struct ib_advice a;
		ib_compat_advise(c, t[i].m.cc, &a);
		bool dup = false;
		for (size_t k = 0; k < ccs->n; k++)
			dup = dup || strcmp(ccs->v[k], t[i].m.cc) == 0;
		if (a.have_stack && !dup)
			ib_strv_push(ccs, t[i].m.cc);
	}
}

static void seeds_free(struct seed *seeds, size_t ns)
{
	for (size_t s = 0; s < ns; s++) {
		free(seeds[s].path);
		ib_manifest_free(seeds[s].m);
	}
	free(seeds);
}

/* The seed manifests in DIR whose driver still drives every chip of CCS,
 * those whose archs already cover them first, then the newest CUDA first. */
static int load_seeds(const struct ib_compat *c, const char *dir, const struct ib_strv *ccs, struct seed **out, size_t *n_out,
		      ib_error_t *err)
{
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
		struct ib_manifest *m = ib_overlay_load(path, NULL, &lerr);
		ib_error_free(&lerr);
		if (m == NULL || ib_compat_seed_rank(m) == NULL) {
			ib_manifest_free(m);
			free(path);
			continue;
		}
		bool usable = true, exact = true;
		for (size_t k = 0; k < ccs->n; k++) {
			/* the image's driver must still drive the GPU (plan's arch-driver) */
			const char *branch = ib_compat_last_branch(c, ccs->v[k], NULL, NULL);
			const char *min_driver = ib_manifest_pin_value(m, "min_driver");
			if (branch && min_driver && ib_version_cmp_n(min_driver, branch, 1) > 0)
				usable = false;
			exact = exact && ib_compat_arch_covered(ccs->v[k], &m->stack.archs);
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
	*out = seeds;
	*n_out = ns;
	return 0;
}

/* The seed's archs with every chip of CCS it does not cover added, as TOML
 * array items; NULL when it covers them all. */
static char *seed_archs(const struct seed *seed, const struct ib_strv *ccs)
{
	if (seed->exact)
		return NULL;
	const struct ib_manifest *m = seed->m;
	char *archs = NULL;
	for (size_t i = 0; i < m->stack.archs.n; i++) {
		char *next = xasprintf("%s%s\"%s\"", archs ? archs : "", archs ? ", " : "", m->stack.archs.v[i]);
		free(archs);
		archs = next;
	}
	for (size_t k = 0; k < ccs->n; k++)
		if (!ib_compat_arch_covered(ccs->v[k], &m->stack.archs)) {
			char *next = xasprintf("%s, \"%s\"", archs, ccs->v[k]);
			free(archs);
			archs = next;
		}
	return archs;
}

/* "GeForce GTX 860M (GM107M, 5.0), ..." for the header. */
static char *target_names(const struct ib_advise_target *t, size_t n)
{
	char *names = NULL;
	for (size_t i = 0; i < n; i++) {
		char *next = xasprintf("%s%s%s (%s, %s)", names ? names : "", names ? ", " : "", t[i].m.name, t[i].m.chip,
				       t[i].m.cc ? t[i].m.cc : "?");
		free(names);
		names = next;
	}
	return names;
}

/* Writes SEED, rewritten for OUTDIR, to TMP and checks it as plan would:
 * 1 when plan accepts it (then renamed to OUT), 0 when not (*WHY says why),
 * -1 on an error. */
static int try_seed(const struct ib_compat *c, const struct seed *seed, const char *names, const struct ib_strv *ccs,
		    const char *outdir, const char *tmp, const char *out, char **why, ib_error_t *err)
{
	const struct ib_manifest *m = seed->m;
	cleanup_free char *archs = seed_archs(seed, ccs);
	cleanup_free char *header = xasprintf("# Written by `imgbuild advise` for %s from %s%s.\n# Check it with "
					      "`imgbuild plan`; the comments below are the seed's.\n\n",
					      names, seed->path, archs ? " (with the GPU's arch added)" : "");
	cleanup_free char *text = rewrite(m->text, m->dir, outdir, archs, header);
	if (ib_write_file_atomic(tmp, text, strlen(text), 0644, err) < 0)
		return -1;
	ib_error_t perr = NULL;
	struct ib_manifest *w = ib_overlay_load(tmp, NULL, &perr);
	struct ib_verdicts v = { 0 };
	const char *fail = NULL;
	int rc = 0;
	if (w && ib_compat_check(c, w, &v, &perr) == 0)
		for (size_t i = 0; i < v.n && !fail; i++)
			if (v.v[i].level == IB_VERDICT_FAIL)
				fail = v.v[i].message;
	if (w == NULL || fail) {
		free(*why);
		*why = xasprintf("%s: %s", seed->path, w ? fail : (perr ? perr->msg : "?"));
	} else if (rename(tmp, out) < 0) {
		rc = ib_error_set(err, errno, "advise: rename '%s' to '%s'", tmp, out);
	} else {
		printf("wrote %s from %s%s; `imgbuild plan %s` accepts it\n", out, seed->path, archs ? " (archs extended)" : "",
		       out);
		rc = 1;
	}
	ib_verdicts_free(&v);
	ib_manifest_free(w);
	ib_error_free(&perr);
	unlink(tmp);
	return rc;
}

int ib_advise_write_manifest(const struct ib_compat *c, const struct ib_advise_target *t, size_t n, const char *out, ib_error_t *err)
{
	cleanup_strv struct ib_strv ccs = { 0 };
	stack_ccs(c, t, n, &ccs);
	if (ccs.n == 0)
		return ib_error_set(err, EINVAL, "advise: no stack in compat.toml for this GPU, so no manifest to write");
	cleanup_free char *dir = xasprintf("%s/manifests", ib_data_dir());
	struct seed *seeds = NULL;
	size_t ns = 0;
	if (load_seeds(c, dir, &ccs, &seeds, &ns, err) < 0)
		return -1;

	char outdir[PATH_MAX];
	cleanup_free char *out_parent = xstrdup(out);
	char *slash = strrchr(out_parent, '/');
	if (slash)
		*slash = '\0';
	if (realpath(slash ? (out_parent[0] ? out_parent : "/") : ".", outdir) == NULL) {
		int e = errno;
		seeds_free(seeds, ns);
		return ib_error_set(err, e, "advise: the folder of '%s'", out);
	}
	cleanup_free char *tmp = xasprintf("%s/.%s.tmp-%d.toml", outdir, slash ? slash + 1 : out, (int)getpid());
	cleanup_free char *names = target_names(t, n);
	cleanup_free char *why = NULL;
	int rc = 0;
	for (size_t s = 0; s < ns && rc == 0; s++)
		rc = try_seed(c, &seeds[s], names, &ccs, outdir, tmp, out, &why, err);
	seeds_free(seeds, ns);
	if (rc < 0)
		return -1;
	if (rc == 0)
		return ib_error_set(err, EINVAL, "advise: no seed manifest in %s gives a manifest plan accepts%s%s", dir,
				    why ? "; last: " : "", why ? why : "");
	return 0;
}
