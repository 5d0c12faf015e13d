/* Downloads with libcurl's multi interface. The only file that includes
 * <curl/curl.h>; CURLcode and HTTP statuses become ib_error messages here.
 *
 * Each file is a job that walks its candidate URLs in order. On one URL:
 * connection errors, 5xx and stalls are retried with exponential back-off and
 * the next attempt resumes the partial file with a Range request; 404-like
 * answers and checksum mismatches move to the next URL at once. Bytes go to
 * $store/<sha256>.part (keyed by the expected digest, so a later run resumes
 * it) and reach their store name only through ib_store_commit, after the whole
 * file was hashed. */
#include "fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aptsource.h"
#include "log.h"
#include "manifest.h"
#include "store.h"

static void cleanup_curlmp(CURLM **m)
{
	if (*m)
		curl_multi_cleanup(*m);
}
#define cleanup_curlm __attribute__((cleanup(cleanup_curlmp)))

/* Below this rate for the stall time, a transfer counts as stalled. */
#define STALL_BYTES_PER_SEC 512L
/* A URL that keeps making progress is retried, but not forever. */
#define MAX_ATTEMPTS_PER_URL 12
/* A failed transfer that moved this much made progress (see job_retry). */
#define PROGRESS_BYTES (1024 * 1024)

static long env_long(const char *name, long def, long min)
{
	const char *s = getenv(name);
	if (s == NULL || *s == '\0')
		return def;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end != '\0' || v < min) {
		ib_log_warn("ignoring %s='%s' (want an integer >= %ld)", name, s, min);
		return def;
	}
	return v;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int global_init(ib_error_t *err)
{
	static bool done;
	if (done)
		return 0;
	CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK)
		return ib_error_set(err, 0, "initialise libcurl: %s", curl_easy_strerror(rc));
	done = true;
	return 0;
}

void ib_fetch_req_free(struct ib_fetch_req *req)
{
	if (req == NULL)
		return;
	free(req->path);
	free(req->url_used);
	req->path = req->url_used = NULL;
	ib_strv_free(&req->failures);
}

/* ---- URL resolution ---- */

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void push_joined(struct ib_strv *out, const char *base, const char *path)
{
	size_t lb = strlen(base);
	while (lb > 0 && base[lb - 1] == '/')
		lb--;
	ib_strv_push_owned(out, xasprintf("%.*s/%s", (int)lb, base, path));
}

int ib_fetch_resolve_url(const struct ib_manifest *m, const char *url, struct ib_strv *out, ib_error_t *err)
{
	if (has_prefix(url, "http://") || has_prefix(url, "https://") || has_prefix(url, "file://")) {
		ib_strv_push(out, url);
		return 0;
	}
	if (!has_prefix(url, "mirror://"))
		return ib_error_usage(err, "unsupported URL '%s' (want http://, https://, file:// or mirror://)", url);
	const char *distro = url + strlen("mirror://");
	const char *slash = strchr(distro, '/');
	if (slash == NULL || slash[1] == '\0')
		return ib_error_usage(err, "mirror URL '%s' has no path (want mirror://debian/PATH)", url);
	cleanup_free char *name = xstrndup(distro, (size_t)(slash - distro));
	const char *path = slash;
	while (*path == '/')
		path++;
	if (strcmp(name, "debian") != 0 && strcmp(name, "ubuntu") != 0)
		return ib_error_usage(err, "unknown mirror '%s' in '%s' (want debian or ubuntu)", name, url);

	if (m && m->base.distro && strcmp(m->base.distro, name) == 0 && m->base.mirrors.n > 0) {
		for (size_t i = 0; i < m->base.mirrors.n; i++)
			push_joined(out, m->base.mirrors.v[i], path);
		return 0;
	}
	if (strcmp(name, "debian") != 0)
		return ib_error_usage(err, "cannot resolve '%s': base.mirrors lists no %s mirror", url, name);
	cleanup_free char *host = ib_host_apt_mirror("debian", err);
	if (host == NULL)
		return ib_error_wrap(err, "resolve '%s' through the host's apt mirror", url);
	push_joined(out, host, path);
	return 0;
}

/* ---- the transfer engine ---- */

enum job_state { JOB_READY, JOB_RUNNING, JOB_DONE, JOB_FAILED, JOB_DUPLICATE };

