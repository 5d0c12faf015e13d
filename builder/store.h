#pragma once
/* The content-addressed download cache: $cache/downloads/sha256/<hex>.
 * An entry appears only by rename(2) of a file whose bytes were hashed and
 * matched its name, so an entry that exists is always a verified file: a crash
 * or a failed check leaves at most a temporary or .part file beside it, which
 * no lookup ever returns. */
#include <stdbool.h>

#include "error.h"

/* True when HEX is 64 lowercase hex digits. */
bool ib_store_valid_digest(const char *hex);
/* The store folder, created. Caller frees. */
char *ib_store_dir(ib_error_t *err);
/* Where the entry for SHA256 lives, whether or not it is there. Caller frees. */
char *ib_store_path(const char *sha256, ib_error_t *err);
/* True when a verified entry for SHA256 is in the store. */
bool ib_store_has(const char *sha256);
/* Checks the entry for SHA256 before it is used: hashes it again (once per
 * process while its inode is unchanged), since the store is a folder on disk
 * that anything with the owner's rights (or a failing disk) can change.
 * 1 with *PATH_OUT (when not NULL) when present and intact, 0 when absent, -1
 * when corrupt or unreadable, the error naming the file and the fix. */
int ib_store_check(const char *sha256, char **path_out, ib_error_t *err);
/* The partial download kept for SHA256 (resumed by the next attempt). Caller frees. */
char *ib_store_part_path(const char *sha256, ib_error_t *err);
/* Makes a fresh temporary file in the store folder (same file system, so it can
 * be renamed into place). Returns an fd open for reading and writing and the
 * path in *path_out. */
int ib_store_tmpfile(char **path_out, ib_error_t *err);
enum { IB_STORE_MISMATCH = -2 };
/* Hashes the file TMP_PATH; when it matches SHA256 (or SHA256 is NULL: trust on
 * first use) syncs it, makes it read-only and renames it to its entry. On a
 * mismatch TMP_PATH is removed, IB_STORE_MISMATCH is returned and the error
 * names both digests and ORIGIN. The digest found goes to actual_out (65 bytes)
 * when not NULL, also on a mismatch. */
int ib_store_commit(const char *tmp_path, const char *sha256, const char *origin, char *actual_out, ib_error_t *err);
