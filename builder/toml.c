/* TOML 1.0, by hand-written recursive descent. The input is a counted buffer
 * that need not be NUL-terminated, so every read goes through peek_at(), which
 * answers -1 past the end. Recursion only happens for arrays and inline
 * tables, and every level adds to a node's depth, which is capped at
 * MAX_DEPTH: the parser, ib_toml_free and any printer therefore stay within a
 * few hundred stack frames whatever the input. */
#include "toml.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

enum { MAX_DEPTH = 128, MAX_SHOWN = 32 };

enum node_flags {
	F_DEFINED = 1 << 0, /* table named by a [header] or [[header]] */
	F_DOTTED = 1 << 1,  /* table created by a dotted key */
	F_INLINE = 1 << 2,  /* inline table or static array: frozen once written */
	F_AOT = 1 << 3,	    /* array created by [[header]] */
};

/* The redefinition rules need more state than the public struct shows, so
 * every value is allocated as a node whose first member is the public value. */
struct node {
	struct ib_toml_value v;
	unsigned flags;
	int depth;
	size_t cap;
	size_t *key_lens; /* keys may hold NUL (from \u0000), so lengths are kept */
	struct pos {
		int line, col;
	} * key_pos;   /* where each key was written, for duplicate-key messages */
	size_t *index; /* open-addressing hash of keys: position + 1, 0 empty */
	size_t index_cap;
};

static struct node *node_of(const struct ib_toml_value *v)
{
	return (struct node *)v;
}

static struct node *node_new(enum ib_toml_type type, int line, int col, int depth)
{
	struct node *n = xcalloc(1, sizeof(*n));
	n->v.type = type;
	n->v.line = line;
	n->v.col = col;
	n->depth = depth;
	return n;
}

void ib_toml_free(struct ib_toml_value *value)
{
	if (value == NULL)
		return;
	struct node *n = node_of(value);
	switch (value->type) {
	case IB_TOML_TABLE:
	case IB_TOML_ARRAY:
		for (size_t i = 0; i < value->len; i++) {
			if (value->keys != NULL)
				free(value->keys[i]);
			ib_toml_free(value->items[i]);
		}
		free(value->keys);
		free(value->items);
		break;
	case IB_TOML_STRING:
	case IB_TOML_DATETIME:
	case IB_TOML_DATETIME_LOCAL:
	case IB_TOML_DATE_LOCAL:
	case IB_TOML_TIME_LOCAL: free(value->u.str); break;
	default: break;
	}
	free(n->key_lens);
	free(n->key_pos);
	free(n->index);
	free(n);
}

static void node_freep(struct node **n)
{
	if (*n != NULL)
		ib_toml_free(&(*n)->v);
}
#define cleanup_node __attribute__((cleanup(node_freep)))

/* Tables are looked up on every key, so a linear scan would make a document
 * with many keys quadratic; past a handful of keys a hash index takes over. */
static size_t hash_key(const char *key, size_t len)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ULL;
	}
	return (size_t)h;
}

static void index_put(struct node *t, size_t pos)
{
	size_t mask = t->index_cap - 1;
	size_t slot = hash_key(t->v.keys[pos], t->key_lens[pos]) & mask;
	while (t->index[slot] != 0)
		slot = (slot + 1) & mask;
	t->index[slot] = pos + 1;
}

static void index_rebuild(struct node *t)
{
	size_t cap = 32;
	while (cap < 4 * t->v.len)
		cap *= 2;
	free(t->index);
	t->index = xcalloc(cap, sizeof(*t->index));
	t->index_cap = cap;
	for (size_t i = 0; i < t->v.len; i++)
		index_put(t, i);
}

/* Position of KEY in T, or -1. */
static ssize_t table_pos(const struct node *t, const char *key, size_t len)
{
	if (t->index != NULL) {
		size_t mask = t->index_cap - 1;
		for (size_t slot = hash_key(key, len) & mask; t->index[slot] != 0; slot = (slot + 1) & mask) {
			size_t i = t->index[slot] - 1;
			if (t->key_lens[i] == len && memcmp(t->v.keys[i], key, len) == 0)
				return (ssize_t)i;
		}
		return -1;
	}
	for (size_t i = 0; i < t->v.len; i++)
		if (t->key_lens[i] == len && memcmp(t->v.keys[i], key, len) == 0)
			return (ssize_t)i;
	return -1;
}

static struct node *table_find(const struct node *t, const char *key, size_t len)
{
	ssize_t i = table_pos(t, key, len);
	return i < 0 ? NULL : node_of(t->v.items[i]);
}

static void grow(struct node *n)
{
	if (n->v.len < n->cap)
		return;
	n->cap = n->cap ? n->cap * 2 : 4;
	n->v.items = xrealloc(n->v.items, n->cap * sizeof(*n->v.items));
	if (n->v.type == IB_TOML_TABLE) {
		n->v.keys = xrealloc(n->v.keys, n->cap * sizeof(*n->v.keys));
		n->key_lens = xrealloc(n->key_lens, n->cap * sizeof(*n->key_lens));
		n->key_pos = xrealloc(n->key_pos, n->cap * sizeof(*n->key_pos));
	}
}

/* Takes ownership of KEY (KLEN bytes, NUL-terminated) and CHILD. */
static void table_insert(struct node *t, char *key, size_t klen, int line, int col, struct node *child)
{
	grow(t);
	size_t pos = t->v.len++;
	t->v.keys[pos] = key;
	t->key_lens[pos] = klen;
	t->key_pos[pos] = (struct pos){ line, col };
	t->v.items[pos] = &child->v;
	if (t->v.len < 8)
		return;
	if (t->index == NULL || t->index_cap < 2 * t->v.len)
		index_rebuild(t);
	else
		index_put(t, pos);
}

static void array_push(struct node *a, struct node *child)
{
	grow(a);
	a->v.items[a->v.len++] = &child->v;
}

const struct ib_toml_value *ib_toml_get(const struct ib_toml_value *table, const char *key)
{
	if (table == NULL || key == NULL || table->type != IB_TOML_TABLE)
		return NULL;
	struct node *n = table_find(node_of(table), key, strlen(key));
	return n ? &n->v : NULL;
}

