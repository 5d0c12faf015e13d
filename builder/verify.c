#include "verify.h"
#include "driver.h"
#include "hash.h"
#include "imgmeta.h"
#include "log.h"
#include "pack.h"
#include "sign.h"
#include "strset.h"
#include "toml.h"
#include "unpack_writer.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------- entry safety ---------------- */

struct ib_entry_check {
	struct ib_strset seen; /* normalised path -> 'd' 'f' 'l' 'h' */
	char *prev;
	char *norm;
	char *link_norm;
	bool listing_seen;
};

struct ib_entry_check *ib_entry_check_new(void)
{
	return xcalloc(1, sizeof(struct ib_entry_check));
}

void ib_entry_check_free(struct ib_entry_check *c)
{
	if (c == NULL)
		return;
	ib_strset_free(&c->seen);
	free(c->prev);
	free(c->norm);
	free(c->link_norm);
	free(c);
}

void ib_entry_check_cleanup(struct ib_entry_check **c)
{
	ib_entry_check_free(*c);
}

/* "." or "./a/b" from a stored name; NULL when it is not a clean relative path. */
static char *normalise(const char *path, const char **why)
{
	size_t n = strlen(path);
	if (n == 0) {
		*why = "empty name";
		return NULL;
	}
	if (path[0] == '/') {
		*why = "absolute path";
		return NULL;
	}
	if (strcmp(path, ".") == 0 || strcmp(path, "./") == 0)
		return xstrdup(".");
	if (n < 3 || path[0] != '.' || path[1] != '/') {
		*why = "name not below ./";
		return NULL;
	}
	char *out = xstrdup(path);
	if (n > 2 && out[n - 1] == '/')
		out[--n] = '\0';
	/* Components after "./": none empty, ".", or "..". */
	const char *p = out + 2;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) {
			*why = len == 2 ? "'..' in path" : "empty or '.' component in path";
			free(out);
			return NULL;
		}
		if (!slash)
			break;
		p = slash + 1;
	}
	return out;
}

int ib_entry_check(struct ib_entry_check *c, const struct ib_tar_entry *e, const char **norm_out, ib_error_t *err)
{
	const char *why = NULL;
	free(c->norm);
	c->norm = normalise(e->path, &why);
	if (c->norm == NULL)
		return ib_error_set(err, 0, "unsafe entry '%s': %s", e->path, why);
	const char *norm = c->norm;
	if (e->type == IB_ENTRY_OTHER) {
		const char *what = S_ISCHR(e->filetype)	   ? "character device"
				   : S_ISBLK(e->filetype)  ? "block device"
				   : S_ISFIFO(e->filetype) ? "fifo"
				   : S_ISSOCK(e->filetype) ? "socket"
							   : "special file";
		return ib_error_set(err, 0, "unsafe entry '%s': %s", norm, what);
	}
	/* Entries are sorted by path, but the listing ends the image (pack.c
	 * says why): one layout, so nothing hides in a second one. */
	bool is_listing = strcmp(norm, "./" IB_META_LISTING) == 0;
	if (c->listing_seen)
		return ib_error_set(err, 0, "entry '%s' after ./" IB_META_LISTING ", which must be the last entry", norm);
	if (c->prev && !is_listing) {
		int cmp = strcmp(norm, c->prev);
		if (cmp == 0)
			return ib_error_set(err, 0, "duplicate entry '%s'", norm);
		if (cmp < 0)
			return ib_error_set(err, 0, "entry '%s' out of order (after '%s'): images are sorted", norm, c->prev);
	} else if (!c->prev && strcmp(norm, ".") != 0) {
		return ib_error_set(err, 0, "first entry is '%s', not the root './'", norm);
	}
	if (strcmp(norm, ".") == 0) {
		if (e->type != IB_ENTRY_DIR)
			return ib_error_set(err, 0, "unsafe entry '.': the root is not a folder");
	} else {
		/* Every entry sits in a folder entry seen before: an entry below a
		 * symlink (symlink, then a file through it) is refused here. */
		char *slash = strrchr(c->norm, '/');
		*slash = '\0';
		unsigned char parent = ib_strset_get(&c->seen, c->norm);
		char parent_copy[64];
		snprintf(parent_copy, sizeof(parent_copy), "%s", c->norm);
		*slash = '/';
		if (parent == 'l')
			return ib_error_set(err, 0, "unsafe entry '%s': below a symlink ('%s'...)", norm, parent_copy);
		if (parent != 'd')
			return ib_error_set(err, 0, "unsafe entry '%s': its folder is not an earlier folder entry", norm);
	}
	if (e->type == IB_ENTRY_HARDLINK) {
		free(c->link_norm);
		c->link_norm = e->link ? normalise(e->link, &why) : NULL;
		if (c->link_norm == NULL)
			return ib_error_set(err, 0, "unsafe entry '%s': hard link to '%s' (%s)", norm, e->link ? e->link : "",
					    e->link ? why : "no target");
		if (ib_strset_get(&c->seen, c->link_norm) != 'f')
			return ib_error_set(err, 0,
					    "unsafe entry '%s': hard link to '%s', which is not an earlier file of the image",
					    norm, c->link_norm);
		if (e->size != 0)
			return ib_error_set(err, 0, "unsafe entry '%s': hard link with content", norm);
	}
	if ((e->type == IB_ENTRY_DIR || e->type == IB_ENTRY_SYMLINK) && e->size != 0)
		return ib_error_set(err, 0, "entry '%s': a folder or symlink with content", norm);
	unsigned char kind = e->type == IB_ENTRY_DIR	   ? 'd'
			     : e->type == IB_ENTRY_FILE	   ? 'f'
			     : e->type == IB_ENTRY_SYMLINK ? 'l'
							   : 'h';
	ib_strset_put(&c->seen, norm, kind);
	if (is_listing) {
		c->listing_seen = true;
	} else {
		free(c->prev);
		c->prev = xstrdup(norm);
	}
	if (norm_out)
		*norm_out = norm;
	return 0;
}

