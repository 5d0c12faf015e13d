/* The manifest: TOML (builder/toml.c) checked against the schema in
 * docs/manifest.md and turned into struct ib_manifest. Every complaint is one
 * line, "FILE:LINE:COL: problem (hint: fix)", and means exit code 2: the
 * person at the keyboard can fix it, so it must say where and how. */
#include "manifest.h"
#include "crypto.h"
#include "toml.h"
#include "util.h"
#include "version.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ctx {
	const char *file; /* as the user named it: messages point there */
	struct ib_manifest *m;
	ib_error_t *err;
};

/* One section being read: [image], or one [[stage]] item. */
struct sec {
	const char *name;	       /* "image", "stage" */
	char label[160];	       /* "[image]", "[[stage]] 'torch'" */
	const struct ib_toml_value *t; /* NULL when the section is absent */
};

/* ---- schema -------------------------------------------------------------- */

static const char *const top_keys[] = { "image", "base", "toolchain", "stack", "env", "download", "source", "stage", NULL };
static const char *const image_keys[] = { "name", "source_date_epoch", "output", "compression", "sign", NULL };
static const char *const base_keys[] = { "distro",  "suite",   "extra_suites", "mirrors", "components",
					 "keyring", "variant", "packages",     NULL };
static const char *const toolchain_keys[] = { "gcc", NULL };
/* [stack] takes archs and any pin (key = "version"): compat.toml names the pins. */
static const char *const stack_keys[] = { "archs", NULL };
static const char *const download_keys[] = { "name", "url", "mirrors", "sha256", "path", NULL };
static const char *const source_keys[] = { "name", "url", "mirrors", "rewrites", "tag", "commit", "submodules", NULL };
static const char *const stage_keys[] = { "name", "script", "inputs", "env", "network", "retries", "clean", NULL };

static const struct {
	const char *table;
	const char *const *keys;
} all_tables[] = {
	{ "image", image_keys },       { "base", base_keys },	  { "toolchain", toolchain_keys }, { "stack", stack_keys },
	{ "download", download_keys }, { "source", source_keys }, { "stage", stage_keys },
};

/* ---- messages ------------------------------------------------------------ */

/* A value quoted in a message: control characters escaped, long values cut,
 * so that an error stays one line whatever the manifest holds. */
static char *show(const char *s)
{
	size_t cap = 4 * 48 + 8, n = 0;
	char *out = xmalloc(cap);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (n >= 4 * 40) {
			memcpy(out + n, "...", 3);
			n += 3;
			break;
		}
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			n += (size_t)snprintf(out + n, cap - n, "\\x%02x", *p);
		else
			out[n++] = (char)*p;
	}
	out[n] = '\0';
	return out;
}

__attribute__((format(printf, 5, 6))) static int fail_at(struct ctx *c, int line, int col, const char *hint, const char *fmt, ...)
{
	va_list ap;
	cleanup_free char *msg = NULL;
	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	if (line <= 0)
		line = col = 1;
	if (hint)
		return ib_error_usage(c->err, "%s:%d:%d: %s (hint: %s)", c->file, line, col, msg, hint);
	return ib_error_usage(c->err, "%s:%d:%d: %s", c->file, line, col, msg);
}

static int fail_v(struct ctx *c, const struct ib_toml_value *v, const char *hint, const char *what, const char *value)
{
	cleanup_free char *shown = show(value);
	cleanup_free char *msg = xasprintf(what, shown);
	return fail_at(c, v->line, v->col, hint, "%s", msg);
}

static char *list_keys(const char *const *keys)
{
	char *out = xstrdup("");
	for (size_t i = 0; keys[i]; i++) {
		char *next = xasprintf("%s%s%s", out, i ? ", " : "", keys[i]);
		free(out);
		out = next;
	}
	return out;
}

static int check_keys(struct ctx *c, const struct sec *s, const char *const *allowed)
{
	const struct ib_toml_value *t = s->t;
	for (size_t i = 0; i < t->len; i++) {
		const char *key = t->keys[i];
		bool known = false;
		for (size_t k = 0; allowed[k]; k++)
			known = known || strcmp(allowed[k], key) == 0;
		if (known)
			continue;
		cleanup_free char *shown = show(key);
		cleanup_free char *hint = NULL;
		size_t n = 0;
		while (allowed[n])
			n++;
		const char *near = ib_nearest(key, allowed, n);
		if (near)
			hint = xasprintf("did you mean '%s'?", near);
		for (size_t k = 0; !hint && k < sizeof(all_tables) / sizeof(all_tables[0]); k++)
			for (size_t j = 0; !hint && all_tables[k].keys[j]; j++)
				if (strcmp(all_tables[k].keys[j], key) == 0 && all_tables[k].keys != allowed)
					hint = strcmp(all_tables[k].table, "download") == 0 ||
							       strcmp(all_tables[k].table, "source") == 0 ||
							       strcmp(all_tables[k].table, "stage") == 0
						       ? xasprintf("'%s' belongs in [[%s]]", shown, all_tables[k].table)
						       : xasprintf("'%s' belongs in [%s]", shown, all_tables[k].table);
		/* key = "version" anywhere else is a pin written in the wrong table. */
		if (!hint && t->items[i]->type == IB_TOML_STRING && ib_version_valid(t->items[i]->u.str))
			hint = xasprintf("'%s' belongs in [stack]", shown);
		if (!hint) {
			cleanup_free char *keys = list_keys(allowed);
			hint = xasprintf("%s takes %s", s->label, keys);
		}
		return fail_at(c, t->items[i]->line, t->items[i]->col, hint, "unknown key '%s' in %s", shown, s->label);
	}
	return 0;
}

static const char *example_for(enum ib_toml_type type)
{
	switch (type) {
	case IB_TOML_STRING: return "\"...\"";
	case IB_TOML_INTEGER: return "a number without quotes";
	case IB_TOML_BOOL: return "true or false, without quotes";
	case IB_TOML_ARRAY: return "[\"...\", \"...\"]";
	case IB_TOML_TABLE: return "{ NAME = \"value\" }";
	default: return "...";
	}
}

static const char *type_words(enum ib_toml_type type)
{
	switch (type) {
	case IB_TOML_STRING: return "a string";
	case IB_TOML_INTEGER: return "an integer";
	case IB_TOML_BOOL: return "a boolean";
	case IB_TOML_ARRAY: return "an array";
	case IB_TOML_TABLE: return "a table";
	default: return ib_toml_type_name(type);
	}
}

