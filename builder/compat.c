/* Compatibility rules: builder/compat.toml loaded into row tables, and the
 * checks `imgbuild plan` runs on a manifest. The rows are data; what is code
 * here is only how a row applies (ranges, pairings, nearest release). */
#include "compat.h"
#include "paths.h"
#include "toml.h"
#include "util.h"
#include "version.h"

#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

struct gcc_row {
	char *cuda_min, *cuda_max, *gcc_min, *gcc_max, *source;
};
struct driver_row {
	char *cuda, *min_driver, *source;
};
struct arch_row {
	char *arch, *cuda_min, *cuda_max, *source;
};
struct ext_arch_row {
	char *arch, *torch_min, *fix, *source;
};
struct torch_row {
	char *torch, *commit;
	struct ib_strv torchvision;
	char *python_min, *python_max, *cuda_min, *cuda_max, *gcc_min, *gcc_max, *source;
};
struct cudnn_row {
	char *cudnn_min, *cudnn_max;
	struct ib_strv cuda;
	char *source;
};
struct magma_row {
	char *cuda, *package;
	struct ib_strv versions;
	char *source;
};
struct arch_driver_row {
	char *arch_min, *arch_max, *family, *last_branch, *source;
};
struct installer_row {
	char *prefix, *python, *source;
};
struct chip_row {
	char *chip, *cc, *source;
};
struct device_row {
	char *pci, *chip, *name, *source;
};
/* A build switch that only works with a conda package present: USE_MPI=1 makes
 * torch's CMake look for an MPI, which the seed takes from conda's openmpi. */
struct env_needs_row {
	char *env, *conda_package, *why, *source;
};

/* A [stack] key a manifest may set: declaring it here is all a new pin needs. */
struct pin_row {
	char *key, *what;
};

/* A rule between two pins that is nothing but ranges: while pin WHEN is within
 * [when_min, when_max], pin KEY must be within [min, max]. It lets a new pin
 * be checked without code (nccl against cuda, openmpi against torch). */
struct pin_range_row {
	char *rule, *when, *when_min, *when_max, *key, *min, *max, *source;
};

struct ib_compat {
	struct pin_row *pin;
	size_t n_pin;
	struct pin_range_row *pin_range;
	size_t n_pin_range;
	struct gcc_row *gcc;
	size_t n_gcc;
	struct driver_row *driver;
	size_t n_driver;
	struct arch_row *arch;
	size_t n_arch;
	struct ext_arch_row *ext_arch;
	size_t n_ext_arch;
	struct torch_row *torch;
	size_t n_torch;
	struct cudnn_row *cudnn;
	size_t n_cudnn;
	struct magma_row *magma;
	size_t n_magma;
	struct arch_driver_row *arch_driver;
	size_t n_arch_driver;
	struct installer_row *installer;
	size_t n_installer;
	struct chip_row *chip;
	size_t n_chip;
	struct device_row *device;
	size_t n_device;
	struct env_needs_row *env_needs;
	size_t n_env_needs;
	struct ib_kv_list rule_sources; /* [rule.ID] source = "..." */
};

static const char *basename_of(const char *url)
{
	const char *b = strrchr(url, '/');
	return b ? b + 1 : url;
}

/* Copies the version (digits and dots) at P into BUF; returns the length read. */
static size_t read_version(const char *p, char *buf, size_t len)
{
	size_t n = 0;
	while ((isdigit((unsigned char)p[n]) || (p[n] == '.' && isdigit((unsigned char)p[n + 1]))) && n < len - 1) {
		buf[n] = p[n];
		n++;
	}
	buf[n] = '\0';
	return n;
}

/* ---- loading ------------------------------------------------------------- */

enum field_kind { F_STR, F_VERSION, F_STRV_VERSION };
struct field {
	const char *key;
	size_t off;
	enum field_kind kind;
	bool required;
};
struct section {
	const char *name;
	const struct field *fields;
	size_t row_size;
	size_t off_rows, off_n;
};

#define FLD(type, key, kind, req)                    \
	{                                            \
#key, offsetof(type, key), kind, req \
	}
static const struct field gcc_fields[] = {
	FLD(struct gcc_row, cuda_min, F_VERSION, true), FLD(struct gcc_row, cuda_max, F_VERSION, true),
	FLD(struct gcc_row, gcc_min, F_VERSION, false), FLD(struct gcc_row, gcc_max, F_VERSION, true),
	FLD(struct gcc_row, source, F_STR, true),	{ NULL, 0, 0, false },
};
static const struct field driver_fields[] = {
	FLD(struct driver_row, cuda, F_VERSION, true),
	FLD(struct driver_row, min_driver, F_VERSION, true),
	FLD(struct driver_row, source, F_STR, true),
	{ NULL, 0, 0, false },
};
static const struct field arch_fields[] = {
	FLD(struct arch_row, arch, F_VERSION, true),
	FLD(struct arch_row, cuda_min, F_VERSION, true),
	FLD(struct arch_row, cuda_max, F_VERSION, false),
	FLD(struct arch_row, source, F_STR, true),
	{ NULL, 0, 0, false },
};
static const struct field ext_arch_fields[] = {
	FLD(struct ext_arch_row, arch, F_VERSION, true),
	FLD(struct ext_arch_row, torch_min, F_VERSION, true),
	FLD(struct ext_arch_row, fix, F_STR, true),
	FLD(struct ext_arch_row, source, F_STR, true),
	{ NULL, 0, 0, false },
};
static const struct field torch_fields[] = {
	FLD(struct torch_row, torch, F_VERSION, true),
	FLD(struct torch_row, commit, F_STR, false),
	FLD(struct torch_row, torchvision, F_STRV_VERSION, true),
	FLD(struct torch_row, python_min, F_VERSION, false),
	FLD(struct torch_row, python_max, F_VERSION, false),
	FLD(struct torch_row, cuda_min, F_VERSION, false),
	FLD(struct torch_row, cuda_max, F_VERSION, false),
	FLD(struct torch_row, gcc_min, F_VERSION, false),
	FLD(struct torch_row, gcc_max, F_VERSION, false),
	FLD(struct torch_row, source, F_STR, true),
	{ NULL, 0, 0, false },
};
static const struct field cudnn_fields[] = {
	FLD(struct cudnn_row, cudnn_min, F_VERSION, true),
	FLD(struct cudnn_row, cudnn_max, F_VERSION, true),
	FLD(struct cudnn_row, cuda, F_STRV_VERSION, true),
	FLD(struct cudnn_row, source, F_STR, true),
	{ NULL, 0, 0, false },
};
static const struct field magma_fields[] = {
	FLD(struct magma_row, cuda, F_VERSION, true),
	FLD(struct magma_row, package, F_STR, true),
	FLD(struct magma_row, versions, F_STRV_VERSION, false),
	FLD(struct magma_row, source, F_STR, true),
	{ NULL, 0, 0, false },
};
static const struct field arch_driver_fields[] = {
	FLD(struct arch_driver_row, arch_min, F_VERSION, true), FLD(struct arch_driver_row, arch_max, F_VERSION, true),
	FLD(struct arch_driver_row, family, F_STR, true),	FLD(struct arch_driver_row, last_branch, F_VERSION, true),
	FLD(struct arch_driver_row, source, F_STR, true),	{ NULL, 0, 0, false },
};
static const struct field installer_fields[] = {
	FLD(struct installer_row, prefix, F_STR, true),
	FLD(struct installer_row, python, F_VERSION, true),
	FLD(struct installer_row, source, F_STR, true),
	{ NULL, 0, 0, false },
};
static const struct field chip_fields[] = {
	FLD(struct chip_row, chip, F_STR, true),
	FLD(struct chip_row, cc, F_VERSION, true),
	FLD(struct chip_row, source, F_STR, true),
	{ NULL, 0, 0, false },
};
static const struct field device_fields[] = {
	FLD(struct device_row, pci, F_STR, true),
	FLD(struct device_row, chip, F_STR, true),
	FLD(struct device_row, name, F_STR, true),
	FLD(struct device_row, source, F_STR, true),
	{ NULL, 0, 0, false },
};
static const struct field env_needs_fields[] = {
	FLD(struct env_needs_row, env, F_STR, true),
	FLD(struct env_needs_row, conda_package, F_STR, true),
	FLD(struct env_needs_row, why, F_STR, true),
	FLD(struct env_needs_row, source, F_STR, true),
	{ NULL, 0, 0, false },
};
static const struct field pin_fields[] = {
	FLD(struct pin_row, key, F_STR, true),
	FLD(struct pin_row, what, F_STR, true),
	{ NULL, 0, 0, false },
};
static const struct field pin_range_fields[] = {
	FLD(struct pin_range_row, rule, F_STR, true),
	FLD(struct pin_range_row, when, F_STR, true),
	FLD(struct pin_range_row, when_min, F_VERSION, false),
	FLD(struct pin_range_row, when_max, F_VERSION, false),
	FLD(struct pin_range_row, key, F_STR, true),
	FLD(struct pin_range_row, min, F_VERSION, false),
	FLD(struct pin_range_row, max, F_VERSION, false),
	FLD(struct pin_range_row, source, F_STR, true),
	{ NULL, 0, 0, false },
};
#define SEC(name, fields, type, member)                                                                                \
	{                                                                                                              \
		name, fields, sizeof(type), offsetof(struct ib_compat, member), offsetof(struct ib_compat, n_##member) \
	}
static const struct section sections[] = {
	SEC("pin", pin_fields, struct pin_row, pin),
	SEC("pin_range", pin_range_fields, struct pin_range_row, pin_range),
	SEC("cuda_gcc", gcc_fields, struct gcc_row, gcc),
	SEC("cuda_driver", driver_fields, struct driver_row, driver),
	SEC("cuda_arch", arch_fields, struct arch_row, arch),
	SEC("extension_arch", ext_arch_fields, struct ext_arch_row, ext_arch),
	SEC("torch", torch_fields, struct torch_row, torch),
	SEC("cudnn", cudnn_fields, struct cudnn_row, cudnn),
	SEC("magma", magma_fields, struct magma_row, magma),
	SEC("arch_driver", arch_driver_fields, struct arch_driver_row, arch_driver),
	SEC("conda_installer", installer_fields, struct installer_row, installer),
	SEC("chip", chip_fields, struct chip_row, chip),
	SEC("device", device_fields, struct device_row, device),
	SEC("env_needs", env_needs_fields, struct env_needs_row, env_needs),
};
#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

static void free_row(const struct section *s, void *row)
{
	for (const struct field *f = s->fields; f->key; f++) {
		void *p = (char *)row + f->off;
		if (f->kind == F_STRV_VERSION)
			ib_strv_free(p);
		else
			free(*(char **)p);
	}
}

void ib_compat_free(struct ib_compat *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < N_SECTIONS; i++) {
		const struct section *s = &sections[i];
		char *rows = *(char **)((char *)c + s->off_rows);
		size_t n = *(size_t *)((char *)c + s->off_n);
		for (size_t k = 0; k < n; k++)
			free_row(s, rows + k * s->row_size);
		free(rows);
	}
	for (size_t i = 0; i < c->rule_sources.n; i++) {
		free(c->rule_sources.v[i].key);
		free(c->rule_sources.v[i].value);
	}
	free(c->rule_sources.v);
	free(c);
}