/* ---------------- the stream ---------------- */

struct seen_entry {
	char *path;
	char type;
	unsigned mode;
	int64_t uid, gid, size;
	char sha256[IB_SHA256_HEX_LEN + 1];
	ssize_t extent; /* >= 0: its digest comes from the scan's thread */
	char *target;
};

struct state {
	struct ib_verify_report *rep;
	const struct ib_verify_opts *opts; /* NULL: nothing to hand out */
	struct ib_hash_scan *scan;	   /* NULL: every digest is made here */
	struct seen_entry *v;
	size_t n, cap;
	struct ib_buf listing;
	bool have_listing;
	struct ib_buf facts;
	bool have_facts;
	size_t entry_failures;
};

static void fail(struct ib_verify_report *rep, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct ib_verify_report *rep, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	/* Failures name entries of the image: one line each, no control characters. */
	ib_strv_push_owned(&rep->failures, ib_escape(s, false));
	free(s);
}

/* Per-entry failures: the first 20 are named, the rest counted. */
static void entry_fail(struct state *st, const char *msg)
{
	if (st->entry_failures++ < 20)
		fail(st->rep, "%s", msg);
}

#define LISTING_MAX ((size_t)512 << 20)
#define FACTS_MAX ((size_t)1 << 20)

static void state_free(struct state *st)
{
	for (size_t i = 0; i < st->n; i++) {
		free(st->v[i].path);
		free(st->v[i].target);
	}
	free(st->v);
	ib_buf_free(&st->listing);
	ib_buf_free(&st->facts);
}

/* The listing's view of a safe entry (its content digest comes later). */
static void seen_from(struct seen_entry *se, const struct ib_tar_entry *e, const char *norm)
{
	se->path = xstrdup(norm);
	se->type = e->type == IB_ENTRY_FILE ? 'f' : e->type == IB_ENTRY_DIR ? 'd' : e->type == IB_ENTRY_SYMLINK ? 'l' : 'h';
	se->mode = (unsigned)e->mode;
	se->uid = e->uid;
	se->gid = e->gid;
	se->size = e->type == IB_ENTRY_FILE ? e->size : 0;
	se->extent = -1;
	if (e->type == IB_ENTRY_HARDLINK) {
		const char *why;
		se->target = normalise(e->link, &why);
	} else if (e->type == IB_ENTRY_SYMLINK) {
		se->target = xstrdup(e->link);
	}
}

/* Unpacking: nothing unsafe reaches the disk, and nothing after it. Returns -1
 * to stop reading, else 0 with *WRITING saying whether the entry goes to disk. */
static int unpack_begin(struct state *st, struct ib_archive_reader *r, const struct ib_tar_entry *e, const char *norm, bool safe,
			bool *writing)
{
	ib_error_t err = NULL;
	*writing = false;
	if (!safe)
		return -1;
	if (strcmp(norm, ".") == 0 && st->opts->root) {
		*st->opts->root = *e;
		st->opts->root->path = st->opts->root->link = NULL;
		st->opts->root->xattrs = NULL;
		st->opts->root->n_xattrs = 0;
	}
	int b = ib_archive_disk_begin(st->opts->disk, r, &err);
	if (b < 0) {
		fail(st->rep, "unpack: %s", err->msg);
		ib_error_free(&err);
		return -1;
	}
	*writing = b > 0;
	return 0;
}

