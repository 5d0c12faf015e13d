#pragma once
/* Where imgbuild keeps things on the host. */
#include "error.h"

/* $IMGBUILD_CACHE, else $XDG_CACHE_HOME/imgbuild, else /var/cache/imgbuild for
 * root and ~/.cache/imgbuild for others. Created on first use. Caller frees. */
char *ib_cache_dir(ib_error_t *err);
/* A sub-folder of the cache ("downloads", "git", "layers", ...), created. */
char *ib_cache_subdir(const char *name, ib_error_t *err);
/* As ib_cache_subdir, but 0700 (made so if it was not): for the trees of images
 * and stages ("images", "layers"), which hold setuid-root files of untrusted
 * origin that no other local user may reach, let alone execute. */
char *ib_cache_private_subdir(const char *name, ib_error_t *err);
/* Folder holding stages/, keys/ and compat.toml: $IMGBUILD_DATADIR, else the
 * source tree the binary was built in (build/imgbuild -> ..), else IB_DATADIR. */
const char *ib_data_dir(void);
/* The user's own trusted keys: $XDG_CONFIG_HOME/imgbuild/trusted (or ~/.config/...). */
char *ib_user_trust_dir(void);
/* Where keygen puts a new pair: $XDG_CONFIG_HOME/imgbuild/keys (or ~/.config/...). */
char *ib_user_keys_dir(void);