static int wrong_type(struct ctx *c, const struct sec *s, const char *key, const struct ib_toml_value *v, enum ib_toml_type want)
{
	cleanup_free char *hint = NULL;
	if (want == IB_TOML_STRING && v->type == IB_TOML_INTEGER)
		hint = xasprintf("quote it: %s = \"%lld\"", key, (long long)v->u.integer);
	else if (want == IB_TOML_STRING && v->type == IB_TOML_FLOAT) {
		/* 10.0 would print as "10" with %g: keep one decimal for whole numbers. */
		double r = v->u.real;
		if (r == (double)(long long)r && r < 1e15 && r > -1e15)
			hint = xasprintf("quote it: %s = \"%.1f\"", key, r);
		else
			hint = xasprintf("quote it: %s = \"%g\"", key, r);
	} else if (want == IB_TOML_ARRAY && v->type == IB_TOML_STRING) {
		cleanup_free char *shown = show(v->u.str);
		hint = xasprintf("write %s = [\"%s\"]", key, shown);
	} else if (want == IB_TOML_INTEGER && v->type == IB_TOML_STRING) {
		cleanup_free char *shown = show(v->u.str);
		hint = xasprintf("drop the quotes: %s = %s", key, shown);
	} else
		hint = xasprintf("write %s = %s", key, example_for(want));
	return fail_at(c, v->line, v->col, hint, "'%s.%s' must be %s, found %s", s->name, key, type_words(want),
		       type_words(v->type));
}

/* 1 present, 0 absent, -1 error. */
static int get(struct ctx *c, const struct sec *s, const char *key, enum ib_toml_type type, bool required,
	       const struct ib_toml_value **out)
{
	const struct ib_toml_value *v = s->t ? ib_toml_get(s->t, key) : NULL;
	if (v == NULL) {
		if (!required)
			return 0;
		cleanup_free char *hint = xasprintf("add %s = %s", key, example_for(type));
		if (s->t == NULL)
			return fail_at(c, 1, 1, hint, "missing required key '%s' in %s (the table is absent)", key, s->label);
		return fail_at(c, s->t->line, s->t->col, hint, "missing required key '%s' in %s", key, s->label);
	}
	if (v->type != type)
		return wrong_type(c, s, key, v, type);
	*out = v;
	return 1;
}

static int get_str(struct ctx *c, const struct sec *s, const char *key, bool required, char **out, struct ib_pos *pos)
{
	const struct ib_toml_value *v = NULL;
	int rc = get(c, s, key, IB_TOML_STRING, required, &v);
	if (rc <= 0)
		return rc;
	if (v->u.str[0] == '\0')
		return fail_at(c, v->line, v->col, "remove the key or give it a value", "'%s.%s' is empty", s->name, key);
	free(*out);
	*out = xstrdup(v->u.str);
	if (pos)
		*pos = (struct ib_pos){ v->line, v->col };
	return 1;
}

static int get_strv(struct ctx *c, const struct sec *s, const char *key, bool required, struct ib_strv *out, struct ib_pos *pos,
		    const struct ib_toml_value **arr)
{
	const struct ib_toml_value *v = NULL;
	int rc = get(c, s, key, IB_TOML_ARRAY, required, &v);
	if (rc <= 0)
		return rc;
	for (size_t i = 0; i < v->len; i++) {
		const struct ib_toml_value *it = v->items[i];
		if (it->type != IB_TOML_STRING)
			return fail_at(c, it->line, it->col, "quote every item: [\"a\", \"b\"]",
				       "'%s.%s' must hold strings, found %s", s->name, key, type_words(it->type));
		if (it->u.str[0] == '\0')
			return fail_at(c, it->line, it->col, "remove the empty item", "'%s.%s' holds an empty string", s->name,
				       key);
		ib_strv_push(out, it->u.str);
	}
	if (pos)
		*pos = (struct ib_pos){ v->line, v->col };
	if (arr)
		*arr = v;
	return 1;
}

static bool env_key_ok(const char *k)
{
	if (!(isalpha((unsigned char)*k) || *k == '_'))
		return false;
	for (const char *p = k; *p; p++)
		if (!(isalnum((unsigned char)*p) || *p == '_'))
			return false;
	return true;
}

static void kv_push(struct ib_kv_list *l, const char *key, const char *value, struct ib_pos pos)
{
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n++] = (struct ib_kv){ xstrdup(key), xstrdup(value), pos };
}

/* A table of strings. ENV_KEYS: keys must be shell variable names. */
static int get_kv(struct ctx *c, const struct sec *s, const char *key, bool env_keys, struct ib_kv_list *out)
{
	const struct ib_toml_value *v = NULL;
	int rc = get(c, s, key, IB_TOML_TABLE, false, &v);
	if (rc <= 0)
		return rc;
	for (size_t i = 0; i < v->len; i++) {
		const struct ib_toml_value *it = v->items[i];
		cleanup_free char *shown = show(v->keys[i]);
		if (env_keys && !env_key_ok(v->keys[i]))
			return fail_at(c, it->line, it->col, "use letters, digits and '_', not starting with a digit",
				       "'%s' in %s.%s is not an environment variable name", shown, s->name, key);
		if (!env_keys && (v->keys[i][0] == '\0' || v->keys[i][0] == '-'))
			return fail_at(c, it->line, it->col, "write a URL prefix such as \"https://github.com/\"",
				       "'%s' in %s.%s is not a URL prefix", shown, s->name, key);
		if (it->type != IB_TOML_STRING) {
			cleanup_free char *hint = xasprintf("write %s = \"...\"", shown);
			return fail_at(c, it->line, it->col, hint, "'%s.%s.%s' must be a string, found %s", s->name, key, shown,
				       type_words(it->type));
		}
		if (!env_keys && (it->u.str[0] == '\0' || it->u.str[0] == '-'))
			return fail_at(c, it->line, it->col, "write a URL prefix such as \"https://gitee.com/mirrors/\"",
				       "'%s.%s.%s' is not a URL prefix", s->name, key, shown);
		kv_push(out, v->keys[i], it->u.str, (struct ib_pos){ it->line, it->col });
	}
	return 1;
}

static int get_bool(struct ctx *c, const struct sec *s, const char *key, bool *out)
{
	const struct ib_toml_value *v = NULL;
	int rc = get(c, s, key, IB_TOML_BOOL, false, &v);
	if (rc > 0)
		*out = v->u.boolean;
	return rc;
}

static int get_int(struct ctx *c, const struct sec *s, const char *key, bool required, int64_t lo, int64_t hi, int64_t *out)
{
	const struct ib_toml_value *v = NULL;
	int rc = get(c, s, key, IB_TOML_INTEGER, required, &v);
	if (rc <= 0)
		return rc;
	if (v->u.integer < lo || v->u.integer > hi) {
		cleanup_free char *hint = xasprintf("use a value from %lld to %lld", (long long)lo, (long long)hi);
		return fail_at(c, v->line, v->col, hint, "'%s.%s' = %lld is out of range", s->name, key, (long long)v->u.integer);
	}
	*out = v->u.integer;
	return 1;
}