struct job {
	struct ib_fetch_req *req; /* not owned */
	size_t n_urls, url_idx;
	enum job_state state;
	int attempt;	    /* failed attempts on the current URL, for the back-off */
	int tries;	    /* all attempts on the current URL */
	bool restarted;	    /* already restarted from zero after a resumed mismatch */
	bool checked_part;  /* a leftover .part was hashed once */
	bool waited;	    /* another process held the download (said once) */
	int64_t not_before; /* back-off: earliest start, in now_ms() time */
	char *part_path;
	int fd;
	CURL *easy;
	int64_t offset;	 /* bytes already in the part file when this transfer began */
	int64_t written; /* bytes this transfer wrote */
	int write_errno;
	int64_t t_start; /* start of the job's first transfer, for the summary line */
	char errbuf[CURL_ERROR_SIZE];
	char *last_reason;	   /* why the current URL last failed */
	enum ib_fetch_failure why; /* ... and of what kind */
	struct ib_strv failures;   /* "URL: reason", one per URL given up on */
	ib_error_t fatal;	   /* a local problem (disk), not worth another URL */
	size_t dup_of;
};

struct engine {
	CURLM *multi; /* not owned */
	long stall_seconds, backoff_ms, retries, max_jobs;
	size_t active;
	int64_t last_status;
};

static void job_set_reason(struct job *j, enum ib_fetch_failure why, char *reason)
{
	free(j->last_reason);
	j->last_reason = reason;
	j->why = why;
}

static void job_close_part(struct job *j)
{
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
}

/* Opens (creating) the part file and locks it, so that two imgbuild processes
 * never append to the same partial download; EBUSY when another holds it. */
static int job_open_part(struct job *j, ib_error_t *err)
{
	if (j->fd >= 0)
		return 0;
	if (j->part_path == NULL) {
		if (j->req->dest) {
			j->part_path = xstrdup(j->req->dest);
		} else if (j->req->sha256) {
			j->part_path = ib_store_part_path(j->req->sha256, err);
			if (j->part_path == NULL)
				return -1;
		} else {
			/* Trust on first use: the digest is unknown, so there is no name to
			 * resume under across runs; a temporary file still resumes within this run. */
			j->fd = ib_store_tmpfile(&j->part_path, err);
			return j->fd < 0 ? -1 : 0;
		}
	}
	j->fd = open(j->part_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (j->fd < 0)
		return ib_error_errno(err, errno, "open '%s'", j->part_path);
	if (flock(j->fd, LOCK_EX | LOCK_NB) < 0) {
		int saved = errno;
		job_close_part(j);
		if (saved == EWOULDBLOCK)
			return ib_error_set(err, EBUSY, "'%s' is being downloaded by another imgbuild process (lock on '%s')",
					    j->req->name, j->part_path);
		return ib_error_errno(err, saved, "lock '%s'", j->part_path);
	}
	return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct job *j = userdata;
	size_t len = size * nmemb, done = 0;
	while (done < len) {
		ssize_t w = pwrite(j->fd, ptr + done, len - done, (off_t)(j->offset + j->written));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			j->write_errno = errno;
			return 0; /* makes curl stop with CURLE_WRITE_ERROR */
		}
		done += (size_t)w;
		j->written += w;
	}
	return len;
}

