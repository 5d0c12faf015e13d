#pragma once
/* imgbuild run's engine: an image file (verified and unpacked once into the
 * cache) or a root folder, run in a sandbox under a throw-away layer, with the
 * current directory bound (read-only) at /imgbuild/cwd and, with gpu, the host driver checked
 * against the image's facts (driver.h's preflight) and bound. */
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define IB_RUN_CWD "/imgbuild/cwd"

struct ib_bind;

struct ib_run_opts {
	const char *image; /* an image file or an unpacked root folder */
	const char *key;   /* for an image file: the one trusted public key, or NULL */
	bool allow_unsigned;
	bool gpu, user_ns, no_net;
	bool cwd_rw;		     /* the current directory writable */
	int mpi;		     /* hybrid model (docs/cluster.md): -1 when started by a launcher, 0 never, 1 always */
	const struct ib_bind *binds; /* more binds (not owned) */
	size_t n_binds;
	char **cmd; /* NULL or empty: /bin/sh (not owned) */
	int n_cmd;
};

/* *status gets the command's exit status (128+N when killed by signal N). */
int ib_run(const struct ib_run_opts *o, int *status, ib_error_t *err);