/* One chunk of a file's content. Where it lies in the scan's blocks, the
 * scan's thread hashes the whole content as one extent of the image, in the
 * pass that hashes the image (FIRST announces it); every later chunk must then
 * be the very next bytes of the image (where it lies, or, for a copy
 * libarchive made, byte for byte), so that what is written and handed out is
 * what that thread hashed. The chunk is hashed here instead when it is
 * anywhere else (a zstd image's decompressed bytes), and when that thread is
 * behind: this one would only wait for it (with large files, verify is bound
 * by that thread; unpack, by this one's writes). */
static int hash_chunk(struct state *st, const struct ib_tar_entry *e, const void *buf, size_t len, bool first,
		      struct ib_sha256 **sha, ssize_t *extent, uint64_t *at)
{
	uint64_t off = 0;
	if (first && st->scan && !ib_hash_scan_behind(st->scan) && ib_hash_scan_locate(st->scan, buf, len, &off)) {
		*extent = ib_hash_scan_extent(st->scan, off, (uint64_t)e->size);
		if (*extent >= 0) {
			*at = off + len;
			return 0;
		}
	}
	if (*extent >= 0) {
		bool next = ib_hash_scan_locate(st->scan, buf, len, &off) ? off == *at : ib_hash_scan_same(st->scan, *at, buf, len);
		if (!next) {
			cleanup_free char *msg = xasprintf("'%s': its content is not stored in one piece", e->path);
			entry_fail(st, msg);
			return -1;
		}
		*at += len;
		return 0;
	}
	if (*sha == NULL)
		*sha = ib_sha256_new();
	ib_sha256_update(*sha, buf, len);
	return 0;
}

/* A file's content: hashed into SE, handed to the caller's take(), kept when
 * it is the listing or the facts, written to disk when WRITING, or copied to
 * QUEUED (the writer thread's room for it; *COMPLETE says whether it is all
 * there). Returns -1 to stop reading (the image is cut short, or the disk
 * failed). */
static int read_content(struct state *st, struct ib_archive_reader *r, const struct ib_tar_entry *e, const char *norm, bool safe,
			bool is_listing, bool is_facts, bool writing, uint8_t *queued, bool *complete, struct seen_entry *se)
{
	ib_error_t err = NULL;
	st->rep->files++;
	cleanup_sha256 struct ib_sha256 *sha = NULL;
	ssize_t extent = -1;
	uint64_t at = 0; /* where in the image the next chunk must be */
	int64_t got = 0;
	bool too_big = false;
	size_t give = safe && st->opts && st->opts->want ? st->opts->want(st->opts->ctx, norm, e->size) : 0;
	for (;;) {
		const void *buf;
		size_t len;
		int d = ib_archive_reader_data(r, &buf, &len, &err);
		if (d < 0) {
			fail(st->rep, "image is truncated or corrupt at '%s': %s", e->path, err->msg);
			ib_error_free(&err);
			return -1;
		}
		if (d == 0)
			break;
		if (hash_chunk(st, e, buf, len, got == 0, &sha, &extent, &at) < 0)
			return -1;
		if (queued && got + (int64_t)len <= e->size)
			memcpy(queued + got, buf, len);
		if (writing && ib_archive_disk_data(st->opts->disk, r, buf, len, &err) < 0) {
			fail(st->rep, "unpack: %s", err->msg);
			ib_error_free(&err);
			return -1;
		}
		if (give > 0) {
			size_t n = len < give ? len : give;
			st->opts->take(st->opts->ctx, norm, buf, n);
			give -= n;
		}
		got += (int64_t)len;
		struct ib_buf *keep = is_listing ? &st->listing : is_facts ? &st->facts : NULL;
		size_t max = is_listing ? LISTING_MAX : FACTS_MAX;
		if (keep && !too_big) {
			if (keep->len + len > max) {
				too_big = true;
			} else {
				/* Room for the whole entry at once, not a doubling
				 * series of allocations: the listing, ~1 MB for a
				 * minbase, is read after the image's last block, where
				 * nothing runs beside it. At most 16 MiB ahead of the
				 * bytes, whatever a hostile header claims. */
				if (got == (int64_t)len && e->size <= (int64_t)max)
					ib_buf_reserve(keep, e->size < (16 << 20) ? (size_t)e->size : (size_t)16 << 20);
				ib_buf_add(keep, buf, len);
			}
		}
	}
	st->rep->bytes += (uint64_t)got;
	se->extent = extent;
	if (extent < 0) {
		uint8_t d[IB_SHA256_LEN];
		if (sha == NULL)
			sha = ib_sha256_new();
		ib_sha256_final(sha, d);
		ib_hex(d, sizeof(d), se->sha256);
	}
	if (too_big)
		entry_fail(st, is_listing ? "the listing is too large" : "facts.toml is too large");
	*complete = got == e->size;
	if (got != e->size)
		entry_fail(st, "an entry's content is shorter than its header says");
	return 0;
}