static void format_size(char *buf, size_t len, double bytes)
{
	const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int u = 0;
	while (bytes >= 1024 && u < 4) {
		bytes /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%.0f B", bytes);
	else
		snprintf(buf, len, "%.1f %s", bytes, units[u]);
}

/* Finishes the job with its store entry. */
static void job_done(struct job *j, const char *path, const char *actual, bool cached)
{
	j->state = JOB_DONE;
	j->req->path = xstrdup(path);
	memcpy(j->req->sha256_found, actual, IB_SHA256_HEX_LEN + 1);
	if (cached) {
		ib_log_debug("'%s' is cached at '%s'", j->req->name, path);
		return;
	}
	j->req->url_used = xstrdup(j->req->urls[j->url_idx]);
	struct stat st;
	char size[32] = "?", rate[32] = "?";
	double secs = (double)(now_ms() - j->t_start) / 1000.0;
	if (stat(path, &st) == 0) {
		format_size(size, sizeof(size), (double)st.st_size);
		format_size(rate, sizeof(rate), secs > 0.001 ? (double)st.st_size / secs : (double)st.st_size);
	}
	ib_log_info("fetched %s (%s in %.1fs, %s/s) from %s", j->req->name, size, secs, rate, j->req->url_used);
}

/* Hashes the part file and renames it into the store. Returns 0 when stored,
 * IB_STORE_MISMATCH (part removed, reason recorded) or -1 (j->fatal set). */
static int job_commit(struct engine *e, struct job *j)
{
	char actual[IB_SHA256_HEX_LEN + 1];
	ib_error_t err = NULL;
	const char *url = j->req->urls[j->url_idx];
	int rc;
	if (j->req->dest) {
		/* The caller's file: hashed here, renamed by the caller. */
		rc = ib_sha256_file(j->part_path, actual, &err);
		if (rc == 0 && j->req->sha256 && strcmp(actual, j->req->sha256) != 0) {
			unlink(j->part_path);
			rc = IB_STORE_MISMATCH;
		}
		if (rc == 0) {
			job_close_part(j);
			job_done(j, j->part_path, actual, false);
			return 0;
		}
	} else {
		rc = ib_store_commit(j->part_path, j->req->sha256, url, actual, &err);
	}
	if (rc == IB_STORE_MISMATCH) {
		job_set_reason(j, IB_FETCH_FAIL_MISMATCH,
			       xasprintf("sha256 mismatch: expected %s, got %s", j->req->sha256, actual));
		ib_error_free(&err);
		/* The part was unlinked: the next attempt starts a new one. */
		job_close_part(j);
		return rc;
	}
	if (rc < 0) {
		j->fatal = err;
		return -1;
	}
	job_close_part(j);
	cleanup_free char *path = ib_store_path(actual, &j->fatal);
	if (path == NULL)
		return -1;
	job_done(j, path, actual, false);
	return 0;
}

static void job_next_url(struct job *j)
{
	const char *url = j->req->urls[j->url_idx];
	if (j->tries > 1)
		ib_strv_push_owned(&j->failures, xasprintf("%s: %s (after %d attempts)", url,
							   j->last_reason ? j->last_reason : "failed", j->tries));
	else
		ib_strv_push_owned(&j->failures, xasprintf("%s: %s", url, j->last_reason ? j->last_reason : "failed"));
	j->req->failure = j->why;
	job_set_reason(j, IB_FETCH_FAIL_NONE, NULL);
	j->url_idx++;
	j->attempt = j->tries = 0;
	j->restarted = false;
	j->not_before = 0;
	if (j->url_idx >= j->n_urls)
		j->state = JOB_FAILED;
	else {
		ib_log_info("fetch %s: trying the next URL, %s", j->req->name, j->req->urls[j->url_idx]);
		j->state = JOB_READY;
	}
}

/* A transient failure: try the same URL again after a back-off, or give it up. */
static void job_retry(struct engine *e, struct job *j, bool made_progress)
{
	/* A transfer that moved real data before failing resumes from where it got
	 * to, so it starts the back-off over (a long download over a flaky link
	 * gets there); MAX_ATTEMPTS_PER_URL still bounds it. A trickle before each
	 * stall does not count. */
	if (made_progress)
		j->attempt = 0;
	j->attempt++;
	if (j->attempt > e->retries || j->tries >= MAX_ATTEMPTS_PER_URL) {
		job_next_url(j);
		return;
	}
	long delay = e->backoff_ms;
	for (int i = 1; i < j->attempt && delay < 60000; i++)
		delay *= 2;
	ib_log_warn("fetch %s: %s: %s; retrying in %ld ms", j->req->name, j->req->urls[j->url_idx], j->last_reason, delay);
	j->not_before = now_ms() + delay;
	j->state = JOB_READY;
}

static bool transient(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_PARTIAL_FILE:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3: return true;
	default: return false;
	}
}

/* Is SHA256 in the store, intact? A corrupt entry is an error offline (the
 * user must delete it); online it is removed and fetched again. */
static int store_lookup(const char *sha256, bool offline, ib_error_t *err)
{
	int rc = ib_store_check(sha256, NULL, err);
	if (rc >= 0 || offline)
		return rc;
	ib_log_warn("%s; removing it and fetching it again", (*err)->msg);
	ib_error_free(err);
	cleanup_free char *path = ib_store_path(sha256, err);
	if (path == NULL || (unlink(path) < 0 && errno != ENOENT))
		return path ? ib_error_errno(err, errno, "remove the corrupt '%s'", path) : -1;
	return 0;
}

/* How often a job whose download another imgbuild process holds looks again. */
#define OTHER_PROCESS_POLL_MS 250