/* ---- value checks -------------------------------------------------------- */

/* [a-z0-9] then [a-z0-9] or EXTRA: no leading '.', so never "." or "..". */
static bool name_ok(const char *s, const char *extra)
{
	if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s)))
		return false;
	for (const char *p = s; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || strchr(extra, *p)))
			return false;
	return strlen(s) <= 128;
}

static bool hex_ok(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (const char *p = s; *p; p++)
		if (!isxdigit((unsigned char)*p))
			return false;
	return true;
}

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

static bool package_ok(const char *s)
{
	/* name[=version] or name:arch, as apt takes them. */
	if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s)))
		return false;
	const char *p = s;
	while (*p && (islower((unsigned char)*p) || isdigit((unsigned char)*p) || strchr("+.-", *p)))
		p++;
	if (*p == '\0')
		return true;
	if (*p != '=' && *p != ':')
		return false;
	if (*++p == '\0')
		return false;
	for (; *p; p++)
		if (!(isalnum((unsigned char)*p) || strchr(".+~:_-", *p)))
			return false;
	return true;
}

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool no_space(const char *s)
{
	for (; *s; s++)
		if (isspace((unsigned char)*s) || (unsigned char)*s < 0x20)
			return false;
	return true;
}

static bool download_url_ok(const char *u)
{
	if (!no_space(u))
		return false;
	if (has_prefix(u, "http://") || has_prefix(u, "https://"))
		return strstr(u, "://")[3] != '\0';
	if (has_prefix(u, "file://"))
		return u[7] == '/';
	if (has_prefix(u, "mirror://debian/") || has_prefix(u, "mirror://ubuntu/"))
		return u[16] != '\0';
	return false;
}

static bool git_url_ok(const char *u)
{
	if (!no_space(u))
		return false;
	static const char *const schemes[] = { "https://", "http://", "git://", "ssh://", "file://" };
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (has_prefix(u, schemes[i]) && u[strlen(schemes[i])] != '\0')
			return true;
	return false;
}

static bool arch_ok(const char *a)
{
	/* "6.1", "6.1+PTX", "9.0a" (arch-specific features) */
	if (!isdigit((unsigned char)*a))
		return false;
	const char *p = a;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p++ != '.' || !isdigit((unsigned char)*p))
		return false;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p == 'a')
		p++;
	return *p == '\0' || strcmp(p, "+PTX") == 0;
}

/* ---- paths --------------------------------------------------------------- */

