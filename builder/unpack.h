#pragma once
/* Verifies an image, then extracts it into a temporary folder beside the
 * destination and renames it into place: a failed unpack leaves nothing
 * half-unpacked. Extraction never follows symlinks or leaves the folder
 * (libarchive's SECURE_* flags plus verify.h's entry checks on every entry),
 * and the bytes extracted must be the bytes verified (the outer digest is
 * computed again while extracting), so swapping the file in between fails. */
#include <stdbool.h>

#include "error.h"
#include "verify.h"

/* DIR must not exist (or be an empty folder). NO_VERIFY skips the digest,
 * signature and listing checks (said loudly), never the safety checks. Owners
 * and xattrs (file capabilities) are restored when run as root. */
int ib_unpack(const char *image, const char *dir, const struct ib_verify_opts *opts, bool no_verify, ib_error_t *err);

/* For `imgbuild run`: unpacks IMAGE once into $cache/images/<sha256>/tree
 * (verify first, temp + rename) and returns that tree (caller frees). Later
 * calls return it without extracting again: they check that IMAGE.sha256
 * still names the cached digest and that the signature holds for it, and
 * verify the image again only when its size or mtime changed. */
int ib_unpack_cached(const char *image, const struct ib_verify_opts *opts, char **tree_out, ib_error_t *err);
