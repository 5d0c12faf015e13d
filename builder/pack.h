#pragma once
/* Packs a root file system folder into a reproducible image: a POSIX pax tar
 * (optionally zstd) with every entry sorted by path, mtimes clamped to the
 * epoch, numeric owners, no atime/ctime, hard links as links, xattrs (file
 * capabilities) kept, device nodes, fifos and sockets left out, and the
 * run-time residue of anchors.md §2 left out. Beside it: IMAGE.sha256
 * (sha256sum format) and, with a key, IMAGE.sig (signify, see sign.h).
 *
 * Inside, under ./.imgbuild/: facts.toml, listing, and the caller's metadata
 * files (manifest, lock ...). The tree's own /.imgbuild, if any, is replaced.
 *
 * Listing format (./.imgbuild/listing), one line per entry except the listing
 * itself, sorted by path (bytes), after a first line "imgbuild-listing 1":
 *     TYPE MODE UID GID SIZE SHA256 PATH TARGET
 * TYPE  f file, d folder, l symlink, h hard link
 * MODE  4 octal digits (with suid/sgid/sticky); UID GID decimal
 * SIZE  content bytes (0 but for f); SHA256 64 hex digits for f, else "-"
 * PATH  "." for the root, else "./a/b" (no trailing slash)
 * TARGET symlink target, or hard link's target PATH, else "-"
 * PATH and TARGET escape every byte <= 0x20, 0x7f and '\' as \ooo (3 octal
 * digits); a TARGET that is literally "-" is written \055. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crypto.h"
#include "error.h"
#include "manifest.h"

/* An extra file stored as ./.imgbuild/NAME (NAME: [A-Za-z0-9._-]+, not
 * "facts.toml" or "listing"). */
struct ib_pack_meta {
	const char *name;
	const void *data;	/* not owned */
	size_t len;
};

struct ib_pack_stats {
	uint64_t entries, files, bytes_in, bytes_out;
	uint64_t skipped_devices, skipped_special, skipped_excluded;
	double seconds_walk, seconds_hash, seconds_write;	/* hash: file digests, after the walk */
};

struct ib_pack_opts {
	const char *root;	/* the folder to pack; may be an overlayfs mount */
	const char *output;	/* image path; written to a temporary file beside it, renamed at the end */
	int64_t epoch;		/* SOURCE_DATE_EPOCH: mtimes clamped to it, facts' created */
	enum ib_compression compression;
	const char *sign_key;	/* signify secret key path, or NULL for an unsigned image */
	const char *name;	/* facts' name; NULL: the output's basename less .tar/.tar.zst */
	const struct ib_pack_meta *meta;	/* not owned */
	size_t n_meta;
	const char *meta_dir;	/* NULL, or a folder whose regular files are added like meta */
	const struct ib_kv *facts;	/* extra facts.toml keys, written as strings in this order */
	size_t n_facts;
	const char *const *fact_archs;	/* NULL-terminated; NULL: no archs key */
	int threads;		/* hashing and zstd threads; 0: one per CPU */
	int zstd_level;		/* 0: 3 */
	struct ib_pack_stats *stats;	/* NULL, or filled on success (not owned) */
};

/* Packs; digest_hex receives the image's SHA-256 (what IMAGE.sha256 holds).
 * On failure nothing is left at o->output (an older image there is kept). */
int ib_pack(const struct ib_pack_opts *o, char digest_hex[IB_SHA256_HEX_LEN + 1], ib_error_t *err);

/* --- listing lines, shared with verify --- */

struct ib_listing_entry {
	char type;		/* 'f' 'd' 'l' 'h' */
	unsigned mode;
	int64_t uid, gid, size;
	char sha256[IB_SHA256_HEX_LEN + 1];	/* "" when not a file */
	char *path;		/* unescaped, owned */
	char *target;		/* unescaped, owned, NULL when "-" */
};

#define IB_LISTING_HEADER "imgbuild-listing 1\n"
/* Appends ENTRY's line (with '\n') to *BUF (a growable string of *LEN bytes, *CAP capacity). */
void ib_listing_append(char **buf, size_t *len, size_t *cap, const struct ib_listing_entry *entry);
/* Parses one line (without '\n'). */
int ib_listing_parse_line(const char *line, size_t len, struct ib_listing_entry *out, ib_error_t *err);
void ib_listing_entry_free(struct ib_listing_entry *e);