static char *absolute(const char *path)
{
	if (path[0] == '/')
		return xstrdup(path);
	char cwd[PATH_MAX];
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return xasprintf("/%s", path);
	return ib_path_join(cwd, path);
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void set_paths(struct ib_manifest *m, const char *path)
{
	cleanup_free char *abs = absolute(path);
	char *slash = strrchr(abs, '/');
	cleanup_free char *dir = slash == abs ? xstrdup("/") : xstrndup(abs, (size_t)(slash - abs));
	char real[PATH_MAX];
	if (realpath(dir, real))
		m->dir = xstrdup(real);
	else
		m->dir = xstrdup(dir);
	m->path = strcmp(m->dir, "/") == 0 ? xasprintf("/%s", slash + 1) : xasprintf("%s/%s", m->dir, slash + 1);

	/* The project is the nearest folder at or above the manifest's that holds
	 * stages/: scripts and keys may come from anywhere inside it, not above it. */
	cleanup_free char *probe = xstrdup(m->dir);
	for (;;) {
		cleanup_free char *stages = ib_path_join(probe, "stages");
		if (is_dir(stages)) {
			m->project_root = xstrdup(probe);
			return;
		}
		char *cut = strrchr(probe, '/');
		if (cut == NULL || (cut == probe && probe[1] == '\0'))
			break;
		if (cut == probe)
			cut[1] = '\0';
		else
			*cut = '\0';
	}
	m->project_root = xstrdup(m->dir);
}

static bool inside(const char *path, const char *root)
{
	size_t n = strlen(root);
	if (strcmp(root, "/") == 0)
		return true;
	return strncmp(path, root, n) == 0 && path[n] == '/';
}

/* VALUE (relative to the manifest's folder) must exist, be a regular file, and
 * resolve - symbolic links followed - to a place inside the project. */
static char *project_file(struct ctx *c, const struct ib_toml_value *v, const char *what)
{
	const char *value = v->u.str;
	cleanup_free char *joined = value[0] == '/' ? xstrdup(value) : ib_path_join(c->m->dir, value);
	cleanup_free char *shown = show(value);
	char real[PATH_MAX];
	if (realpath(joined, real) == NULL) {
		int e = errno;
		cleanup_free char *where = show(joined);
		cleanup_free char *dir = show(c->m->dir);
		cleanup_free char *hint = xasprintf("paths are relative to the manifest's folder %s", dir);
		if (e == ENOENT || e == ENOTDIR)
			fail_at(c, v->line, v->col, hint, "%s '%s' not found (looked at %s)", what, shown, where);
		else
			fail_at(c, v->line, v->col, hint, "%s '%s': %s", what, shown, strerror(e));
		return NULL;
	}
	cleanup_free char *root_shown = show(c->m->project_root);
	if (!inside(real, c->m->project_root)) {
		cleanup_free char *real_shown = show(real);
		cleanup_free char *hint =
			xasprintf("keep it under %s (the nearest folder above the manifest that holds stages/)", root_shown);
		fail_at(c, v->line, v->col, hint, "%s '%s' resolves to %s, outside the project %s", what, shown, real_shown,
			root_shown);
		return NULL;
	}
	struct stat st;
	if (stat(real, &st) < 0 || !S_ISREG(st.st_mode)) {
		fail_at(c, v->line, v->col, "name a file", "%s '%s' is not a regular file", what, shown);
		return NULL;
	}
	return xstrdup(real);
}

/* [image] output: relative to the manifest's folder, and the folder it lands
 * in (the nearest one that exists, symbolic links followed) inside the project. */
static char *project_output(struct ctx *c, const char *value, struct ib_pos pos)
{
	cleanup_free char *shown = show(value);
	cleanup_free char *root_shown = show(c->m->project_root);
	cleanup_free char *hint = xasprintf("write a path inside %s, or choose the place with imgbuild build -o OUT", root_shown);
	if (value[0] == '\0' || value[strlen(value) - 1] == '/')
		return fail_at(c, pos.line, pos.col, hint, "image.output '%s' names no file", shown), NULL;
	cleanup_free char *joined = value[0] == '/' ? xstrdup(value) : ib_path_join(c->m->dir, value);
	cleanup_free char *probe = xstrdup(joined);
	char real[PATH_MAX];
	for (;;) {
		char *cut = strrchr(probe, '/');
		if (cut == NULL)
			break;
		*cut = '\0';
		if (realpath(*probe ? probe : "/", real) != NULL)
			break;
		if (errno != ENOENT)
			return fail_at(c, pos.line, pos.col, hint, "image.output '%s': %s", shown, strerror(errno)), NULL;
	}
	if (!inside(real, c->m->project_root) && strcmp(real, c->m->project_root) != 0) {
		cleanup_free char *real_shown = show(real);
		return fail_at(c, pos.line, pos.col, hint, "image.output '%s' is in %s, outside the project %s", shown,
			       real_shown, root_shown),
		       NULL;
	}
	/* The file itself may be a symbolic link: rename() replaces the link, never its target. */
	return steal_pointer(&joined);
}

/* ---- sections ------------------------------------------------------------ */

static int sec_open(struct ctx *c, const struct ib_toml_value *root, const char *name, struct sec *s, const char *const *keys)
{
	s->name = name;
	snprintf(s->label, sizeof(s->label), "[%s]", name);
	s->t = ib_toml_get(root, name);
	if (s->t == NULL)
		return 0;
	if (s->t->type != IB_TOML_TABLE) {
		cleanup_free char *hint = xasprintf("write a [%s] table", name);
		return fail_at(c, s->t->line, s->t->col, hint, "'%s' must be a table, found %s", name, type_words(s->t->type));
	}
	return check_keys(c, s, keys);
}

static int parse_image(struct ctx *c, const struct ib_toml_value *root)
{
	struct ib_manifest *m = c->m;
	struct sec s;
	if (sec_open(c, root, "image", &s, image_keys) < 0)
		return -1;
	if (s.t == NULL)
		return fail_at(c, 1, 1, "add [image] with name = \"...\" and source_date_epoch = 1577836800",
			       "missing required table [image]");
	m->image.pos = (struct ib_pos){ s.t->line, s.t->col };
	struct ib_pos pos;
	if (get_str(c, &s, "name", true, &m->image.name, &pos) < 0)
		return -1;
	if (!name_ok(m->image.name, "._-")) {
		cleanup_free char *shown = show(m->image.name);
		return fail_at(c, pos.line, pos.col, "use [a-z0-9][a-z0-9._-]*, at most 128 characters",
			       "image name '%s' has characters it may not have", shown);
	}
	if (get_int(c, &s, "source_date_epoch", true, 0, 253402300799LL, &m->image.source_date_epoch) < 0)
		return -1;

	cleanup_free char *compression = NULL;
	const struct ib_toml_value *v = NULL;
	if (get_str(c, &s, "compression", false, &compression, NULL) < 0)
		return -1;
	m->image.compression = IB_COMPRESS_NONE;
	if (compression) {
		v = ib_toml_get(s.t, "compression");
		if (strcmp(compression, "zstd") == 0)
			m->image.compression = IB_COMPRESS_ZSTD;
		else if (strcmp(compression, "none") != 0)
			return fail_v(c, v, "write compression = \"none\" or \"zstd\"", "unknown compression '%s'", compression);
	}

	/* The manifest is not trusted (issue 14): it may place the image inside its
	 * own project, never elsewhere (root would rename the tar over any file),
	 * and it may not choose the builder's signing key. -o and --sign may. */
	cleanup_free char *output = NULL;
	if (get_str(c, &s, "output", false, &output, &pos) < 0)
		return -1;
	if (output) {
		if ((m->image.output = project_output(c, output, pos)) == NULL)
			return -1;
	} else {
		cleanup_free char *def =
			xasprintf("%s.tar%s", m->image.name, m->image.compression == IB_COMPRESS_ZSTD ? ".zst" : "");
		m->image.output = absolute(def);
	}

	const struct ib_toml_value *sv = ib_toml_get(s.t, "sign");
	if (sv) {
		cleanup_free char *sign = NULL;
		if (get_str(c, &s, "sign", false, &sign, &pos) < 0)
			return -1;
		cleanup_free char *shown = show(sign);
		if (strncmp(sign, "~/", 2) == 0 || strcmp(sign, "~") == 0)
			return fail_at(c, pos.line, pos.col,
				       "remove it and sign with your own key on the command line: imgbuild build --sign KEY",
				       "image.sign '%s' names a key of the person building, outside the project", shown);
		cleanup_free char *joined = sign[0] == '/' ? xstrdup(sign) : ib_path_join(m->dir, sign);
		char real[PATH_MAX];
		if (realpath(joined, real) == NULL || !inside(real, m->project_root)) {
			cleanup_free char *root_shown = show(m->project_root);
			return fail_at(c, pos.line, pos.col,
				       "remove it and sign with your own key on the command line: imgbuild build --sign KEY",
				       "image.sign '%s' is not a key file inside the project %s", shown, root_shown);
		}
		if ((m->image.sign_key = project_file(c, sv, "image.sign")) == NULL)
			return -1;
	}
	return 0;
}

static int check_names(struct ctx *c, const struct sec *s, const char *key, const struct ib_strv *list,
		       const struct ib_toml_value *arr, bool (*ok)(const char *), const char *hint)
{
	for (size_t i = 0; i < list->n; i++)
		if (!ok(list->v[i])) {
			cleanup_free char *what = xasprintf("'%%s' is not a valid %s.%s entry", s->name, key);
			return fail_v(c, arr->items[i], hint, what, list->v[i]);
		}
	return 0;
}

static bool suite_ok(const char *s)
{
	return name_ok(s, "._-");
}
static bool component_ok(const char *s)
{
	return name_ok(s, "._-");
}
static bool mirror_ok(const char *u)
{
	return no_space(u) && (has_prefix(u, "http://") || has_prefix(u, "https://") || has_prefix(u, "file:///"));
}

static int parse_base(struct ctx *c, const struct ib_toml_value *root)
{
	struct ib_manifest *m = c->m;
	struct sec s;
	if (sec_open(c, root, "base", &s, base_keys) < 0)
		return -1;
	if (s.t == NULL)
		return fail_at(c, 1, 1, "add [base] with distro = \"debian\" or \"ubuntu\" and suite = \"...\"",
			       "missing required table [base]");
	m->base.pos = (struct ib_pos){ s.t->line, s.t->col };
	if (get_str(c, &s, "distro", true, &m->base.distro, NULL) < 0)
		return -1;
	if (strcmp(m->base.distro, "debian") != 0 && strcmp(m->base.distro, "ubuntu") != 0) {
		static const char *const distros[] = { "debian", "ubuntu", NULL };
		const char *near = ib_nearest(m->base.distro, distros, 2);
		cleanup_free char *hint =
			near ? xasprintf("did you mean '%s'?", near) : xstrdup("write distro = \"debian\" or \"ubuntu\"");
		return fail_v(c, ib_toml_get(s.t, "distro"), hint, "unknown distro '%s'", m->base.distro);
	}
	struct ib_pos pos;
	if (get_str(c, &s, "suite", true, &m->base.suite, &pos) < 0)
		return -1;
	if (!suite_ok(m->base.suite))
		return fail_v(c, ib_toml_get(s.t, "suite"), "a suite is a code name such as \"bionic\"",
			      "suite '%s' has characters it may not have", m->base.suite);

	const struct ib_toml_value *arr = NULL;
	if (get_strv(c, &s, "extra_suites", false, &m->base.extra_suites, NULL, &arr) < 0 ||
	    (arr && check_names(c, &s, "extra_suites", &m->base.extra_suites, arr, suite_ok,
				"write suites such as \"bionic-updates\"") < 0))
		return -1;
	arr = NULL;
	if (get_strv(c, &s, "mirrors", false, &m->base.mirrors, NULL, &arr) < 0 ||
	    (arr && check_names(c, &s, "mirrors", &m->base.mirrors, arr, mirror_ok, "write http://, https:// or file:/// URLs") < 0))
		return -1;
	arr = NULL;
	if (get_strv(c, &s, "components", false, &m->base.components, NULL, &arr) < 0 ||
	    (arr &&
	     check_names(c, &s, "components", &m->base.components, arr, component_ok, "write components such as \"main\"") < 0))
		return -1;
	if (m->base.components.n == 0)
		ib_strv_push(&m->base.components, "main");
	arr = NULL;
	if (get_strv(c, &s, "packages", false, &m->base.packages, NULL, &arr) < 0 ||
	    (arr && check_names(c, &s, "packages", &m->base.packages, arr, package_ok,
				"write Debian package names such as \"build-essential\" (optionally =VERSION)") < 0))
		return -1;

	if (get_str(c, &s, "variant", false, &m->base.variant, NULL) < 0)
		return -1;
	if (m->base.variant == NULL)
		m->base.variant = xstrdup("minbase");
	else if (!name_ok(m->base.variant, "-"))
		return fail_v(c, ib_toml_get(s.t, "variant"), "write variant = \"minbase\" or \"buildd\"", "unknown variant '%s'",
			      m->base.variant);

	const struct ib_toml_value *keyring = NULL;
	int rc = get(c, &s, "keyring", IB_TOML_STRING, false, &keyring);
	if (rc < 0)
		return -1;
	if (rc > 0 && (m->base.keyring = project_file(c, keyring, "keyring")) == NULL)
		return -1;
	return 0;
}

static int parse_toolchain(struct ctx *c, const struct ib_toml_value *root)
{
	struct sec s;
	if (sec_open(c, root, "toolchain", &s, toolchain_keys) < 0)
		return -1;
	if (s.t == NULL)
		return 0;
	c->m->toolchain.pos = (struct ib_pos){ s.t->line, s.t->col };
	if (get_str(c, &s, "gcc", false, &c->m->toolchain.gcc, NULL) < 0)
		return -1;
	if (c->m->toolchain.gcc && !ib_version_valid(c->m->toolchain.gcc))
		return fail_v(c, ib_toml_get(s.t, "gcc"), "write the major version, e.g. gcc = \"7\"",
			      "gcc version '%s' is not a version", c->m->toolchain.gcc);
	return 0;
}

/* A pin's name becomes IMGBUILD_<KEY> in the stages and a key of facts.toml. */
static bool pin_key_ok(const char *k)
{
	if (!(*k >= 'a' && *k <= 'z') || strlen(k) > 64)
		return false;
	for (const char *p = k; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return true;
}

static int pin_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ib_pin *)a)->key, ((const struct ib_pin *)b)->key);
}