static void compat_cleanup(struct ib_compat **c)
{
	ib_compat_free(*c);
}
#define cleanup_compat __attribute__((cleanup(compat_cleanup)))

static int load_row(const char *path, const struct section *s, const struct ib_toml_value *t, void *row, ib_error_t *err)
{
	if (t->type != IB_TOML_TABLE)
		return ib_error_usage(err, "%s:%d:%d: '%s' must be an array of tables ([[%s]]), found %s", path, t->line, t->col,
				      s->name, s->name, ib_toml_type_name(t->type));
	for (size_t i = 0; i < t->len; i++) {
		const struct field *f = s->fields;
		while (f->key && strcmp(f->key, t->keys[i]) != 0)
			f++;
		if (f->key == NULL)
			return ib_error_usage(err, "%s:%d:%d: unknown key '%s' in [[%s]]", path, t->items[i]->line,
					      t->items[i]->col, t->keys[i], s->name);
	}
	for (const struct field *f = s->fields; f->key; f++) {
		const struct ib_toml_value *v = ib_toml_get(t, f->key);
		if (v == NULL) {
			if (f->required)
				return ib_error_usage(err, "%s:%d:%d: missing key '%s' in [[%s]]", path, t->line, t->col, f->key,
						      s->name);
			continue;
		}
		void *dst = (char *)row + f->off;
		if (f->kind == F_STRV_VERSION) {
			if (v->type != IB_TOML_ARRAY)
				return ib_error_usage(err, "%s:%d:%d: '%s' must be an array of strings, found %s", path, v->line,
						      v->col, f->key, ib_toml_type_name(v->type));
			for (size_t k = 0; k < v->len; k++) {
				const struct ib_toml_value *it = v->items[k];
				if (it->type != IB_TOML_STRING || !ib_version_valid(it->u.str))
					return ib_error_usage(err, "%s:%d:%d: '%s' items must be version strings like \"10.0\"",
							      path, it->line, it->col, f->key);
				ib_strv_push(dst, it->u.str);
			}
			continue;
		}
		if (v->type != IB_TOML_STRING)
			return ib_error_usage(err, "%s:%d:%d: '%s' must be a string, found %s", path, v->line, v->col, f->key,
					      ib_toml_type_name(v->type));
		if (f->kind == F_VERSION && !ib_version_valid(v->u.str))
			return ib_error_usage(err, "%s:%d:%d: '%s' must be a version like \"10.0\", found '%s'", path, v->line,
					      v->col, f->key, v->u.str);
		*(char **)dst = xstrdup(v->u.str);
	}
	return 0;
}

#ifdef IB_PORTABLE
/* imgbuild-portable is one file: the rules it was built with are inside it,
 * used where no data folder holds a compat.toml or chips.toml. */
__asm__(".pushsection .rodata\n"
	"compat_toml_text:\n.incbin \"builder/compat.toml\"\n.byte 0\n"
	"chips_toml_text:\n.incbin \"builder/chips.toml\"\n.byte 0\n.popsection\n");
extern const char compat_toml_text[], chips_toml_text[];

static const char *embedded(const char *path)
{
	if (ib_path_exists(path))
		return NULL;
	const char *b = strrchr(path, '/');
	b = b ? b + 1 : path;
	return strcmp(b, "compat.toml") == 0 ? compat_toml_text : strcmp(b, "chips.toml") == 0 ? chips_toml_text : NULL;
}
#else
static const char *embedded(const char *path)
{
	return NULL;
}
#endif

/* Adds the rows of PATH to C (compat.toml and chips.toml share one format). */
static int load_into(struct ib_compat *c, const char *path, ib_error_t *err)
{
	size_t len = 0;
	const char *inside = embedded(path);
	cleanup_free char *text = inside ? xstrdup(inside) : ib_read_file(path, &len, err);
	if (inside)
		len = strlen(text);
	if (text == NULL)
		return ib_error_wrap(err, "load compatibility rules");
	cleanup_toml struct ib_toml_value *root = ib_toml_parse(text, len, path, err);
	if (root == NULL)
		return -1;
	for (size_t i = 0; i < root->len; i++) {
		const char *key = root->keys[i];
		const struct ib_toml_value *v = root->items[i];
		if (strcmp(key, "rule") == 0) {
			if (v->type != IB_TOML_TABLE) {
				return ib_error_usage(err, "%s:%d:%d: 'rule' must be a table", path, v->line, v->col);
			}
			for (size_t k = 0; k < v->len; k++) {
				const struct ib_toml_value *src = ib_toml_get(v->items[k], "source");
				if (v->items[k]->type != IB_TOML_TABLE || src == NULL || src->type != IB_TOML_STRING) {
					return ib_error_usage(err, "%s:%d:%d: [rule.%s] needs source = \"...\"", path,
							      v->items[k]->line, v->items[k]->col, v->keys[k]);
				}
				struct ib_kv_list *l = &c->rule_sources;
				l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
				l->v[l->n++] = (struct ib_kv){ xstrdup(v->keys[k]), xstrdup(src->u.str), { 0, 0 } };
			}
			continue;
		}
		const struct section *s = NULL;
		for (size_t k = 0; k < N_SECTIONS; k++)
			if (strcmp(sections[k].name, key) == 0)
				s = &sections[k];
		if (s == NULL) {
			return ib_error_usage(err, "%s:%d:%d: unknown table '%s'", path, v->line, v->col, key);
		}
		if (v->type != IB_TOML_ARRAY) {
			return ib_error_usage(err, "%s:%d:%d: '%s' must be an array of tables ([[%s]])", path, v->line, v->col,
					      key, key);
		}
		char **rows = (char **)((char *)c + s->off_rows);
		size_t *n = (size_t *)((char *)c + s->off_n);
		*rows = xrealloc(*rows, (*n + v->len) * s->row_size);
		for (size_t k = 0; k < v->len; k++) {
			void *row = *rows + *n * s->row_size;
			memset(row, 0, s->row_size);
			(*n)++;
			if (load_row(path, s, v->items[k], row, err) < 0)
				return -1;
		}
	}
	return 0;
}

struct ib_compat *ib_compat_load(const char *path, ib_error_t *err)
{
	cleanup_compat struct ib_compat *c = xcalloc(1, sizeof(*c));
	if (load_into(c, path, err) < 0)
		return NULL;
	return steal_pointer(&c);
}

int ib_compat_load_more(struct ib_compat *c, const char *path, ib_error_t *err)
{
	return load_into(c, path, err);
}

const struct ib_compat *ib_compat_default(ib_error_t *err)
{
	/* Loaded once: plan and manifest parsing (min_driver) both need it, and
	 * the fuzzer parses manifests millions of times. */
	static struct ib_compat *cached;
	if (cached)
		return cached;
	cleanup_free char *path = xasprintf("%s/builder/compat.toml", ib_data_dir());
	cleanup_free char *chips = xasprintf("%s/builder/chips.toml", ib_data_dir());
	struct ib_compat *c = ib_compat_load(path, err);
	/* The chip table is advise's; a rule set without it still checks manifests. */
	if (c && (ib_path_exists(chips) || embedded(chips)) && load_into(c, chips, err) < 0) {
		ib_compat_free(c);
		return NULL;
	}
	cached = c;
	return cached;
}

/* ---- lookups ------------------------------------------------------------- */

/* Rules name the pins they read: the manifest holds them as a list. */
static const char *pin(const struct ib_manifest *m, const char *key)
{
	return ib_manifest_pin_value(m, key);
}

static bool derived(const struct ib_manifest *m, const char *key)
{
	const struct ib_pin *p = ib_manifest_pin(m, key);
	return p && p->derived_from;
}

const char *ib_compat_min_driver(const struct ib_compat *c, const char *cuda)
{
	const char *best = NULL;
	for (size_t i = 0; i < c->n_driver; i++) {
		const struct driver_row *r = &c->driver[i];
		if (ib_version_cmp_short(r->cuda, cuda) != 0)
			continue;
		/* "9.2" matches 9.2.88 and 9.2.148: the GA's driver is the oldest that runs some 9.2. */
		if (best == NULL || ib_version_cmp(r->min_driver, best) < 0)
			best = r->min_driver;
	}
	return best;
}

int ib_compat_resolve(const struct ib_compat *c, struct ib_manifest *m, ib_error_t *err)
{
	for (size_t i = 0; i < m->stack.pins.n; i++) {
		const struct ib_pin *p = &m->stack.pins.v[i];
		bool known = false;
		for (size_t k = 0; k < c->n_pin && !known; k++)
			known = strcmp(c->pin[k].key, p->key) == 0;
		if (known)
			continue;
		const char **keys = xcalloc(c->n_pin + 1, sizeof(*keys));
		for (size_t k = 0; k < c->n_pin; k++)
			keys[k] = c->pin[k].key;
		const char *near = ib_nearest(p->key, keys, c->n_pin);
		cleanup_free char *hint = NULL;
		if (near)
			hint = xasprintf("did you mean '%s'?", near);
		else {
			cleanup_free char *list = xstrdup("archs");
			for (size_t k = 0; k < c->n_pin; k++) {
				char *next = xasprintf("%s, %s", list, keys[k]);
				free(list);
				list = next;
			}
			hint = xasprintf("[stack] takes %s; a new pin is a [[pin]] row in builder/compat.toml", list);
		}
		free(keys);
		return ib_error_usage(err, "%s:%d:%d: unknown key '%s' in [stack] (hint: %s)", m->file, p->pos.line, p->pos.col,
				      p->key, hint);
	}
	/* min_driver, when absent, is what the data says the CUDA release needs. */
	const char *cuda = pin(m, "cuda");
	if (cuda && !pin(m, "min_driver")) {
		const char *d = ib_compat_min_driver(c, cuda);
		if (d) /* else plan warns: no data for this CUDA */
			ib_manifest_pin_derive(m, "min_driver", d, "cuda");
	}
	return 0;
}

