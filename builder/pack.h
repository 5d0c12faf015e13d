#pragma once
/* Packs a root file system folder into a reproducible image: a POSIX pax tar
 * (optionally zstd) with every entry sorted by path, mtimes clamped to the
 * epoch, numeric owners, no atime/ctime, hard links as links, xattrs (file
 * capabilities) kept, device nodes, fifos and sockets left out, and the
 * run-time residue of docs/sources.md §2 left out. Beside it: IMAGE.sha256
 * (sha256sum format) and, with a key, IMAGE.sig (signify, see sign.h).
 *
 * Inside, under ./.imgbuild/: facts.toml, listing, and the caller's metadata
 * files (manifest, lock ...). The tree's own /.imgbuild, if any, is replaced.
 * Their formats are imgmeta.h's. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crypto.h"
#include "error.h"
#include "imgmeta.h"
#include "manifest.h"

/* An extra file stored as ./.imgbuild/NAME (NAME: [A-Za-z0-9._-]+, not
 * "facts.toml" or "listing"). */
struct ib_pack_meta {
	const char *name;
	const void *data; /* not owned */
	size_t len;
};

struct ib_pack_stats {
	uint64_t entries, files, bytes_in, bytes_out;
	uint64_t skipped_devices, skipped_special, skipped_excluded;
	double seconds_walk, seconds_hash, seconds_write; /* hash: file digests, after the walk */
	uint64_t files_batched; /* small files read through io_uring (uring.h); 0 where the kernel refuses it */
};

struct ib_pack_opts {
	const char *root;   /* the folder to pack; may be an overlayfs mount */
	const char *output; /* image path; written to a temporary file beside it, renamed at the end */
	int64_t epoch;	    /* SOURCE_DATE_EPOCH: mtimes clamped to it, facts' created */
	enum ib_compression compression;
	const char *sign_key;		 /* signify secret key path, or NULL for an unsigned image */
	const char *name;		 /* facts' name; NULL: the output's basename less .tar/.tar.zst */
	const struct ib_pack_meta *meta; /* not owned */
	size_t n_meta;
	const char *meta_dir;	   /* NULL, or a folder whose regular files are added like meta */
	const struct ib_kv *facts; /* extra facts.toml keys, written as strings in this order */
	size_t n_facts;
	const char *const *fact_archs; /* NULL-terminated; NULL: no archs key */
	int threads;		       /* hashing and zstd threads; 0: one per CPU */
	int zstd_level;		       /* 0: 3 */
	struct ib_pack_stats *stats;   /* NULL, or filled on success (not owned) */
};

/* Packs; digest_hex receives the image's SHA-256 (what IMAGE.sha256 holds).
 * On failure nothing is left at o->output (an older image there is kept). */
int ib_pack(const struct ib_pack_opts *o, char digest_hex[IB_SHA256_HEX_LEN + 1], ib_error_t *err);
