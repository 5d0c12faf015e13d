#pragma once
/* Checks an image before anything trusts it: the outer digest (IMAGE.sha256),
 * the signature (IMAGE.sig against trusted keys), every entry against the
 * listing, and that no entry could escape the folder it is unpacked into.
 * The image is streamed once; a second thread computes the outer digest while
 * this one parses and hashes entry contents. */
#include <stdbool.h>
#include <stdint.h>

#include "ib_archive.h"
#include "crypto.h"
#include "error.h"
#include "imgmeta.h"

struct ib_unpack_writer;

struct ib_verify_opts {
	const char *key;     /* the one trusted public key; NULL: ib_data_dir()/keys and ib_user_trust_dir() */
	bool allow_unsigned; /* an image without IMAGE.sig passes (a bad signature still fails) */
	bool host;	     /* also check the host driver against the image (see imgbuild driver) */
	bool quiet;	     /* print no report */
	/* Optional: a reader of some entries' content in the same pass (export
	 * reads the environment and the architecture this way). WANT is asked
	 * for every safe file entry and returns how many of its first bytes to
	 * hand to TAKE (0: none); TAKE may be called several times per entry. */
	size_t (*want)(void *ctx, const char *path, int64_t size);
	void (*take)(void *ctx, const char *path, const void *buf, size_t len);
	void *ctx;
	/* Optional: extract the image in the same pass (unpack), with this writer,
	 * into the folder INTO (ib_verify enters it while it reads the image, and
	 * applies the writer's deferred folder modes before it leaves). An entry is written only after it
	 * passed the path checks, and the first unsafe entry or failed write
	 * stops the read; the digest, listing and signature are checked at the
	 * end as always, so the caller keeps the tree only when ib_verify
	 * returns 0. ROOT receives the root entry, which is not written. */
	struct ib_archive_disk *disk; /* not owned */
	int into;		      /* not owned; a folder fd, used when DISK is set */
	/* Optional, with DISK: takes the small files it can (unpack_writer.h);
	 * drained before a hard link and before DISK applies the folders'
	 * deferred modes and times. Not owned. */
	struct ib_unpack_writer *writer;
	struct ib_tar_entry *root; /* not owned; its path, link and xattrs are NULL */
	/* Optional: every byte of the image file, in order, as the reading
	 * thread hashed it (the outer digest is of exactly these bytes), called
	 * on that thread. Export writes its layer from them in the same pass;
	 * whatever RAW does with them must not count until verify returned 0. */
	void (*raw)(void *raw_ctx, const void *buf, size_t len);
	void *raw_ctx;
};

struct ib_verify_report {
	char sha256[IB_SHA256_HEX_LEN + 1];	   /* of the image file as read */
	char *name, *builder, *archs, *min_driver; /* from facts.toml; NULL when absent */
	struct ib_strv plain;			   /* its other string facts as "key = value" (the [stack] pins, gcc, ...) */
	struct ib_facts facts;			   /* min_driver, archs, ptx_jit: what --host and run --gpu check */
	char *signer;				   /* public key path, NULL when unsigned */
	char signer_keynum[2 * 8 + 1];		   /* signify keynum in hex, "" when unsigned */
	uint64_t entries, files, bytes;
	struct ib_strv failures; /* one line per failed check */
};
void ib_verify_report_free(struct ib_verify_report *r);

/* Returns 0 when every check holds; -1 otherwise, with *err naming the first
 * failure (all of them are in REP->failures). REP may be NULL. Prints the
 * report to stdout unless opts->quiet. */
int ib_verify(const char *image, const struct ib_verify_opts *opts, struct ib_verify_report *rep, ib_error_t *err);

/* The reader path alone (no outer digest or signature): parses a tar image in
 * memory, checks entry safety and the listing. For the fuzzer and tests. */
int ib_verify_memory(const void *data, size_t len, struct ib_verify_report *rep, ib_error_t *err);

/* --- entry safety, shared with unpack --- */

/* Feed entries in archive order; each must be below "./" (no absolute path, no
 * "..", no empty or "." component), strictly after the previous one (so no
 * duplicates), inside a folder entry seen before (so never through a symlink),
 * a file, folder, symlink or hard link (no devices, fifos, sockets), and a hard
 * link must name a file entry seen before. */
struct ib_entry_check;
struct ib_entry_check *ib_entry_check_new(void);
/* 0 when safe, with *NORM (when not NULL) the path as the listing writes it
 * ("." or "./a/b"), borrowed until the next call; -1 with *err naming the problem. */
int ib_entry_check(struct ib_entry_check *c, const struct ib_tar_entry *e, const char **norm, ib_error_t *err);
void ib_entry_check_free(struct ib_entry_check *c);
void ib_entry_check_cleanup(struct ib_entry_check **c);
#define cleanup_entry_check __attribute__((cleanup(ib_entry_check_cleanup)))

/* Reads IMAGE.sha256 ("HEX  NAME"); 0 with HEX filled, -1 when absent or malformed. */
int ib_verify_read_sha256_file(const char *image, char hex[IB_SHA256_HEX_LEN + 1], ib_error_t *err);
