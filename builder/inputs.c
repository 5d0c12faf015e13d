/* A manifest's inputs as a whole: fetch everything, pin what is unknown. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fetch.h"
#include "git.h"
#include "inputs.h"
#include "manifest.h"

int ib_inputs_fetch(const struct ib_manifest *m, bool offline, struct ib_strv *trees, ib_error_t *err)
{
	ib_error_t dl_err = NULL;
	int rc = ib_fetch_downloads(m, NULL, offline, &dl_err);
	/* Online, a failed download stops here; offline, the sources are checked
	 * too so that one run names everything missing. */
	if (rc < 0 && !offline) {
		*err = dl_err;
		return -1;
	}
	cleanup_free char *missing = dl_err ? xstrdup(dl_err->msg) : NULL;
	ib_error_free(&dl_err);
	for (size_t i = 0; i < m->n_sources; i++) {
		ib_error_t src_err = NULL;
		char *tree = NULL;
		if (ib_git_export(&m->sources[i], offline, &tree, &src_err) == 0) {
			ib_strv_push_owned(trees, tree);
			continue;
		}
		if (!offline) {
			*err = src_err;
			return ib_error_wrap(err, "%s", m->path);
		}
		char *more = missing ? xasprintf("%s\n%s", missing, src_err->msg) : xstrdup(src_err->msg);
		free(missing);
		missing = more;
		ib_error_free(&src_err);
	}
	if (missing)
		return ib_error_set(err, 0, "%s", missing);
	return 0;
}

struct pin {
	size_t offset;		     /* of the quoted "unknown" in the manifest text */
	const struct ib_download *d; /* not owned */
	size_t req;
};

static int cmp_pin_desc(const void *a, const void *b)
{
	const struct pin *x = a, *y = b;
	return x->offset < y->offset ? 1 : x->offset > y->offset ? -1 : 0;
}

/* Finds the quoted string "unknown" that D's sha256 was read from: at its
 * recorded line and column, else the only one on that line. */
static int find_unknown(const char *text, size_t len, const struct ib_download *d, const char *path, size_t *offset, ib_error_t *err)
{
	static const char *const lits[] = { "\"unknown\"", "'unknown'", NULL };
	int line = d->sha256_pos.line;
	if (line <= 0)
		return ib_error_set(err, 0, "%s: cannot tell where the sha256 of download '%s' is written", path, d->name);
	size_t start = 0;
	for (int l = 1; l < line && start < len; start++)
		if (text[start] == '\n')
			l++;
	size_t end = start;
	while (end < len && text[end] != '\n')
		end++;
	size_t at = start + (size_t)(d->sha256_pos.col > 0 ? d->sha256_pos.col - 1 : 0);
	for (size_t k = 0; lits[k]; k++)
		if (at + 9 <= end && memcmp(text + at, lits[k], 9) == 0) {
			*offset = at;
			return 0;
		}
	size_t found = 0, count = 0;
	for (size_t i = start; i + 9 <= end; i++)
		for (size_t k = 0; lits[k]; k++)
			if (memcmp(text + i, lits[k], 9) == 0) {
				found = i;
				count++;
			}
	if (count != 1)
		return ib_error_set(err, 0, "%s:%d: cannot find the sha256 = \"unknown\" of download '%s' to replace", path, line,
				    d->name);
	*offset = found;
	return 0;
}

int ib_inputs_pin(const struct ib_manifest *m, FILE *report, size_t *n_pinned, ib_error_t *err)
{
	size_t n = 0;
	for (size_t i = 0; i < m->n_downloads; i++)
		if (m->downloads[i].sha256 == NULL)
			n++;
	*n_pinned = 0;
	if (n == 0)
		return 0;
	struct ib_strv *urls = xcalloc(n, sizeof(*urls));
	struct ib_fetch_req *reqs = xcalloc(n, sizeof(*reqs));
	struct pin *pins = xcalloc(n, sizeof(*pins));
	cleanup_free char *text = NULL;
	cleanup_free char *real = NULL;
	size_t len = 0;
	int rc = 0;
	for (size_t i = 0, k = 0; i < m->n_downloads && rc == 0; i++) {
		const struct ib_download *d = &m->downloads[i];
		if (d->sha256 != NULL)
			continue;
		rc = ib_fetch_resolve_url(m, d->url, &urls[k], err);
		for (size_t j = 0; rc == 0 && j < d->mirrors.n; j++)
			rc = ib_fetch_resolve_url(m, d->mirrors.v[j], &urls[k], err);
		reqs[k] = (struct ib_fetch_req){ .name = d->name, .urls = (const char *const *)urls[k].v };
		pins[k] = (struct pin){ .d = d, .req = k };
		k++;
	}
	/* Find every place to edit before downloading, so a manifest we cannot
	 * edit costs no download. */
	if (rc == 0) {
		real = realpath(m->path, NULL);
		if (real == NULL)
			rc = ib_error_errno(err, errno, "resolve '%s'", m->path);
	}
	if (rc == 0 && (text = ib_read_file(real, &len, err)) == NULL)
		rc = -1;
	if (rc == 0 && (len != m->text_len || memcmp(text, m->text, len) != 0))
		rc = ib_error_set(err, 0, "'%s' changed while imgbuild was reading it; run pin again", m->path);
	for (size_t k = 0; rc == 0 && k < n; k++)
		rc = find_unknown(text, len, pins[k].d, m->path, &pins[k].offset, err);
	if (rc == 0)
		rc = ib_fetch_many(reqs, n, false, err);

	if (rc == 0) {
		/* Edit from the end so earlier offsets stay valid; only the 9 bytes of
		 * each quoted "unknown" change (quotes kept). */
		qsort(pins, n, sizeof(*pins), cmp_pin_desc);
		size_t cap = len + n * IB_SHA256_HEX_LEN + 1;
		char *out = xmalloc(cap);
		memcpy(out, text, len);
		size_t out_len = len;
		for (size_t k = 0; k < n; k++) {
			size_t at = pins[k].offset + 1; /* after the opening quote */
			memmove(out + at + IB_SHA256_HEX_LEN, out + at + 7, out_len - (at + 7));
			memcpy(out + at, reqs[pins[k].req].sha256_found, IB_SHA256_HEX_LEN);
			out_len += IB_SHA256_HEX_LEN - 7;
		}
		struct stat st;
		mode_t mode = stat(real, &st) == 0 ? (st.st_mode & 07777) : 0644;
		rc = ib_write_file_atomic(real, out, out_len, mode, err);
		free(out);
	}
	if (rc == 0) {
		for (size_t k = n; k-- > 0;) {
			const struct ib_fetch_req *r = &reqs[pins[k].req];
			fprintf(report,
				"trust on first use: recorded sha256 %s for %s from %s — check it against a trusted source\n",
				r->sha256_found, r->name, r->url_used ? r->url_used : r->urls[0]);
		}
	}
	for (size_t k = 0; k < n; k++) {
		ib_fetch_req_free(&reqs[k]);
		ib_strv_free(&urls[k]);
	}
	free(urls);
	free(reqs);
	free(pins);
	if (rc == 0)
		*n_pinned = n;
	return rc;
}