static void pin_add(struct ib_pins *p, const char *key, const char *value, struct ib_pos pos, const char *from)
{
	p->v = xrealloc(p->v, (p->n + 1) * sizeof(*p->v));
	p->v[p->n++] = (struct ib_pin){ xstrdup(key), xstrdup(value), pos, from ? xstrdup(from) : NULL };
	qsort(p->v, p->n, sizeof(*p->v), pin_cmp);
}

/* Every key but archs is a pin; which names exist is the compat data's to
 * say (ib_compat_resolve), so that adding one is a data change. */
static int parse_stack(struct ctx *c, const struct ib_toml_value *root)
{
	struct ib_manifest *m = c->m;
	struct sec s;
	s.name = "stack";
	snprintf(s.label, sizeof(s.label), "[stack]");
	s.t = ib_toml_get(root, "stack");
	if (s.t == NULL)
		return 0;
	if (s.t->type != IB_TOML_TABLE)
		return fail_at(c, s.t->line, s.t->col, "write a [stack] table", "'stack' must be a table, found %s",
			       type_words(s.t->type));
	m->stack.pos = (struct ib_pos){ s.t->line, s.t->col };
	for (size_t i = 0; i < s.t->len; i++) {
		const char *key = s.t->keys[i];
		const struct ib_toml_value *v = s.t->items[i];
		if (strcmp(key, "archs") == 0)
			continue;
		if (!pin_key_ok(key))
			return fail_v(c, v, "name a pin with lowercase letters, digits and '_': it becomes IMGBUILD_<KEY>",
				      "'%s' cannot be a [stack] pin", key);
		cleanup_free char *value = NULL;
		struct ib_pos pos;
		if (get_str(c, &s, key, false, &value, &pos) < 0)
			return -1;
		if (!ib_version_valid(value)) {
			cleanup_free char *hint = xasprintf("write digits and dots, e.g. %s = \"10.0\"", key);
			return fail_v(c, v, hint, "'%s' is not a version", value);
		}
		pin_add(&m->stack.pins, key, value, pos, NULL);
	}
	const struct ib_toml_value *arr = NULL;
	if (get_strv(c, &s, "archs", false, &m->stack.archs, &m->stack.archs_pos, &arr) < 0)
		return -1;
	for (size_t i = 0; arr && i < m->stack.archs.n; i++)
		if (!arch_ok(m->stack.archs.v[i]))
			return fail_v(c, arr->items[i], "write compute capabilities such as \"3.5\" or \"6.1+PTX\"",
				      "'%s' is not a GPU architecture", m->stack.archs.v[i]);
	return 0;
}