static void seen_add(struct state *st, const struct seen_entry *se)
{
	if (st->n == st->cap) {
		st->cap = st->cap ? st->cap * 2 : 1024;
		st->v = xrealloc(st->v, st->cap * sizeof(*st->v));
	}
	st->v[st->n++] = *se;
}

/* A hard link's target, and the folders' deferred modes and times, need
 * every file the writer thread took on disk first. */
static int drain_writer(struct state *st)
{
	ib_error_t err = NULL;
	if (ib_unpack_writer_drain(st->opts->writer, &err) < 0) {
		fail(st->rep, "unpack: %s", err->msg);
		ib_error_free(&err);
		return -1;
	}
	return 0;
}

/* Parses the archive from SOURCE: every entry checked for safety and hashed.
 * Failures go to st->rep; returns after the end (or the first read error). */
static void read_entries(struct state *st, ib_archive_source_fn source, void *ctx)
{
	ib_error_t err = NULL;
	cleanup_entry_check struct ib_entry_check *chk = ib_entry_check_new();
	struct ib_archive_reader *r = ib_archive_reader_new(source, ctx, &err);
	if (r == NULL) {
		fail(st->rep, "not a readable image: %s", err->msg);
		ib_error_free(&err);
		return;
	}
	struct ib_archive_disk *disk = st->opts ? st->opts->disk : NULL;
	for (;;) {
		struct ib_tar_entry e;
		int rc = ib_archive_reader_next(r, &e, &err);
		if (rc == 0)
			break;
		if (rc < 0) {
			fail(st->rep, "image is truncated or corrupt: %s", err->msg);
			ib_error_free(&err);
			break;
		}
		st->rep->entries++;
		const char *norm = NULL;
		bool safe = ib_entry_check(chk, &e, &norm, &err) == 0;
		if (!safe) {
			entry_fail(st, err->msg);
			ib_error_free(&err);
		}
		bool is_listing = safe && strcmp(norm, "./" IB_META_LISTING) == 0 && e.type == IB_ENTRY_FILE;
		bool is_facts = safe && strcmp(norm, "./" IB_META_FACTS) == 0 && e.type == IB_ENTRY_FILE;
		struct seen_entry se = { 0 };
		if (safe && !is_listing)
			seen_from(&se, &e, norm);
		bool writing = false;
		uint8_t *queued = NULL;
		if (disk && safe && e.type == IB_ENTRY_HARDLINK && drain_writer(st) < 0)
			goto stop;
		if (disk && safe)
			queued = ib_unpack_writer_reserve(st->opts->writer, &e, norm);
		if (disk && queued == NULL && unpack_begin(st, r, &e, norm, safe, &writing) < 0)
			goto stop;
		if (is_listing)
			st->have_listing = true;
		if (is_facts)
			st->have_facts = true;
		bool complete = false;
		if (e.type == IB_ENTRY_FILE) {
			int rc_content = read_content(st, r, &e, norm, safe, is_listing, is_facts, writing, queued, &complete, &se);
			if (queued && rc_content == 0 && complete)
				ib_unpack_writer_commit(st->opts->writer);
			else if (queued)
				ib_unpack_writer_cancel(st->opts->writer);
			if (rc_content < 0)
				goto stop;
		}
		if (writing && ib_archive_disk_end(disk, r, &err) < 0) {
			fail(st->rep, "unpack: %s", err->msg);
			ib_error_free(&err);
			goto stop;
		}
		if (se.path)
			seen_add(st, &se);
		continue;
	stop:
		free(se.path);
		free(se.target);
		break;
	}
	/* Linear for any names, crafted ones included; tests/e2e/attacks-input.sh
	 * reads this line to show it. */
	ib_log_debug("verify: %zu names in the name set, %zu probes past the first slot", chk->seen.n, chk->seen.probes);
	ib_archive_reader_free(r);
}