static int job_start(struct engine *e, struct job *j, ib_error_t *err)
{
	/* Another process may have stored it since this run looked (see below). */
	int have = j->req->sha256 && !j->req->dest ? store_lookup(j->req->sha256, false, &j->fatal) : 0;
	if (have < 0) {
		j->state = JOB_FAILED;
		return 0;
	}
	if (have > 0) {
		cleanup_free char *path = ib_store_path(j->req->sha256, &j->fatal);
		if (path == NULL) {
			j->state = JOB_FAILED;
			return 0;
		}
		job_done(j, path, j->req->sha256, true);
		return 0;
	}
	if (job_open_part(j, &j->fatal) < 0) {
		if (j->fatal->status == EBUSY) {
			/* Another imgbuild process is downloading these bytes (two
			 * builds sharing a cache): wait for it to store them, or to
			 * give up its lock, then carry on from what it left. */
			if (!j->waited)
				ib_log_info("waiting for another imgbuild process downloading %s", j->req->name);
			j->waited = true;
			ib_error_free(&j->fatal);
			j->not_before = now_ms() + OTHER_PROCESS_POLL_MS;
			return 0;
		}
		j->state = JOB_FAILED;
		return 0;
	}
	struct stat st;
	if (fstat(j->fd, &st) < 0) {
		ib_error_errno(&j->fatal, errno, "stat '%s'", j->part_path);
		j->state = JOB_FAILED;
		return 0;
	}
	/* A .part left by a run that died after the last byte but before the
	 * rename may already be whole: hash it once before asking for more. */
	if (!j->checked_part && j->req->sha256 && st.st_size > 0) {
		j->checked_part = true;
		char actual[IB_SHA256_HEX_LEN + 1];
		ib_error_t herr = NULL;
		if (ib_sha256_file(j->part_path, actual, &herr) == 0 && strcmp(actual, j->req->sha256) == 0) {
			if (j->t_start == 0)
				j->t_start = now_ms();
			if (job_commit(e, j) < 0 && j->fatal)
				j->state = JOB_FAILED;
			return 0;
		}
		ib_error_free(&herr);
		ib_log_debug("resuming %s from byte %lld of '%s'", j->req->name, (long long)st.st_size, j->part_path);
	}
	j->checked_part = true;
	j->offset = st.st_size;
	j->written = 0;
	j->write_errno = 0;
	j->errbuf[0] = '\0';
	j->tries++;
	if (j->t_start == 0)
		j->t_start = now_ms();

	CURL *c = curl_easy_init();
	if (c == NULL)
		return ib_error_set(err, ENOMEM, "curl_easy_init failed");
	curl_easy_setopt(c, CURLOPT_URL, j->req->urls[j->url_idx]);
	curl_easy_setopt(c, CURLOPT_PRIVATE, j);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, j->errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
	/* A redirect must never turn a remote URL into a local file read. */
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS | CURLPROTO_FILE));
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_USERAGENT, "imgbuild/" IB_VERSION);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, STALL_BYTES_PER_SEC);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, e->stall_seconds);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	if (j->offset > 0)
		curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)j->offset);
	CURLMcode mrc = curl_multi_add_handle(e->multi, c);
	if (mrc != CURLM_OK) {
		curl_easy_cleanup(c);
		return ib_error_set(err, 0, "curl_multi_add_handle: %s", curl_multi_strerror(mrc));
	}
	j->easy = c;
	j->state = JOB_RUNNING;
	e->active++;
	return 0;
}

static void job_finished(struct engine *e, struct job *j, CURLcode rc)
{
	long status = 0;
	curl_off_t length = -1;
	curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(j->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
	curl_multi_remove_handle(e->multi, j->easy);
	curl_easy_cleanup(j->easy);
	j->easy = NULL;
	e->active--;
	bool progress = j->written >= PROGRESS_BYTES;

	if (j->write_errno) {
		ib_error_errno(&j->fatal, j->write_errno, "write '%s'", j->part_path);
		j->state = JOB_FAILED;
		return;
	}
	if (rc == CURLE_OK) {
		int crc = job_commit(e, j);
		if (crc == 0)
			return;
		if (crc != IB_STORE_MISMATCH) {
			j->state = JOB_FAILED;
			return;
		}
		/* A resumed file may hold a stale prefix from another attempt: give the
		 * URL one clean try before blaming it. */
		if (j->offset > 0 && !j->restarted) {
			ib_log_warn("fetch %s: %s after resuming; downloading it again from the start", j->req->name,
				    j->last_reason);
			j->restarted = true;
			j->state = JOB_READY;
			return;
		}
		ib_log_warn("fetch %s: %s: %s", j->req->name, j->req->urls[j->url_idx], j->last_reason);
		job_next_url(j);
		return;
	}

	const char *detail = j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc);
	if (rc == CURLE_HTTP_RETURNED_ERROR) {
		bool gone = status == 404 || status == 410;
		job_set_reason(j, gone ? IB_FETCH_FAIL_NOT_FOUND : IB_FETCH_FAIL_OTHER,
			       xasprintf("HTTP %ld%s", status, gone ? " (not found)" : ""));
		if (status == 416) {
			/* The part is not a prefix the server agrees with; start over. */
			if (ftruncate(j->fd, 0) < 0) {
				ib_error_errno(&j->fatal, errno, "truncate '%s'", j->part_path);
				j->state = JOB_FAILED;
				return;
			}
			job_retry(e, j, false);
		} else if (status >= 500 || status == 408 || status == 429) {
			job_retry(e, j, false);
		} else {
			ib_log_warn("fetch %s: %s: HTTP %ld", j->req->name, j->req->urls[j->url_idx], status);
			job_next_url(j);
		}
		return;
	}
	if (rc == CURLE_PARTIAL_FILE && length >= 0)
		job_set_reason(j, IB_FETCH_FAIL_TRUNCATED,
			       xasprintf("truncated body: the connection closed after byte %lld of %lld",
					 (long long)(j->offset + j->written), (long long)(j->offset + length)));
	else if (rc == CURLE_FILE_COULDNT_READ_FILE)
		job_set_reason(j, IB_FETCH_FAIL_NOT_FOUND, xasprintf("not found (%s)", detail));
	else
		job_set_reason(j, rc == CURLE_PARTIAL_FILE ? IB_FETCH_FAIL_TRUNCATED : IB_FETCH_FAIL_OTHER,
			       xasprintf("%s (%s)", detail, curl_easy_strerror(rc)));
	if (rc == CURLE_RANGE_ERROR || rc == CURLE_BAD_DOWNLOAD_RESUME) {
		/* The server ignored the Range header (or the part is longer than the
		 * file): throw the part away and ask for everything. */
		if (ftruncate(j->fd, 0) < 0) {
			ib_error_errno(&j->fatal, errno, "truncate '%s'", j->part_path);
			j->state = JOB_FAILED;
			return;
		}
		j->state = JOB_READY;
		if (j->tries >= MAX_ATTEMPTS_PER_URL)
			job_next_url(j);
		return;
	}
	if (transient(rc)) {
		job_retry(e, j, progress);
		return;
	}
	ib_log_warn("fetch %s: %s: %s", j->req->name, j->req->urls[j->url_idx], j->last_reason);
	job_next_url(j);
}

