/* The image's metadata under ./.imgbuild/ (see imgmeta.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "imgmeta.h"
#include "manifest.h"
#include "toml.h"

void ib_facts_free(struct ib_facts *f)
{
	free(f->min_driver);
	ib_strv_free(&f->archs);
	memset(f, 0, sizeof(*f));
}

void ib_facts_split_archs(const char *s, struct ib_strv *out)
{
	cleanup_free char *copy = xstrdup(s);
	for (char *save = NULL, *t = strtok_r(copy, "; ,", &save); t; t = strtok_r(NULL, "; ,", &save))
		ib_strv_push(out, t);
}

static const struct ib_toml_value *fact(const struct ib_toml_value *root, const char *key)
{
	const struct ib_toml_value *v = ib_toml_get(root, key);
	if (v == NULL)
		v = ib_toml_get(ib_toml_get(root, "stack"), key);
	return v;
}

int ib_facts_parse(const char *text, size_t len, const char *path, struct ib_facts *f, ib_error_t *err)
{
	memset(f, 0, sizeof(*f));
	cleanup_toml struct ib_toml_value *root = ib_toml_parse(text, len, path, err);
	if (root == NULL)
		return -1;
	const struct ib_toml_value *v = fact(root, "min_driver");
	if (v && v->type == IB_TOML_STRING && v->u.str[0])
		f->min_driver = xstrdup(v->u.str);
	v = fact(root, "archs");
	if (v && v->type == IB_TOML_STRING) {
		ib_facts_split_archs(v->u.str, &f->archs);
		f->have_archs = true;
	} else if (v && v->type == IB_TOML_ARRAY) {
		for (size_t i = 0; i < v->len; i++)
			if (v->items[i]->type == IB_TOML_STRING)
				ib_facts_split_archs(v->items[i]->u.str, &f->archs);
		f->have_archs = true;
	}
	v = fact(root, "ptx_jit");
	if (v && v->type == IB_TOML_BOOL)
		f->ptx_jit = v->u.boolean;
	else if (v && v->type == IB_TOML_STRING)
		f->ptx_jit = !strcmp(v->u.str, "true") || !strcmp(v->u.str, "1") || !strcmp(v->u.str, "yes");
	return 0;
}

int ib_facts_read_tree(const char *tree, struct ib_facts *f, bool *found, ib_error_t *err)
{
	memset(f, 0, sizeof(*f));
	*found = false;
	cleanup_free char *path = ib_path_join(tree, IB_META_FACTS);
	if (!ib_path_exists(path))
		return 0;
	size_t len = 0;
	cleanup_free char *text = ib_read_file(path, &len, err);
	if (text == NULL)
		return -1;
	if (ib_facts_parse(text, len, path, f, err) < 0)
		return -1;
	*found = true;
	return 0;
}

/* ---- listing ---- */

static void append_escaped(struct ib_buf *b, const char *s, bool dash_is_literal)
{
	if (s == NULL) {
		ib_buf_addc(b, '-');
		return;
	}
	if (dash_is_literal && strcmp(s, "-") == 0) {
		ib_buf_adds(b, "\\055");
		return;
	}
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p <= 0x20 || *p == 0x7f || *p == '\\') {
			char esc[5];
			snprintf(esc, sizeof(esc), "\\%03o", *p);
			ib_buf_add(b, esc, 4);
		} else {
			ib_buf_addc(b, (char)*p);
		}
	}
}

void ib_listing_append(struct ib_buf *b, const struct ib_listing_entry *e)
{
	char head[160];
	int n = snprintf(head, sizeof(head), "%c %04o %lld %lld %lld %s ", e->type, e->mode & 07777, (long long)e->uid,
			 (long long)e->gid, (long long)e->size, e->sha256[0] ? e->sha256 : "-");
	ib_buf_add(b, head, (size_t)n);
	append_escaped(b, e->path, false);
	ib_buf_addc(b, ' ');
	append_escaped(b, e->target, true);
	ib_buf_addc(b, '\n');
}

static char *unescape(const char *s, size_t n, bool *ok)
{
	char *out = xmalloc(n + 1);
	size_t o = 0;
	*ok = true;
	for (size_t i = 0; i < n; i++) {
		unsigned char byte = (unsigned char)s[i];
		/* These bytes are always written escaped: raw, they are not a name
		 * the writer made (a NUL would also cut the name short). */
		if (byte <= 0x20 || byte == 0x7f) {
			*ok = false;
			break;
		}
		if (byte != '\\') {
			out[o++] = s[i];
			continue;
		}
		if (i + 3 >= n) { /* fewer than 3 digits left */
			*ok = false;
			break;
		}
		unsigned v = 0;
		for (int k = 1; k <= 3; k++) {
			char c = s[i + (size_t)k];
			if (c < '0' || c > '7') {
				*ok = false;
				break;
			}
			v = v * 8 + (unsigned)(c - '0');
		}
		if (!*ok || v == 0 || v > 255) {
			*ok = false;
			break;
		}
		out[o++] = (char)v;
		i += 3;
	}
	out[o] = '\0';
	return out;
}

void ib_listing_entry_free(struct ib_listing_entry *e)
{
	free(e->path);
	free(e->target);
	e->path = e->target = NULL;
}

/* Digits only (strtoll would also take leading blanks and a sign), and no
 * overflow. By hand: the listing has a line for every entry, and verify
 * parses it after the image's last byte, where nothing runs beside it. */
static bool parse_i64(const char *s, size_t n, int base, int64_t *out)
{
	if (n == 0 || n > 20)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(unsigned char)s[i] - '0';
		if (d >= (unsigned)base)
			return false;
		if (v > ((uint64_t)INT64_MAX - d) / (unsigned)base)
			return false;
		v = v * (unsigned)base + d;
	}
	*out = (int64_t)v;
	return true;
}