const char *ib_compat_seed_rank(const struct ib_manifest *m)
{
	/* A seed builds torch against CUDA for listed archs; newer CUDA first. */
	if (!pin(m, "cuda") || !pin(m, "torch") || m->stack.archs.n == 0)
		return NULL;
	return pin(m, "cuda");
}

static const struct driver_row *driver_row_for(const struct ib_compat *c, const char *cuda, const char *driver)
{
	for (size_t i = 0; i < c->n_driver; i++)
		if (ib_version_cmp_short(c->driver[i].cuda, cuda) == 0 && strcmp(c->driver[i].min_driver, driver) == 0)
			return &c->driver[i];
	return NULL;
}

static const char *rule_source(const struct ib_compat *c, const char *id)
{
	const char *s = ib_kv_get(&c->rule_sources, id);
	return s ? s : "builder/compat.toml";
}

static const struct torch_row *torch_row_for(const struct ib_compat *c, const char *torch)
{
	for (size_t i = 0; i < c->n_torch; i++)
		if (ib_version_cmp(c->torch[i].torch, torch) == 0)
			return &c->torch[i];
	return NULL;
}

/* ---- verdicts ------------------------------------------------------------ */

const char *ib_verdict_level_name(enum ib_verdict_level level)
{
	switch (level) {
	case IB_VERDICT_OK: return "ok";
	case IB_VERDICT_WARN: return "warn";
	case IB_VERDICT_FAIL: return "FAIL";
	}
	return "?";
}

void ib_verdicts_free(struct ib_verdicts *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->n; i++) {
		free(v->v[i].rule);
		free(v->v[i].message);
		free(v->v[i].source);
		free(v->v[i].fix);
	}
	free(v->v);
	v->v = NULL;
	v->n = 0;
}

/* FIX is taken over (may be NULL). */
__attribute__((format(printf, 6, 7))) static void add(struct ib_verdicts *out, const char *rule, enum ib_verdict_level level,
						      const char *source, char *fix, const char *fmt, ...)
{
	va_list ap;
	char *msg = NULL;
	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	out->v = xrealloc(out->v, (out->n + 1) * sizeof(*out->v));
	out->v[out->n++] = (struct ib_verdict){
		.rule = xstrdup(rule),
		.level = level,
		.message = msg,
		.source = xstrdup(source ? source : "builder/compat.toml"),
		.fix = fix,
	};
}

static void na(struct ib_verdicts *out, const char *rule, const char *source, const char *what)
{
	add(out, rule, IB_VERDICT_OK, source, NULL, "not applicable: the manifest sets no %s", what);
}

/* "10.0" -> "magma-cuda100", "9.2.148" -> "magma-cuda92". */
static char *magma_name(const char *cuda)
{
	unsigned long long major = 0, minor = 0;
	ib_version_part(cuda, 0, &major);
	ib_version_part(cuda, 1, &minor);
	return xasprintf("magma-cuda%llu%llu", major, minor);
}

static char *major_minor(const char *v)
{
	unsigned long long major = 0, minor = 0;
	ib_version_part(v, 0, &major);
	ib_version_part(v, 1, &minor);
	return xasprintf("%llu.%llu", major, minor);
}

static bool torch_fits(const struct torch_row *r, const struct ib_manifest *m)
{
	if (pin(m, "python") && !ib_version_in(pin(m, "python"), r->python_min, r->python_max))
		return false;
	if (pin(m, "cuda") && !ib_version_in(pin(m, "cuda"), r->cuda_min, r->cuda_max))
		return false;
	if (m->toolchain.gcc && !ib_version_in(m->toolchain.gcc, r->gcc_min, r->gcc_max))
		return false;
	return true;
}

/* The torch release nearest to the manifest's (in release order) whose Python,
 * CUDA and gcc ranges all hold: the seed's lesson was to move torch before
 * touching the toolchain. */
static const struct torch_row *nearest_torch(const struct ib_compat *c, const struct ib_manifest *m)
{
	size_t at = 0;
	while (at < c->n_torch && ib_version_cmp(c->torch[at].torch, pin(m, "torch")) < 0)
		at++;
	const struct torch_row *best = NULL;
	size_t best_d = (size_t)-1;
	for (size_t i = 0; i < c->n_torch; i++) {
		if (!torch_fits(&c->torch[i], m))
			continue;
		size_t d = i >= at ? i - at : at - i;
		/* Ties go to the older release: old GPUs and old toolchains fare better there. */
		if (d < best_d || (d == best_d && best && ib_version_cmp(c->torch[i].torch, best->torch) < 0)) {
			best = &c->torch[i];
			best_d = d;
		}
	}
	return best;
}

static char *torch_fix(const struct ib_compat *c, const struct ib_manifest *m, const char *otherwise)
{
	const struct torch_row *r = nearest_torch(c, m);
	if (r == NULL)
		return xasprintf("no torch release in builder/compat.toml fits; %s", otherwise);
	return xasprintf("set stack torch = \"%s\" and torchvision = \"%s\" (the nearest release that fits), or %s", r->torch,
			 r->torchvision.n ? r->torchvision.v[0] : "?", otherwise);
}

static void range_text(char *buf, size_t len, const char *lo, const char *hi)
{
	if (lo && hi)
		snprintf(buf, len, "%s-%s", lo, hi);
	else if (lo)
		snprintf(buf, len, ">= %s", lo);
	else if (hi)
		snprintf(buf, len, "<= %s", hi);
	else
		snprintf(buf, len, "any");
}

static void check_driver(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "cuda-driver";
	if (!pin(m, "cuda")) {
		na(out, rule, "compat-facts §1a", "stack.cuda");
		return;
	}
	const char *need = ib_compat_min_driver(c, pin(m, "cuda"));
	if (need == NULL) {
		add(out, rule, IB_VERDICT_WARN, "builder/compat.toml",
		    xasprintf("add a [[cuda_driver]] row for CUDA %s to builder/compat.toml", pin(m, "cuda")),
		    "no driver data for CUDA %s", pin(m, "cuda"));
		return;
	}
	const struct driver_row *r = driver_row_for(c, pin(m, "cuda"), need);
	const char *src = r ? r->source : "builder/compat.toml";
	const char *have = pin(m, "min_driver");
	if (have && !derived(m, "min_driver") && ib_version_cmp(have, need) < 0) {
		add(out, rule, IB_VERDICT_FAIL, src, xasprintf("set stack min_driver = \"%s\" (or remove it to derive it)", need),
		    "min_driver %s is older than CUDA %s needs (>= %s)", have, pin(m, "cuda"), need);
		return;
	}
	add(out, rule, IB_VERDICT_OK, src, NULL, "CUDA %s needs driver >= %s; the image asks for >= %s%s", pin(m, "cuda"), need,
	    have ? have : need, derived(m, "min_driver") ? " (derived)" : "");
}

static void check_gcc(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "cuda-gcc";
	if (!pin(m, "cuda") || !m->toolchain.gcc) {
		na(out, rule, "compat-facts §2", pin(m, "cuda") ? "toolchain.gcc" : "stack.cuda");
		return;
	}
	const struct gcc_row *r = NULL;
	for (size_t i = 0; i < c->n_gcc && !r; i++)
		if (ib_version_in(pin(m, "cuda"), c->gcc[i].cuda_min, c->gcc[i].cuda_max))
			r = &c->gcc[i];
	if (r == NULL) {
		add(out, rule, IB_VERDICT_WARN, "builder/compat.toml",
		    xasprintf("add a [[cuda_gcc]] row for CUDA %s to builder/compat.toml", pin(m, "cuda")),
		    "no gcc data for CUDA %s", pin(m, "cuda"));
		return;
	}
	const char *gcc = m->toolchain.gcc;
	if (!ib_version_in(gcc, NULL, r->gcc_max)) {
		/* "11.1" means 11.1 but not 11.2: as a major to install, only 10 is safe. */
		unsigned long long major = 0;
		ib_version_part(r->gcc_max, 0, &major);
		char *want = ib_version_ncomp(r->gcc_max) > 1 && major > 0 ? xasprintf("%llu", major - 1) : xstrdup(r->gcc_max);
		add(out, rule, IB_VERDICT_FAIL, r->source, xasprintf("set toolchain gcc = \"%s\"", want),
		    "gcc %s is newer than CUDA %s accepts (<= %s)", gcc, pin(m, "cuda"), r->gcc_max);
		free(want);
		return;
	}
	if (!ib_version_in(gcc, r->gcc_min, NULL)) {
		add(out, rule, IB_VERDICT_FAIL, r->source, xasprintf("set toolchain gcc = \"%s\"", r->gcc_min),
		    "gcc %s is older than CUDA %s accepts (>= %s)", gcc, pin(m, "cuda"), r->gcc_min);
		return;
	}
	add(out, rule, IB_VERDICT_OK, r->source, NULL, "gcc %s is accepted by CUDA %s (<= %s)", gcc, pin(m, "cuda"), r->gcc_max);
}

static void check_arch(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "cuda-arch";
	if (!pin(m, "cuda") || m->stack.archs.n == 0) {
		na(out, rule, "compat-facts §4a", pin(m, "cuda") ? "stack.archs" : "stack.cuda");
		return;
	}
	size_t before = out->n;
	const char *src = "compat-facts §4a";
	for (size_t i = 0; i < m->stack.archs.n; i++) {
		const char *a = m->stack.archs.v[i];
		const struct arch_row *r = NULL;
		for (size_t k = 0; k < c->n_arch && !r; k++)
			if (ib_version_cmp(c->arch[k].arch, a) == 0)
				r = &c->arch[k];
		if (r == NULL) {
			add(out, rule, IB_VERDICT_WARN, "builder/compat.toml",
			    xasprintf("check the compute capability, or add a [[cuda_arch]] row to builder/compat.toml"),
			    "no data for GPU architecture %s", a);
			continue;
		}
		src = r->source;
		if (!ib_version_in(pin(m, "cuda"), r->cuda_min, r->cuda_max)) {
			char range[64];
			range_text(range, sizeof(range), r->cuda_min, r->cuda_max);
			bool too_new = !ib_version_in(pin(m, "cuda"), NULL, r->cuda_max);
			add(out, rule, IB_VERDICT_FAIL, r->source,
			    xasprintf("remove \"%s\" from stack archs, or use CUDA %s %s", a,
				      too_new ? "<=" : ">=", too_new ? r->cuda_max : r->cuda_min),
			    "CUDA %s cannot target GPU architecture %s (CUDA %s can)", pin(m, "cuda"), a, range);
		}
	}
	if (out->n == before) {
		cleanup_free char *list = NULL;
		for (size_t i = 0; i < m->stack.archs.n; i++) {
			char *next = xasprintf("%s%s%s", list ? list : "", list ? ", " : "", m->stack.archs.v[i]);
			free(list);
			list = next;
		}
		add(out, rule, IB_VERDICT_OK, src, NULL, "CUDA %s can target %s", pin(m, "cuda"), list);
	}
}