static int terminal_width(void)
{
	struct winsize ws;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
		return ws.ws_col;
	return 80;
}

/* One status line for all running transfers: name, bytes, rate, ETA. */
static void show_progress(struct engine *e, struct job *jobs, size_t n, size_t n_done)
{
	if (!ib_log_is_tty())
		return;
	int64_t now = now_ms();
	if (now - e->last_status < 250)
		return;
	e->last_status = now;
	char line[1024];
	size_t len = 0;
	len += (size_t)snprintf(line, sizeof(line), "[%zu/%zu]", n_done, n);
	size_t running = 0;
	for (size_t i = 0; i < n; i++)
		running += jobs[i].state == JOB_RUNNING;
	for (size_t i = 0; i < n && len < sizeof(line) - 1; i++) {
		struct job *j = &jobs[i];
		if (j->state != JOB_RUNNING)
			continue;
		curl_off_t got = 0, total = -1, speed = 0;
		curl_easy_getinfo(j->easy, CURLINFO_SIZE_DOWNLOAD_T, &got);
		curl_easy_getinfo(j->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &total);
		curl_easy_getinfo(j->easy, CURLINFO_SPEED_DOWNLOAD_T, &speed);
		char s_got[32], s_total[32] = "?", s_rate[32], eta[32] = "--:--";
		format_size(s_got, sizeof(s_got), (double)(j->offset + got));
		format_size(s_rate, sizeof(s_rate), (double)speed);
		if (total >= 0) {
			format_size(s_total, sizeof(s_total), (double)(j->offset + total));
			if (speed > 0) {
				long secs = (long)((total - got) / speed);
				snprintf(eta, sizeof(eta), "%ld:%02ld", secs / 60, secs % 60);
			}
		}
		char bar[64] = "";
		if (running == 1 && total > 0) {
			/* One transfer (imgbuild pull, a single input): a bar, as curl and wget draw. */
			double frac = (double)(j->offset + got) / (double)(j->offset + total);
			int w = 30, fill = (int)(frac * w);
			fill = fill < 0 ? 0 : fill > w ? w : fill;
			snprintf(bar, sizeof(bar), " [%.*s%*s] %3d%%", fill, "##############################", w - fill, "",
				 (int)(frac * 100));
		}
		len += (size_t)snprintf(line + len, sizeof(line) - len, "  %s%s %s/%s %s/s ETA %s", j->req->name, bar, s_got,
					s_total, s_rate, eta);
	}
	int width = terminal_width() - 1;
	if ((int)len > width && width < (int)sizeof(line))
		line[width] = '\0';
	ib_log_status("%s", line);
}

static void job_free(struct job *j)
{
	if (j->easy)
		curl_easy_cleanup(j->easy);
	job_close_part(j);
	/* A trust-on-first-use temporary has no name to resume under later. */
	if (j->req && j->req->sha256 == NULL && !j->req->dest && j->part_path && j->state != JOB_DONE)
		unlink(j->part_path);
	free(j->part_path);
	free(j->last_reason);
	ib_strv_free(&j->failures);
	ib_error_free(&j->fatal);
}

