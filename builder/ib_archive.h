#pragma once
/* Named ib_archive.h, not archive.h, so that it cannot shadow libarchive's
 * <archive.h> on the -Ibuilder path (apk-tools prefixes its headers the same
 * way: apk_archive.h). */
/* The only wrapper of libarchive: a pax tar writer, a tar reader and a disk
 * extractor. No libarchive type crosses this header. (After apk-tools'
 * io_archive split: callers see entries, never struct archive.) */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "manifest.h"

enum ib_entry_type {
	IB_ENTRY_FILE,
	IB_ENTRY_DIR,
	IB_ENTRY_SYMLINK,
	IB_ENTRY_HARDLINK,
	IB_ENTRY_OTHER, /* device, fifo, socket: never written by pack, refused by verify */
};

struct ib_xattr {
	const char *name;
	const void *value;
	size_t len;
};

/* One archive member. Strings are borrowed: from the caller when writing,
 * from the reader until its next call when reading. */
struct ib_tar_entry {
	const char *path; /* "./", "./etc/passwd" (directories may end in '/') */
	enum ib_entry_type type;
	mode_t mode;	 /* permission bits with suid/sgid/sticky: mode & 07777 */
	mode_t filetype; /* S_IFMT bits as stored (what an OTHER entry is) */
	int64_t uid, gid;
	int64_t size; /* content bytes; 0 for all but FILE */
	int64_t mtime;
	const char *link; /* symlink target or hard link target path, else NULL */
	const struct ib_xattr *xattrs;
	size_t n_xattrs;
	bool has_names; /* a user or group name is stored (pack never stores one) */
};

/* --- writing: POSIX pax (restricted: extended headers only where ustar can't say it) --- */

/* Receives the archive's bytes in order. Returns < 0 with *err set to abort. */
typedef int (*ib_archive_sink_fn)(void *ctx, const void *buf, size_t len, ib_error_t *err);

struct ib_archive_writer;
/* THREADS is zstd's worker count (0: one per CPU; ignored without zstd); LEVEL its level. */
struct ib_archive_writer *ib_archive_writer_new(enum ib_compression compression, int threads, int level, ib_archive_sink_fn sink,
						void *ctx, ib_error_t *err);
/* No tar: the bytes given to _data are only compressed (zstd with the same
 * determinism as images), for export's zstd layer. Use _data, then _finish. */
struct ib_archive_writer *ib_archive_compressor_new(enum ib_compression compression, int threads, int level,
						    ib_archive_sink_fn sink, void *ctx, ib_error_t *err);
int ib_archive_writer_add(struct ib_archive_writer *w, const struct ib_tar_entry *e, ib_error_t *err);
int ib_archive_writer_data(struct ib_archive_writer *w, const void *buf, size_t len, ib_error_t *err);
/* Uncompressed writers only: LEN bytes of the current entry's content that the
 * caller puts in the output itself (copy_file_range, no pass through user
 * space). The sink is called with BUF NULL and LEN in their place; the
 * padding after them still comes from the writer, with the next header. */
int ib_archive_writer_skip(struct ib_archive_writer *w, int64_t len, ib_error_t *err);
/* Writes the end-of-archive blocks and flushes compression. */
int ib_archive_writer_finish(struct ib_archive_writer *w, ib_error_t *err);
void ib_archive_writer_free(struct ib_archive_writer *w);
void ib_archive_writer_cleanup(struct ib_archive_writer **w);
#define cleanup_archive_writer __attribute__((cleanup(ib_archive_writer_cleanup)))

/* --- reading: tar (pax, ustar, GNU), uncompressed or zstd; nothing else --- */

/* Gives the next block of the raw image in *buf (valid until the source is
 * called twice more), its length, 0 at the end, < 0 on error (errno set). */
typedef ssize_t (*ib_archive_source_fn)(void *ctx, const void **buf);

struct ib_archive_reader;
struct ib_archive_reader *ib_archive_reader_new(ib_archive_source_fn source, void *ctx, ib_error_t *err);
/* Not a tar: SOURCE's zstd stream decompressed, read with _data (export's
 * layer from a zstd image). */
struct ib_archive_reader *ib_archive_decompressor_new(ib_archive_source_fn source, void *ctx, ib_error_t *err);
/* 1 with *e filled (valid until the next call), 0 at the end of the archive. */
int ib_archive_reader_next(struct ib_archive_reader *r, struct ib_tar_entry *e, ib_error_t *err);
/* 1 with the next block of the entry's content, 0 at its end. Holes (sparse
 * entries) are errors: pack never writes them. */
int ib_archive_reader_data(struct ib_archive_reader *r, const void **buf, size_t *len, ib_error_t *err);
/* Short name of the compression the image uses ("none", "zstd"). */
const char *ib_archive_reader_filter(struct ib_archive_reader *r);
void ib_archive_reader_free(struct ib_archive_reader *r);
void ib_archive_reader_cleanup(struct ib_archive_reader **r);
#define cleanup_archive_reader __attribute__((cleanup(ib_archive_reader_cleanup)))

/* --- extracting the reader's current entry onto disk --- */

struct ib_archive_disk;
/* Extracts relative to the current directory (the caller chdirs into a fresh
 * folder) with libarchive's SECURE_NODOTDOT, SECURE_NOABSOLUTEPATHS and
 * NO_OVERWRITE; KEEP_OWNERS restores uid/gid (root only). SECURE_SYMLINKS
 * too unless PATHS_CHECKED: the caller passes every entry through
 * ib_entry_check (verify.h) before extracting it, into a fresh folder. */
struct ib_archive_disk *ib_archive_disk_new(bool keep_owners, bool paths_checked, ib_error_t *err);
/* Writes the reader's current entry (and its content, each block also passed
 * to ON_DATA when not NULL). */
int ib_archive_disk_extract(struct ib_archive_disk *d, struct ib_archive_reader *r,
			    void (*on_data)(void *ctx, const void *buf, size_t len), void *ctx, ib_error_t *err);
/* The same in three steps, for a caller that reads the content itself (verify
 * hashing what it extracts): _begin writes the current entry's header and
 * returns 1, or 0 for the root entry, which it leaves alone (no _data, no
 * _end then); _data writes a block just read with ib_archive_reader_data;
 * _end closes the entry. */
int ib_archive_disk_begin(struct ib_archive_disk *d, struct ib_archive_reader *r, ib_error_t *err);
int ib_archive_disk_data(struct ib_archive_disk *d, struct ib_archive_reader *r, const void *buf, size_t len, ib_error_t *err);
int ib_archive_disk_end(struct ib_archive_disk *d, struct ib_archive_reader *r, ib_error_t *err);
/* Applies the deferred directory modes and times; call before leaving the folder. */
int ib_archive_disk_finish(struct ib_archive_disk *d, ib_error_t *err);
void ib_archive_disk_free(struct ib_archive_disk *d);
void ib_archive_disk_cleanup(struct ib_archive_disk **d);
#define cleanup_archive_disk __attribute__((cleanup(ib_archive_disk_cleanup)))
