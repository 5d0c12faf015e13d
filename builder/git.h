#pragma once
/* Git sources: a bare mirror per repository in the cache ($cache/git/<sha256 of
 * url>.git), the manifest's tag fetched and checked against its pinned commit,
 * submodules at the commits the superproject records, and the whole tree
 * exported as a read-only, byte-reproducible folder:
 * $cache/sources/<commit>[-<hash of the submodule commits>]/.
 * Drives the git command (fork/exec, no shell) with a clean environment, so
 * the host's git configuration never changes a result. */
#include <stdbool.h>

#include "error.h"

struct ib_source;

/* Makes (or finds) the export of S and returns its path in *tree_out. OFFLINE:
 * no network; works from the cached export or the cached mirrors, else fails
 * naming the source. A tag that does not resolve to S->commit is an error
 * naming both commits. */
int ib_git_export(const struct ib_source *s, bool offline, char **tree_out, ib_error_t *err);

/* The finished export of S when it is in the cache, else NULL. Runs no git. */
char *ib_git_cached_export(const struct ib_source *s);