static bool lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

int ib_listing_parse_line(const char *line, size_t len, struct ib_listing_entry *out, ib_error_t *err)
{
	const char *f[8];
	size_t fl[8];
	size_t nf = 0, start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || line[i] == ' ') {
			if (nf == 8)
				return ib_error_set(err, 0, "too many fields");
			f[nf] = line + start;
			fl[nf++] = i - start;
			start = i + 1;
		}
	}
	if (nf != 8)
		return ib_error_set(err, 0, "expected 8 fields, found %zu", nf);
	memset(out, 0, sizeof(*out));
	if (fl[0] != 1 || !strchr("fdlh", f[0][0]))
		return ib_error_set(err, 0, "bad type '%.*s'", (int)fl[0], f[0]);
	out->type = f[0][0];
	int64_t mode;
	if (fl[1] != 4 || !parse_i64(f[1], fl[1], 8, &mode) || mode > 07777)
		return ib_error_set(err, 0, "bad mode '%.*s'", (int)fl[1], f[1]);
	out->mode = (unsigned)mode;
	if (!parse_i64(f[2], fl[2], 10, &out->uid) || !parse_i64(f[3], fl[3], 10, &out->gid) ||
	    !parse_i64(f[4], fl[4], 10, &out->size))
		return ib_error_set(err, 0, "bad owner or size");
	if (fl[5] == 1 && f[5][0] == '-') {
		out->sha256[0] = '\0';
	} else if (fl[5] == IB_SHA256_HEX_LEN) {
		for (size_t i = 0; i < fl[5]; i++)
			if (!lower_hex(f[5][i]))
				return ib_error_set(err, 0, "bad sha256");
		memcpy(out->sha256, f[5], IB_SHA256_HEX_LEN);
		out->sha256[IB_SHA256_HEX_LEN] = '\0';
	} else {
		return ib_error_set(err, 0, "bad sha256");
	}
	if ((out->type == 'f') != (out->sha256[0] != '\0'))
		return ib_error_set(err, 0, "sha256 given for a non-file or missing for a file");
	bool ok;
	out->path = unescape(f[6], fl[6], &ok);
	if (!ok || out->path[0] == '\0') {
		ib_listing_entry_free(out);
		return ib_error_set(err, 0, "bad path escape");
	}
	if (!(fl[7] == 1 && f[7][0] == '-')) {
		out->target = unescape(f[7], fl[7], &ok);
		if (!ok) {
			ib_listing_entry_free(out);
			return ib_error_set(err, 0, "bad target escape");
		}
	}
	if ((out->type == 'l' || out->type == 'h') != (out->target != NULL)) {
		ib_listing_entry_free(out);
		return ib_error_set(err, 0, "link target given for a non-link or missing for a link");
	}
	return 0;
}

/* ---- facts.toml ---- */

static void toml_string(struct ib_buf *b, const char *s)
{
	ib_buf_addc(b, '"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			ib_buf_addc(b, '\\');
			ib_buf_addc(b, (char)*p);
		} else if (*p < 0x20 || *p == 0x7f) {
			ib_buf_printf(b, "\\u%04x", *p);
		} else {
			ib_buf_addc(b, (char)*p);
		}
	}
	ib_buf_addc(b, '"');
}

static bool bare_key(const char *k)
{
	if (*k == '\0')
		return false;
	for (; *k; k++)
		if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') || *k == '_' || *k == '-'))
			return false;
	return true;
}

bool ib_facts_key_reserved(const char *key)
{
	static const char *const reserved[] = { "name", "builder", "created", "archs", NULL };
	if (!bare_key(key))
		return true;
	for (size_t i = 0; reserved[i]; i++)
		if (strcmp(key, reserved[i]) == 0)
			return true;
	return false;
}

char *ib_facts_write(const char *name, int64_t epoch, const struct ib_kv *facts, size_t n_facts, const char *const *archs,
		     size_t *out_len, ib_error_t *err)
{
	cleanup_buf struct ib_buf b = { 0 };
	ib_buf_adds(&b, "# written by imgbuild pack\nname = ");
	toml_string(&b, name);
	ib_buf_adds(&b, "\nbuilder = ");
	toml_string(&b, "imgbuild " IB_VERSION);
	ib_buf_printf(&b, "\ncreated = %lld\n", (long long)epoch);
	for (size_t i = 0; i < n_facts; i++) {
		const char *k = facts[i].key;
		/* archs is pack's own only when it writes the archs array */
		if (ib_facts_key_reserved(k) && !(strcmp(k, "archs") == 0 && archs == NULL)) {
			ib_error_usage(err, "fact '%s': not a plain key or set by pack itself", k);
			return NULL;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(facts[j].key, k) == 0) {
				ib_error_usage(err, "fact '%s' given twice", k);
				return NULL;
			}
		ib_buf_adds(&b, k);
		ib_buf_adds(&b, " = ");
		toml_string(&b, facts[i].value ? facts[i].value : "");
		ib_buf_addc(&b, '\n');
	}
	if (archs) {
		ib_buf_adds(&b, "archs = [");
		for (size_t i = 0; archs[i]; i++) {
			if (i)
				ib_buf_adds(&b, ", ");
			toml_string(&b, archs[i]);
		}
		ib_buf_adds(&b, "]\n");
	}
	*out_len = b.len;
	return ib_buf_steal(&b);
}

bool ib_meta_name_ok(const char *n)
{
	if (n[0] == '\0' || n[0] == '.' || strcmp(n, "facts.toml") == 0 || strcmp(n, "listing") == 0 || strlen(n) > 200)
		return false;
	for (const char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '_' || *p == '-'))
			return false;
	return true;
}