static const char *type_name(char t)
{
	return t == 'f' ? "file" : t == 'd' ? "folder" : t == 'l' ? "symlink" : "hard link";
}

/* LE's path becomes *PREV, which the next line must sort after. */
static void done_with_line(struct ib_listing_entry *le, char **prev)
{
	free(*prev);
	*prev = le->path;
	le->path = NULL;
	ib_listing_entry_free(le);
}

/* Both sides are sorted by path: a merge names what is missing, extra or different. */
static void compare_listing(struct state *st)
{
	if (!st->have_listing) {
		fail(st->rep, "the image has no ./" IB_META_LISTING);
		return;
	}
	if (st->listing.len < strlen(IB_LISTING_HEADER) ||
	    memcmp(st->listing.s, IB_LISTING_HEADER, strlen(IB_LISTING_HEADER)) != 0) {
		fail(st->rep, "the listing does not start with '%.*s'", (int)strlen(IB_LISTING_HEADER) - 1, IB_LISTING_HEADER);
		return;
	}
	const char *p = st->listing.s + strlen(IB_LISTING_HEADER), *end = st->listing.s + st->listing.len;
	size_t i = 0, lineno = 1;
	char *prev = NULL;
	while (p < end || i < st->n) {
		struct ib_listing_entry le = { 0 };
		bool have_le = false;
		if (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			if (nl == NULL) {
				fail(st->rep, "the listing's last line has no newline");
				break;
			}
			lineno++;
			ib_error_t err = NULL;
			if (ib_listing_parse_line(p, (size_t)(nl - p), &le, &err) < 0) {
				fail(st->rep, "the listing's line %zu is malformed: %s", lineno, err->msg);
				ib_error_free(&err);
				break;
			}
			p = nl + 1;
			if (prev && strcmp(le.path, prev) <= 0) {
				fail(st->rep, "the listing is not sorted or lists '%s' twice", le.path);
				ib_listing_entry_free(&le);
				break;
			}
			have_le = true;
		}
		/* Entries before this listing line are extra. */
		while (i < st->n && (!have_le || strcmp(st->v[i].path, le.path) < 0)) {
			char msg[512];
			snprintf(msg, sizeof(msg), "'%s' is in the image but not in the listing", st->v[i].path);
			entry_fail(st, msg);
			i++;
		}
		if (!have_le)
			break;
		if (i == st->n || strcmp(st->v[i].path, le.path) > 0) {
			char msg[512];
			snprintf(msg, sizeof(msg), "'%s' is in the listing but missing from the image", le.path);
			entry_fail(st, msg);
			done_with_line(&le, &prev);
			continue;
		}
		struct seen_entry *s = &st->v[i++];
		char msg[768];
		msg[0] = '\0';
		if (s->type != le.type)
			snprintf(msg, sizeof(msg), "'%s' is a %s, the listing says %s", s->path, type_name(s->type),
				 type_name(le.type));
		else if (s->type == 'f' && strcmp(s->sha256, le.sha256) != 0)
			snprintf(msg, sizeof(msg), "'%s': content differs from the listing (sha256 %.16s..., listed %.16s...)",
				 s->path, s->sha256, le.sha256);
		else if (s->size != le.size)
			snprintf(msg, sizeof(msg), "'%s': size %lld, listed %lld", s->path, (long long)s->size, (long long)le.size);
		else if (s->mode != le.mode)
			snprintf(msg, sizeof(msg), "'%s': mode %04o, listed %04o", s->path, s->mode, le.mode);
		else if (s->uid != le.uid || s->gid != le.gid)
			snprintf(msg, sizeof(msg), "'%s': owner %lld:%lld, listed %lld:%lld", s->path, (long long)s->uid,
				 (long long)s->gid, (long long)le.uid, (long long)le.gid);
		else if ((s->target == NULL) != (le.target == NULL) || (s->target && strcmp(s->target, le.target) != 0))
			snprintf(msg, sizeof(msg), "'%s': link target differs from the listing", s->path);
		if (msg[0])
			entry_fail(st, msg);
		done_with_line(&le, &prev);
	}
	free(prev);
}

