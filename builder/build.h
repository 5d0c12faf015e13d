#pragma once
/* The build engine: bootstrap the base, run each stage in the sandbox on top
 * of the layers before it, cache every result as a layer (layers.h), and pack
 * the stacked layers into the image. An unchanged manifest runs no stage and,
 * when the image on disk is the one the cache recorded, does not even pack.
 *
 * Signals: ib_build_prepare blocks SIGINT and SIGTERM for the whole build.
 * The sandbox and ib_proc_wait (proc.h) read them while a child runs; between
 * steps ib_proc_check_interrupt notices them. Either way the step's child is
 * killed, its unfinished layer removed, and the build fails with exit code
 * 130 (SIGINT) or 143 (SIGTERM). */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"
#include "layers.h"

struct ib_manifest;

struct ib_build_opts {
	const char *output;	   /* -o; NULL: the manifest's image.output */
	const char *sign_key;	   /* --sign; NULL: the manifest's image.sign */
	bool zstd;		   /* --zstd: force zstd compression */
	bool offline;		   /* --offline: no network for fetching (stages keep theirs) */
	const char *build_dir;	   /* --build-dir; NULL: $cache/builds/<image name> */
	const char *ccache_remote; /* --ccache-remote; NULL: the user's config (ccremote.h) */
	bool ccache_remote_write;  /* --ccache-remote-write: stages may fill the shared cache */
};

struct ib_build; /* opaque build state */

/* Computes every key, takes the build dir's lock and blocks SIGINT/SIGTERM.
 * M must outlive the build. */
struct ib_build *ib_build_new(const struct ib_manifest *m, const struct ib_build_opts *opts, ib_error_t *err);
void ib_build_free(struct ib_build *b);

/* The base, then stages [0, UPTO): cached layers are reused, the rest run. */
int ib_build_stages(struct ib_build *b, size_t upto, ib_error_t *err);
/* Packs the stacked layers into the output (skipped when the cached digest
 * matches the output on disk). Needs ib_build_stages(b, n_stages) first. */
int ib_build_pack(struct ib_build *b, ib_error_t *err);
/* bootstrap + every stage + pack + a summary line. */
int ib_build_run(const struct ib_manifest *m, const struct ib_build_opts *opts, ib_error_t *err);

/* Runs ARGV (NULL: an interactive shell) in stage INDEX's sandbox as the
 * stage would see it, over the layers before it with a throw-away upper.
 * Needs ib_build_stages(b, index) first. *status gets the command's status. */
int ib_build_shell(struct ib_build *b, size_t index, char *const *argv, int *status, ib_error_t *err);

/* Index of the stage NAME in M, or -1 with *err set (listing the names). */
int ib_build_find_stage(const struct ib_manifest *m, const char *name, ib_error_t *err);

/* Prints the last N lines of the file at PATH to stderr, each prefixed "  | ". */
void ib_build_show_tail(const char *path, int n);
