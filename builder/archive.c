#include "hash.h"
#include "util.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ib_archive.h"

/* libarchive converts names between the locale's charset and pax's UTF-8. The
 * process locale is whatever main() left (C: no non-ASCII name converts), so
 * every call into libarchive runs under a thread-local C.UTF-8 locale
 * (uselocale): names are bytes in UTF-8, the output does not depend on LANG,
 * and a name that is not UTF-8 is refused by name rather than mangled.
 * (hdrcharset=BINARY would avoid conversion too, at the price of a pax header
 * on every entry, which GNU tar warns about.) */
static locale_t utf8_loc = (locale_t)0;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void init_utf8_locale(void)
{
	utf8_loc = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
}

static locale_t enter_utf8(void)
{
	pthread_once(&utf8_once, init_utf8_locale);
	return uselocale(utf8_loc ? utf8_loc : LC_GLOBAL_LOCALE);
}

static void leave_utf8(locale_t *old)
{
	uselocale(*old);
}
#define IN_UTF8_LOCALE __attribute__((cleanup(leave_utf8), unused)) locale_t saved_locale_ = enter_utf8()

/* libarchive's message, or strerror of its errno, as an ib_error. */
static int archive_fail(ib_error_t *err, struct archive *a, const char *what)
{
	const char *msg = archive_error_string(a);
	int no = archive_errno(a);
	if (msg == NULL)
		msg = no > 0 ? strerror(no) : "unknown libarchive error";
	return ib_error_set(err, no > 0 ? no : 0, "%s: %s", what, msg);
}

/* ---------------- writer ---------------- */

struct ib_archive_writer {
	struct archive *a;
	struct archive_entry *e;
	ib_archive_sink_fn sink;
	void *ctx;
	ib_error_t sink_err; /* the sink's own error, kept over libarchive's "write failed" */
	bool opened;
	bool compressed;
	bool skipping; /* inside _skip: the bytes are placeholders, not content */
};

static la_ssize_t writer_cb(struct archive *a, void *ctx, const void *buf, size_t len)
{
	struct ib_archive_writer *w = ctx;
	if (w->sink_err)
		return -1;
	if (w->sink(w->ctx, w->skipping ? NULL : buf, len, &w->sink_err) < 0) {
		archive_set_error(a, w->sink_err ? w->sink_err->status : EIO, "%s",
				  w->sink_err ? w->sink_err->msg : "write failed");
		return -1;
	}
	return (la_ssize_t)len;
}

static int writer_fail(struct ib_archive_writer *w, ib_error_t *err, const char *what)
{
	if (w->sink_err) {
		*err = steal_pointer(&w->sink_err);
		return ib_error_wrap(err, "%s", what);
	}
	return archive_fail(err, w->a, what);
}

static struct ib_archive_writer *writer_new(enum ib_compression compression, int threads, int level, bool raw,
					    ib_archive_sink_fn sink, void *ctx, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	struct ib_archive_writer *w = xcalloc(1, sizeof(*w));
	w->sink = sink;
	w->ctx = ctx;
	w->compressed = compression != IB_COMPRESS_NONE;
	w->a = archive_write_new();
	w->e = archive_entry_new();
	if (w->a == NULL || w->e == NULL)
		ib_die_oom();
	/* Restricted pax: a plain ustar header unless a field does not fit
	 * (long path, xattrs), so GNU tar, bsdtar and busybox all read it. */
	if ((raw ? archive_write_set_format_raw(w->a) : archive_write_set_format_pax_restricted(w->a)) != ARCHIVE_OK)
		goto fail_archive;
	if (compression == IB_COMPRESS_ZSTD) {
		if (archive_write_add_filter_zstd(w->a) != ARCHIVE_OK)
			goto fail_archive;
		char buf[32];
		snprintf(buf, sizeof(buf), "%d", level > 0 ? level : 3);
		if (archive_write_set_filter_option(w->a, "zstd", "compression-level", buf) < ARCHIVE_OK)
			goto fail_archive;
		snprintf(buf, sizeof(buf), "%d", threads > 0 ? threads : ib_hash_ncpus());
		/* zstd's worker threads compress while this thread feeds it. The
		 * output does not depend on the thread count (zstd's MT mode cuts
		 * jobs by size, not by timing), so the image stays reproducible. */
		if (archive_write_set_filter_option(w->a, "zstd", "threads", buf) < ARCHIVE_OK)
			goto fail_archive;
	} else if (archive_write_add_filter_none(w->a) != ARCHIVE_OK) {
		goto fail_archive;
	}
	/* No 10 KiB blocking: the sink does its own buffering (1 MiB blocks to a
	 * writer thread), and a tar needs no padding to a block multiple. */
	if (archive_write_set_bytes_per_block(w->a, 0) != ARCHIVE_OK)
		goto fail_archive;
	if (archive_write_open(w->a, w, NULL, writer_cb, NULL) != ARCHIVE_OK) {
		writer_fail(w, err, "start archive");
		ib_archive_writer_free(w);
		return NULL;
	}
	w->opened = true;
	if (raw) {
		/* The raw format takes one regular-file entry, whose data is the stream. */
		archive_entry_set_filetype(w->e, AE_IFREG);
		if (archive_write_header(w->a, w->e) != ARCHIVE_OK) {
			writer_fail(w, err, "start compressor");
			ib_archive_writer_free(w);
			return NULL;
		}
	}
	return w;

fail_archive:
	archive_fail(err, w->a, "set up archive writer");
	ib_archive_writer_free(w);
	return NULL;
}