/* The stage whose env asks stages/python-project.sh to add ARCH to torch's
 * cpp_extension list (CPP_EXTENSION_ARCHS = "3.0 3.2" or "3.0;3.2"), or NULL. */
static const char *ext_arch_patched(const struct ib_manifest *m, const char *arch)
{
	for (size_t s = 0; s < m->n_stages; s++) {
		const char *v = ib_kv_get(&m->stages[s].env, "CPP_EXTENSION_ARCHS");
		if (v == NULL)
			continue;
		cleanup_free char *copy = xstrdup(v);
		char *save = NULL;
		for (char *a = strtok_r(copy, " ;,", &save); a; a = strtok_r(NULL, " ;,", &save))
			if (ib_version_cmp(a, arch) == 0)
				return m->stages[s].name;
	}
	return NULL;
}

static void check_ext_arch(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "torch-ext-arch";
	if (!pin(m, "torch") || m->stack.archs.n == 0) {
		na(out, rule, "compat-facts §4b", pin(m, "torch") ? "stack.archs" : "stack.torch");
		return;
	}
	size_t before = out->n;
	for (size_t i = 0; i < m->stack.archs.n; i++) {
		const char *a = m->stack.archs.v[i];
		for (size_t k = 0; k < c->n_ext_arch; k++) {
			const struct ext_arch_row *r = &c->ext_arch[k];
			if (ib_version_cmp(r->arch, a) != 0 || !ib_version_in(pin(m, "torch"), r->torch_min, NULL))
				continue;
			const char *stage = ext_arch_patched(m, a);
			if (stage) {
				add(out, rule, IB_VERDICT_OK, r->source, NULL,
				    "stage '%s' adds arch %s to torch.utils.cpp_extension's list (CPP_EXTENSION_ARCHS)", stage, a);
				continue;
			}
			add(out, rule, IB_VERDICT_WARN, r->source, xstrdup(r->fix),
			    "torch %s's extension builder (torch.utils.cpp_extension) rejects arch %s from torch %s on: "
			    "torchvision's CUDA ops will not build with it in TORCH_CUDA_ARCH_LIST",
			    pin(m, "torch"), a, r->torch_min);
		}
	}
	if (out->n == before)
		add(out, rule, IB_VERDICT_OK, "compat-facts §4b", NULL, "torch %s's extension builder accepts every arch listed",
		    pin(m, "torch"));
}

static void no_torch_data(struct ib_verdicts *out, const char *rule, const char *torch)
{
	add(out, rule, IB_VERDICT_WARN, "builder/compat.toml",
	    xasprintf("add a [[torch]] row for %s to builder/compat.toml", torch), "no compatibility data for torch %s", torch);
}

static void check_torch(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *t = pin(m, "torch");
	if (!t) {
		na(out, "torch-cuda", "compat-facts §3c", "stack.torch");
		na(out, "torch-gcc", "compat-facts §3d", "stack.torch");
		na(out, "torch-python", "compat-facts §3a", "stack.torch");
		na(out, "torch-vision", "compat-facts §3a", "stack.torch");
		return;
	}
	const struct torch_row *r = torch_row_for(c, t);
	char range[64];

	/* torch-cuda */
	if (!pin(m, "cuda"))
		na(out, "torch-cuda", "compat-facts §3c", "stack.cuda");
	else if (!r)
		no_torch_data(out, "torch-cuda", t);
	else if (!ib_version_in(pin(m, "cuda"), r->cuda_min, r->cuda_max)) {
		range_text(range, sizeof(range), r->cuda_min, r->cuda_max);
		cleanup_free char *other = xasprintf("use a CUDA in %s", range);
		add(out, "torch-cuda", IB_VERDICT_FAIL, r->source, torch_fix(c, m, other), "torch %s builds with CUDA %s, not %s",
		    t, range, pin(m, "cuda"));
	} else {
		range_text(range, sizeof(range), r->cuda_min, r->cuda_max);
		add(out, "torch-cuda", IB_VERDICT_OK, r->source, NULL, "torch %s builds with CUDA %s (%s)", t, pin(m, "cuda"),
		    range);
	}

	/* torch-gcc */
	if (!m->toolchain.gcc)
		na(out, "torch-gcc", "compat-facts §3d", "toolchain.gcc");
	else if (!r)
		no_torch_data(out, "torch-gcc", t);
	else if (!ib_version_in(m->toolchain.gcc, r->gcc_min, r->gcc_max)) {
		range_text(range, sizeof(range), r->gcc_min, r->gcc_max);
		bool too_new = !ib_version_in(m->toolchain.gcc, NULL, r->gcc_max);
		cleanup_free char *other = xasprintf("set toolchain gcc = \"%s\"", too_new ? r->gcc_max : r->gcc_min);
		add(out, "torch-gcc", IB_VERDICT_FAIL, r->source, torch_fix(c, m, other),
		    "gcc %s is %s than torch %s builds with (%s)", m->toolchain.gcc, too_new ? "newer" : "older", t, range);
	} else {
		range_text(range, sizeof(range), r->gcc_min, r->gcc_max);
		add(out, "torch-gcc", IB_VERDICT_OK, r->source, NULL, "torch %s builds with gcc %s (%s)", t, m->toolchain.gcc,
		    range);
	}

	/* torch-python */
	if (!pin(m, "python"))
		na(out, "torch-python", "compat-facts §3a", "stack.python");
	else if (!r)
		no_torch_data(out, "torch-python", t);
	else if (!ib_version_in(pin(m, "python"), r->python_min, r->python_max)) {
		range_text(range, sizeof(range), r->python_min, r->python_max);
		bool too_new = !ib_version_in(pin(m, "python"), NULL, r->python_max);
		cleanup_free char *other = xasprintf("set stack python = \"%s\"", too_new ? r->python_max : r->python_min);
		add(out, "torch-python", IB_VERDICT_FAIL, r->source, torch_fix(c, m, other),
		    "python %s is outside torch %s's range (%s)", pin(m, "python"), t, range);
	} else {
		range_text(range, sizeof(range), r->python_min, r->python_max);
		add(out, "torch-python", IB_VERDICT_OK, r->source, NULL, "torch %s supports python %s (%s)", t, pin(m, "python"),
		    range);
	}

	/* torch-vision */
	const char *tv = pin(m, "torchvision");
	if (!tv) {
		na(out, "torch-vision", "compat-facts §3a", "stack.torchvision");
		return;
	}
	if (!r) {
		no_torch_data(out, "torch-vision", t);
		return;
	}
	for (size_t i = 0; i < r->torchvision.n; i++)
		if (ib_version_cmp(r->torchvision.v[i], tv) == 0) {
			add(out, "torch-vision", IB_VERDICT_OK, r->source, NULL, "torchvision %s pairs with torch %s", tv, t);
			return;
		}
	const struct torch_row *other = NULL;
	for (size_t i = 0; i < c->n_torch && !other; i++)
		for (size_t k = 0; k < c->torch[i].torchvision.n; k++)
			if (ib_version_cmp(c->torch[i].torchvision.v[k], tv) == 0)
				other = &c->torch[i];
	char *fix = other ? xasprintf("set stack torchvision = \"%s\" (or torch = \"%s\", which pairs with torchvision %s)",
				      r->torchvision.v[0], other->torch, tv)
			  : xasprintf("set stack torchvision = \"%s\"", r->torchvision.v[0]);
	add(out, "torch-vision", IB_VERDICT_FAIL, r->source, fix, "torchvision %s does not pair with torch %s (%s does)", tv, t,
	    r->torchvision.v[0]);
}

/* The [[source]] that builds torch should be the tag the compat data knows, at its commit. */
static void check_torch_source(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "torch-commit";
	const char *src = "compat-facts §9a";
	size_t before = out->n;
	bool seen = false;
	for (size_t i = 0; i < m->n_sources; i++) {
		const struct ib_source *s = &m->sources[i];
		if (strstr(s->url, "pytorch/pytorch") == NULL && strstr(s->url, "/pytorch.git") == NULL)
			continue;
		seen = true;
		const char *tag = s->tag[0] == 'v' ? s->tag + 1 : s->tag;
		if (pin(m, "torch") && ib_version_valid(tag) && ib_version_cmp(tag, pin(m, "torch")) != 0)
			add(out, rule, IB_VERDICT_FAIL, src,
			    xasprintf("set the source's tag = \"v%s\" and its commit", pin(m, "torch")),
			    "source '%s' is tag %s but stack.torch is %s", s->name, s->tag, pin(m, "torch"));
		const struct torch_row *r = ib_version_valid(tag) ? torch_row_for(c, tag) : NULL;
		if (r && r->commit && strcmp(r->commit, s->commit) != 0)
			add(out, rule, IB_VERDICT_FAIL, r->source, xasprintf("set commit = \"%s\"", r->commit),
			    "source '%s' tag %s is commit %s, the manifest pins %s", s->name, s->tag, r->commit, s->commit);
	}
	if (!seen) {
		na(out, rule, src, "pytorch [[source]]");
		return;
	}
	if (out->n == before)
		add(out, rule, IB_VERDICT_OK, src, NULL, "the pytorch source's tag and commit match");
}