const struct ib_pin *ib_manifest_pin(const struct ib_manifest *m, const char *key)
{
	for (size_t i = 0; i < m->stack.pins.n; i++)
		if (strcmp(m->stack.pins.v[i].key, key) == 0)
			return &m->stack.pins.v[i];
	return NULL;
}

const char *ib_manifest_pin_value(const struct ib_manifest *m, const char *key)
{
	const struct ib_pin *p = ib_manifest_pin(m, key);
	return p ? p->value : NULL;
}

void ib_manifest_pin_derive(struct ib_manifest *m, const char *key, const char *value, const char *from)
{
	pin_add(&m->stack.pins, key, value, (struct ib_pos){ 0, 0 }, from);
}

/* An array of tables: [[download]] and friends. */
static int aot(struct ctx *c, const struct ib_toml_value *root, const char *name, const struct ib_toml_value **out)
{
	const struct ib_toml_value *v = ib_toml_get(root, name);
	*out = NULL;
	if (v == NULL)
		return 0;
	if (v->type != IB_TOML_ARRAY) {
		cleanup_free char *hint = xasprintf("write [[%s]] (double brackets), once per item", name);
		return fail_at(c, v->line, v->col, hint, "'%s' must be an array of tables, found %s", name, type_words(v->type));
	}
	for (size_t i = 0; i < v->len; i++)
		if (v->items[i]->type != IB_TOML_TABLE) {
			cleanup_free char *hint = xasprintf("write [[%s]] (double brackets), once per item", name);
			return fail_at(c, v->items[i]->line, v->items[i]->col, hint, "'%s' items must be tables, found %s", name,
				       type_words(v->items[i]->type));
		}
	*out = v;
	return 1;
}

static int item_open(struct ctx *c, const char *name, size_t index, const struct ib_toml_value *t, struct sec *s,
		     const char *const *keys, char **item_name, struct ib_pos *pos, const char *name_chars)
{
	s->name = name;
	s->t = t;
	snprintf(s->label, sizeof(s->label), "[[%s]] #%zu", name, index + 1);
	if (check_keys(c, s, keys) < 0)
		return -1;
	*pos = (struct ib_pos){ t->line, t->col };
	if (get_str(c, s, "name", true, item_name, NULL) < 0)
		return -1;
	const struct ib_toml_value *v = ib_toml_get(t, "name");
	if (!name_ok(*item_name, name_chars)) {
		cleanup_free char *hint = xasprintf("use [a-z0-9][a-z0-9%s]*", name_chars);
		return fail_v(c, v, hint, "name '%s' has characters it may not have", *item_name);
	}
	cleanup_free char *shown = show(*item_name);
	snprintf(s->label, sizeof(s->label), "[[%s]] '%s'", name, shown);
	return 0;
}

/* Downloads and sources share one name space: both appear as /imgbuild/inputs/NAME. */
static int input_name_unique(struct ctx *c, const char *name, const struct ib_toml_value *v)
{
	const struct ib_download *d = ib_manifest_download(c->m, name);
	const struct ib_source *s = ib_manifest_source(c->m, name);
	if (d == NULL && s == NULL)
		return 0;
	struct ib_pos p = d ? d->pos : s->pos;
	cleanup_free char *hint = xasprintf("the other is at line %d; names of downloads and sources must be unique", p.line);
	return fail_v(c, v, hint, "duplicate input name '%s'", name);
}

static int parse_downloads(struct ctx *c, const struct ib_toml_value *root)
{
	struct ib_manifest *m = c->m;
	const struct ib_toml_value *arr;
	int rc = aot(c, root, "download", &arr);
	if (rc <= 0)
		return rc;
	m->downloads = xcalloc(arr->len, sizeof(*m->downloads));
	for (size_t i = 0; i < arr->len; i++) {
		struct ib_download *d = &m->downloads[m->n_downloads];
		struct sec s;
		char *name = NULL;
		struct ib_pos pos;
		if (item_open(c, "download", i, arr->items[i], &s, download_keys, &name, &pos, "._-") < 0) {
			free(name);
			return -1;
		}
		if (input_name_unique(c, name, ib_toml_get(s.t, "name")) < 0) {
			free(name);
			return -1;
		}
		d->name = name;
		d->pos = pos;
		m->n_downloads++;
		const struct ib_toml_value *v = NULL;
		const struct ib_toml_value *pathv = ib_toml_get(s.t, "path");
		if (pathv) {
			/* A file of the project: fetched from there like a file:///
			 * download, its sha256 taken now, so a change to it changes
			 * the key of every stage that reads it (as for scripts). */
			static const char *const remote_only[] = { "url", "mirrors", "sha256", NULL };
			for (size_t k = 0; remote_only[k]; k++) {
				const struct ib_toml_value *other = ib_toml_get(s.t, remote_only[k]);
				if (other)
					return fail_at(c, other->line, other->col,
						       "a download is either a project file (path) or fetched (url, sha256)",
						       "download '%s' has both 'path' and '%s'", name, remote_only[k]);
			}
			if (pathv->type != IB_TOML_STRING)
				return fail_at(c, pathv->line, pathv->col, "write a path relative to the manifest's folder",
					       "'download.path' must be a string");
			cleanup_free char *real = project_file(c, pathv, "download path");
			if (real == NULL)
				return -1;
			char hex[IB_SHA256_HEX_LEN + 1];
			ib_error_t herr = NULL;
			if (ib_sha256_file(real, hex, &herr) < 0) {
				fail_at(c, pathv->line, pathv->col, "make the file readable", "download path: %s", herr->msg);
				ib_error_free(&herr);
				return -1;
			}
			d->url = xasprintf("file://%s", real);
			d->sha256 = xstrdup(hex);
			d->sha256_pos = d->pos;
			d->project_file = true;
			continue;
		}
		if (get_str(c, &s, "url", true, &d->url, NULL) < 0)
			return -1;
		if (!download_url_ok(d->url))
			return fail_v(c, ib_toml_get(s.t, "url"),
				      "use http://, https://, file:///PATH, mirror://debian/PATH or mirror://ubuntu/PATH",
				      "download URL '%s' is not one imgbuild fetches", d->url);
		const struct ib_toml_value *marr = NULL;
		if (get_strv(c, &s, "mirrors", false, &d->mirrors, NULL, &marr) < 0)
			return -1;
		for (size_t k = 0; k < d->mirrors.n; k++)
			if (!download_url_ok(d->mirrors.v[k]))
				return fail_v(c, marr->items[k], "use http://, https://, file:/// or mirror:// URLs",
					      "mirror URL '%s' is not one imgbuild fetches", d->mirrors.v[k]);
		if (get(c, &s, "sha256", IB_TOML_STRING, true, &v) < 0)
			return -1;
		d->sha256_pos = (struct ib_pos){ v->line, v->col };
		if (strcmp(v->u.str, "unknown") != 0) {
			if (!hex_ok(v->u.str, 64))
				return fail_v(c, v, "write 64 hex digits, or \"unknown\" and run imgbuild pin",
					      "sha256 '%s' is not 64 hex digits", v->u.str);
			d->sha256 = xstrdup(v->u.str);
			lower(d->sha256);
		}
	}
	return 0;
}