struct ib_archive_writer *ib_archive_writer_new(enum ib_compression compression, int threads, int level, ib_archive_sink_fn sink,
						void *ctx, ib_error_t *err)
{
	return writer_new(compression, threads, level, false, sink, ctx, err);
}

struct ib_archive_writer *ib_archive_compressor_new(enum ib_compression compression, int threads, int level,
						    ib_archive_sink_fn sink, void *ctx, ib_error_t *err)
{
	return writer_new(compression, threads, level, true, sink, ctx, err);
}

int ib_archive_writer_add(struct ib_archive_writer *w, const struct ib_tar_entry *in, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	struct archive_entry *e = w->e;
	archive_entry_clear(e);
	archive_entry_copy_pathname(e, in->path);
	switch (in->type) {
	case IB_ENTRY_FILE:
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_size(e, in->size);
		break;
	case IB_ENTRY_DIR:
		archive_entry_set_filetype(e, AE_IFDIR);
		archive_entry_set_size(e, 0);
		break;
	case IB_ENTRY_SYMLINK:
		archive_entry_set_filetype(e, AE_IFLNK);
		archive_entry_copy_symlink(e, in->link);
		archive_entry_set_size(e, 0);
		break;
	case IB_ENTRY_HARDLINK:
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_copy_hardlink(e, in->link);
		archive_entry_set_size(e, 0);
		break;
	case IB_ENTRY_OTHER: return ib_error_set(err, 0, "'%s': only files, folders and links are packed", in->path);
	}
	archive_entry_set_perm(e, in->mode & 07777);
	archive_entry_set_uid(e, in->uid);
	archive_entry_set_gid(e, in->gid);
	archive_entry_set_mtime(e, in->mtime, 0);
	for (size_t i = 0; i < in->n_xattrs; i++)
		archive_entry_xattr_add_entry(e, in->xattrs[i].name, in->xattrs[i].value, in->xattrs[i].len);
	if (archive_write_header(w->a, e) != ARCHIVE_OK)
		return writer_fail(w, err, in->path);
	return 0;
}