static void check_cudnn(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "cudnn-cuda";
	const char *src = rule_source(c, rule);
	if (!pin(m, "cuda")) {
		na(out, rule, src, "stack.cuda");
		return;
	}
	size_t before = out->n;
	cleanup_free char *cuda_mm = major_minor(pin(m, "cuda"));
	const char *ver = pin(m, "cudnn") ? pin(m, "cudnn") : "X.Y.Z";
	if (pin(m, "cudnn_cuda") && ib_version_cmp_n(pin(m, "cudnn_cuda"), pin(m, "cuda"), 2) != 0)
		add(out, rule, IB_VERDICT_FAIL, src,
		    xasprintf("download the cuDNN %s tarball built for CUDA %s (cudnn-%s-linux-x64-v%s*.tgz) and set "
			      "stack cudnn_cuda = \"%s\"",
			      ver, cuda_mm, cuda_mm, ver, cuda_mm),
		    "the cuDNN tarball is built for CUDA %s, the image has CUDA %s", pin(m, "cudnn_cuda"), pin(m, "cuda"));
	/* The tarball's name says which CUDA it is for; catch a mismatch even when
	 * stack.cudnn_cuda was copied from the wrong place. */
	for (size_t i = 0; i < m->n_downloads; i++) {
		const char *base = strrchr(m->downloads[i].url, '/');
		base = base ? base + 1 : m->downloads[i].url;
		const char *at = strstr(base, "cudnn-");
		if (at == NULL || !isdigit((unsigned char)at[6]))
			continue;
		char built[32];
		size_t n = 0;
		for (const char *p = at + 6; (isdigit((unsigned char)*p) || *p == '.') && n < sizeof(built) - 1; p++)
			built[n++] = *p;
		built[n] = '\0';
		if (strncmp(at + 6 + n, "-linux", 6) != 0 || !ib_version_valid(built))
			continue;
		if (ib_version_cmp_n(built, pin(m, "cuda"), 2) != 0)
			add(out, rule, IB_VERDICT_FAIL, src,
			    xasprintf("download cudnn-%s-linux-x64-v%s*.tgz instead", cuda_mm, ver),
			    "download '%s' (%s) is built for CUDA %s, the image has CUDA %s", m->downloads[i].name, base, built,
			    pin(m, "cuda"));
	}
	if (pin(m, "cudnn")) {
		const struct cudnn_row *r = NULL;
		for (size_t i = 0; i < c->n_cudnn && !r; i++)
			if (ib_version_in(pin(m, "cudnn"), c->cudnn[i].cudnn_min, c->cudnn[i].cudnn_max))
				r = &c->cudnn[i];
		if (r == NULL)
			add(out, rule, IB_VERDICT_WARN, "builder/compat.toml",
			    xasprintf("add a [[cudnn]] row for %s to builder/compat.toml", pin(m, "cudnn")),
			    "no support-matrix data for cuDNN %s", pin(m, "cudnn"));
		else {
			bool ok = false;
			cleanup_free char *list = NULL;
			for (size_t i = 0; i < r->cuda.n; i++) {
				ok = ok || ib_version_cmp_n(r->cuda.v[i], pin(m, "cuda"), 2) == 0;
				char *next = xasprintf("%s%s%s", list ? list : "", list ? ", " : "", r->cuda.v[i]);
				free(list);
				list = next;
			}
			if (!ok)
				add(out, rule, IB_VERDICT_FAIL, r->source,
				    xasprintf("use a CUDA cuDNN %s was built for (%s), or another cuDNN", pin(m, "cudnn"), list),
				    "cuDNN %s has no build for CUDA %s (it has %s)", pin(m, "cudnn"), pin(m, "cuda"), list);
			src = r->source;
		}
		if (!pin(m, "cudnn_cuda"))
			add(out, rule, IB_VERDICT_WARN, rule_source(c, rule),
			    xasprintf("set stack cudnn_cuda = \"%s\" (the CUDA in the tarball's name)", cuda_mm),
			    "stack.cudnn_cuda is not set: the cuDNN tarball's CUDA cannot be checked");
	}
	if (out->n == before) {
		if (pin(m, "cudnn"))
			add(out, rule, IB_VERDICT_OK, src, NULL, "cuDNN %s is built for CUDA %s", pin(m, "cudnn"), cuda_mm);
		else
			na(out, rule, src, "stack.cudnn");
	}
}

/* "magma-cuda92=2.5.2": the version must be one the channel has (when the data lists them). */
static void check_magma_version(const struct ib_compat *c, const char *p, size_t n, const char *where, const char *key,
				struct ib_verdicts *out)
{
	if (p[n] != '=')
		return;
	char v[32];
	if (read_version(p + n + (p[n + 1] == '=' ? 2 : 1), v, sizeof(v)) == 0)
		return;
	for (size_t k = 0; k < c->n_magma; k++) {
		const struct magma_row *r = &c->magma[k];
		if (strlen(r->package) != n || strncmp(r->package, p, n) != 0 || r->versions.n == 0)
			continue;
		cleanup_free char *list = NULL;
		for (size_t i = 0; i < r->versions.n; i++) {
			if (ib_version_cmp(r->versions.v[i], v) == 0)
				return;
			char *next = xasprintf("%s%s%s", list ? list : "", list ? ", " : "", r->versions.v[i]);
			free(list);
			list = next;
		}
		add(out, "magma-cuda", IB_VERDICT_FAIL, r->source,
		    xasprintf("install %s=%s (the channel has %s)", r->package, r->versions.v[r->versions.n - 1], list),
		    "%s %s installs %s %s, which the pytorch channel does not have", where, key, r->package, v);
	}
}

/* Every "magma-cudaNN" named in an env value (conda package lists) must match CUDA. */
static void scan_magma(const struct ib_compat *c, const struct ib_kv_list *env, const char *where, const char *want,
		       const struct ib_manifest *m, struct ib_verdicts *out)
{
	for (size_t i = 0; i < env->n; i++) {
		for (const char *p = strstr(env->v[i].value, "magma-cuda"); p; p = strstr(p + 1, "magma-cuda")) {
			size_t n = 10;
			while (isdigit((unsigned char)p[n]))
				n++;
			if (n == 10)
				continue;
			if (strncmp(p, want, n) == 0 && strlen(want) == n) {
				check_magma_version(c, p, n, where, env->v[i].key, out);
				continue;
			}
			cleanup_free char *found = xstrndup(p, n);
			const char *for_cuda = NULL;
			for (size_t k = 0; k < c->n_magma; k++)
				if (strcmp(c->magma[k].package, found) == 0)
					for_cuda = c->magma[k].cuda;
			add(out, "magma-cuda", IB_VERDICT_FAIL, rule_source(c, "magma-cuda"),
			    xasprintf("install %s instead of %s", want, found), "%s %s installs %s%s%s%s, the image has CUDA %s",
			    where, env->v[i].key, found, for_cuda ? " (built for CUDA " : "", for_cuda ? for_cuda : "",
			    for_cuda ? ")" : "", pin(m, "cuda"));
		}
	}
}

static void check_magma(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "magma-cuda";
	const char *src = rule_source(c, rule);
	if (!pin(m, "cuda")) {
		na(out, rule, src, "stack.cuda");
		return;
	}
	size_t before = out->n;
	cleanup_free char *want = magma_name(pin(m, "cuda"));
	cleanup_free char *cuda_mm = major_minor(pin(m, "cuda"));
	if (pin(m, "magma_cuda") && ib_version_cmp_n(pin(m, "magma_cuda"), pin(m, "cuda"), 2) != 0) {
		cleanup_free char *have = magma_name(pin(m, "magma_cuda"));
		add(out, rule, IB_VERDICT_FAIL, src, xasprintf("install %s and set stack magma_cuda = \"%s\"", want, cuda_mm),
		    "%s is built for CUDA %s, the image has CUDA %s", have, pin(m, "magma_cuda"), pin(m, "cuda"));
	}
	scan_magma(c, &m->env, "[env]", want, m, out);
	for (size_t i = 0; i < m->n_stages; i++) {
		cleanup_free char *where = xasprintf("stage '%s' env", m->stages[i].name);
		scan_magma(c, &m->stages[i].env, where, want, m, out);
	}
	if (pin(m, "magma_cuda")) {
		bool exists = false;
		for (size_t k = 0; k < c->n_magma; k++)
			if (ib_version_cmp_n(c->magma[k].cuda, pin(m, "cuda"), 2) == 0) {
				exists = true;
				src = c->magma[k].source;
			}
		if (!exists)
			add(out, rule, IB_VERDICT_WARN, rule_source(c, rule),
			    xasprintf("build magma for CUDA %s yourself, or drop magma", cuda_mm),
			    "the pytorch conda channel has no %s (compat data)", want);
	}
	if (out->n == before) {
		if (pin(m, "magma_cuda"))
			add(out, rule, IB_VERDICT_OK, src, NULL, "%s is built for CUDA %s", want, cuda_mm);
		else
			na(out, rule, src, "stack.magma_cuda");
	}
}

static void check_pins(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "download-pinned";
	const char *src = rule_source(c, rule);
	size_t before = out->n;
	for (size_t i = 0; i < m->n_downloads; i++)
		if (m->downloads[i].sha256 == NULL)
			add(out, rule, IB_VERDICT_WARN, src, xasprintf("imgbuild pin %s", m->path),
			    "download '%s' has sha256 \"unknown\": build refuses to download it; run imgbuild pin",
			    m->downloads[i].name);
	if (out->n == before)
		add(out, rule, IB_VERDICT_OK, src, NULL, "every download has a sha256 (%zu)", m->n_downloads);
}

/* [[pin_range]] rows, one verdict (or one per matching row) for each rule id. */
static void check_pin_ranges(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	for (size_t i = 0; i < c->n_pin_range; i++) {
		const struct pin_range_row *r = &c->pin_range[i];
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = strcmp(c->pin_range[k].rule, r->rule) == 0;
		if (seen)
			continue;
		const char *when = pin(m, r->when), *have = pin(m, r->key);
		if (!have || !when) {
			cleanup_free char *what = xasprintf("stack.%s", have ? r->when : r->key);
			na(out, r->rule, r->source, what);
			continue;
		}
		size_t before = out->n;
		for (size_t k = i; k < c->n_pin_range; k++) {
			const struct pin_range_row *q = &c->pin_range[k];
			if (strcmp(q->rule, r->rule) != 0 || strcmp(q->when, r->when) != 0 || strcmp(q->key, r->key) != 0 ||
			    !ib_version_in(when, q->when_min, q->when_max))
				continue;
			char range[160];
			range_text(range, sizeof(range), q->min, q->max);
			if (ib_version_in(have, q->min, q->max))
				add(out, q->rule, IB_VERDICT_OK, q->source, NULL, "%s %s is within %s %s's range (%s)", q->key,
				    have, q->when, when, range);
			else
				add(out, q->rule, IB_VERDICT_FAIL, q->source,
				    xasprintf("set stack %s = \"%s\"", q->key, q->max ? q->max : q->min),
				    "%s %s is outside %s %s's range (%s)", q->key, have, q->when, when, range);
		}
		if (out->n == before)
			add(out, r->rule, IB_VERDICT_WARN, "builder/compat.toml",
			    xasprintf("add a [[pin_range]] row of rule '%s' for %s %s to builder/compat.toml", r->rule, r->when,
				      when),
			    "no [[pin_range]] row of rule '%s' covers %s %s", r->rule, r->when, when);
	}
}

/* ---- GPU architectures and driver branches -------------------------------- */

static const struct arch_driver_row *arch_driver_for(const struct ib_compat *c, const char *arch)
{
	for (size_t i = 0; i < c->n_arch_driver; i++)
		if (ib_version_in(arch, c->arch_driver[i].arch_min, c->arch_driver[i].arch_max))
			return &c->arch_driver[i];
	return NULL;
}

