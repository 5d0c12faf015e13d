/* --override: see overlay.h.
 *
 * The merge works on the two parsed TOML trees. The toml module's trees are
 * read-only (their tables carry a private key index), so the merged document
 * is written out as TOML text and handed to ib_manifest_parse, which checks it
 * like any manifest; that text is also what the image records as its
 * manifest: the one that was actually built. */
#include "overlay.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "compat.h"
#include "manifest.h"
#include "toml.h"
#include "util.h"

static void put_string(struct ib_buf *b, const char *s)
{
	ib_buf_adds(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			ib_buf_add(b, esc, 2);
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			ib_buf_adds(b, esc);
		} else {
			ib_buf_add(b, (const char *)p, 1);
		}
	}
	ib_buf_adds(b, "\"");
}

static void put_key(struct ib_buf *b, const char *k)
{
	bool bare = *k != '\0';
	for (const char *p = k; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			bare = false;
	if (bare)
		ib_buf_adds(b, k);
	else
		put_string(b, k);
}

static bool is_aot(const struct ib_toml_value *v)
{
	if (v == NULL || v->type != IB_TOML_ARRAY || v->len == 0)
		return false;
	for (size_t i = 0; i < v->len; i++)
		if (v->items[i]->type != IB_TOML_TABLE)
			return false;
	return true;
}

static void put_value(struct ib_buf *b, const struct ib_toml_value *v);

static void put_inline_table(struct ib_buf *b, const struct ib_toml_value *base, const struct ib_toml_value *over);

static void put_value(struct ib_buf *b, const struct ib_toml_value *v)
{
	char num[64];
	switch (v->type) {
	case IB_TOML_STRING: put_string(b, v->u.str); break;
	case IB_TOML_INTEGER:
		snprintf(num, sizeof(num), "%" PRId64, v->u.integer);
		ib_buf_adds(b, num);
		break;
	case IB_TOML_FLOAT:
		if (isnan(v->u.real))
			ib_buf_adds(b, "nan");
		else if (isinf(v->u.real))
			ib_buf_adds(b, v->u.real < 0 ? "-inf" : "inf");
		else {
			snprintf(num, sizeof(num), "%.17g", v->u.real);
			if (!strpbrk(num, ".eE"))
				strcat(num, ".0");
			ib_buf_adds(b, num);
		}
		break;
	case IB_TOML_BOOL: ib_buf_adds(b, v->u.boolean ? "true" : "false"); break;
	case IB_TOML_DATETIME:
	case IB_TOML_DATETIME_LOCAL:
	case IB_TOML_DATE_LOCAL:
	case IB_TOML_TIME_LOCAL: ib_buf_adds(b, v->u.str); break;
	case IB_TOML_ARRAY:
		ib_buf_adds(b, "[");
		for (size_t i = 0; i < v->len; i++) {
			if (i)
				ib_buf_adds(b, ", ");
			put_value(b, v->items[i]);
		}
		ib_buf_adds(b, "]");
		break;
	case IB_TOML_TABLE: put_inline_table(b, v, NULL); break;
	}
}

/* The value of KEY in the merge of BASE and OVER (either may be NULL):
 * tables on both sides merge, anything else from OVER wins. */
static void put_merged(struct ib_buf *b, const struct ib_toml_value *bv, const struct ib_toml_value *ov)
{
	if (bv && ov && bv->type == IB_TOML_TABLE && ov->type == IB_TOML_TABLE)
		put_inline_table(b, bv, ov);
	else
		put_value(b, ov ? ov : bv);
}

/* Every key of BASE (merged with OVER's) in order, then OVER's new keys. */
#define FOR_MERGED_KEYS(base, over, KEY, BV, OV, BODY)                             \
	do {                                                                       \
		for (size_t i_ = 0; (base) && i_ < (base)->len; i_++) {            \
			const char *KEY = (base)->keys[i_];                        \
			const struct ib_toml_value *BV = (base)->items[i_];        \
			const struct ib_toml_value *OV = ib_toml_get((over), KEY); \
			BODY                                                       \
		}                                                                  \
		for (size_t i_ = 0; (over) && i_ < (over)->len; i_++) {            \
			const char *KEY = (over)->keys[i_];                        \
			if (ib_toml_get((base), KEY))                              \
				continue;                                          \
			const struct ib_toml_value *BV = NULL;                     \
			const struct ib_toml_value *OV = (over)->items[i_];        \
			BODY                                                       \
		}                                                                  \
	} while (0)

static void put_inline_table(struct ib_buf *b, const struct ib_toml_value *base, const struct ib_toml_value *over)
{
	bool first = true;
	ib_buf_adds(b, "{ ");
	FOR_MERGED_KEYS(base, over, key, bv, ov, {
		if (!first)
			ib_buf_adds(b, ", ");
		first = false;
		put_key(b, key);
		ib_buf_adds(b, " = ");
		put_merged(b, bv, ov);
	});
	ib_buf_adds(b, first ? "}" : " }");
}

/* KEY = VALUE lines of a [section] or [[entry]] (sub-tables inline). */
static void put_body(struct ib_buf *b, const struct ib_toml_value *base, const struct ib_toml_value *over, bool deep)
{
	FOR_MERGED_KEYS(base, over, key, bv, ov, {
		put_key(b, key);
		ib_buf_adds(b, " = ");
		if (deep)
			put_merged(b, bv, ov);
		else
			put_value(b, ov ? ov : bv);
		ib_buf_adds(b, "\n");
	});
}

static const char *entry_name(const struct ib_toml_value *t)
{
	const struct ib_toml_value *n = ib_toml_get(t, "name");
	return n && n->type == IB_TOML_STRING ? n->u.str : NULL;
}

static void put_entries(struct ib_buf *b, const char *key, const struct ib_toml_value *bv, const struct ib_toml_value *ov)
{
	/* [[download]], [[source]], [[stage]]: matched by name, given keys replace. */
	for (size_t i = 0; bv && i < bv->len; i++) {
		const struct ib_toml_value *be = bv->items[i], *oe = NULL;
		const char *name = entry_name(be);
		for (size_t j = 0; name && ov && j < ov->len; j++) {
			const char *on = entry_name(ov->items[j]);
			if (on && strcmp(on, name) == 0)
				oe = ov->items[j];
		}
		ib_buf_adds(b, "\n[[");
		put_key(b, key);
		ib_buf_adds(b, "]]\n");
		put_body(b, be, oe, false);
	}
	for (size_t j = 0; ov && j < ov->len; j++) {
		const char *on = entry_name(ov->items[j]);
		bool known = false;
		for (size_t i = 0; on && bv && i < bv->len; i++) {
			const char *name = entry_name(bv->items[i]);
			if (name && strcmp(name, on) == 0)
				known = true;
		}
		if (known)
			continue;
		ib_buf_adds(b, "\n[[");
		put_key(b, key);
		ib_buf_adds(b, "]]\n");
		put_body(b, ov->items[j], NULL, false);
	}
}

/* The merged document: top-level plain keys, then [sections], then [[entries]]. */
static char *merge_text(const struct ib_toml_value *base, const struct ib_toml_value *over)
{
	struct ib_buf b = { 0 };
	ib_buf_adds(&b, "");
	FOR_MERGED_KEYS(base, over, key, bv, ov, {
		const struct ib_toml_value *v = ov ? ov : bv;
		if (v->type != IB_TOML_TABLE && !is_aot(v)) {
			put_key(&b, key);
			ib_buf_adds(&b, " = ");
			put_value(&b, v);
			ib_buf_adds(&b, "\n");
		}
	});
	FOR_MERGED_KEYS(base, over, key, bv, ov, {
		const struct ib_toml_value *v = ov ? ov : bv;
		if (v->type == IB_TOML_TABLE) {
			ib_buf_adds(&b, "\n[");
			put_key(&b, key);
			ib_buf_adds(&b, "]\n");
			bool both = bv && ov && bv->type == IB_TOML_TABLE;
			put_body(&b, both ? bv : v, both ? ov : NULL, true);
		}
	});
	FOR_MERGED_KEYS(base, over, key, bv, ov, {
		const struct ib_toml_value *v = ov ? ov : bv;
		if (v->type != IB_TOML_TABLE && is_aot(v))
			put_entries(&b, key, is_aot(bv) ? bv : NULL, is_aot(ov) ? ov : NULL);
	});
	return b.s;
}

/* The manifest at PATH merged with OVERRIDE (NULL: none). */
static struct ib_manifest *load_merged(const char *path, const char *override, ib_error_t *err)
{
	if (override == NULL)
		return ib_manifest_load(path, err);
	size_t blen = 0, olen = 0;
	cleanup_free char *btext = ib_read_file(path, &blen, err);
	if (btext == NULL)
		return NULL;
	cleanup_free char *otext = ib_read_file(override, &olen, err);
	if (otext == NULL)
		return NULL;
	cleanup_toml struct ib_toml_value *bdoc = ib_toml_parse(btext, blen, path, err);
	if (bdoc == NULL)
		return NULL;
	cleanup_toml struct ib_toml_value *odoc = ib_toml_parse(otext, olen, override, err);
	if (odoc == NULL)
		return NULL;
	cleanup_free char *body = merge_text(bdoc, odoc);
	cleanup_free char *text = xasprintf("# merged with an --override file\n%s", body);
	struct ib_manifest *m = ib_manifest_parse(path, text, strlen(text), err);
	if (m == NULL)
		ib_error_wrap(err, "manifest merged with --override '%s'", override);
	return m;
}

struct ib_manifest *ib_overlay_load(const char *path, const char *override, ib_error_t *err)
{
	cleanup_manifest struct ib_manifest *m = load_merged(path, override, err);
	if (m == NULL)
		return NULL;
	/* The pins' names and the ones the data derives: see compat.h. */
	const struct ib_compat *compat = ib_compat_default(err);
	if (compat == NULL || ib_compat_resolve(compat, m, err) < 0)
		return NULL;
	return steal_pointer(&m);
}
