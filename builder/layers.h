#pragma once
/* The stage cache. Every stage's result is one overlayfs upper directory kept
 * at $cache/layers/<key>/upper; a cached stage is reused by stacking its upper
 * as a lower layer, never by copying the tree. A layer is built in
 * <key>.tmp-PID and renamed into place after its `done` marker is written, so
 * a layer that exists is always complete (after mkosi's and BuildKit's caches;
 * docs/sources.md §3).
 *
 * Keys are sha256 hex digests over everything that can change a result:
 * the base (distro, suites, mirrors, components, keyring bytes, variant,
 * packages, epoch) and, per stage, the parent's key, the script's bytes, the
 * stage's complete environment, its network setting and every input's sha256
 * or commit. */
#include <stdbool.h>
#include <stddef.h>

#include "crypto.h"
#include "error.h"
#include "util.h"

struct ib_manifest;
struct ib_stage;

#define IB_KEY_LEN IB_SHA256_HEX_LEN

/* The key of the base root file system. */
int ib_layers_base_key(const struct ib_manifest *m, char key[IB_KEY_LEN + 1], ib_error_t *err);

/* The environment a stage sees, "KEY=VALUE" entries, later sources winning:
 * fixed defaults, facts, [env], the stage's env. CCACHE_REMOTE, when not
 * NULL, becomes CCACHE_REMOTE_STORAGE: host-only, never in a key. */
void ib_layers_stage_env(const struct ib_manifest *m, const struct ib_stage *s, const char *ccache_remote, struct ib_strv *out);

/* The key of stage S on top of the layer PARENT_KEY (the base's key for the first stage). */
int ib_layers_stage_key(const struct ib_manifest *m, const struct ib_stage *s, const char *parent_key, char key[IB_KEY_LEN + 1],
			ib_error_t *err);

/* All keys of M: base_key and stage_keys[i] for each stage (IB_KEY_LEN+1 bytes each). */
int ib_layers_all_keys(const struct ib_manifest *m, char base_key[IB_KEY_LEN + 1], char (*stage_keys)[IB_KEY_LEN + 1],
		       ib_error_t *err);

/* $cache/layers, created. Caller frees. */
char *ib_layers_dir(ib_error_t *err);
/* $cache/layers/<key> (the layer, whether or not it exists). Caller frees. */
char *ib_layers_path(const char *key, ib_error_t *err);
/* $cache/layers/<key>/upper when the layer is complete (its done marker exists), else NULL (no error). */
char *ib_layers_lookup(const char *key);

/* A layer being built: tmp holds upper/ (the overlay upper dir or, for the
 * base, the root itself) and ovlwork/ (overlayfs' work dir). */
struct ib_layer_tmp {
	char *key;
	char *tmp;   /* $cache/layers/<key>.tmp-PID */
	char *upper; /* tmp/upper */
	char *work;  /* tmp/ovlwork */
};
/* Makes a fresh tmp folder for KEY (upper/ is created only when MAKE_UPPER). */
int ib_layers_begin(struct ib_layer_tmp *t, const char *key, bool make_upper, ib_error_t *err);
/* Removes ovlwork/, writes the done marker, renames tmp to the key. When
 * another build finished the same key first, keeps theirs and drops ours. */
int ib_layers_commit(struct ib_layer_tmp *t, ib_error_t *err);
/* Removes the tmp folder (ib_remove_tree: never crosses a mount) and frees T. */
void ib_layers_abort(struct ib_layer_tmp *t);
void ib_layer_tmp_free(struct ib_layer_tmp *t);

/* Removes <key>.tmp-PID folders left by builds that no longer run. */
void ib_layers_sweep(void);