/* DRIVER ("525.60.13") belongs to a branch after BRANCH ("470"). */
static bool driver_after_branch(const char *driver, const char *branch)
{
	return ib_version_cmp_n(driver, branch, 1) > 0;
}

/* The newest CUDA (major.minor) whose oldest driver is still in BRANCH, into BUF. */
static const char *newest_cuda_for_branch(const struct ib_compat *c, const char *branch, char *buf, size_t len)
{
	const struct driver_row *best = NULL;
	for (size_t i = 0; i < c->n_driver; i++) {
		const struct driver_row *r = &c->driver[i];
		if (driver_after_branch(r->min_driver, branch))
			continue;
		if (best == NULL || ib_version_cmp(r->cuda, best->cuda) > 0)
			best = r;
	}
	if (best == NULL)
		return NULL;
	unsigned long long major = 0, minor = 0;
	ib_version_part(best->cuda, 0, &major);
	ib_version_part(best->cuda, 1, &minor);
	snprintf(buf, len, "%llu.%llu", major, minor);
	return buf;
}

const char *ib_compat_last_branch(const struct ib_compat *c, const char *arch, const char **family, const char **source)
{
	const struct arch_driver_row *r = arch_driver_for(c, arch);
	if (family)
		*family = r ? r->family : NULL;
	if (source)
		*source = r ? r->source : NULL;
	return r ? r->last_branch : NULL;
}

char *ib_compat_driver_warning(const struct ib_compat *c, const char *driver, const char *arch)
{
	const struct arch_driver_row *r = arch_driver_for(c, arch);
	if (r == NULL || driver == NULL || !driver_after_branch(driver, r->last_branch))
		return NULL;
	return xasprintf("driver %s is newer than R%s, the last driver branch for %s GPUs (compute capability %s): "
			 "NVIDIA dropped them after it, so this driver does not drive them; install a %s.xx driver "
			 "(source: %s)",
			 driver, r->last_branch, r->family, arch, r->last_branch, r->source);
}

/* The image's min_driver must come from a branch that still drives each arch. */
static void check_arch_driver(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "arch-driver";
	const char *src = rule_source(c, rule);
	if (m->stack.archs.n == 0 || !pin(m, "min_driver")) {
		na(out, rule, src, m->stack.archs.n ? "stack.min_driver or stack.cuda" : "stack.archs");
		return;
	}
	size_t before = out->n;
	cleanup_free char *branches = NULL;
	for (size_t i = 0; i < m->stack.archs.n; i++) {
		const char *a = m->stack.archs.v[i];
		const struct arch_driver_row *r = arch_driver_for(c, a);
		if (r == NULL)
			continue;
		if (driver_after_branch(pin(m, "min_driver"), r->last_branch)) {
			char buf[32];
			const char *top = newest_cuda_for_branch(c, r->last_branch, buf, sizeof(buf));
			add(out, rule, IB_VERDICT_FAIL, r->source,
			    top ? xasprintf("use CUDA <= %s (its driver fits R%s), or remove \"%s\" from stack archs", top,
					    r->last_branch, a)
				: xasprintf("remove \"%s\" from stack archs", a),
			    "GPU architecture %s (%s) ends with driver branch R%s, but the image needs driver >= %s%s%s", a,
			    r->family, r->last_branch, pin(m, "min_driver"), pin(m, "cuda") ? " for CUDA " : "",
			    pin(m, "cuda") ? pin(m, "cuda") : "");
			continue;
		}
		char *item = xasprintf("%s R%s (%s)", a, r->last_branch, r->family);
		char *next = xasprintf("%s%s%s", branches ? branches : "", branches ? ", " : "", item);
		free(item);
		free(branches);
		branches = next;
	}
	if (out->n == before)
		add(out, rule, IB_VERDICT_OK, src, NULL, "driver >= %s is within the last branch of every arch%s%s",
		    pin(m, "min_driver"), branches ? ": " : "", branches ? branches : "");
}

void ib_compat_check_host(const struct ib_compat *c, const struct ib_manifest *m, const char *driver, struct ib_verdicts *out)
{
	const char *rule = "host-driver";
	const char *src = rule_source(c, "arch-driver");
	size_t before = out->n;
	if (pin(m, "min_driver") && ib_version_cmp(driver, pin(m, "min_driver")) < 0) {
		const struct driver_row *r = pin(m, "cuda") ? driver_row_for(c, pin(m, "cuda"), pin(m, "min_driver")) : NULL;
		add(out, rule, IB_VERDICT_FAIL, r ? r->source : src,
		    xasprintf("install a driver >= %s on that host", pin(m, "min_driver")),
		    "host driver %s is older than the image needs (>= %s)", driver, pin(m, "min_driver"));
	}
	size_t too_new = 0;
	for (size_t i = 0; i < m->stack.archs.n; i++) {
		const struct arch_driver_row *r = arch_driver_for(c, m->stack.archs.v[i]);
		if (r == NULL) /* still driven by current drivers */
			continue;
		too_new += driver_after_branch(driver, r->last_branch);
	}
	bool all = m->stack.archs.n > 0 && too_new == m->stack.archs.n;
	for (size_t i = 0; too_new && i < m->stack.archs.n; i++) {
		const char *a = m->stack.archs.v[i];
		const struct arch_driver_row *r = arch_driver_for(c, a);
		if (r == NULL || !driver_after_branch(driver, r->last_branch))
			continue;
		add(out, rule, all ? IB_VERDICT_FAIL : IB_VERDICT_WARN, r->source,
		    xasprintf("on a %s GPU install a driver from the R%s branch%s%s", r->family, r->last_branch,
			      pin(m, "min_driver") ? " that is >= " : "", pin(m, "min_driver") ? pin(m, "min_driver") : ""),
		    "host driver %s is newer than R%s, the last branch for %s GPUs (arch %s): it does not drive them", driver,
		    r->last_branch, r->family, a);
	}
	if (out->n == before) {
		cleanup_free char *need = pin(m, "min_driver") ? xasprintf(" (it needs >= %s)", pin(m, "min_driver")) : xstrdup("");
		add(out, rule, IB_VERDICT_OK, src, NULL, "host driver %s runs this image%s and drives every arch it lists",
		    driver, need);
	}
}

/* ---- inputs against [stack] ------------------------------------------------ */

/* A CUDA runfile (cuda_<release>_<driver>_linux...) must be the [stack]'s CUDA, and
 * the image's min_driver must cover the driver its release needs. */
static void check_input_cuda(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "input-cuda";
	const char *src = rule_source(c, rule);
	size_t before = out->n;
	bool seen = false;
	for (size_t i = 0; i < m->n_downloads; i++) {
		const char *base = basename_of(m->downloads[i].url);
		char rel[32];
		if (strncmp(base, "cuda_", 5) != 0 || read_version(base + 5, rel, sizeof(rel)) == 0 || base[5 + strlen(rel)] != '_')
			continue;
		seen = true;
		if (!pin(m, "cuda")) {
			add(out, rule, IB_VERDICT_OK, src, NULL,
			    "download '%s' is the CUDA %s runfile ([stack] sets no cuda to compare)", m->downloads[i].name, rel);
			continue;
		}
		if (ib_version_cmp_short(rel, pin(m, "cuda")) != 0) {
			add(out, rule, IB_VERDICT_FAIL, src,
			    xasprintf("download the CUDA %s runfile (cuda_%s*_linux) instead, or set stack cuda = \"%s\"",
				      pin(m, "cuda"), pin(m, "cuda"), rel),
			    "download '%s' (%s) is CUDA %s, the image has CUDA %s", m->downloads[i].name, base, rel,
			    pin(m, "cuda"));
			continue;
		}
		const char *need = ib_compat_min_driver(c, rel);
		if (need && pin(m, "min_driver") && ib_version_cmp(pin(m, "min_driver"), need) < 0)
			add(out, rule, IB_VERDICT_FAIL, src,
			    xasprintf("set stack cuda = \"%s\" (or min_driver = \"%s\")", rel, need),
			    "download '%s' is CUDA %s, which needs driver >= %s; the image asks only for >= %s",
			    m->downloads[i].name, rel, need, pin(m, "min_driver"));
	}
	if (!seen) {
		na(out, rule, src, "CUDA runfile download");
		return;
	}
	if (out->n == before)
		add(out, rule, IB_VERDICT_OK, src, NULL, "the CUDA runfile is CUDA %s", pin(m, "cuda"));
}

/* cudnn-<CUDA>-linux-x64-v<release>.tgz: the release must be [stack] cudnn (the
 * CUDA part is checked by cudnn-cuda). */
static void check_input_cudnn(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "input-cudnn";
	const char *src = rule_source(c, rule);
	size_t before = out->n;
	bool seen = false;
	for (size_t i = 0; i < m->n_downloads; i++) {
		const char *base = basename_of(m->downloads[i].url);
		const char *v = strstr(base, "-linux-x64-v");
		if (strncmp(base, "cudnn-", 6) != 0 || v == NULL)
			continue;
		char rel[32];
		if (read_version(v + 12, rel, sizeof(rel)) == 0)
			continue;
		seen = true;
		if (!pin(m, "cudnn"))
			add(out, rule, IB_VERDICT_OK, src, NULL, "download '%s' is cuDNN %s ([stack] sets no cudnn to compare)",
			    m->downloads[i].name, rel);
		/* "v7.1" names 7.1.x tarballs: compare at the shorter precision. */
		else if (ib_version_cmp_short(rel, pin(m, "cudnn")) != 0)
			add(out, rule, IB_VERDICT_FAIL, src,
			    xasprintf("download cuDNN %s (cudnn-*-linux-x64-v%s*.tgz), or set stack cudnn = \"%s\"",
				      pin(m, "cudnn"), pin(m, "cudnn"), rel),
			    "download '%s' (%s) is cuDNN %s, [stack] says cudnn %s", m->downloads[i].name, base, rel,
			    pin(m, "cudnn"));
	}
	if (!seen) {
		na(out, rule, src, "cuDNN tarball download");
		return;
	}
	if (out->n == before)
		add(out, rule, IB_VERDICT_OK, src, NULL, "the cuDNN tarball is cuDNN %s", pin(m, "cudnn"));
}

static const struct installer_row *installer_for(const struct ib_compat *c, const char *base)
{
	const struct installer_row *best = NULL;
	for (size_t i = 0; i < c->n_installer; i++) {
		const struct installer_row *r = &c->installer[i];
		if (strncmp(base, r->prefix, strlen(r->prefix)) == 0 && (best == NULL || strlen(r->prefix) > strlen(best->prefix)))
			best = r;
	}
	return best;
}

/* The conda installer's Python, and a python=X.Y spec in the conda packages, must be
 * [stack] python. */