static int parse_sources(struct ctx *c, const struct ib_toml_value *root)
{
	struct ib_manifest *m = c->m;
	const struct ib_toml_value *arr;
	int rc = aot(c, root, "source", &arr);
	if (rc <= 0)
		return rc;
	m->sources = xcalloc(arr->len, sizeof(*m->sources));
	for (size_t i = 0; i < arr->len; i++) {
		struct ib_source *src = &m->sources[m->n_sources];
		struct sec s;
		char *name = NULL;
		struct ib_pos pos;
		if (item_open(c, "source", i, arr->items[i], &s, source_keys, &name, &pos, "._-") < 0 ||
		    input_name_unique(c, name, ib_toml_get(s.t, "name")) < 0) {
			free(name);
			return -1;
		}
		src->name = name;
		src->pos = pos;
		m->n_sources++;
		if (get_str(c, &s, "url", true, &src->url, NULL) < 0)
			return -1;
		/* A URL starting with '-' would reach git as an option. */
		if (!git_url_ok(src->url))
			return fail_v(c, ib_toml_get(s.t, "url"), "use an https://, http://, git://, ssh:// or file:// URL",
				      "source URL '%s' is not a git URL imgbuild clones", src->url);
		const struct ib_toml_value *marr = NULL;
		if (get_strv(c, &s, "mirrors", false, &src->mirrors, NULL, &marr) < 0)
			return -1;
		for (size_t k = 0; k < src->mirrors.n; k++)
			if (!git_url_ok(src->mirrors.v[k]))
				return fail_v(c, marr->items[k], "use an https://, http://, git://, ssh:// or file:// URL",
					      "mirror URL '%s' is not a git URL imgbuild clones", src->mirrors.v[k]);
		if (get_kv(c, &s, "rewrites", false, &src->rewrites) < 0)
			return -1;
		if (get_str(c, &s, "tag", true, &src->tag, NULL) < 0)
			return -1;
		if (src->tag[0] == '-' || !no_space(src->tag) || strstr(src->tag, ".."))
			return fail_v(c, ib_toml_get(s.t, "tag"), "write the tag's name, e.g. tag = \"v1.4.0\"",
				      "tag '%s' is not a tag name", src->tag);
		const struct ib_toml_value *v = NULL;
		if (get(c, &s, "commit", IB_TOML_STRING, true, &v) < 0)
			return -1;
		if (!hex_ok(v->u.str, 40))
			return fail_v(c, v, "write the full 40-hex-digit commit the tag points to",
				      "commit '%s' is not 40 hex digits", v->u.str);
		src->commit = xstrdup(v->u.str);
		lower(src->commit);
		if (get_bool(c, &s, "submodules", &src->submodules) < 0)
			return -1;
	}
	return 0;
}

static int parse_stages(struct ctx *c, const struct ib_toml_value *root)
{
	struct ib_manifest *m = c->m;
	const struct ib_toml_value *arr;
	int rc = aot(c, root, "stage", &arr);
	if (rc <= 0)
		return rc;
	m->stages = xcalloc(arr->len, sizeof(*m->stages));
	/* Input names for did-you-mean. */
	size_t n_inputs = m->n_downloads + m->n_sources;
	cleanup_free const char **inputs = xcalloc(n_inputs + 1, sizeof(char *));
	for (size_t i = 0; i < m->n_downloads; i++)
		inputs[i] = m->downloads[i].name;
	for (size_t i = 0; i < m->n_sources; i++)
		inputs[m->n_downloads + i] = m->sources[i].name;

	for (size_t i = 0; i < arr->len; i++) {
		struct ib_stage *st = &m->stages[m->n_stages];
		struct sec s;
		char *name = NULL;
		struct ib_pos pos;
		if (item_open(c, "stage", i, arr->items[i], &s, stage_keys, &name, &pos, "_-") < 0) {
			free(name);
			return -1;
		}
		for (size_t k = 0; k < m->n_stages; k++)
			if (strcmp(m->stages[k].name, name) == 0) {
				cleanup_free char *hint =
					xasprintf("the other is at line %d; stage names must be unique", m->stages[k].pos.line);
				fail_v(c, ib_toml_get(s.t, "name"), hint, "duplicate stage name '%s'", name);
				free(name);
				return -1;
			}
		st->name = name;
		st->pos = pos;
		m->n_stages++;

		const struct ib_toml_value *v = NULL;
		if (get(c, &s, "script", IB_TOML_STRING, true, &v) < 0)
			return -1;
		cleanup_free char *what = xasprintf("stage '%s' script", st->name);
		if ((st->script = project_file(c, v, what)) == NULL)
			return -1;

		const struct ib_toml_value *iarr = NULL;
		if (get_strv(c, &s, "inputs", false, &st->inputs, NULL, &iarr) < 0)
			return -1;
		for (size_t k = 0; k < st->inputs.n; k++) {
			const char *in = st->inputs.v[k];
			for (size_t j = 0; j < k; j++)
				if (strcmp(st->inputs.v[j], in) == 0)
					return fail_v(c, iarr->items[k], "list each input once", "input '%s' is listed twice", in);
			if (ib_manifest_download(m, in) || ib_manifest_source(m, in))
				continue;
			const char *near = ib_nearest(in, inputs, n_inputs);
			cleanup_free char *hint = near ? xasprintf("did you mean '%s'?", near)
						       : xstrdup("add a [[download]] or [[source]] with that name");
			return fail_v(c, iarr->items[k], hint, "input '%s' names no download or source", in);
		}
		if (get_kv(c, &s, "env", true, &st->env) < 0)
			return -1;
		if (get_bool(c, &s, "network", &st->network) < 0)
			return -1;
		int64_t retries = 0;
		if (get_int(c, &s, "retries", false, 0, 100, &retries) < 0)
			return -1;
		st->retries = (int)retries;
		if (get_str(c, &s, "clean", false, &st->clean, NULL) < 0)
			return -1;
	}
	return 0;
}