size_t ib_toml_key_len(const struct ib_toml_value *table, size_t i)
{
	if (table == NULL || table->type != IB_TOML_TABLE || i >= table->len)
		return 0;
	return node_of(table)->key_lens[i];
}

const char *ib_toml_type_name(enum ib_toml_type type)
{
	switch (type) {
	case IB_TOML_TABLE: return "table";
	case IB_TOML_ARRAY: return "array";
	case IB_TOML_STRING: return "string";
	case IB_TOML_INTEGER: return "integer";
	case IB_TOML_FLOAT: return "float";
	case IB_TOML_BOOL: return "boolean";
	case IB_TOML_DATETIME: return "offset date-time";
	case IB_TOML_DATETIME_LOCAL: return "local date-time";
	case IB_TOML_DATE_LOCAL: return "local date";
	case IB_TOML_TIME_LOCAL: return "local time";
	}
	return "unknown";
}

struct parser {
	const char *s; /* not owned, not NUL-terminated */
	size_t len, p;
	int line, col;	      /* of the character at p; col counts characters, not bytes */
	const char *filename; /* not owned */
	char *section;	      /* dotted path of the current [header], for messages */
	ib_error_t *err;
};

static void parser_finip(struct parser *ps)
{
	free(ps->section);
}

static int peek_at(const struct parser *ps, size_t off)
{
	if (off >= ps->len - ps->p)
		return -1;
	return (unsigned char)ps->s[ps->p + off];
}

static int peek(const struct parser *ps)
{
	return peek_at(ps, 0);
}

static void adv(struct parser *ps)
{
	if (ps->p >= ps->len)
		return;
	unsigned char c = (unsigned char)ps->s[ps->p++];
	if (c == '\n') {
		ps->line++;
		ps->col = 1;
	} else if ((c & 0xC0) != 0x80) {
		ps->col++;
	}
}

static void adv_n(struct parser *ps, size_t n)
{
	while (n-- > 0)
		adv(ps);
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool is_bare(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '_' || c == '-';
}

static bool is_newline_at(const struct parser *ps, size_t off)
{
	int c = peek_at(ps, off);
	return c == '\n' || (c == '\r' && peek_at(ps, off + 1) == '\n');
}

/* The input was checked as UTF-8 before parsing, so this cannot overrun. */
static uint32_t decode_utf8(const struct parser *ps, size_t *nbytes)
{
	int c = peek(ps);
	size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
	uint32_t cp = n == 4 ? (c & 0x07) : n == 3 ? (c & 0x0F) : n == 2 ? (c & 0x1F) : (uint32_t)c;
	for (size_t i = 1; i < n; i++)
		cp = (cp << 6) | (peek_at(ps, i) & 0x3F);
	*nbytes = n;
	return cp;
}

/* Names what sits at the current position, in words fit for "found %s". */
static const char *describe(const struct parser *ps, char *out, size_t size)
{
	int c = peek(ps);
	if (c < 0)
		return "end of file";
	if (c == '\n' || (c == '\r' && peek_at(ps, 1) == '\n'))
		return "newline";
	if (c == '\r')
		return "carriage return not followed by line feed";
	if (c == '\t')
		return "tab";
	if (c == ' ')
		return "space";
	if (is_bare(c)) {
		size_t n = 0;
		while (n < MAX_SHOWN && is_bare(peek_at(ps, n)))
			n++;
		snprintf(out, size, "'%.*s%s'", (int)n, ps->s + ps->p, is_bare(peek_at(ps, n)) ? "..." : "");
		return out;
	}
	if (c < 0x20 || c == 0x7F) {
		snprintf(out, size, "control character U+%04X", (unsigned)c);
		return out;
	}
	if (c < 0x80) {
		snprintf(out, size, "'%c'", c);
		return out;
	}
	size_t n;
	uint32_t cp = decode_utf8(ps, &n);
	snprintf(out, size, "'%.*s' (U+%04" PRIX32 ")", (int)n, ps->s + ps->p, cp);
	return out;
}

static int fail(struct parser *ps, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(struct parser *ps, int line, int col, const char *fmt, ...)
{
	cleanup_free char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	return ib_error_usage(ps->err, "%s:%d:%d: %s", ps->filename, line, col, msg);
}

/* "expected WHAT, found <whatever is here>" at the current position. */
static int expected(struct parser *ps, const char *what)
{
	char tmp[128];
	return fail(ps, ps->line, ps->col, "expected %s, found %s", what, describe(ps, tmp, sizeof(tmp)));
}

/* Appends a key part as it would be written in TOML, quoting when needed, so
 * messages can name any key on one line. */
static void buf_add_key(struct ib_buf *b, const char *s, size_t n)
{
	bool bare = n > 0;
	for (size_t i = 0; i < n && bare; i++)
		bare = is_bare((unsigned char)s[i]);
	if (bare) {
		ib_buf_add(b, s, n);
		return;
	}
	ib_buf_addc(b, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			ib_buf_addc(b, '\\');
			ib_buf_addc(b, (char)c);
		} else if (c < 0x20 || c == 0x7F) {
			char esc[8];
			snprintf(esc, sizeof(esc), "\\u%04X", c);
			ib_buf_add(b, esc, strlen(esc));
		} else {
			ib_buf_addc(b, (char)c);
		}
	}
	ib_buf_addc(b, '"');
}

/* Key parts are copied into the tree rather than stolen, so that messages can
 * still name the whole key after a walk has created tables for some parts. */
static char *memdup0(const char *s, size_t n)
{
	char *d = xmalloc(n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

struct keypart {
	char *s;
	size_t len;
	int line, col;
};

struct key {
	struct keypart *parts;
	size_t n, cap;
};

static void key_freep(struct key *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->parts[i].s);
	free(k->parts);
}
#define cleanup_key __attribute__((cleanup(key_freep)))

/* The dotted path PREFIX.K[0]...K[N-1], for messages. */
static char *key_path(const char *prefix, const struct key *k, size_t n)
{
	struct ib_buf b = { 0 };
	if (prefix != NULL && prefix[0] != '\0')
		ib_buf_add(&b, prefix, strlen(prefix));
	for (size_t i = 0; i < n; i++) {
		if (b.len > 0)
			ib_buf_addc(&b, '.');
		buf_add_key(&b, k->parts[i].s, k->parts[i].len);
	}
	return ib_buf_steal(&b);
}

static void skip_ws(struct parser *ps)
{
	while (peek(ps) == ' ' || peek(ps) == '\t')
		adv(ps);
}

/* At '#': consumes the comment, stopping before the newline. */
static int skip_comment(struct parser *ps)
{
	adv(ps);
	for (;;) {
		int c = peek(ps);
		if (c < 0 || is_newline_at(ps, 0))
			return 0;
		if (c == '\t' || (c >= 0x20 && c != 0x7F)) {
			adv(ps);
			continue;
		}
		return expected(ps, "comment text or end of line (control characters are not allowed in comments)");
	}
}

/* Whitespace, newlines and comments, as allowed between array elements. */
static int skip_ws_comments_newlines(struct parser *ps)
{
	for (;;) {
		int c = peek(ps);
		if (c == ' ' || c == '\t' || c == '\n') {
			adv(ps);
		} else if (c == '\r' && peek_at(ps, 1) == '\n') {
			adv_n(ps, 2);
		} else if (c == '#') {
			if (skip_comment(ps) < 0)
				return -1;
		} else {
			return 0;
		}
	}
}

/* Checks the whole input up front so that later stages can decode UTF-8
 * without bounds worries. Surrogates and overlong forms are rejected as the
 * TOML grammar's non-ascii rule demands. */
static int check_utf8(struct parser *ps)
{
	int line = ps->line, col = ps->col;
	size_t i = ps->p;
	while (i < ps->len) {
		unsigned char c = (unsigned char)ps->s[i];
		size_t need;
		unsigned char lo = 0x80, hi = 0xBF;
		if (c < 0x80) {
			if (c == '\n') {
				line++;
				col = 1;
			} else {
				col++;
			}
			i++;
			continue;
		} else if (c >= 0xC2 && c <= 0xDF) {
			need = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			if (c == 0xE0)
				lo = 0xA0;
			else if (c == 0xED)
				hi = 0x9F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			if (c == 0xF0)
				lo = 0x90;
			else if (c == 0xF4)
				hi = 0x8F;
		} else {
			return fail(ps, line, col, "expected UTF-8 text, found byte 0x%02X (save the file as UTF-8)", c);
		}
		for (size_t k = 1; k <= need; k++) {
			if (i + k >= ps->len)
				return fail(
					ps, line,
					col, "expected UTF-8 text, found a truncated sequence at end of file (save the file as UTF-8)");
			unsigned char d = (unsigned char)ps->s[i + k];
			if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF))
				return fail(
					ps, line,
					col, "expected UTF-8 text, found invalid sequence starting with byte 0x%02X (save the file as UTF-8)",
					c);
		}
		i += need + 1;
		col++;
	}
	return 0;
}

