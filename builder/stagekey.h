#pragma once
/* Cache keys of a manifest's stages, as `imgbuild plan` shows them and the
 * build engine uses them. There is one definition of a key, in builder/layers.c
 * (ib_layers_stage_key: parent key, script bytes, complete environment, network
 * setting, every input's sha256 or commit, over the base's key); this is the
 * manifest-level entry point to it, so plan and build can never disagree. */
#include "error.h"
#include "manifest.h"

/* KEYS has m->n_stages entries of 64 hex digits + NUL. Fails (exit code 2) when a
 * stage reads a download whose sha256 is "unknown": its key is not yet known. */
int ib_manifest_stage_keys(const struct ib_manifest *m, char (*keys)[65], ib_error_t *err);