static char *toml_str(const struct ib_toml_value *t, const char *key)
{
	const struct ib_toml_value *v = ib_toml_get(t, key);
	if (v == NULL)
		return NULL;
	if (v->type == IB_TOML_STRING)
		return xstrndup(v->u.str, strlen(v->u.str));
	if (v->type == IB_TOML_INTEGER)
		return xasprintf("%lld", (long long)v->u.integer);
	if (v->type == IB_TOML_ARRAY) {
		char *out = xstrdup("");
		for (size_t i = 0; i < v->len; i++) {
			const struct ib_toml_value *it = v->items[i];
			if (it->type != IB_TOML_STRING)
				continue;
			char *next = xasprintf("%s%s%s", out, *out ? " " : "", it->u.str);
			free(out);
			out = next;
		}
		return out;
	}
	return NULL;
}

static void read_facts(struct state *st)
{
	if (!st->have_facts) {
		fail(st->rep, "the image has no ./" IB_META_FACTS);
		return;
	}
	ib_error_t err = NULL;
	struct ib_toml_value *t = ib_toml_parse(st->facts.s ? st->facts.s : "", st->facts.len, "facts.toml", &err);
	if (t == NULL) {
		fail(st->rep, "facts.toml does not parse: %s", err->msg);
		ib_error_free(&err);
		return;
	}
	st->rep->name = toml_str(t, "name");
	st->rep->builder = toml_str(t, "builder");
	st->rep->archs = toml_str(t, "archs");
	st->rep->min_driver = toml_str(t, "min_driver");
	/* The pins are data (compat.toml): every fact but the ones printed apart
	 * and the layer keys, whatever its name. */
	for (size_t i = 0; i < t->len; i++) {
		const char *k = t->keys[i];
		if (t->items[i]->type != IB_TOML_STRING || ib_facts_key_reserved(k) || strcmp(k, "min_driver") == 0 ||
		    strcmp(k, "base_key") == 0 || strncmp(k, "stage_key_", 10) == 0)
			continue;
		ib_strv_push_owned(&st->rep->plain, xasprintf("%s = %s", k, t->items[i]->u.str));
	}
	ib_toml_free(t);
	/* What run --gpu and --host check, read the one way imgmeta.c reads it. */
	if (ib_facts_parse(st->facts.s ? st->facts.s : "", st->facts.len, "facts.toml", &st->rep->facts, &err) < 0)
		ib_error_free(&err);
}

void ib_verify_report_free(struct ib_verify_report *r)
{
	if (r == NULL)
		return;
	free(r->name), free(r->builder), free(r->archs), free(r->min_driver);
	ib_strv_free(&r->plain);
	free(r->signer);
	ib_facts_free(&r->facts);
	ib_strv_free(&r->failures);
	memset(r, 0, sizeof(*r));
}

static int verdict(struct ib_verify_report *rep, const char *what, ib_error_t *err)
{
	if (rep->failures.n == 0)
		return 0;
	return ib_error_set(err, 0, "verify '%s': %s%s", what, rep->failures.v[0],
			    rep->failures.n > 1 ? " (and more, see the report)" : "");
}

/* ---------------- memory source (fuzzer) ---------------- */

struct mem_source {
	const uint8_t *data;
	size_t len, off;
};

static ssize_t mem_read(void *ctx, const void **buf)
{
	struct mem_source *m = ctx;
	size_t n = m->len - m->off;
	if (n > 65536)
		n = 65536;
	*buf = m->data + m->off;
	m->off += n;
	return (ssize_t)n;
}

int ib_verify_memory(const void *data, size_t len, struct ib_verify_report *rep_out, ib_error_t *err)
{
	struct ib_verify_report local = { 0 };
	struct ib_verify_report *rep = rep_out ? rep_out : &local;
	memset(rep, 0, sizeof(*rep));
	struct state st = { .rep = rep };
	struct mem_source m = { data, len, 0 };
	read_entries(&st, mem_read, &m);
	compare_listing(&st);
	read_facts(&st);
	if (st.entry_failures > 20)
		fail(rep, "... and %zu more entry failures", st.entry_failures - 20);
	state_free(&st);
	int rc = verdict(rep, "memory", err);
	ib_verify_report_free(&local);
	return rc;
}

/* ---------------- file source: one read, hashed on the scan's thread ---------------- */

/* This thread reads each block (the copy) and parses it; the scan's thread
 * hashes the image and every file's content in it in one pass (hash.h), so
 * the image's digest, one sequential SHA-256, is all that thread does beyond
 * the content lanes beside it. libarchive points into the blocks (no copy
 * for content), and both digests are of the same bytes, read once. */
static ssize_t file_read(void *ctx, const void **buf)
{
	return ib_hash_scan_next(ctx, buf);
}