static void check_input_python(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "input-python";
	const char *src = rule_source(c, rule);
	size_t before = out->n;
	bool seen = false;
	for (size_t i = 0; i < m->n_downloads; i++) {
		const char *base = basename_of(m->downloads[i].url);
		if (strncmp(base, "Miniconda", 9) != 0 && strncmp(base, "Anaconda", 8) != 0)
			continue;
		seen = true;
		const struct installer_row *r = installer_for(c, base);
		if (r == NULL) {
			add(out, rule, IB_VERDICT_WARN, src,
			    xasprintf("add a [[conda_installer]] row for %s to builder/compat.toml", base),
			    "no data on the Python that %s ships", base);
			continue;
		}
		if (!pin(m, "python"))
			add(out, rule, IB_VERDICT_OK, r->source, NULL,
			    "download '%s' (%s) ships Python %s ([stack] sets no python to compare)", m->downloads[i].name, base,
			    r->python);
		else if (ib_version_cmp_short(r->python, pin(m, "python")) != 0) {
			const struct installer_row *want = NULL;
			for (size_t k = 0; k < c->n_installer && !want; k++)
				if (ib_version_cmp_short(c->installer[k].python, pin(m, "python")) == 0)
					want = &c->installer[k];
			add(out, rule, IB_VERDICT_FAIL, r->source,
			    want ? xasprintf("download a %s* installer (Python %s), or set stack python = \"%s\"", want->prefix,
					     want->python, r->python)
				 : xasprintf("set stack python = \"%s\"", r->python),
			    "download '%s' (%s) ships Python %s, [stack] says python %s", m->downloads[i].name, base, r->python,
			    pin(m, "python"));
		}
	}
	/* python=X.Y among the conda packages */
	for (size_t s = 0; pin(m, "python") && s <= m->n_stages; s++) {
		const struct ib_kv_list *env = s < m->n_stages ? &m->stages[s].env : &m->env;
		for (size_t i = 0; i < env->n; i++) {
			if (strcmp(env->v[i].key, "CONDA_PACKAGES") != 0)
				continue;
			for (const char *p = strstr(env->v[i].value, "python="); p; p = strstr(p + 1, "python=")) {
				if (p != env->v[i].value && p[-1] != ' ')
					continue;
				char v[32];
				if (read_version(p + 7, v, sizeof(v)) == 0)
					continue;
				seen = true;
				if (ib_version_cmp_short(v, pin(m, "python")) != 0)
					add(out, rule, IB_VERDICT_FAIL, src,
					    xasprintf("install python=%s in CONDA_PACKAGES", pin(m, "python")),
					    "%s%s%s CONDA_PACKAGES installs python %s, [stack] says python %s",
					    s < m->n_stages ? "stage '" : "[env]", s < m->n_stages ? m->stages[s].name : "",
					    s < m->n_stages ? "'" : "", v, pin(m, "python"));
			}
		}
	}
	if (!seen) {
		na(out, rule, src, "conda installer download");
		return;
	}
	if (out->n == before)
		add(out, rule, IB_VERDICT_OK, src, NULL, "the conda installer and packages give Python %s", pin(m, "python"));
}

/* The torchvision archive (.../vision/archive/vX.tar.gz, vision-X.tar.gz) or a vision
 * [[source]]'s tag must be [stack] torchvision. */
static void check_input_vision(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "input-vision";
	const char *src = rule_source(c, rule);
	size_t before = out->n;
	bool seen = false;
	for (size_t i = 0; i < m->n_downloads + m->n_sources; i++) {
		const char *url, *name, *ver_at = NULL;
		if (i < m->n_downloads) {
			url = m->downloads[i].url;
			name = m->downloads[i].name;
			const char *base = basename_of(url);
			if (strstr(url, "/vision/archive/") && base[0] == 'v')
				ver_at = base + 1;
			else if (strncmp(base, "vision-", 7) == 0 || strncmp(base, "torchvision-", 12) == 0)
				ver_at = strchr(base, '-') + 1;
		} else {
			const struct ib_source *s = &m->sources[i - m->n_downloads];
			url = s->url;
			name = s->name;
			if (strstr(url, "/vision") && strstr(url, "pytorch"))
				ver_at = s->tag[0] == 'v' ? s->tag + 1 : s->tag;
		}
		char v[32];
		if (ver_at == NULL || read_version(ver_at, v, sizeof(v)) == 0)
			continue;
		seen = true;
		if (!pin(m, "torchvision"))
			add(out, rule, IB_VERDICT_OK, src, NULL,
			    "input '%s' is torchvision %s ([stack] sets no torchvision to compare)", name, v);
		else if (ib_version_cmp(v, pin(m, "torchvision")) != 0)
			add(out, rule, IB_VERDICT_FAIL, src,
			    xasprintf("use the v%s archive (or tag), or set stack torchvision = \"%s\"", pin(m, "torchvision"), v),
			    "input '%s' is torchvision %s, [stack] says torchvision %s", name, v, pin(m, "torchvision"));
	}
	if (!seen) {
		na(out, rule, src, "torchvision archive or source");
		return;
	}
	if (out->n == before)
		add(out, rule, IB_VERDICT_OK, src, NULL, "the torchvision input is %s", pin(m, "torchvision"));
}

/* Every CONDA_PACKAGES spec names an exact version (name=X.Y.Z), so that a rebuild
 * gets what the first build got; the explicit lock records the rest. */
static void check_conda_pins(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "conda-pins";
	const char *src = rule_source(c, rule);
	size_t before = out->n, n_specs = 0;
	for (size_t s = 0; s <= m->n_stages; s++) {
		const struct ib_kv_list *env = s < m->n_stages ? &m->stages[s].env : &m->env;
		for (size_t i = 0; i < env->n; i++) {
			if (strcmp(env->v[i].key, "CONDA_PACKAGES") != 0)
				continue;
			cleanup_free char *copy = xstrdup(env->v[i].value);
			cleanup_free char *loose = NULL;
			char *save = NULL;
			for (char *spec = strtok_r(copy, " \t", &save); spec; spec = strtok_r(NULL, " \t", &save)) {
				n_specs++;
				const char *eq = strchr(spec, '=');
				if (eq && isdigit((unsigned char)eq[1]) && strpbrk(spec, "*<>") == NULL)
					continue;
				char *next = xasprintf("%s%s%s", loose ? loose : "", loose ? " " : "", spec);
				free(loose);
				loose = next;
			}
			if (loose)
				add(out, rule, IB_VERDICT_WARN, src,
				    xasprintf("pin each to the exact version of the image's era (name=X.Y.Z)"),
				    "%s%s%s CONDA_PACKAGES has unpinned specs: %s", s < m->n_stages ? "stage '" : "[env]",
				    s < m->n_stages ? m->stages[s].name : "", s < m->n_stages ? "'" : "", loose);
		}
	}
	if (n_specs == 0) {
		na(out, rule, src, "CONDA_PACKAGES");
		return;
	}
	if (out->n == before)
		add(out, rule, IB_VERDICT_OK, src, NULL, "every conda package is pinned (%zu)", n_specs);
}

/* The conda spec naming PKG ("openmpi", "openmpi=3.1.4", "conda-forge::openmpi")
 * in any CONDA_PACKAGES of the manifest; NULL when none does. */
static char *conda_spec_of(const struct ib_manifest *m, const char *pkg)
{
	for (size_t s = 0; s <= m->n_stages; s++) {
		const struct ib_kv_list *env = s < m->n_stages ? &m->stages[s].env : &m->env;
		for (size_t i = 0; i < env->n; i++) {
			if (strcmp(env->v[i].key, "CONDA_PACKAGES") != 0)
				continue;
			cleanup_free char *copy = xstrdup(env->v[i].value);
			char *save = NULL;
			for (char *spec = strtok_r(copy, " \t", &save); spec; spec = strtok_r(NULL, " \t", &save)) {
				const char *name = strstr(spec, "::") ? strstr(spec, "::") + 2 : spec;
				size_t n = strcspn(name, "=<>!");
				if (strlen(pkg) == n && strncmp(name, pkg, n) == 0)
					return xstrdup(spec);
			}
		}
	}
	return NULL;
}

/* [[env_needs]]: a stage (or [env]) that sets KEY=VALUE needs a conda package. */
static void check_env_needs(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out)
{
	const char *rule = "env-needs";
	for (size_t k = 0; k < c->n_env_needs; k++) {
		const struct env_needs_row *r = &c->env_needs[k];
		for (size_t s = 0; s <= m->n_stages; s++) {
			const struct ib_kv_list *env = s < m->n_stages ? &m->stages[s].env : &m->env;
			for (size_t i = 0; i < env->n; i++) {
				cleanup_free char *kv = xasprintf("%s=%s", env->v[i].key, env->v[i].value);
				if (strcmp(kv, r->env) != 0)
					continue;
				cleanup_free char *where =
					s < m->n_stages ? xasprintf("stage '%s'", m->stages[s].name) : xstrdup("[env]");
				cleanup_free char *spec = conda_spec_of(m, r->conda_package);
				if (spec)
					add(out, rule, IB_VERDICT_OK, r->source, NULL, "%s sets %s, and conda installs %s (%s)",
					    where, r->env, spec, r->why);
				else
					add(out, rule, IB_VERDICT_FAIL, r->source,
					    xasprintf("add %s (pinned, e.g. %s=X.Y.Z) to the conda stage's CONDA_PACKAGES, or "
						      "drop %s",
						      r->conda_package, r->conda_package, r->env),
					    "%s sets %s but no CONDA_PACKAGES names %s: %s", where, r->env, r->conda_package,
					    r->why);
			}
		}
	}
}

int ib_compat_check(const struct ib_compat *c, const struct ib_manifest *m, struct ib_verdicts *out, ib_error_t *err)
{
	(void)err;
	check_driver(c, m, out);
	check_gcc(c, m, out);
	check_arch(c, m, out);
	check_arch_driver(c, m, out);
	check_input_cuda(c, m, out);
	check_input_cudnn(c, m, out);
	check_cudnn(c, m, out);
	check_magma(c, m, out);
	check_torch(c, m, out);
	check_torch_source(c, m, out);
	check_ext_arch(c, m, out);
	check_input_python(c, m, out);
	check_input_vision(c, m, out);
	check_conda_pins(c, m, out);
	check_env_needs(c, m, out);
	check_pins(c, m, out);
	check_pin_ranges(c, m, out);
	return 0;
}

/* ---- GPUs and advice ------------------------------------------------------- */