int ib_archive_writer_data(struct ib_archive_writer *w, const void *buf, size_t len, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	const char *p = buf;
	while (len > 0) {
		la_ssize_t n = archive_write_data(w->a, p, len);
		if (n <= 0)
			return writer_fail(w, err, "write archive data");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* With no filter and no blocking (bytes_per_block 0), libarchive hands each
 * archive_write_data() buffer straight to the client callback
 * (archive_write.c, _archive_write_client_write), one call per buffer; the
 * pax writer only counts it against the entry's size. So the callback can
 * tell the sink "LEN bytes of content here" without libarchive or anyone
 * reading them: the entry's accounting and padding stay libarchive's, the
 * header bytes are exactly what a full write would give. */
int ib_archive_writer_skip(struct ib_archive_writer *w, int64_t len, ib_error_t *err)
{
	static const uint8_t zeros[64 << 10];
	if (w->compressed)
		return ib_error_set(err, EINVAL, "write archive data: content can be placed directly only without compression");
	IN_UTF8_LOCALE;
	w->skipping = true;
	while (len > 0) {
		size_t want = (uint64_t)len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		la_ssize_t n = archive_write_data(w->a, zeros, want);
		if (n <= 0) {
			w->skipping = false;
			return writer_fail(w, err, "write archive data");
		}
		len -= n;
	}
	w->skipping = false;
	return 0;
}

int ib_archive_writer_finish(struct ib_archive_writer *w, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	w->opened = false;
	if (archive_write_close(w->a) != ARCHIVE_OK)
		return writer_fail(w, err, "finish archive");
	return 0;
}

void ib_archive_writer_free(struct ib_archive_writer *w)
{
	if (w == NULL)
		return;
	if (w->a) {
		if (w->opened)
			archive_write_fail(w->a); /* no trailer: the output is being thrown away */
		archive_write_free(w->a);
	}
	if (w->e)
		archive_entry_free(w->e);
	ib_error_free(&w->sink_err);
	free(w);
}

void ib_archive_writer_cleanup(struct ib_archive_writer **w)
{
	ib_archive_writer_free(*w);
}

/* ---------------- reader ---------------- */

#define MAX_XATTRS 64

struct ib_archive_reader {
	struct archive *a;
	struct archive_entry *cur; /* owned by a */
	ib_archive_source_fn source;
	void *ctx;
	int64_t expect_offset;
	struct ib_xattr xattrs[MAX_XATTRS];
};

static la_ssize_t reader_cb(struct archive *a, void *ctx, const void **buf)
{
	struct ib_archive_reader *r = ctx;
	ssize_t n = r->source(r->ctx, buf);
	if (n < 0) {
		archive_set_error(a, errno ? errno : EIO, "read image: %s", strerror(errno ? errno : EIO));
		return -1;
	}
	return n;
}

struct ib_archive_reader *ib_archive_reader_new(ib_archive_source_fn source, void *ctx, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	struct ib_archive_reader *r = xcalloc(1, sizeof(*r));
	r->source = source;
	r->ctx = ctx;
	r->a = archive_read_new();
	if (r->a == NULL)
		ib_die_oom();
	/* Only what pack writes: anything else (cpio, zip, xz ...) is refused
	 * rather than parsed, which keeps the attack surface to one format. */
	if (archive_read_support_format_tar(r->a) != ARCHIVE_OK || archive_read_support_filter_none(r->a) != ARCHIVE_OK ||
	    archive_read_support_filter_zstd(r->a) != ARCHIVE_OK) {
		archive_fail(err, r->a, "set up archive reader");
		ib_archive_reader_free(r);
		return NULL;
	}
	/* Names are bytes: no conversion, so verify sees what pack wrote. */
	archive_read_set_format_option(r->a, "tar", "hdrcharset", "BINARY");
	/* Read past end-of-archive blocks: a member appended after them must be
	 * seen (and refused as not listed), not silently ignored. */
	archive_read_set_format_option(r->a, "tar", "read_concatenated_archives", "1");
	if (archive_read_open(r->a, r, NULL, reader_cb, NULL) != ARCHIVE_OK) {
		archive_fail(err, r->a, "open image");
		ib_archive_reader_free(r);
		return NULL;
	}
	return r;
}

struct ib_archive_reader *ib_archive_decompressor_new(ib_archive_source_fn source, void *ctx, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	struct ib_archive_reader *r = xcalloc(1, sizeof(*r));
	r->source = source;
	r->ctx = ctx;
	r->a = archive_read_new();
	if (r->a == NULL)
		ib_die_oom();
	/* The raw "format" is the decompressed stream as one entry. */
	if (archive_read_support_format_raw(r->a) != ARCHIVE_OK || archive_read_support_filter_zstd(r->a) != ARCHIVE_OK) {
		archive_fail(err, r->a, "set up decompressor");
		ib_archive_reader_free(r);
		return NULL;
	}
	struct archive_entry *e = NULL;
	if (archive_read_open(r->a, r, NULL, reader_cb, NULL) != ARCHIVE_OK || archive_read_next_header(r->a, &e) != ARCHIVE_OK) {
		archive_fail(err, r->a, "open compressed stream");
		ib_archive_reader_free(r);
		return NULL;
	}
	r->cur = e;
	return r;
}

int ib_archive_reader_next(struct ib_archive_reader *r, struct ib_tar_entry *out, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	struct archive_entry *e = NULL;
	int rc = archive_read_next_header(r->a, &e);
	if (rc == ARCHIVE_EOF)
		return 0;
	if (rc != ARCHIVE_OK)
		return archive_fail(err, r->a, "read entry header");
	if (archive_format(r->a) != ARCHIVE_FORMAT_TAR_PAX_RESTRICTED &&
	    archive_format(r->a) != ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE && archive_format(r->a) != ARCHIVE_FORMAT_TAR_USTAR &&
	    archive_format(r->a) != ARCHIVE_FORMAT_TAR && archive_format(r->a) != ARCHIVE_FORMAT_TAR_GNUTAR)
		return ib_error_set(err, 0, "not a tar archive (%s)", archive_format_name(r->a));
	r->cur = e;
	r->expect_offset = 0;
	memset(out, 0, sizeof(*out));
	out->path = archive_entry_pathname(e);
	if (out->path == NULL)
		return ib_error_set(err, 0, "entry without a name");
	mode_t ft = archive_entry_filetype(e);
	out->filetype = ft;
	out->link = NULL;
	if (archive_entry_hardlink(e)) {
		out->type = IB_ENTRY_HARDLINK;
		out->link = archive_entry_hardlink(e);
	} else if (ft == AE_IFREG) {
		out->type = IB_ENTRY_FILE;
	} else if (ft == AE_IFDIR) {
		out->type = IB_ENTRY_DIR;
	} else if (ft == AE_IFLNK) {
		out->type = IB_ENTRY_SYMLINK;
		out->link = archive_entry_symlink(e);
		if (out->link == NULL)
			out->link = "";
	} else {
		out->type = IB_ENTRY_OTHER;
	}
	out->mode = archive_entry_perm(e) & 07777;
	out->uid = archive_entry_uid(e);
	out->gid = archive_entry_gid(e);
	out->size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
	out->mtime = archive_entry_mtime(e);
	/* An empty ustar field reads back as "", not NULL. */
	const char *uname = archive_entry_uname(e), *gname = archive_entry_gname(e);
	out->has_names = (uname && *uname) || (gname && *gname);
	size_t n = 0;
	archive_entry_xattr_reset(e);
	const char *name;
	const void *value;
	size_t len;
	while (archive_entry_xattr_next(e, &name, &value, &len) == ARCHIVE_OK) {
		/* libarchive's pax writer stores each attribute twice (SCHILY.xattr.
		 * and LIBARCHIVE.xattr.: archive_write_set_format_pax.c sets
		 * WRITE_LIBARCHIVE_XATTR | WRITE_SCHILY_XATTR) and its reader gives
		 * back both (tests/unit/archive_test.c, test_many_xattrs): report a
		 * name once, or a file with more than MAX_XATTRS / 2 of them would
		 * pack and then fail to read. */
		bool seen = false;
		for (size_t i = 0; i < n && !seen; i++)
			seen = strcmp(r->xattrs[i].name, name) == 0;
		if (seen)
			continue;
		if (n == MAX_XATTRS)
			return ib_error_set(err, 0, "'%s': more than %d extended attributes", out->path, MAX_XATTRS);
		r->xattrs[n++] = (struct ib_xattr){ name, value, len };
	}
	out->xattrs = r->xattrs;
	out->n_xattrs = n;
	return 1;
}

int ib_archive_reader_data(struct ib_archive_reader *r, const void **buf, size_t *len, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	la_int64_t offset = 0;
	int rc = archive_read_data_block(r->a, buf, len, &offset);
	if (rc == ARCHIVE_EOF)
		return 0;
	if (rc != ARCHIVE_OK)
		return archive_fail(err, r->a, "read entry data");
	if (offset != r->expect_offset)
		return ib_error_set(err, 0, "sparse entry (a hole at offset %lld)", (long long)r->expect_offset);
	r->expect_offset += (int64_t)*len;
	return 1;
}

const char *ib_archive_reader_filter(struct ib_archive_reader *r)
{
	for (int i = 0; i < archive_filter_count(r->a); i++)
		if (archive_filter_code(r->a, i) == ARCHIVE_FILTER_ZSTD)
			return "zstd";
	return "none";
}

void ib_archive_reader_free(struct ib_archive_reader *r)
{
	if (r == NULL)
		return;
	if (r->a)
		archive_read_free(r->a);
	free(r);
}

void ib_archive_reader_cleanup(struct ib_archive_reader **r)
{
	ib_archive_reader_free(*r);
}

/* ---------------- disk ---------------- */

struct ib_archive_disk {
	struct archive *a;
};

struct ib_archive_disk *ib_archive_disk_new(bool keep_owners, bool paths_checked, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	struct ib_archive_disk *d = xcalloc(1, sizeof(*d));
	d->a = archive_write_disk_new();
	if (d->a == NULL)
		ib_die_oom();
	int flags = ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_PERM |
		    ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_NO_OVERWRITE;
	/* SECURE_SYMLINKS lstats and opens every folder of every entry's path
	 * (6.7 openat and 5.7 fstatat per entry on a minbase image: 108,000
	 * syscalls of an unpack's 125,000). Where the caller already refused
	 * every entry below a symlink and every entry whose folder is not an
	 * earlier folder entry (ib_entry_check), and extracts into a fresh
	 * folder of its own where NO_OVERWRITE keeps a folder from becoming
	 * a symlink, no path can pass through a symlink: the walk finds none. */
	if (!paths_checked)
		flags |= ARCHIVE_EXTRACT_SECURE_SYMLINKS;
	if (keep_owners)
		flags |= ARCHIVE_EXTRACT_OWNER;
	if (archive_write_disk_set_options(d->a, flags) != ARCHIVE_OK) {
		archive_fail(err, d->a, "set up extraction");
		ib_archive_disk_free(d);
		return NULL;
	}
	/* No name lookups: the image stores numeric owners only. */
	return d;
}

int ib_archive_disk_begin(struct ib_archive_disk *d, struct ib_archive_reader *r, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	struct archive_entry *e = r->cur;
	if (e == NULL)
		return ib_error_set(err, 0, "no entry to extract");
	const char *path = archive_entry_pathname(e);
	/* NO_OVERWRITE refuses to touch an existing "./": the root entry only
	 * carries the folder's mode, which the caller sets itself. */
	if (strcmp(path, "./") == 0 || strcmp(path, ".") == 0)
		return 0;
	if (archive_write_header(d->a, e) != ARCHIVE_OK)
		return archive_fail(err, d->a, path);
	return 1;
}

int ib_archive_disk_data(struct ib_archive_disk *d, struct ib_archive_reader *r, const void *buf, size_t len, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	/* ib_archive_reader_data has advanced expect_offset past BUF. */
	if (archive_write_data_block(d->a, buf, len, r->expect_offset - (int64_t)len) != ARCHIVE_OK)
		return archive_fail(err, d->a, archive_entry_pathname(r->cur));
	return 0;
}

int ib_archive_disk_end(struct ib_archive_disk *d, struct ib_archive_reader *r, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	if (archive_write_finish_entry(d->a) != ARCHIVE_OK)
		return archive_fail(err, d->a, archive_entry_pathname(r->cur));
	return 0;
}

int ib_archive_disk_extract(struct ib_archive_disk *d, struct ib_archive_reader *r,
			    void (*on_data)(void *ctx, const void *buf, size_t len), void *ctx, ib_error_t *err)
{
	int rc = ib_archive_disk_begin(d, r, err);
	if (rc <= 0)
		return rc;
	for (;;) {
		const void *buf;
		size_t len;
		int n = ib_archive_reader_data(r, &buf, &len, err);
		if (n < 0)
			return ib_error_wrap(err, "%s", archive_entry_pathname(r->cur));
		if (n == 0)
			break;
		if (on_data)
			on_data(ctx, buf, len);
		if (ib_archive_disk_data(d, r, buf, len, err) < 0)
			return -1;
	}
	return ib_archive_disk_end(d, r, err);
}

int ib_archive_disk_finish(struct ib_archive_disk *d, ib_error_t *err)
{
	IN_UTF8_LOCALE;
	if (archive_write_close(d->a) != ARCHIVE_OK)
		return archive_fail(err, d->a, "finish extraction");
	return 0;
}

void ib_archive_disk_free(struct ib_archive_disk *d)
{
	if (d == NULL)
		return;
	if (d->a)
		archive_write_free(d->a);
	free(d);
}

void ib_archive_disk_cleanup(struct ib_archive_disk **d)
{
	ib_archive_disk_free(*d);
}