static void jobs_freep(struct job **jobs_p)
{
	struct job *jobs = *jobs_p;
	if (jobs == NULL)
		return;
	for (size_t i = 0; jobs[i].req; i++)
		job_free(&jobs[i]);
	free(jobs);
}

/* What --offline cannot get: inputs neither in the store nor local files. */
static int check_offline(struct ib_fetch_req *reqs, size_t n, ib_error_t *err)
{
	cleanup_strv struct ib_strv missing = { 0 };
	for (size_t i = 0; i < n; i++) {
		int have = reqs[i].sha256 ? store_lookup(reqs[i].sha256, true, err) : 0;
		if (have < 0)
			return ib_error_wrap(err, "offline: download '%s'", reqs[i].name);
		if (reqs[i].sha256 == NULL)
			ib_strv_push_owned(&missing, xasprintf("  %s: sha256 unknown (run imgbuild pin)", reqs[i].name));
		else if (have == 0 && !has_prefix(reqs[i].urls[0] ? reqs[i].urls[0] : "", "file://"))
			ib_strv_push_owned(&missing, xasprintf("  %s: %s (sha256 %s)", reqs[i].name,
							       reqs[i].urls[0] ? reqs[i].urls[0] : "no URL", reqs[i].sha256));
	}
	if (missing.n == 0)
		return 0;
	size_t total = 1;
	for (size_t i = 0; i < missing.n; i++)
		total += strlen(missing.v[i]) + 1;
	cleanup_free char *list = xcalloc(1, total);
	for (size_t i = 0; i < missing.n; i++) {
		strcat(list, "\n");
		strcat(list, missing.v[i]);
	}
	size_t count = missing.n;
	return ib_error_set(err, 0, "offline: %zu input%s not in the cache:%s", count, count == 1 ? "" : "s", list);
}

static int check_reqs(const struct ib_fetch_req *reqs, size_t n, ib_error_t *err)
{
	for (size_t i = 0; i < n; i++) {
		if (reqs[i].sha256 && !ib_store_valid_digest(reqs[i].sha256))
			return ib_error_usage(err, "invalid sha256 '%s' for '%s' (want 64 lowercase hex digits)", reqs[i].sha256,
					      reqs[i].name);
		if (reqs[i].urls == NULL || reqs[i].urls[0] == NULL)
			return ib_error_usage(err, "no URL for '%s'", reqs[i].name);
	}
	return 0;
}

/* One job per request: done at once when the store has the bytes, a
 * duplicate when an earlier request wants the same bytes (one transfer and
 * one .part lock), else ready. *REMAINING counts the ready ones. */
static int plan_jobs(struct ib_fetch_req *reqs, size_t n, bool offline, struct job *jobs, size_t *remaining, ib_error_t *err)
{
	*remaining = 0;
	for (size_t i = 0; i < n; i++) {
		struct job *j = &jobs[i];
		j->req = &reqs[i];
		j->fd = -1;
		while (reqs[i].urls[j->n_urls])
			j->n_urls++;
		int have = reqs[i].sha256 && !reqs[i].dest ? store_lookup(reqs[i].sha256, offline, err) : 0;
		if (have < 0)
			return ib_error_wrap(err, "download '%s'", reqs[i].name);
		if (have > 0) {
			cleanup_free char *path = ib_store_path(reqs[i].sha256, err);
			if (path == NULL)
				return -1;
			j->state = JOB_READY; /* for job_done's bookkeeping */
			job_done(j, path, reqs[i].sha256, true);
			continue;
		}
		j->state = JOB_READY;
		for (size_t k = 0; k < i && reqs[i].sha256 && !reqs[i].dest; k++) {
			if (reqs[k].sha256 && !reqs[k].dest && strcmp(reqs[k].sha256, reqs[i].sha256) == 0 &&
			    jobs[k].state != JOB_DONE) {
				j->state = JOB_DUPLICATE;
				j->dup_of = jobs[k].state == JOB_DUPLICATE ? jobs[k].dup_of : k;
				break;
			}
		}
		if (j->state == JOB_READY)
			(*remaining)++;
	}
	return 0;
}

/* How long curl_multi_poll may sleep: not at all when a job can start (it
 * moved to its next URL), until the next retry's back-off ends when nothing
 * runs, else 200 ms for the progress line. */
static int poll_timeout(const struct engine *e, const struct job *jobs, size_t n, int64_t next_wake)
{
	for (size_t i = 0; i < n && (long)e->active < e->max_jobs; i++)
		if (jobs[i].state == JOB_READY && jobs[i].not_before <= now_ms())
			return 0;
	if (e->active == 0 && next_wake >= 0) {
		int64_t wait = next_wake - now_ms();
		return wait < 0 ? 0 : wait > 1000 ? 1000 : (int)wait;
	}
	return 200;
}