/* After the scan finished: the digests its thread made. */
static void take_scan_digests(struct state *st)
{
	for (size_t i = 0; i < st->n; i++)
		if (st->v[i].extent >= 0)
			ib_hex(ib_hash_scan_digest(st->scan, (size_t)st->v[i].extent), IB_SHA256_LEN, st->v[i].sha256);
}

/* After the last entry: the image's digest (whatever libarchive left unread,
 * after an error, still counts: _finish reads it), the listing, the facts. */
static void check_what_was_read(struct state *st, const char *image)
{
	uint8_t digest[IB_SHA256_LEN];
	ib_error_t err = NULL;
	if (ib_hash_scan_finish(st->scan, digest, NULL, &err) < 0) {
		fail(st->rep, "read '%s': %s", image, err->msg);
		ib_error_free(&err);
	} else {
		take_scan_digests(st);
	}
	ib_hex(digest, sizeof(digest), st->rep->sha256);
	compare_listing(st);
	read_facts(st);
	if (st->entry_failures > 20)
		fail(st->rep, "... and %zu more entry failures", st->entry_failures - 20);
}

int ib_verify_read_sha256_file(const char *image, char hex[IB_SHA256_HEX_LEN + 1], ib_error_t *err)
{
	cleanup_free char *path = xasprintf("%s.sha256", image);
	size_t len;
	cleanup_free char *text = ib_read_file_max(path, 64 * 1024, &len, err);
	if (text == NULL)
		return -1;
	if (len < IB_SHA256_HEX_LEN + 3 || text[IB_SHA256_HEX_LEN] != ' ')
		return ib_error_set(err, 0, "'%s' is not in sha256sum format", path);
	for (int i = 0; i < IB_SHA256_HEX_LEN; i++)
		if (!strchr("0123456789abcdef", text[i]) || text[i] == '\0')
			return ib_error_set(err, 0, "'%s' is not in sha256sum format", path);
	memcpy(hex, text, IB_SHA256_HEX_LEN);
	hex[IB_SHA256_HEX_LEN] = '\0';
	return 0;
}

static void print_field(const char *label, const char *value)
{
	cleanup_free char *shown = ib_escape(value, false);
	printf("%s%s\n", label, shown);
}

/* Every value but the digest comes from the image: printed escaped, so that
 * a name or fact cannot draw a line of its own (a fake "verdict: OK"). */
static void print_report(const char *image, const struct ib_verify_report *rep, const char *sig_note)
{
	print_field("image:     ", image);
	printf("sha256:    %s\n", rep->sha256);
	print_field("name:      ", rep->name ? rep->name : "?");
	print_field("builder:   ", rep->builder ? rep->builder : "?");
	print_field("archs:     ", rep->archs ? rep->archs : "-");
	print_field("min driver: ", rep->min_driver ? rep->min_driver : "-");
	for (size_t i = 0; i < rep->plain.n; i++)
		print_field("fact:      ", rep->plain.v[i]);
	print_field("signer:    ", sig_note);
	printf("entries:   %llu (%llu files, %.1f MiB)\n", (unsigned long long)rep->entries, (unsigned long long)rep->files,
	       (double)rep->bytes / (1024.0 * 1024.0));
	for (size_t i = 0; i < rep->failures.n; i++)
		print_field("FAIL: ", rep->failures.v[i]);
	printf("verdict:   %s\n", rep->failures.n ? "FAILED" : "OK");
	fflush(stdout);
}

/* --host: can this host run the image? The same preflight as run --gpu
 * (driver.h), on the same facts. */
static void host_check(struct ib_verify_report *rep, bool quiet)
{
	struct ib_driver d = { 0 };
	ib_error_t e = NULL;
	if (ib_driver_discover(&d, &e) < 0 || ib_driver_preflight(&d, &rep->facts, &e) < 0) {
		fail(rep, "host: %s", e->msg);
		ib_error_free(&e);
	}
	if (!quiet && d.found)
		printf("host:      driver %s%s\n", d.version ? d.version : "?",
		       rep->facts.min_driver ? " (checked against min driver)" : "");
	ib_driver_free(&d);
}

