#pragma once
/* imgbuild pull: an image, its .sha256 and its .sig from a URL (http, https,
 * file) or its mirrors, checked by verify (digest, signer, every entry)
 * before it appears under its name.
 *
 * Everything is downloaded into DIR/.NAME.pull/ beside the destination
 * DIR/NAME (same file system, so the final step is a rename); the image is
 * renamed into place last, after its sidecars, and only once ib_verify passed.
 * A transfer that was cut leaves DIR/.NAME.pull/ behind, and the next pull of
 * the same NAME resumes it with a Range request; any other failure removes it. */
#include <stdbool.h>

#include "error.h"

struct ib_pull_opts {
	const char *out;	    /* FILE or an existing folder; NULL: the URL's file name here */
	const char *const *mirrors; /* other URLs of the image, NULL-terminated (may be NULL); one
					 * ending in '/' is a folder: the image's file name is added */
	const char *key;	    /* trust only this public key (as verify --key) */
	bool allow_unsigned;	    /* accept an image without .sig (every other check runs) */
};

/* On success *PATH_OUT (when not NULL) is the verified image's path. */
int ib_pull(const char *url, const struct ib_pull_opts *opts, char **path_out, ib_error_t *err);