/* Runs the ready jobs, E->max_jobs at a time, until none is ready or running. */
static int run_jobs(struct engine *e, struct job *jobs, size_t n, size_t remaining, ib_error_t *err)
{
	while (remaining > 0) {
		int64_t now = now_ms();
		int64_t next_wake = -1;
		for (size_t i = 0; i < n; i++) {
			struct job *j = &jobs[i];
			if (j->state != JOB_READY)
				continue;
			if (j->not_before > now) {
				if (next_wake < 0 || j->not_before < next_wake)
					next_wake = j->not_before;
				continue;
			}
			if ((long)e->active >= e->max_jobs)
				break;
			if (job_start(e, j, err) < 0)
				return -1;
		}
		int running = 0;
		CURLMcode mrc = curl_multi_perform(e->multi, &running);
		if (mrc != CURLM_OK)
			return ib_error_set(err, 0, "curl_multi_perform: %s", curl_multi_strerror(mrc));
		CURLMsg *msg;
		int queued;
		while ((msg = curl_multi_info_read(e->multi, &queued))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct job *j = NULL;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
			job_finished(e, j, msg->data.result);
		}
		remaining = 0;
		size_t n_done = 0;
		for (size_t i = 0; i < n; i++) {
			if (jobs[i].state == JOB_READY || jobs[i].state == JOB_RUNNING)
				remaining++;
			else if (jobs[i].state == JOB_DONE)
				n_done++;
		}
		if (remaining == 0)
			break;
		show_progress(e, jobs, n, n_done);
		mrc = curl_multi_poll(e->multi, NULL, 0, poll_timeout(e, jobs, n, next_wake), NULL);
		if (mrc != CURLM_OK)
			return ib_error_set(err, 0, "curl_multi_poll: %s", curl_multi_strerror(mrc));
	}
	ib_log_status_clear();
	return 0;
}

/* Duplicates take their leader's result; failures are listed together, in
 * one error. */
static int collect_results(struct job *jobs, size_t n, ib_error_t *err)
{
	size_t failed = 0;
	for (size_t i = 0; i < n; i++) {
		struct job *j = &jobs[i];
		if (j->state == JOB_DUPLICATE) {
			struct job *lead = &jobs[j->dup_of];
			if (lead->state == JOB_DONE) {
				j->req->path = xstrdup(lead->req->path);
				j->req->url_used = lead->req->url_used ? xstrdup(lead->req->url_used) : NULL;
				memcpy(j->req->sha256_found, lead->req->sha256_found, sizeof(j->req->sha256_found));
			}
			continue;
		}
		if (j->state != JOB_FAILED)
			continue;
		for (size_t k = 0; k < j->failures.n; k++)
			ib_strv_push(&j->req->failures, j->failures.v[k]);
		failed++;
	}
	if (failed == 0)
		return 0;
	cleanup_buf struct ib_buf msg = { 0 };
	for (size_t i = 0; i < n; i++) {
		struct job *j = &jobs[i];
		if (j->state != JOB_FAILED)
			continue;
		if (msg.len)
			ib_buf_addc(&msg, '\n');
		if (j->fatal) {
			ib_buf_printf(&msg, "fetch '%s': %s", j->req->name, j->fatal->msg);
			continue;
		}
		ib_buf_printf(&msg, "fetch '%s' failed from every URL:", j->req->name);
		for (size_t k = 0; k < j->failures.n; k++)
			ib_buf_printf(&msg, "\n  %s", j->failures.v[k]);
	}
	return ib_error_set(err, 0, "%s", msg.s);
}

int ib_fetch_many(struct ib_fetch_req *reqs, size_t n, bool offline, ib_error_t *err)
{
	if (check_reqs(reqs, n, err) < 0)
		return -1;
	if (offline && check_offline(reqs, n, err) < 0)
		return -1;
	if (global_init(err) < 0)
		return -1;

	__attribute__((cleanup(jobs_freep))) struct job *jobs = xcalloc(n + 1, sizeof(*jobs));
	size_t remaining = 0;
	if (plan_jobs(reqs, n, offline, jobs, &remaining, err) < 0)
		return -1;
	cleanup_curlm CURLM *multi = NULL;
	if (remaining > 0) {
		multi = curl_multi_init();
		if (multi == NULL)
			return ib_error_set(err, ENOMEM, "curl_multi_init failed");
	}
	struct engine e = {
		.multi = multi,
		.stall_seconds = env_long("IMGBUILD_FETCH_STALL_SECONDS", 30, 1),
		.backoff_ms = env_long("IMGBUILD_FETCH_BACKOFF_MS", 1000, 0),
		.retries = env_long("IMGBUILD_FETCH_RETRIES", 3, 0),
		.max_jobs = env_long("IMGBUILD_FETCH_JOBS", 4, 1),
	};
	if (run_jobs(&e, jobs, n, remaining, err) < 0)
		return -1;
	return collect_results(jobs, n, err);
}