int ib_verify(const char *image, const struct ib_verify_opts *opts, struct ib_verify_report *rep_out, ib_error_t *err)
{
	static const struct ib_verify_opts defaults = { 0 };
	if (opts == NULL)
		opts = &defaults;
	struct ib_verify_report local = { 0 };
	struct ib_verify_report *rep = rep_out ? rep_out : &local;
	memset(rep, 0, sizeof(*rep));

	cleanup_fd int fd = open(image, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return ib_error_errno(err, errno, "verify: open '%s'", image);
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		return ib_error_set(err, 0, "verify: '%s' is not a regular file", image);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	ib_error_t e2 = NULL;

	/* One read of the image in 256 KiB blocks, parsed here, hashed there. */
	cleanup_hash_scan struct ib_hash_scan *scan =
		ib_hash_scan_new(fd, (uint64_t)sb.st_size, 256 << 10, 16, opts->raw, opts->raw_ctx);
	struct state st = { .rep = rep, .opts = opts, .scan = scan };
	/* Unpacking: libarchive writes relative to the working folder. The image
	 * is open already, and its .sha256 and .sig are read after returning. */
	cleanup_fd int cwd = -1;
	if (opts->disk) {
		cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (cwd < 0 || fchdir(opts->into) < 0) {
			int e = errno;
			ib_verify_report_free(&local);
			return ib_error_errno(err, e, "unpack: enter the folder to unpack into");
		}
		read_entries(&st, file_read, scan);
		/* While the writer thread still makes the last queued files. */
		check_what_was_read(&st, image);
		if (st.rep->failures.n == 0)
			drain_writer(&st);
		else
			ib_unpack_writer_drain(opts->writer, NULL);
		/* Always, and here inside INTO, even after a failure: libarchive sets
		 * the folders' deferred modes and times by relative name, and left
		 * for later it would do so when the writer is freed, in whatever
		 * folder the process is then (the user's: a truncated image would
		 * chmod the user's ./etc). */
		if (ib_archive_disk_finish(opts->disk, &e2) < 0) {
			if (st.rep->failures.n == 0)
				fail(rep, "unpack: %s", e2->msg);
			ib_error_free(&e2);
		}
		if (fchdir(cwd) < 0) {
			int e = errno;
			state_free(&st);
			ib_verify_report_free(&local);
			return ib_error_errno(err, e, "unpack: return to the working folder");
		}
	} else {
		read_entries(&st, file_read, scan);
		check_what_was_read(&st, image);
	}
	state_free(&st);

	/* The outer digest. */
	char want[IB_SHA256_HEX_LEN + 1];
	if (ib_verify_read_sha256_file(image, want, &e2) < 0) {
		fail(rep, "outer sha256: %s", e2->msg);
		ib_error_free(&e2);
	} else if (strcmp(want, rep->sha256) != 0) {
		fail(rep, "outer sha256: the image's digest %s does not match %s.sha256 (%s)", rep->sha256, image, want);
	}

	/* The signature, over "SHA256 (NAME) = HEX" of the digest just computed. */
	cleanup_free char *sig_path = xasprintf("%s.sig", image);
	cleanup_free char *sig_note = NULL;
	if (!ib_path_exists(sig_path)) {
		if (opts->allow_unsigned) {
			sig_note = xstrdup("none (unsigned image allowed by --allow-unsigned)");
		} else {
			sig_note = xstrdup("none");
			fail(rep, "signature: the image is not signed (%s is missing; --allow-unsigned accepts that)", sig_path);
		}
	} else {
		struct ib_pubkey *keys = NULL;
		size_t nkeys = 0;
		if (ib_sign_trusted_keys(opts->key, &keys, &nkeys, &e2) < 0) {
			fail(rep, "signature: %s", e2->msg);
			ib_error_free(&e2);
			sig_note = xstrdup("? (no key)");
		} else {
			const struct ib_pubkey *signer = NULL;
			if (ib_sign_verify_image(sig_path, rep->sha256, keys, nkeys, &signer, &e2) < 0) {
				fail(rep, "signature: %s", e2->msg);
				ib_error_free(&e2);
				sig_note = xstrdup("NOT VERIFIED");
			} else {
				char kn[2 * IB_SIGN_KEYNUM_LEN + 1];
				ib_hex(signer->keynum, IB_SIGN_KEYNUM_LEN, kn);
				rep->signer = xstrdup(signer->path);
				memcpy(rep->signer_keynum, kn, sizeof(rep->signer_keynum));
				sig_note = xasprintf("%s (keynum %s)", signer->path, kn);
			}
		}
		ib_pubkey_list_free(keys, nkeys);
	}
	if (opts->host)
		host_check(rep, opts->quiet);
	if (!opts->quiet)
		print_report(image, rep, sig_note);
	int rc = verdict(rep, image, err);
	ib_verify_report_free(&local);
	return rc;
}
