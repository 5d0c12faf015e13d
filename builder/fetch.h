#pragma once
/* Downloads into the content-addressed store (store.h): http, https, file and
 * mirror:// URLs, verified against their sha256, resumed with HTTP ranges,
 * retried with back-off, then tried on each fallback mirror; independent
 * downloads run in parallel. The only module that includes <curl/curl.h>.
 *
 * Every path this module returns names a store entry, which exists only after
 * its bytes matched the expected digest: a caller can never be handed an
 * input that failed its check.
 *
 * Tuning by environment (mainly for tests): IMGBUILD_FETCH_STALL_SECONDS (a
 * transfer below 512 bytes/s for that long is abandoned and retried; default
 * 30), IMGBUILD_FETCH_BACKOFF_MS (first retry delay, doubled per retry;
 * default 1000), IMGBUILD_FETCH_RETRIES (retries per URL; default 3),
 * IMGBUILD_FETCH_JOBS (parallel transfers; default 4). */
#include <stdbool.h>
#include <stddef.h>

#include "crypto.h"
#include "error.h"
#include "util.h"

struct ib_manifest;
struct ib_download;

/* Why the last URL of a failed request failed. */
enum ib_fetch_failure {
	IB_FETCH_FAIL_NONE,
	IB_FETCH_FAIL_NOT_FOUND, /* HTTP 404/410, no such file:// file */
	IB_FETCH_FAIL_MISMATCH,	 /* the bytes do not have the expected sha256 */
	IB_FETCH_FAIL_TRUNCATED, /* the connection closed before the whole body */
	IB_FETCH_FAIL_OTHER,
};

/* One file for ib_fetch_many. The caller fills the inputs; ib_fetch_many fills
 * the results, which ib_fetch_req_free releases. */
struct ib_fetch_req {
	const char *name;	 /* for messages (not owned) */
	const char *const *urls; /* NULL-terminated, tried in order; no mirror:// (not owned) */
	const char *sha256;	 /* expected digest, or NULL: trust on first use (not owned) */
	/* When set, the bytes go to this file instead of the store: an existing
	 * file is resumed, and a failure that is not a mismatch leaves it for the
	 * next try (imgbuild pull, which verifies and renames it). (not owned) */
	const char *dest;

	char *path;				  /* result: the verified store entry (or DEST) */
	char *url_used;				  /* result: the URL that served it (NULL when cached) */
	char sha256_found[IB_SHA256_HEX_LEN + 1]; /* result: its digest */
	struct ib_strv failures;		  /* result on failure: "URL: reason", one per URL tried */
	enum ib_fetch_failure failure;		  /* result on failure: the last URL's reason */
};
void ib_fetch_req_free(struct ib_fetch_req *req);

/* Fetches N files in parallel. Files already in the store make no request.
 * OFFLINE: no network at all; fails at once naming every file not cached.
 * On failure the error lists every file that failed and, for each, every URL
 * tried with its reason; files that succeeded keep their results. */
int ib_fetch_many(struct ib_fetch_req *reqs, size_t n, bool offline, ib_error_t *err);

/* Expands URL (mirror://debian/PATH or mirror://ubuntu/PATH resolve against
 * M's base.mirrors when M's distro matches, else for debian against the host's
 * apt mirror) and appends the candidate URLs to OUT. M may be NULL. */
int ib_fetch_resolve_url(const struct ib_manifest *m, const char *url, struct ib_strv *out, ib_error_t *err);

/* Fetches the downloads NAMES (NULL-terminated; NULL: every download of M)
 * into the store. Names of sources are skipped; unknown names are errors. A
 * download whose sha256 is "unknown" is refused (imgbuild pin fills it). */
int ib_fetch_downloads(const struct ib_manifest *m, const char *const *names, bool offline, ib_error_t *err);

/* The verified store entry of D, or NULL when it is not cached (or D has no
 * sha256). Never touches the network. Caller frees. */
char *ib_fetch_cached_path(const struct ib_download *d);

/* One file: URL, then MIRRORS (NULL-terminated, may be NULL), checked against
 * SHA256. mirror://debian/ resolves through the host's apt mirror. On success
 * *path_out receives the store entry. */
int ib_fetch_file(const char *url, const char *const *mirrors, const char *sha256, bool offline, char **path_out, ib_error_t *err);