/* ---- manifest-level helpers ---- */

static int download_urls(const struct ib_manifest *m, const struct ib_download *d, struct ib_strv *out, ib_error_t *err)
{
	if (ib_fetch_resolve_url(m, d->url, out, err) < 0)
		return ib_error_wrap(err, "download '%s'", d->name);
	for (size_t i = 0; i < d->mirrors.n; i++)
		if (ib_fetch_resolve_url(m, d->mirrors.v[i], out, err) < 0)
			return ib_error_wrap(err, "download '%s'", d->name);
	return 0;
}

static bool is_source(const struct ib_manifest *m, const char *name)
{
	for (size_t i = 0; i < m->n_sources; i++)
		if (strcmp(m->sources[i].name, name) == 0)
			return true;
	return false;
}

int ib_fetch_downloads(const struct ib_manifest *m, const char *const *names, bool offline, ib_error_t *err)
{
	size_t n_sel = 0;
	cleanup_free const struct ib_download **sel = xcalloc(m->n_downloads + 1, sizeof(*sel));
	if (names == NULL) {
		for (size_t i = 0; i < m->n_downloads; i++)
			sel[n_sel++] = &m->downloads[i];
	} else {
		for (size_t k = 0; names[k]; k++) {
			const struct ib_download *d = NULL;
			for (size_t i = 0; i < m->n_downloads; i++)
				if (strcmp(m->downloads[i].name, names[k]) == 0)
					d = &m->downloads[i];
			if (d == NULL) {
				if (is_source(m, names[k]))
					continue;
				return ib_error_usage(err, "unknown input '%s' (no download or source of that name)", names[k]);
			}
			bool seen = false;
			for (size_t i = 0; i < n_sel; i++)
				seen = seen || sel[i] == d;
			if (!seen)
				sel[n_sel++] = d;
		}
	}
	for (size_t i = 0; i < n_sel; i++)
		if (sel[i]->sha256 == NULL)
			return ib_error_usage(err, "%s:%d:%d: download '%s' has sha256 = \"unknown\" (run 'imgbuild pin %s')",
					      m->path, sel[i]->sha256_pos.line, sel[i]->sha256_pos.col, sel[i]->name, m->path);
	if (n_sel == 0)
		return 0;

	struct ib_strv *urls = xcalloc(n_sel, sizeof(*urls));
	struct ib_fetch_req *reqs = xcalloc(n_sel, sizeof(*reqs));
	int rc = 0;
	for (size_t i = 0; i < n_sel && rc == 0; i++) {
		/* Offline needs no URL resolution (it may need the host's apt config). */
		if (offline)
			ib_strv_push(&urls[i], sel[i]->url);
		else
			rc = download_urls(m, sel[i], &urls[i], err);
		reqs[i].name = sel[i]->name;
		reqs[i].urls = (const char *const *)urls[i].v;
		reqs[i].sha256 = sel[i]->sha256;
	}
	if (rc == 0)
		rc = ib_fetch_many(reqs, n_sel, offline, err);
	for (size_t i = 0; i < n_sel; i++) {
		ib_fetch_req_free(&reqs[i]);
		ib_strv_free(&urls[i]);
	}
	free(reqs);
	free(urls);
	return rc;
}

char *ib_fetch_cached_path(const struct ib_download *d)
{
	if (d == NULL || !ib_store_valid_digest(d->sha256))
		return NULL;
	ib_error_t err = NULL;
	char *path = NULL;
	if (ib_store_check(d->sha256, &path, &err) < 0) {
		ib_log_warn("%s", err->msg);
		ib_error_free(&err);
		return NULL;
	}
	return path;
}

int ib_fetch_file(const char *url, const char *const *mirrors, const char *sha256, bool offline, char **path_out, ib_error_t *err)
{
	if (sha256 == NULL)
		return ib_error_usage(err, "fetch '%s': no sha256 given", url);
	cleanup_strv struct ib_strv urls = { 0 };
	int rc = ib_fetch_resolve_url(NULL, url, &urls, err);
	for (size_t i = 0; rc == 0 && mirrors && mirrors[i]; i++)
		rc = ib_fetch_resolve_url(NULL, mirrors[i], &urls, err);
	struct ib_fetch_req req = { .name = url, .urls = (const char *const *)urls.v, .sha256 = sha256 };
	if (rc == 0)
		rc = ib_fetch_many(&req, 1, offline, err);
	if (rc == 0)
		*path_out = steal_pointer(&req.path);
	ib_fetch_req_free(&req);
	return rc;
}
