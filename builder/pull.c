/* imgbuild pull: fetch (fetch.h) into a folder beside the destination, check
 * with verify (verify.h, sign.h), then rename into place. */
#include "pull.h"
#include "fetch.h"
#include "log.h"
#include "sign.h"
#include "util.h"
#include "verify.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

static int check_url(const char *url, ib_error_t *err)
{
	if (!has_prefix(url, "http://") && !has_prefix(url, "https://") && !has_prefix(url, "file://"))
		return ib_error_usage(err, "pull: unsupported URL '%s' (want http://, https:// or file://)", url);
	if (strpbrk(url, "?#"))
		return ib_error_usage(err,
				      "pull: '%s' has a query or fragment: give the image's plain URL (its .sha256 "
				      "and .sig are fetched from URL.sha256 and URL.sig)",
				      url);
	return 0;
}

/* The last path component of URL: the image's file name. */
static char *url_file_name(const char *url, ib_error_t *err)
{
	const char *path = strstr(url, "://") + 3;
	const char *slash = strrchr(path, '/');
	const char *name = slash ? slash + 1 : "";
	if (name[0] == '\0' || name[0] == '.') {
		ib_error_usage(err, "pull: '%s' does not end in an image's file name (want .../NAME.tar)", url);
		return NULL;
	}
	return xstrdup(name);
}

static char *join_failures(const struct ib_strv *f)
{
	size_t len = 1;
	for (size_t i = 0; i < f->n; i++)
		len += strlen(f->v[i]) + 2;
	char *out = xcalloc(1, len);
	for (size_t i = 0; i < f->n; i++) {
		if (i)
			strcat(out, "; ");
		strcat(out, f->v[i]);
	}
	if (f->n == 0)
		strcat(out, "failed");
	return out;
}

struct work {
	char *dir;	    /* DIR/.NAME.pull */
	char *part, *image; /* the image while downloading, then once whole */
	char *sha_part, *sha, *sig_part, *sig;
};

static void work_free(struct work *w)
{
	free(w->dir);
	free(w->part);
	free(w->image);
	free(w->sha_part);
	free(w->sha);
	free(w->sig_part);
	free(w->sig);
}
#define cleanup_work __attribute__((cleanup(work_free)))

/* Removes what pull put in the work folder; KEEP_PART keeps a partial image
 * for the next pull to resume (when there is one). */
static void work_clean(const struct work *w, bool keep_part)
{
	const char *files[] = { w->image, w->sha_part, w->sha, w->sig_part, w->sig };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		unlink(files[i]);
	struct stat st;
	if (!keep_part || stat(w->part, &st) < 0 || st.st_size == 0)
		unlink(w->part);
	rmdir(w->dir); /* fails, rightly, while a part is kept */
}

static void urls_with_suffix(const struct ib_strv *urls, const char *suffix, struct ib_strv *out)
{
	for (size_t i = 0; i < urls->n; i++)
		ib_strv_push_owned(out, xasprintf("%s%s", urls->v[i], suffix));
}

/* URL, then each --mirror (a folder when it ends in '/': NAME in it). */
static int make_urls(const char *url, const struct ib_pull_opts *o, const char *name, struct ib_strv *urls, ib_error_t *err)
{
	ib_strv_push(urls, url);
	for (size_t i = 0; o->mirrors && o->mirrors[i]; i++) {
		const char *m = o->mirrors[i];
		if (check_url(m, err) < 0)
			return ib_error_wrap(err, "--mirror");
		size_t l = strlen(m);
		ib_strv_push_owned(urls, l && m[l - 1] == '/' ? xasprintf("%s%s", m, name) : xstrdup(m));
	}
	return 0;
}

/* The destination: FILE, or a folder to put the URL's file name in. */
static char *out_path(const struct ib_pull_opts *o, const char *name)
{
	struct stat st;
	if (o->out == NULL)
		return xstrdup(name);
	if (stat(o->out, &st) == 0 && S_ISDIR(st.st_mode))
		return ib_path_join(o->out, name);
	return xstrdup(o->out);
}

/* The work folder DIR/.FNAME.pull beside the output, with a partial image
 * from an earlier pull kept (it is resumed) and everything else removed. */