/* Lowercase letters and digits only, "nvidia" and "geforce" dropped. */
static void norm_name(const char *in, char *out, size_t len)
{
	size_t n = 0;
	for (const char *p = in; *p && n + 1 < len; p++)
		if (isalnum((unsigned char)*p))
			out[n++] = (char)tolower((unsigned char)*p);
	out[n] = '\0';
	static const char *const drop[] = { "nvidia", "geforce" };
	for (size_t i = 0; i < 2; i++) {
		char *at;
		while ((at = strstr(out, drop[i])) != NULL)
			memmove(at, at + strlen(drop[i]), strlen(at + strlen(drop[i])) + 1);
	}
}

const char *ib_compat_chip_cc(const struct ib_compat *c, const char *chip, const char **source)
{
	const struct chip_row *best = NULL;
	for (size_t i = 0; chip && i < c->n_chip; i++) {
		const struct chip_row *r = &c->chip[i];
		if (strncasecmp(chip, r->chip, strlen(r->chip)) == 0 && (best == NULL || strlen(r->chip) > strlen(best->chip)))
			best = r;
	}
	if (source)
		*source = best ? best->source : NULL;
	return best ? best->cc : NULL;
}

static struct ib_chip_match device_match(const struct ib_compat *c, const struct device_row *r)
{
	struct ib_chip_match x = { r->pci, r->name, r->chip, NULL, r->source, NULL };
	x.cc = ib_compat_chip_cc(c, r->chip, &x.cc_source);
	return x;
}

size_t ib_compat_devices(const struct ib_compat *c, struct ib_chip_match **out)
{
	*out = xcalloc(c->n_device + 1, sizeof(**out));
	for (size_t i = 0; i < c->n_device; i++)
		(*out)[i] = device_match(c, &c->device[i]);
	return c->n_device;
}

size_t ib_compat_find_chips(const struct ib_compat *c, const char *query, struct ib_chip_match **out)
{
	*out = xcalloc(c->n_device + 1, sizeof(**out));
	size_t n = 0;
	/* A PCI id: "10de:1392" or "1392". */
	const char *id = strncasecmp(query, "10de:", 5) == 0 ? query + 5 : query;
	bool is_id = strlen(id) == 4 && strspn(id, "0123456789abcdefABCDEF") == 4;
	char want[128], have[128];
	norm_name(query, want, sizeof(want));
	for (int pass = 0; pass < 2 && n == 0; pass++)
		for (size_t i = 0; i < c->n_device; i++) {
			const struct device_row *r = &c->device[i];
			bool hit;
			if (is_id)
				hit = strcasecmp(r->pci + 5, id) == 0;
			else {
				norm_name(r->name, have, sizeof(have));
				/* Exact first; then a name that continues the query ("gtx1050" finds
				 * "GTX 1050 Mobile" and "GTX 1050 3GB"). */
				hit = want[0] && (pass == 0 ? strcmp(have, want) == 0 : strncmp(have, want, strlen(want)) == 0);
			}
			if (hit)
				(*out)[n++] = device_match(c, r);
		}
	return n;
}

static void item(struct ib_advice_item *it, const char *source, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void item(struct ib_advice_item *it, const char *source, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(it->value, sizeof(it->value), fmt, ap);
	va_end(ap);
	it->source = source;
}

/* Major of a gcc bound: "11.1" means 11.1 but not 11.2, so only 10 is safe to install. */
static unsigned long long gcc_major(const char *v)
{
	unsigned long long major = 0;
	ib_version_part(v, 0, &major);
	return ib_version_ncomp(v) > 1 && major > 0 ? major - 1 : major;
}

void ib_compat_advise(const struct ib_compat *c, const char *cc, struct ib_advice *a)
{
	memset(a, 0, sizeof(*a));
	const struct arch_driver_row *ad = arch_driver_for(c, cc);
	if (ad) {
		a->family = ad->family;
		a->last_branch = ad->last_branch;
		item(&a->branch, ad->source, "%s; the last driver branch is R%s", ad->family, ad->last_branch);
	} else
		item(&a->branch, "builder/compat.toml [[arch_driver]]", "still driven by current drivers (no last branch known)");
	const struct arch_row *ar = NULL;
	for (size_t i = 0; i < c->n_arch && !ar; i++)
		if (ib_version_cmp(c->arch[i].arch, cc) == 0)
			ar = &c->arch[i];
	if (ar == NULL) {
		item(&a->cuda_range, "builder/compat.toml", "unknown: no [[cuda_arch]] row for %s", cc);
		snprintf(a->why_none, sizeof(a->why_none), "compat.toml has no [[cuda_arch]] row for %s", cc);
		return;
	}
	char top[32] = "";
	if (ad)
		newest_cuda_for_branch(c, ad->last_branch, top, sizeof(top));
	char range[64];
	range_text(range, sizeof(range), ar->cuda_min, ar->cuda_max);
	if (top[0] && (!ar->cuda_max || ib_version_cmp(top, ar->cuda_max) < 0))
		item(&a->cuda_range, ar->source, "%s (nvcc can target %s); with R%s drivers at most CUDA %s runs", range, cc,
		     ad->last_branch, top);
	else
		item(&a->cuda_range, ar->source, "%s (nvcc can target %s)", range, cc);

	/* Candidate CUDA releases: every major.minor the driver table knows, newest first. */
	cleanup_strv struct ib_strv cands = { 0 };
	for (size_t i = 0; i < c->n_driver; i++) {
		char *mm = major_minor(c->driver[i].cuda);
		bool dup = false;
		for (size_t k = 0; k < cands.n && !dup; k++)
			dup = strcmp(cands.v[k], mm) == 0;
		if (dup)
			free(mm);
		else
			ib_strv_push_owned(&cands, mm);
	}
	const char *blocked = NULL;
	for (size_t pick = 0; pick < cands.n && !a->have_stack; pick++) {
		/* the newest not yet tried */
		size_t best = cands.n;
		for (size_t k = 0; k < cands.n; k++)
			if (cands.v[k][0] && (best == cands.n || ib_version_cmp(cands.v[k], cands.v[best]) > 0))
				best = k;
		if (best == cands.n)
			break;
		const char *cu = cands.v[best];
		if (!ib_version_in(cu, ar->cuda_min, ar->cuda_max))
			goto next;
		const char *need = ib_compat_min_driver(c, cu);
		if (need == NULL || (ad && driver_after_branch(need, ad->last_branch)))
			goto next;
		const struct cudnn_row *dn = NULL;
		for (size_t i = 0; i < c->n_cudnn; i++) {
			const struct cudnn_row *r = &c->cudnn[i];
			for (size_t k = 0; k < r->cuda.n; k++)
				if (ib_version_cmp_n(r->cuda.v[k], cu, 2) == 0 &&
				    (dn == NULL || ib_version_cmp(r->cudnn_max, dn->cudnn_max) > 0))
					dn = r;
		}
		const struct torch_row *tr = NULL;
		for (size_t i = 0; i < c->n_torch; i++)
			if (ib_version_in(cu, c->torch[i].cuda_min, c->torch[i].cuda_max) &&
			    (tr == NULL || ib_version_cmp(c->torch[i].torch, tr->torch) > 0))
				tr = &c->torch[i];
		const struct gcc_row *gr = NULL;
		for (size_t i = 0; i < c->n_gcc && !gr; i++)
			if (ib_version_in(cu, c->gcc[i].cuda_min, c->gcc[i].cuda_max))
				gr = &c->gcc[i];
		if (!dn || !tr || !gr) {
			if (!blocked)
				blocked = !dn ? "cuDNN" : !tr ? "torch" : "gcc";
			goto next;
		}
		a->have_stack = true;
		const struct driver_row *drow = driver_row_for(c, cu, need);
		if (ad)
			item(&a->driver, drow ? drow->source : NULL, ">= %s (CUDA %s), from a branch no later than R%s", need, cu,
			     ad->last_branch);
		else
			item(&a->driver, drow ? drow->source : NULL, ">= %s (CUDA %s)", need, cu);
		item(&a->cuda, ar->source, "%s", cu);
		item(&a->cudnn, dn->source, "%s (built for CUDA %s)", dn->cudnn_max, cu);
		unsigned long long g = gcc_major(gr->gcc_max), tg = tr->gcc_max ? gcc_major(tr->gcc_max) : g;
		item(&a->gcc, gr->source, "%llu (CUDA %s accepts <= %s, torch %s <= %s)", g < tg ? g : tg, cu, gr->gcc_max,
		     tr->torch, tr->gcc_max ? tr->gcc_max : "any");
		item(&a->torch, tr->source, "%s (built from source; CUDA %s-%s)", tr->torch, tr->cuda_min ? tr->cuda_min : "?",
		     tr->cuda_max ? tr->cuda_max : "?");
		item(&a->torchvision, tr->source, "%s", tr->torchvision.n ? tr->torchvision.v[tr->torchvision.n - 1] : "?");
		item(&a->python, tr->source, "%s (torch %s: %s-%s)", tr->python_max ? tr->python_max : "?", tr->torch,
		     tr->python_min ? tr->python_min : "?", tr->python_max ? tr->python_max : "?");
		const struct magma_row *mr = NULL;
		for (size_t i = 0; i < c->n_magma; i++)
			if (ib_version_cmp_n(c->magma[i].cuda, cu, 2) == 0)
				mr = &c->magma[i];
		if (mr)
			item(&a->magma, mr->source, "%s%s%s", mr->package, mr->versions.n ? "=" : "",
			     mr->versions.n ? mr->versions.v[mr->versions.n - 1] : "");
		else
			item(&a->magma, rule_source(c, "magma-cuda"), "none on the pytorch channel for CUDA %s", cu);
	next:
		cands.v[best][0] = '\0';
	}
	if (!a->have_stack)
		snprintf(a->why_none, sizeof(a->why_none), "no CUDA in %s that %s can use has a %s row in compat.toml", range,
			 ad ? "its last driver branch" : "it", blocked ? blocked : "driver");
}

const char *ib_compat_ext_arch_fix(const struct ib_compat *c, const char *arch, const char *torch, const char **source)
{
	for (size_t k = 0; k < c->n_ext_arch; k++) {
		const struct ext_arch_row *r = &c->ext_arch[k];
		if (ib_version_cmp(r->arch, arch) == 0 && ib_version_in(torch, r->torch_min, NULL)) {
			if (source)
				*source = r->source;
			return r->fix;
		}
	}
	return NULL;
}

bool ib_compat_arch_covered(const char *cc, const struct ib_strv *archs)
{
	for (size_t i = 0; i < archs->n; i++) {
		const char *a = archs->v[i];
		if (ib_version_cmp_n(a, cc, 1) == 0 && ib_version_cmp(a, cc) <= 0)
			return true;
		if (strstr(a, "+PTX") && ib_version_cmp(a, cc) <= 0)
			return true;
	}
	return false;
}
