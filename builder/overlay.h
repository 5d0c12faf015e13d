#pragma once
/* --override FILE: a small TOML file with the manifest's schema merged over
 * the manifest before it is checked. Tables merge key by key (a scalar or an
 * array replaces); [[download]], [[source]] and [[stage]] entries are matched
 * by name, their given keys replacing the manifest's, and entries with new
 * names are appended. The rehearsal tests point seed manifests at local
 * fixtures this way. */
#include "error.h"

struct ib_manifest;

/* Loads PATH, merged with OVERRIDE when it is not NULL, and completes it from
 * the compat data (ib_compat_resolve: the pins' names, min_driver): the one way
 * commands load a manifest. */
struct ib_manifest *ib_overlay_load(const char *path, const char *override, ib_error_t *err);