static int work_open(struct work *w, const char *dir, const char *fname, ib_error_t *err)
{
	struct stat st;
	w->dir = xasprintf("%s/.%s.pull", dir, fname);
	w->part = xasprintf("%s/%s.part", w->dir, fname);
	w->image = xasprintf("%s/%s", w->dir, fname);
	w->sha_part = xasprintf("%s/%s.sha256.part", w->dir, fname);
	w->sha = xasprintf("%s/%s.sha256", w->dir, fname);
	w->sig_part = xasprintf("%s/%s.sig.part", w->dir, fname);
	w->sig = xasprintf("%s/%s.sig", w->dir, fname);
	if (mkdir(w->dir, 0700) < 0 && errno != EEXIST)
		return ib_error_errno(err, errno, "pull: create '%s'", w->dir);
	if (lstat(w->dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return ib_error_set(err, 0, "pull: '%s' is in the way (not a folder): remove it", w->dir);
	if (lstat(w->part, &st) == 0 && st.st_size > 0)
		ib_log_info("resuming %s from byte %lld", fname, (long long)st.st_size);
	/* The sidecars are small: always fetched afresh, the image resumed. */
	work_clean(w, true);
	mkdir(w->dir, 0700);
	return 0;
}

/* NAME.sha256 and NAME.sig, into the work folder; the image's digest in HEX.
 * The signer is checked here: an image nobody here trusts is not worth
 * downloading. *KEEP_PART says whether a partial image stays for a retry. */
static int fetch_sidecars(const char *url, const struct ib_pull_opts *o, const char *name, const struct ib_strv *urls,
			  const struct work *w, char hex[IB_SHA256_HEX_LEN + 1], bool *is_signed, bool *keep_part, ib_error_t *err)
{
	cleanup_strv struct ib_strv sha_urls = { 0 }, sig_urls = { 0 };
	urls_with_suffix(urls, ".sha256", &sha_urls);
	urls_with_suffix(urls, ".sig", &sig_urls);
	cleanup_free char *sha_name = xasprintf("%s.sha256", name);
	cleanup_free char *sig_name = xasprintf("%s.sig", name);
	struct ib_fetch_req side[2] = {
		{ .name = sha_name, .urls = (const char *const *)sha_urls.v, .dest = w->sha_part },
		{ .name = sig_name, .urls = (const char *const *)sig_urls.v, .dest = w->sig_part },
	};
	struct ib_pubkey *keys = NULL;
	size_t n_keys = 0;
	ib_error_t ferr = NULL;
	int rc = -1;
	ib_fetch_many(side, 2, false, &ferr);
	ib_error_free(&ferr);
	if (side[0].path == NULL) {
		cleanup_free char *why = join_failures(&side[0].failures);
		ib_error_set(err, 0, "pull '%s': cannot get its .sha256: %s", url, why);
		*keep_part = side[0].failure != IB_FETCH_FAIL_NOT_FOUND;
		goto out;
	}
	*is_signed = side[1].path != NULL;
	if (!*is_signed && !(o->allow_unsigned && side[1].failure == IB_FETCH_FAIL_NOT_FOUND)) {
		cleanup_free char *why = join_failures(&side[1].failures);
		ib_error_set(err, 0, "pull '%s': cannot get its signature: %s%s", url, why,
			     side[1].failure == IB_FETCH_FAIL_NOT_FOUND ? " (--allow-unsigned accepts an unsigned image)" : "");
		*keep_part = side[1].failure != IB_FETCH_FAIL_NOT_FOUND;
		goto out;
	}
	if (rename(w->sha_part, w->sha) < 0 || (*is_signed && rename(w->sig_part, w->sig) < 0)) {
		ib_error_errno(err, errno, "pull: rename in '%s'", w->dir);
		goto out;
	}
	if (ib_verify_read_sha256_file(w->image, hex, err) < 0) {
		ib_error_wrap(err, "pull '%s'", url);
		goto out;
	}
	if (*is_signed && (ib_sign_trusted_keys(o->key, &keys, &n_keys, err) < 0 ||
			   ib_sign_verify_image(w->sig, hex, keys, n_keys, NULL, err) < 0)) {
		ib_error_wrap(err, "pull '%s'", url);
		goto out;
	}
	rc = 0;
out:
	ib_pubkey_list_free(keys, n_keys);
	ib_fetch_req_free(&side[0]);
	ib_fetch_req_free(&side[1]);
	return rc;
}

/* The image itself, resumed from its part, checked against HEX as it comes. */
static int fetch_image(const char *url, const char *fname, const struct ib_strv *urls, const char *hex, const struct work *w,
		       bool *keep_part, ib_error_t *err)
{
	struct ib_fetch_req img = { .name = fname, .urls = (const char *const *)urls->v, .sha256 = hex, .dest = w->part };
	ib_error_t ferr = NULL;
	int rc = 0;
	if (ib_fetch_many(&img, 1, false, &ferr) < 0) {
		cleanup_free char *why = img.failures.n ? join_failures(&img.failures) : xstrdup(ferr->msg);
		*keep_part = img.failure == IB_FETCH_FAIL_TRUNCATED || img.failure == IB_FETCH_FAIL_OTHER;
		if (img.failure == IB_FETCH_FAIL_MISMATCH)
			ib_error_set(err, 0, "pull '%s': wrong digest, the image does not match its .sha256: %s", url, why);
		else if (*keep_part)
			ib_error_set(err, 0, "pull '%s': %s; the part is kept in '%s': the same pull resumes it", url, why, w->dir);
		else
			ib_error_set(err, 0, "pull '%s': %s", url, why);
		ib_error_free(&ferr);
		rc = -1;
	} else if (rename(w->part, w->image) < 0) {
		rc = ib_error_errno(err, errno, "pull: rename '%s'", w->part);
	}
	ib_fetch_req_free(&img);
	return rc;
}

/* Into place: the sidecars first, the image last, so that OUT exists only as
 * a verified image with its .sha256 (named for OUT, so that sha256sum -c works
 * after -o) and .sig beside it. */
static int put_in_place(const char *out, const char *fname, const char *hex, bool is_signed, const struct work *w, ib_error_t *err)
{
	cleanup_free char *sha_text = xasprintf("%s  %s\n", hex, fname);
	cleanup_free char *out_sha = xasprintf("%s.sha256", out);
	cleanup_free char *out_sig = xasprintf("%s.sig", out);
	if (ib_write_file_atomic(out_sha, sha_text, strlen(sha_text), 0644, err) < 0)
		return -1;
	if (is_signed ? rename(w->sig, out_sig) < 0 : unlink(out_sig) < 0 && errno != ENOENT)
		return ib_error_errno(err, errno, "pull: put '%s' in place", out_sig);
	if (rename(w->image, out) < 0)
		return ib_error_errno(err, errno, "pull: rename '%s' to '%s'", w->image, out);
	return 0;
}

int ib_pull(const char *url, const struct ib_pull_opts *o, char **path_out, ib_error_t *err)
{
	if (check_url(url, err) < 0)
		return -1;
	cleanup_free char *name = url_file_name(url, err);
	if (name == NULL)
		return -1;
	cleanup_strv struct ib_strv urls = { 0 };
	if (make_urls(url, o, name, &urls, err) < 0)
		return -1;
	cleanup_free char *out = out_path(o, name);
	const char *slash = strrchr(out, '/');
	cleanup_free char *dir = slash ? xstrndup(out, (size_t)(slash - out) + (slash == out)) : xstrdup(".");
	const char *fname = slash ? slash + 1 : out;
	struct stat st;
	if (fname[0] == '\0' || fname[0] == '.')
		return ib_error_usage(err, "pull: bad output file name '%s' (want -o DIR/NAME.tar)", out);
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return ib_error_usage(err, "pull: the folder '%s' for '%s' does not exist", dir, out);

	int rc = -1;
	bool keep_part = false, is_signed = false;
	char hex[IB_SHA256_HEX_LEN + 1];
	struct ib_verify_report rep = { 0 };
	cleanup_work struct work w = { 0 };
	if (work_open(&w, dir, fname, err) < 0 || fetch_sidecars(url, o, name, &urls, &w, hex, &is_signed, &keep_part, err) < 0 ||
	    fetch_image(url, fname, &urls, hex, &w, &keep_part, err) < 0)
		goto done;
	struct ib_verify_opts vo = { .key = o->key, .allow_unsigned = o->allow_unsigned, .quiet = true };
	if (ib_verify(w.image, &vo, &rep, err) < 0) {
		ib_error_wrap(err, "pull '%s': the image fails verification", url);
		goto done;
	}
	if (put_in_place(out, fname, hex, is_signed, &w, err) < 0)
		goto done;
	printf("pulled %s: sha256 %s, %llu entries, %s\n", out, rep.sha256, (unsigned long long)rep.entries,
	       rep.signer ? rep.signer : "unsigned");
	if (path_out)
		*path_out = steal_pointer(&out);
	rc = 0;
done:
	ib_verify_report_free(&rep);
	if (w.dir)
		work_clean(&w, rc < 0 && keep_part);
	return rc;
}