static void add_utf8(struct ib_buf *b, uint32_t cp)
{
	char out[4];
	size_t n;
	if (cp < 0x80) {
		out[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		out[0] = (char)(0xF0 | (cp >> 18));
		out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	ib_buf_add(b, out, n);
}

static int hex_val(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* At a backslash inside a basic string. */
static int parse_escape(struct parser *ps, struct ib_buf *b, bool multi)
{
	int line = ps->line, col = ps->col;
	adv(ps);
	int c = peek(ps);
	switch (c) {
	case 'b': ib_buf_addc(b, '\b'); break;
	case 't': ib_buf_addc(b, '\t'); break;
	case 'n': ib_buf_addc(b, '\n'); break;
	case 'f': ib_buf_addc(b, '\f'); break;
	case 'r': ib_buf_addc(b, '\r'); break;
	case '"': ib_buf_addc(b, '"'); break;
	case '\\': ib_buf_addc(b, '\\'); break;
	case 'u':
	case 'U': {
		int digits = c == 'u' ? 4 : 8;
		uint32_t cp = 0;
		adv(ps);
		for (int i = 0; i < digits; i++) {
			int h = hex_val(peek(ps));
			if (h < 0) {
				char what[64];
				snprintf(what, sizeof(what), "%d hex digits after \\%c", digits, c);
				return expected(ps, what);
			}
			cp = (cp << 4) | (uint32_t)h;
			adv(ps);
		}
		if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return fail(ps, line, col, "expected a Unicode scalar value in \\%c escape, found U+%04" PRIX32 " (%s)",
				    c, cp, cp > 0x10FFFF ? "beyond U+10FFFF" : "a surrogate");
		add_utf8(b, cp);
		return 0;
	}
	default:
		if (multi && (c == ' ' || c == '\t' || is_newline_at(ps, 0))) {
			/* Line-ending backslash: only whitespace may follow it on its
			 * line; then all whitespace and newlines up to the next
			 * visible character are dropped. */
			while (peek(ps) == ' ' || peek(ps) == '\t')
				adv(ps);
			if (!is_newline_at(ps, 0))
				return expected(ps, "newline after line-ending backslash (or escape the backslash as \\\\)");
			while (peek(ps) == ' ' || peek(ps) == '\t' || is_newline_at(ps, 0))
				adv(ps);
			return 0;
		}
		{
			char tmp[128];
			return fail(
				ps, line,
				col, "expected escape sequence (\\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \\UXXXXXXXX) after backslash, found %s (write \\\\ for a backslash)",
				describe(ps, tmp, sizeof(tmp)));
		}
	}
	adv(ps);
	return 0;
}

static bool is_string_control(int c)
{
	return (c < 0x20 && c != '\t') || c == 0x7F;
}

static int control_in_string(struct parser *ps)
{
	int c = peek(ps);
	return fail(ps, ps->line, ps->col,
		    "expected string character, found control character U+%04X (write it as \\u%04X in a basic string)",
		    (unsigned)c, (unsigned)c);
}

static int unterminated(struct parser *ps, const char *delim, int line, int col)
{
	char tmp[128];
	return fail(ps, ps->line, ps->col, "expected %s to close the string opened at %d:%d, found %s", delim, line, col,
		    describe(ps, tmp, sizeof(tmp)));
}

/* At the opening quote(s) of a string of either kind; fills B. */
static int parse_string(struct parser *ps, struct ib_buf *b)
{
	int line = ps->line, col = ps->col;
	char q = (char)peek(ps);
	bool basic = q == '"';
	bool multi = peek_at(ps, 1) == q && peek_at(ps, 2) == q;
	const char *delim = basic ? (multi ? "'\"\"\"'" : "'\"'") : (multi ? "\"'''\"" : "\"'\"");
	ib_buf_add(b, "", 0);
	if (!multi) {
		adv(ps);
		for (;;) {
			int c = peek(ps);
			if (c == q) {
				adv(ps);
				return 0;
			}
			if (c < 0 || c == '\n' || c == '\r')
				return unterminated(ps, delim, line, col);
			if (basic && c == '\\') {
				if (parse_escape(ps, b, false) < 0)
					return -1;
				continue;
			}
			if (is_string_control(c))
				return control_in_string(ps);
			ib_buf_addc(b, (char)c);
			adv(ps);
		}
	}
	adv_n(ps, 3);
	/* A newline right after the opening delimiter is trimmed. */
	if (is_newline_at(ps, 0))
		adv_n(ps, peek(ps) == '\r' ? 2 : 1);
	for (;;) {
		int c = peek(ps);
		if (c == q) {
			size_t n = 0;
			while (peek_at(ps, n) == q)
				n++;
			if (n < 3) {
				ib_buf_add(b, basic ? "\"\"" : "''", n);
				adv_n(ps, n);
				continue;
			}
			/* Up to two quotes may sit right before the closing three. */
			size_t extra = n - 3 > 2 ? 2 : n - 3;
			ib_buf_add(b, basic ? "\"\"" : "''", extra);
			adv_n(ps, 3 + extra);
			return 0;
		}
		if (c < 0)
			return unterminated(ps, delim, line, col);
		if (c == '\n' || (c == '\r' && peek_at(ps, 1) == '\n')) {
			/* CRLF becomes LF so the value does not depend on the editor. */
			ib_buf_addc(b, '\n');
			adv_n(ps, c == '\r' ? 2 : 1);
			continue;
		}
		if (basic && c == '\\') {
			if (parse_escape(ps, b, true) < 0)
				return -1;
			continue;
		}
		if (is_string_control(c))
			return control_in_string(ps);
		ib_buf_addc(b, (char)c);
		adv(ps);
	}
}

static int parse_simple_key(struct parser *ps, struct keypart *out, const char *what)
{
	int c = peek(ps);
	cleanup_buf struct ib_buf b = { 0 };
	out->line = ps->line;
	out->col = ps->col;
	if (c == '"' || c == '\'') {
		if (peek_at(ps, 1) == c && peek_at(ps, 2) == c)
			return fail(ps, ps->line, ps->col,
				    "expected %s, found multi-line string (keys must be single-line strings)", what);
		if (parse_string(ps, &b) < 0)
			return -1;
	} else if (is_bare(c)) {
		while (is_bare(peek(ps))) {
			ib_buf_addc(&b, (char)peek(ps));
			adv(ps);
		}
	} else {
		return expected(ps, what);
	}
	out->len = b.len;
	out->s = ib_buf_steal(&b);
	return 0;
}

/* simple-key *( ws '.' ws simple-key ), then trailing whitespace. */
static int parse_key(struct parser *ps, struct key *k)
{
	const char *what = "key";
	for (;;) {
		if (k->n == MAX_DEPTH)
			return fail(ps, ps->line, ps->col,
				    "expected at most %d dotted key parts, found more (flatten the document)", MAX_DEPTH);
		if (k->n == k->cap) {
			k->cap = k->cap ? k->cap * 2 : 4;
			k->parts = xrealloc(k->parts, k->cap * sizeof(*k->parts));
		}
		if (parse_simple_key(ps, &k->parts[k->n], what) < 0)
			return -1;
		k->n++;
		skip_ws(ps);
		if (peek(ps) != '.')
			return 0;
		adv(ps);
		skip_ws(ps);
		what = "key after '.'";
	}
}

static const char *article(enum ib_toml_type type)
{
	return strchr("aeiou", ib_toml_type_name(type)[0]) ? "an" : "a";
}

static int check_depth(struct parser *ps, int depth, int line, int col)
{
	if (depth > MAX_DEPTH)
		return fail(ps, line, col, "expected at most %d levels of nesting, found more (flatten the document)", MAX_DEPTH);
	return 0;
}

static int parse_value(struct parser *ps, const char *path, int depth, struct node **out);

static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Reads exactly N digits into *VAL, copying them to B. */
static int read_digits(struct parser *ps, int n, int *val, const char *what, struct ib_buf *b)
{
	*val = 0;
	for (int i = 0; i < n; i++) {
		int c = peek(ps);
		if (!is_digit(c))
			return expected(ps, what);
		*val = *val * 10 + (c - '0');
		ib_buf_addc(b, (char)c);
		adv(ps);
	}
	return 0;
}

static int read_char(struct parser *ps, char ch, const char *what, struct ib_buf *b)
{
	if (peek(ps) != ch)
		return expected(ps, what);
	ib_buf_addc(b, ch);
	adv(ps);
	return 0;
}

/* HH:MM:SS[.fraction], the fraction kept as written. */
static int parse_time(struct parser *ps, struct ib_buf *b)
{
	int h, m, s, line, col;
	line = ps->line, col = ps->col;
	if (read_digits(ps, 2, &h, "2-digit hour", b) < 0)
		return -1;
	if (h > 23)
		return fail(ps, line, col, "expected hour 00-23, found %02d", h);
	if (read_char(ps, ':', "':' after hour", b) < 0)
		return -1;
	line = ps->line, col = ps->col;
	if (read_digits(ps, 2, &m, "2-digit minute", b) < 0)
		return -1;
	if (m > 59)
		return fail(ps, line, col, "expected minute 00-59, found %02d", m);
	if (read_char(ps, ':', "':' after minute (seconds are required in TOML 1.0)", b) < 0)
		return -1;
	line = ps->line, col = ps->col;
	if (read_digits(ps, 2, &s, "2-digit second", b) < 0)
		return -1;
	/* 60 is allowed: RFC 3339 has leap seconds. */
	if (s > 60)
		return fail(ps, line, col, "expected second 00-60, found %02d", s);
	if (peek(ps) == '.') {
		ib_buf_addc(b, '.');
		adv(ps);
		if (!is_digit(peek(ps)))
			return expected(ps, "digit after '.' in seconds");
		while (is_digit(peek(ps))) {
			ib_buf_addc(b, (char)peek(ps));
			adv(ps);
		}
	}
	return 0;
}

/* At YYYY-: a local date, local date-time or offset date-time. */
static int parse_datetime(struct parser *ps, int depth, struct node **out)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int line = ps->line, col = ps->col;
	int y, mo, d, l2, c2;
	cleanup_buf struct ib_buf b = { 0 };
	if (read_digits(ps, 4, &y, "4-digit year", &b) < 0 || read_char(ps, '-', "'-' after year", &b) < 0)
		return -1;
	l2 = ps->line, c2 = ps->col;
	if (read_digits(ps, 2, &mo, "2-digit month", &b) < 0)
		return -1;
	if (mo < 1 || mo > 12)
		return fail(ps, l2, c2, "expected month 01-12, found %02d", mo);
	if (read_char(ps, '-', "'-' after month", &b) < 0)
		return -1;
	l2 = ps->line, c2 = ps->col;
	if (read_digits(ps, 2, &d, "2-digit day", &b) < 0)
		return -1;
	int maxd = mdays[mo - 1] + (mo == 2 && is_leap(y));
	if (d < 1 || d > maxd)
		return fail(ps, l2, c2, "expected day 01-%02d for %04d-%02d, found %02d", maxd, y, mo, d);
	enum ib_toml_type type = IB_TOML_DATE_LOCAL;
	int c = peek(ps);
	/* A space separates date and time only when a time follows; otherwise
	 * the value is a plain date and the space is ordinary whitespace. */
	if (c == 'T' || c == 't' || (c == ' ' && is_digit(peek_at(ps, 1)) && is_digit(peek_at(ps, 2)) && peek_at(ps, 3) == ':')) {
		adv(ps);
		ib_buf_addc(&b, 'T');
		if (parse_time(ps, &b) < 0)
			return -1;
		type = IB_TOML_DATETIME_LOCAL;
		c = peek(ps);
		if (c == 'Z' || c == 'z') {
			adv(ps);
			ib_buf_addc(&b, 'Z');
			type = IB_TOML_DATETIME;
		} else if (c == '+' || c == '-') {
			int oh, om;
			ib_buf_addc(&b, (char)c);
			adv(ps);
			l2 = ps->line, c2 = ps->col;
			if (read_digits(ps, 2, &oh, "2-digit offset hour", &b) < 0)
				return -1;
			if (oh > 23)
				return fail(ps, l2, c2, "expected offset hour 00-23, found %02d", oh);
			if (read_char(ps, ':', "':' in offset", &b) < 0)
				return -1;
			l2 = ps->line, c2 = ps->col;
			if (read_digits(ps, 2, &om, "2-digit offset minute", &b) < 0)
				return -1;
			if (om > 59)
				return fail(ps, l2, c2, "expected offset minute 00-59, found %02d", om);
			type = IB_TOML_DATETIME;
		}
	}
	struct node *n = node_new(type, line, col, depth);
	n->v.len = b.len;
	n->v.u.str = ib_buf_steal(&b);
	*out = n;
	return 0;
}

static int parse_local_time(struct parser *ps, int depth, struct node **out)
{
	int line = ps->line, col = ps->col;
	cleanup_buf struct ib_buf b = { 0 };
	if (parse_time(ps, &b) < 0)
		return -1;
	struct node *n = node_new(IB_TOML_TIME_LOCAL, line, col, depth);
	n->v.len = b.len;
	n->v.u.str = ib_buf_steal(&b);
	*out = n;
	return 0;
}

/* strtod follows LC_NUMERIC, and a caller that ran setlocale(LC_ALL, "")
 * under a comma-decimal locale would make it stop at '.'; TOML floats always
 * use '.', so parse them in the C locale. */
static double strtod_c(const char *s, char **end)
{
	static locale_t c_locale;
	if (c_locale == (locale_t)0)
		c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	if (c_locale == (locale_t)0)
		return strtod(s, end);
	return strtod_l(s, end, c_locale);
}

/* DIGIT *( DIGIT / '_' DIGIT ) in BASE, starting at *I. NULL or a reason. */
static const char *scan_digits(const char *t, size_t n, size_t *i, int base, size_t *ndigits)
{
	size_t nd = 0;
	while (*i < n) {
		int v = hex_val((unsigned char)t[*i]);
		if (v >= 0 && v < base) {
			nd++;
			(*i)++;
		} else if (t[*i] == '_') {
			int next = *i + 1 < n ? hex_val((unsigned char)t[*i + 1]) : -1;
			if (nd == 0 || next < 0 || next >= base)
				return "'_' must sit between two digits";
			(*i)++;
		} else {
			break;
		}
	}
	*ndigits = nd;
	return nd == 0 ? "digits missing" : NULL;
}

static bool is_number_char(int c)
{
	return is_bare(c) || c == '+' || c == '.';
}

/* Integers and floats. The token is delimited generously and then checked
 * against the grammar, so "1.2.3" or "0x" get one message naming the text. */
/* A 0x, 0o or 0b integer (T[I] is the '0'); returns why it is not one, or NULL. */
static const char *based_integer(const char *t, size_t n, size_t i, int64_t *out)
{
	int base = t[i + 1] == 'x' ? 16 : t[i + 1] == 'o' ? 8 : 2;
	size_t nd;
	const char *why;
	if (i > 0)
		return "hexadecimal, octal and binary integers take no sign";
	i += 2;
	if ((why = scan_digits(t, n, &i, base, &nd)) != NULL)
		return why;
	if (i != n)
		return base == 16 ? "not a hexadecimal digit" : base == 8 ? "not an octal digit" : "not a binary digit";
	uint64_t u = 0;
	for (size_t k = 2; k < n; k++) {
		if (t[k] == '_')
			continue;
		uint64_t dv = (uint64_t)hex_val((unsigned char)t[k]);
		if (u > (INT64_MAX - dv) / (uint64_t)base)
			return "integer does not fit in 64 bits";
		u = u * (uint64_t)base + dv;
	}
	*out = (int64_t)u;
	return NULL;
}

static const char *decimal_float(const char *t, size_t n, double *out)
{
	cleanup_free char *clean = xmalloc(n + 1);
	size_t m = 0;
	for (size_t k = 0; k < n; k++)
		if (t[k] != '_')
			clean[m++] = t[k];
	clean[m] = '\0';
	char *end;
	errno = 0;
	double d = strtod_c(clean, &end);
	if (*end != '\0')
		return "not a number";
	if (errno == ERANGE && isinf(d))
		return "float out of range";
	*out = d;
	return NULL;
}

/* A decimal integer or float, its digits from T[I] on (after the sign); returns
 * why it is not one, or NULL with *IS_FLOAT saying which of *IV and *DV is set. */
static const char *decimal(const char *t, size_t n, size_t i, bool neg, bool *is_float, int64_t *iv, double *dv)
{
	size_t start = i, nd;
	const char *why;
	*is_float = false;
	if ((why = scan_digits(t, n, &i, 10, &nd)) != NULL)
		return why;
	if (t[start] == '0' && nd > 1)
		return "leading zeros are not allowed";
	size_t int_end = i;
	if (i < n && t[i] == '.') {
		i++;
		*is_float = true;
		if (scan_digits(t, n, &i, 10, &nd) != NULL)
			return "a digit must follow '.'";
	}
	if (i < n && (t[i] == 'e' || t[i] == 'E')) {
		i++;
		*is_float = true;
		if (i < n && (t[i] == '+' || t[i] == '-'))
			i++;
		if ((why = scan_digits(t, n, &i, 10, &nd)) != NULL)
			return strcmp(why, "digits missing") == 0 ? "the exponent needs digits" : why;
	}
	if (i != n)
		return "unexpected character in number";
	if (*is_float)
		return decimal_float(t, n, dv);
	uint64_t u = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (size_t k = start; k < int_end; k++) {
		if (t[k] == '_')
			continue;
		uint64_t d = (uint64_t)(t[k] - '0');
		if (u > (limit - d) / 10)
			return "integer does not fit in 64 bits";
		u = u * 10 + d;
	}
	*iv = neg ? (int64_t)(0 - u) : (int64_t)u;
	return NULL;
}

static int parse_number(struct parser *ps, int depth, struct node **out)
{
	int line = ps->line, col = ps->col;
	const char *t = ps->s + ps->p;
	size_t n = 0;
	while (is_number_char(peek_at(ps, n)))
		n++;
	const char *why = NULL;
	size_t i = 0;
	bool neg = false;
	if (n > 0 && (t[0] == '+' || t[0] == '-')) {
		neg = t[0] == '-';
		i = 1;
	}
	struct node *v = NULL;
	int64_t iv = 0;
	double dv = 0;
	bool is_float = false;
	if (n - i == 3 && (memcmp(t + i, "inf", 3) == 0 || memcmp(t + i, "nan", 3) == 0)) {
		is_float = true;
		if (t[i] == 'i')
			dv = neg ? -INFINITY : INFINITY;
		else
			dv = neg ? -NAN : NAN;
	} else if (n - i >= 2 && t[i] == '0' && (t[i + 1] == 'x' || t[i + 1] == 'o' || t[i + 1] == 'b')) {
		why = based_integer(t, n, i, &iv);
	} else {
		why = decimal(t, n, i, neg, &is_float, &iv, &dv);
	}
	if (why != NULL) {
		if (n == 0)
			return expected(ps, "value");
		return fail(ps, line, col, "expected a number, found '%.*s%s' (%s)", n > MAX_SHOWN ? MAX_SHOWN : (int)n, t,
			    n > MAX_SHOWN ? "..." : "", why);
	}
	v = node_new(is_float ? IB_TOML_FLOAT : IB_TOML_INTEGER, line, col, depth);
	if (is_float)
		v->v.u.real = dv;
	else
		v->v.u.integer = iv;
	adv_n(ps, n);
	*out = v;
	return 0;
}

static int parse_keyval(struct parser *ps, struct node *table, const char *prefix);

static int parse_inline_table(struct parser *ps, const char *path, int depth, struct node **out)
{
	int line = ps->line, col = ps->col;
	if (check_depth(ps, depth, line, col) < 0)
		return -1;
	cleanup_node struct node *t = node_new(IB_TOML_TABLE, line, col, depth);
	adv(ps);
	skip_ws(ps);
	if (peek(ps) == '}') {
		adv(ps);
	} else {
		for (;;) {
			if (parse_keyval(ps, t, path) < 0)
				return -1;
			skip_ws(ps);
			if (peek(ps) == ',') {
				adv(ps);
				skip_ws(ps);
				if (peek(ps) == '}')
					return expected(ps, "key after ',' (inline tables take no trailing comma)");
				continue;
			}
			if (peek(ps) == '}') {
				adv(ps);
				break;
			}
			char what[96];
			snprintf(what, sizeof(what),
				 "',' or '}' in the inline table opened at %d:%d (inline tables are one line)", line, col);
			return expected(ps, what);
		}
	}
	t->flags |= F_INLINE;
	*out = steal_pointer(&t);
	return 0;
}

static int parse_array(struct parser *ps, const char *path, int depth, struct node **out)
{
	int line = ps->line, col = ps->col;
	if (check_depth(ps, depth, line, col) < 0)
		return -1;
	cleanup_node struct node *a = node_new(IB_TOML_ARRAY, line, col, depth);
	a->flags |= F_INLINE;
	adv(ps);
	for (;;) {
		if (skip_ws_comments_newlines(ps) < 0)
			return -1;
		if (peek(ps) == ']') {
			adv(ps);
			break;
		}
		struct node *item = NULL;
		if (parse_value(ps, path, depth + 1, &item) < 0)
			return -1;
		array_push(a, item);
		if (skip_ws_comments_newlines(ps) < 0)
			return -1;
		if (peek(ps) == ',') {
			adv(ps);
			continue;
		}
		if (peek(ps) == ']') {
			adv(ps);
			break;
		}
		char what[80];
		snprintf(what, sizeof(what), "',' or ']' in the array opened at %d:%d", line, col);
		return expected(ps, what);
	}
	*out = steal_pointer(&a);
	return 0;
}

static bool looking_at_word(const struct parser *ps, const char *w)
{
	size_t n = strlen(w);
	for (size_t i = 0; i < n; i++)
		if (peek_at(ps, i) != (unsigned char)w[i])
			return false;
	return !is_bare(peek_at(ps, n));
}

static int parse_value(struct parser *ps, const char *path, int depth, struct node **out)
{
	int c = peek(ps);
	int line = ps->line, col = ps->col;
	if (c == '"' || c == '\'') {
		cleanup_buf struct ib_buf b = { 0 };
		if (parse_string(ps, &b) < 0)
			return -1;
		struct node *n = node_new(IB_TOML_STRING, line, col, depth);
		n->v.len = b.len;
		n->v.u.str = ib_buf_steal(&b);
		*out = n;
		return 0;
	}
	if (c == '[')
		return parse_array(ps, path, depth, out);
	if (c == '{')
		return parse_inline_table(ps, path, depth, out);
	if (c == 't' || c == 'f') {
		bool val = c == 't';
		if (!looking_at_word(ps, val ? "true" : "false"))
			return expected(ps, "value (booleans are lowercase true or false; strings need quotes)");
		adv_n(ps, val ? 4 : 5);
		struct node *n = node_new(IB_TOML_BOOL, line, col, depth);
		n->v.u.boolean = val;
		*out = n;
		return 0;
	}
	if (is_digit(c)) {
		if (is_digit(peek_at(ps, 1)) && is_digit(peek_at(ps, 2)) && is_digit(peek_at(ps, 3)) && peek_at(ps, 4) == '-')
			return parse_datetime(ps, depth, out);
		if (is_digit(peek_at(ps, 1)) && peek_at(ps, 2) == ':')
			return parse_local_time(ps, depth, out);
		return parse_number(ps, depth, out);
	}
	if (c == '+' || c == '-' || c == 'i' || c == 'n')
		return parse_number(ps, depth, out);
	return expected(ps, "value");
}

/* key = value, into TABLE (the current [section] or an inline table, whose
 * path PREFIX messages start from). Dotted
 * keys create tables on the way, but may only pass through tables that dotted
 * keys created: the toml-lang/toml#846 ruling forbids reaching into a table
 * that a header defined. */
static int parse_keyval(struct parser *ps, struct node *table, const char *prefix)
{
	cleanup_key struct key k = { 0 };
	if (parse_key(ps, &k) < 0)
		return -1;
	if (peek(ps) != '=') {
		cleanup_free char *path = key_path(prefix, &k, k.n);
		char what[160];
		snprintf(what, sizeof(what), "'=' after key '%.100s'", path);
		return expected(ps, what);
	}
	adv(ps);
	skip_ws(ps);
	struct node *t = table;
	for (size_t i = 0; i < k.n; i++) {
		struct keypart *part = &k.parts[i];
		if (i + 1 == k.n) {
			ssize_t pos = table_pos(t, part->s, part->len);
			if (pos >= 0) {
				cleanup_free char *path = key_path(prefix, &k, i + 1);
				return fail(ps, part->line, part->col,
					    "duplicate key '%s', first defined at %d:%d (each key may be set once)", path,
					    t->key_pos[pos].line, t->key_pos[pos].col);
			}
			break;
		}
		struct node *child = table_find(t, part->s, part->len);
		if (child == NULL) {
			if (check_depth(ps, t->depth + 1, part->line, part->col) < 0)
				return -1;
			child = node_new(IB_TOML_TABLE, part->line, part->col, t->depth + 1);
			child->flags |= F_DOTTED;
			table_insert(t, memdup0(part->s, part->len), part->len, part->line, part->col, child);
		} else if (child->v.type != IB_TOML_TABLE) {
			cleanup_free char *path = key_path(prefix, &k, i + 1);
			return fail(ps, part->line, part->col, "expected '%s' to be a table, found %s %s defined at %d:%d", path,
				    article(child->v.type), ib_toml_type_name(child->v.type), child->v.line, child->v.col);
		} else if (child->flags & F_INLINE) {
			cleanup_free char *path = key_path(prefix, &k, i + 1);
			return fail(
				ps, part->line, part->col,
				"cannot add keys to inline table '%s' defined at %d:%d (inline tables are complete as written)",
				path, child->v.line, child->v.col);
		} else if (!(child->flags & F_DOTTED)) {
			cleanup_free char *path = key_path(prefix, &k, i + 1);
			return fail(
				ps, part->line, part->col,
				"cannot add to table [%s] (defined at %d:%d) with a dotted key; add the key under a [%s] header",
				path, child->v.line, child->v.col, path);
		}
		t = child;
	}
	struct node *val = NULL;
	/* Only containers can fail on a nested key, so only they need the path. */
	cleanup_free char *vpath = peek(ps) == '{' || peek(ps) == '[' ? key_path(prefix, &k, k.n) : NULL;
	if (parse_value(ps, vpath, t->depth + 1, &val) < 0)
		return -1;
	struct keypart *last = &k.parts[k.n - 1];
	/* A table's position is that of its key; other values keep their own. */
	if (val->v.type == IB_TOML_TABLE) {
		val->v.line = last->line;
		val->v.col = last->col;
	}
	table_insert(t, steal_pointer(&last->s), last->len, last->line, last->col, val);
	return 0;
}

/* [a.b.c] or [[a.b.c]]; sets *CUR to the table that follows key/values fill. */
static int parse_header(struct parser *ps, struct node *root, struct node **cur)
{
	adv(ps);
	bool aot = peek(ps) == '[';
	if (aot)
		adv(ps);
	skip_ws(ps);
	cleanup_key struct key k = { 0 };
	if (parse_key(ps, &k) < 0)
		return -1;
	const char *close = aot ? "']]' to close the [[array of tables]] header" : "']' to close the [table] header";
	if (peek(ps) != ']')
		return expected(ps, close);
	adv(ps);
	if (aot) {
		if (peek(ps) != ']')
			return expected(ps, close);
		adv(ps);
	}
	cleanup_free char *section = key_path(NULL, &k, k.n);
	struct node *t = root;
	for (size_t i = 0; i < k.n; i++) {
		struct keypart *part = &k.parts[i];
		struct node *child = table_find(t, part->s, part->len);
		bool last = i + 1 == k.n;
		cleanup_free char *path = NULL;
		if (child == NULL) {
			if (check_depth(ps, t->depth + 1 + (last && aot), part->line, part->col) < 0)
				return -1;
			if (last && aot) {
				struct node *arr = node_new(IB_TOML_ARRAY, part->line, part->col, t->depth + 1);
				arr->flags |= F_AOT;
				child = node_new(IB_TOML_TABLE, part->line, part->col, t->depth + 2);
				child->flags |= F_DEFINED;
				array_push(arr, child);
				table_insert(t, memdup0(part->s, part->len), part->len, part->line, part->col, arr);
			} else {
				child = node_new(IB_TOML_TABLE, part->line, part->col, t->depth + 1);
				if (last)
					child->flags |= F_DEFINED;
				table_insert(t, memdup0(part->s, part->len), part->len, part->line, part->col, child);
			}
			t = child;
			continue;
		}
		path = key_path(NULL, &k, i + 1);
		if (child->v.type == IB_TOML_ARRAY && (child->flags & F_AOT)) {
			if (last && !aot)
				return fail(ps, part->line, part->col,
					    "expected [[%s]] for the array of tables defined at %d:%d, found [%s]", path,
					    child->v.line, child->v.col, path);
			if (last) {
				if (check_depth(ps, child->depth + 1, part->line, part->col) < 0)
					return -1;
				struct node *elem = node_new(IB_TOML_TABLE, part->line, part->col, child->depth + 1);
				elem->flags |= F_DEFINED;
				array_push(child, elem);
				t = elem;
			} else {
				/* [a.b] after [[a]] extends the newest element of a. */
				t = node_of(child->v.items[child->v.len - 1]);
			}
			continue;
		}
		if (child->v.type == IB_TOML_ARRAY)
			return fail(ps, part->line, part->col,
				    "cannot extend '%s', an array written as a value at %d:%d (use [[%s]] throughout instead)",
				    path, child->v.line, child->v.col, path);
		if (child->v.type != IB_TOML_TABLE)
			return fail(ps, part->line, part->col, "expected '%s' to be a table, found %s %s defined at %d:%d", path,
				    article(child->v.type), ib_toml_type_name(child->v.type), child->v.line, child->v.col);
		if (child->flags & F_INLINE)
			return fail(ps, part->line, part->col,
				    "cannot extend inline table '%s' defined at %d:%d (inline tables are complete as written)",
				    path, child->v.line, child->v.col);
		if (last && aot)
			return fail(ps, part->line, part->col,
				    "expected [%s] for the table defined at %d:%d, found [[%s]] (it is not an array of tables)",
				    path, child->v.line, child->v.col, path);
		if (last) {
			if (child->flags & F_DEFINED)
				return fail(ps, part->line, part->col,
					    "table [%s] already defined at %d:%d (merge the two sections)", path, child->v.line,
					    child->v.col);
			if (child->flags & F_DOTTED)
				return fail(
					ps, part->line, part->col,
					"table [%s] already defined by a dotted key at %d:%d (move those keys under this header)",
					path, child->v.line, child->v.col);
			child->flags |= F_DEFINED;
			child->v.line = part->line;
			child->v.col = part->col;
		}
		t = child;
	}
	free(ps->section);
	ps->section = steal_pointer(&section);
	*cur = t;
	return 0;
}

struct ib_toml_value *ib_toml_parse(const char *text, size_t len, const char *filename, ib_error_t *err)
{
	__attribute__((cleanup(parser_finip))) struct parser ps = {
		.s = text,
		.len = text != NULL ? len : 0,
		.line = 1,
		.col = 1,
		.filename = filename != NULL ? filename : "<input>",
		.err = err,
	};
	cleanup_node struct node *root = node_new(IB_TOML_TABLE, 1, 1, 0);
	struct node *cur = root;
	/* A UTF-8 byte order mark is allowed at the very start only. */
	if (ps.len >= 3 && memcmp(ps.s, "\xEF\xBB\xBF", 3) == 0)
		ps.p = 3;
	if (check_utf8(&ps) < 0)
		return NULL;
	for (;;) {
		skip_ws(&ps);
		int c = peek(&ps);
		if (c < 0)
			break;
		if (c == '[') {
			if (parse_header(&ps, root, &cur) < 0)
				return NULL;
		} else if (c != '#' && !is_newline_at(&ps, 0)) {
			if (parse_keyval(&ps, cur, ps.section) < 0)
				return NULL;
		}
		skip_ws(&ps);
		if (peek(&ps) == '#' && skip_comment(&ps) < 0)
			return NULL;
		if (peek(&ps) < 0)
			break;
		if (!is_newline_at(&ps, 0)) {
			expected(&ps, "newline (one key = value or [table] per line)");
			return NULL;
		}
		adv_n(&ps, peek(&ps) == '\r' ? 2 : 1);
	}
	return &steal_pointer(&root)->v;
}