static int parse_env(struct ctx *c, const struct ib_toml_value *root)
{
	const struct ib_toml_value *v = ib_toml_get(root, "env");
	if (v && v->type != IB_TOML_TABLE)
		return fail_at(c, v->line, v->col, "write an [env] table of NAME = \"value\"", "'env' must be a table, found %s",
			       type_words(v->type));
	if (v == NULL)
		return 0;
	for (size_t i = 0; i < v->len; i++) {
		const struct ib_toml_value *it = v->items[i];
		cleanup_free char *shown = show(v->keys[i]);
		if (!env_key_ok(v->keys[i]))
			return fail_at(c, it->line, it->col, "use letters, digits and '_', not starting with a digit",
				       "'%s' in [env] is not an environment variable name", shown);
		if (it->type != IB_TOML_STRING) {
			cleanup_free char *hint = xasprintf("write %s = \"...\"", shown);
			return fail_at(c, it->line, it->col, hint, "'env.%s' must be a string, found %s", shown,
				       type_words(it->type));
		}
		kv_push(&c->m->env, v->keys[i], it->u.str, (struct ib_pos){ it->line, it->col });
	}
	return 0;
}

static int parse_root(struct ctx *c, const struct ib_toml_value *root)
{
	struct sec top = { .name = "file", .label = "the manifest's top level", .t = root };
	if (root->type != IB_TOML_TABLE)
		return fail_at(c, 1, 1, NULL, "a manifest must be a TOML table");
	for (size_t i = 0; i < root->len; i++) {
		const char *key = root->keys[i];
		bool known = false;
		for (size_t k = 0; top_keys[k]; k++)
			known = known || strcmp(top_keys[k], key) == 0;
		if (known)
			continue;
		/* A key of [image] written above any table lands at the top: say so. */
		for (size_t k = 0; k < sizeof(all_tables) / sizeof(all_tables[0]); k++)
			for (size_t j = 0; all_tables[k].keys[j]; j++)
				if (strcmp(all_tables[k].keys[j], key) == 0) {
					cleanup_free char *shown = show(key);
					cleanup_free char *hint = xasprintf("'%s' belongs in [%s]; move it below that header",
									    shown, all_tables[k].table);
					return fail_at(c, root->items[i]->line, root->items[i]->col, hint,
						       "unknown key '%s' at the top level", shown);
				}
		return check_keys(c, &top, top_keys);
	}
	if (parse_image(c, root) < 0 || parse_base(c, root) < 0 || parse_toolchain(c, root) < 0 || parse_stack(c, root) < 0 ||
	    parse_env(c, root) < 0 || parse_downloads(c, root) < 0 || parse_sources(c, root) < 0 || parse_stages(c, root) < 0)
		return -1;
	return 0;
}

struct ib_manifest *ib_manifest_parse(const char *path, const char *text, size_t len, ib_error_t *err)
{
	cleanup_manifest struct ib_manifest *m = xcalloc(1, sizeof(*m));
	set_paths(m, path);
	m->file = xstrdup(path);
	m->text = xmalloc(len + 1);
	memcpy(m->text, text, len);
	m->text[len] = '\0';
	m->text_len = len;

	cleanup_toml struct ib_toml_value *root = ib_toml_parse(text, len, path, err);
	if (root == NULL) {
		/* A syntax error is the manifest's fault: exit 2 like every other complaint. */
		ib_error_exit_code(err, IB_EXIT_USAGE);
		return NULL;
	}
	struct ctx c = { .file = path, .m = m, .err = err };
	if (parse_root(&c, root) < 0)
		return NULL;
	return steal_pointer(&m);
}

struct ib_manifest *ib_manifest_load(const char *path, ib_error_t *err)
{
	size_t len = 0;
	cleanup_free char *text = ib_read_file(path, &len, err);
	if (text == NULL) {
		ib_error_exit_code(err, IB_EXIT_USAGE);
		ib_error_wrap(err, "read manifest");
		return NULL;
	}
	return ib_manifest_parse(path, text, len, err);
}

static void kv_free(struct ib_kv_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].value);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void ib_manifest_free(struct ib_manifest *m)
{
	if (m == NULL)
		return;
	free(m->path);
	free(m->dir);
	free(m->project_root);
	free(m->text);
	free(m->image.name);
	free(m->image.output);
	free(m->image.sign_key);
	free(m->base.distro);
	free(m->base.suite);
	ib_strv_free(&m->base.extra_suites);
	ib_strv_free(&m->base.mirrors);
	ib_strv_free(&m->base.components);
	free(m->base.keyring);
	free(m->base.variant);
	ib_strv_free(&m->base.packages);
	free(m->toolchain.gcc);
	free(m->file);
	for (size_t i = 0; i < m->stack.pins.n; i++) {
		free(m->stack.pins.v[i].key);
		free(m->stack.pins.v[i].value);
		free(m->stack.pins.v[i].derived_from);
	}
	free(m->stack.pins.v);
	ib_strv_free(&m->stack.archs);
	kv_free(&m->env);
	for (size_t i = 0; i < m->n_downloads; i++) {
		free(m->downloads[i].name);
		free(m->downloads[i].url);
		ib_strv_free(&m->downloads[i].mirrors);
		free(m->downloads[i].sha256);
	}
	free(m->downloads);
	for (size_t i = 0; i < m->n_sources; i++) {
		free(m->sources[i].name);
		free(m->sources[i].url);
		ib_strv_free(&m->sources[i].mirrors);
		kv_free(&m->sources[i].rewrites);
		free(m->sources[i].tag);
		free(m->sources[i].commit);
	}
	free(m->sources);
	for (size_t i = 0; i < m->n_stages; i++) {
		free(m->stages[i].name);
		free(m->stages[i].script);
		ib_strv_free(&m->stages[i].inputs);
		kv_free(&m->stages[i].env);
		free(m->stages[i].clean);
	}
	free(m->stages);
	free(m);
}

const struct ib_download *ib_manifest_download(const struct ib_manifest *m, const char *name)
{
	for (size_t i = 0; i < m->n_downloads; i++)
		if (strcmp(m->downloads[i].name, name) == 0)
			return &m->downloads[i];
	return NULL;
}

const struct ib_source *ib_manifest_source(const struct ib_manifest *m, const char *name)
{
	for (size_t i = 0; i < m->n_sources; i++)
		if (strcmp(m->sources[i].name, name) == 0)
			return &m->sources[i];
	return NULL;
}

const char *ib_kv_get(const struct ib_kv_list *list, const char *key)
{
	/* Later entries win, as in a stage's environment. */
	for (size_t i = list->n; i-- > 0;)
		if (strcmp(list->v[i].key, key) == 0)
			return list->v[i].value;
	return NULL;
}
