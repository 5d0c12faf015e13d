/* The build engine. See build.h; the cache layout is in layers.h and
 * docs/engine.md. */
#include "build.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bootstrap.h"
#include "ccremote.h"
#include "crypto.h"
#include "driver.h"
#include "fetch.h"
#include "git.h"
#include "imgmeta.h"
#include "log.h"
#include "manifest.h"
#include "mounts.h"
#include "pack.h"
#include "paths.h"
#include "proc.h"
#include "sandbox.h"
#include "util.h"

#define PACK_KEY_VERSION "imgbuild-pack-1"
#define TAIL_LINES 20

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- logs --- */

void ib_build_show_tail(const char *path, int n)
{
	ib_error_t err = NULL;
	size_t len = 0;
	cleanup_free char *text = ib_read_file(path, &len, &err);
	if (text == NULL) {
		ib_error_free(&err);
		return;
	}
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	size_t start = len;
	int lines = 0;
	while (start > 0) {
		if (text[start - 1] == '\n' && ++lines == n)
			break;
		start--;
	}
	ib_log_status_clear();
	fprintf(stderr, "imgbuild: last lines of %s:\n", path);
	char *save = NULL;
	for (char *line = strtok_r(text + start, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		/* apt and curl redraw with \r: show what the line ended as. */
		char *cr = strrchr(line, '\r');
		fprintf(stderr, "  | %s\n", cr && cr[1] ? cr + 1 : line);
	}
}

/* --- the build state --- */

struct ib_build {
	const struct ib_manifest *m; /* not owned */
	struct ib_build_opts opts;   /* strings not owned */
	char *cache_dir, *build_dir, *logs_dir, *mnt, *ccache_dir;
	char *ccremote_url, *ccremote_source;
	struct ib_ccremote *ccremote; /* started by the first stage that runs */
	bool ccremote_tried;
	int lock_fd;
	sigset_t old_mask;
	char base_key[IB_KEY_LEN + 1];
	char (*keys)[IB_KEY_LEN + 1];
	char *base_root;
	char **uppers; /* per stage, once its layer exists */
	bool base_ran;
	bool *ran;
	bool driver_probed;
	struct ib_driver driver;
	bool packed, pack_cached;
	char digest[IB_SHA256_HEX_LEN + 1];
	char *output;
};

int ib_build_find_stage(const struct ib_manifest *m, const char *name, ib_error_t *err)
{
	for (size_t i = 0; i < m->n_stages; i++)
		if (strcmp(m->stages[i].name, name) == 0)
			return (int)i;
	size_t len = 1;
	for (size_t i = 0; i < m->n_stages; i++)
		len += strlen(m->stages[i].name) + 2;
	cleanup_free char *names = xcalloc(1, len);
	for (size_t i = 0; i < m->n_stages; i++) {
		if (i)
			strcat(names, ", ");
		strcat(names, m->stages[i].name);
	}
	return ib_error_usage(err, "no stage '%s' in '%s' (stages: %s)", name, m->path, m->n_stages ? names : "none");
}

void ib_build_free(struct ib_build *b)
{
	if (b == NULL)
		return;
	/* Before anything it might still be using goes (the build lock). */
	int refused = ib_ccremote_stop(b->ccremote);
	if (refused > 0)
		ib_log_warn("ccache remote: refused %d request%s of the stages (%s/ccache-remote.log)", refused,
			    refused == 1 ? "" : "s", b->logs_dir);
	if (b->driver_probed)
		ib_driver_free(&b->driver);
	for (size_t i = 0; b->uppers && i < b->m->n_stages; i++)
		free(b->uppers[i]);
	free(b->uppers);
	free(b->ran);
	free(b->keys);
	free(b->base_root);
	free(b->cache_dir);
	free(b->build_dir);
	free(b->logs_dir);
	free(b->mnt);
	free(b->ccache_dir);
	if (b->ccremote_url)
		explicit_bzero(b->ccremote_url, strlen(b->ccremote_url));
	free(b->ccremote_url);
	free(b->ccremote_source);
	free(b->output);
	if (b->lock_fd >= 0)
		close(b->lock_fd);
	ib_proc_unblock_signals(&b->old_mask);
	free(b);
}

static char *output_path(const struct ib_manifest *m, const struct ib_build_opts *o)
{
	if (o->output) {
		if (o->output[0] == '/')
			return xstrdup(o->output);
		char cwd[4096];
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			return xstrdup(o->output);
		return ib_path_join(cwd, o->output);
	}
	if (o->zstd && m->image.compression != IB_COMPRESS_ZSTD) {
		size_t n = strlen(m->image.output);
		if (n > 4 && strcmp(m->image.output + n - 4, ".tar") == 0)
			return xasprintf("%s.zst", m->image.output);
	}
	return xstrdup(m->image.output);
}

struct ib_build *ib_build_new(const struct ib_manifest *m, const struct ib_build_opts *opts, ib_error_t *err)
{
	struct ib_build *b = xcalloc(1, sizeof(*b));
	cleanup_free char *lock = NULL;
	b->m = m;
	b->opts = *opts;
	b->lock_fd = -1;
	/* Reproducible layers: the caller's umask must not reach the layer folders,
	 * the bootstrap or the stages (umask 077 made the image's root and every
	 * folder `make install` created 0700). */
	umask(022);
	ib_proc_block_signals(&b->old_mask);

	b->keys = xcalloc(m->n_stages ? m->n_stages : 1, sizeof(*b->keys));
	b->uppers = xcalloc(m->n_stages ? m->n_stages : 1, sizeof(char *));
	b->ran = xcalloc(m->n_stages ? m->n_stages : 1, sizeof(bool));
	b->output = output_path(m, opts);
	if (ib_layers_all_keys(m, b->base_key, b->keys, err) < 0)
		goto fail;
	b->cache_dir = ib_cache_dir(err);
	if (b->cache_dir == NULL)
		goto fail;
	if (opts->build_dir) {
		char cwd[4096];
		if (opts->build_dir[0] != '/' && getcwd(cwd, sizeof(cwd)))
			b->build_dir = ib_path_join(cwd, opts->build_dir);
		else
			b->build_dir = xstrdup(opts->build_dir);
	} else {
		b->build_dir = xasprintf("%s/builds/%s", b->cache_dir, m->image.name);
	}
	b->logs_dir = ib_path_join(b->build_dir, "logs");
	b->mnt = ib_path_join(b->build_dir, "mnt");
	/* One ccache per manifest (by its path): a hostile manifest's stages can
	 * write objects into the ccache they are given, and a shared one would
	 * hand those to the next build of a good manifest, which links and signs
	 * them. Within one manifest, edits and rebuilds still hit. */
	uint8_t id[IB_SHA256_LEN];
	char id_hex[IB_SHA256_HEX_LEN + 1];
	ib_sha256_buf(m->path, strlen(m->path), id);
	ib_hex(id, sizeof(id), id_hex);
	b->ccache_dir = xasprintf("%s/ccache/%s-%.16s", b->cache_dir, m->image.name, id_hex);
	if (ib_mkdir_p(b->logs_dir, 0755, err) < 0 || ib_mkdir_p(b->mnt, 0755, err) < 0 || ib_mkdir_p(b->ccache_dir, 0755, err) < 0)
		goto fail;
	/* A wrong URL is the user's to fix now, before any stage ran. */
	b->ccremote_url = ib_ccremote_configured(opts->ccache_remote, &b->ccremote_source);
	if (b->ccremote_url) {
		struct ib_ccremote_target t;
		if (ib_ccremote_parse(b->ccremote_url, &t, err) < 0) {
			ib_error_wrap(err, "%s", b->ccremote_source);
			goto fail;
		}
		ib_ccremote_target_free(&t);
	} else if (opts->ccache_remote_write) {
		ib_error_usage(err, "--ccache-remote-write needs a shared cache: --ccache-remote URL, "
				    "$IMGBUILD_CCACHE_REMOTE or ~/.config/imgbuild/ccache-remote");
		goto fail;
	}
	lock = ib_path_join(b->build_dir, "lock");
	b->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (b->lock_fd < 0) {
		ib_error_errno(err, errno, "open '%s'", lock);
		goto fail;
	}
	if (flock(b->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		ib_error_set(err, errno, "another imgbuild is using the build folder '%s'", b->build_dir);
		goto fail;
	}
	ib_layers_sweep();
	return b;
fail:
	ib_build_free(b);
	return NULL;
}

static int open_log(const char *path, bool truncate, ib_error_t *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_APPEND | (truncate ? O_TRUNC : 0), 0644);
	if (fd < 0)
		return ib_error_errno(err, errno, "open '%s'", path);
	return fd;
}

static int ensure_base(struct ib_build *b, ib_error_t *err)
{
	if (b->base_root)
		return 0;
	b->base_root = ib_layers_lookup(b->base_key);
	if (b->base_root) {
		ib_log_debug("base %s %s: cached layer %.12s", b->m->base.distro, b->m->base.suite, b->base_key);
		return 0;
	}
	struct ib_layer_tmp t;
	if (ib_layers_begin(&t, b->base_key, false, err) < 0)
		return -1;
	cleanup_free char *log_path = ib_path_join(b->logs_dir, "bootstrap.log");
	cleanup_fd int log_fd = open_log(log_path, true, err);
	if (log_fd < 0) {
		ib_layers_abort(&t);
		return -1;
	}
	double t0 = now_s();
	struct ib_bootstrap_stats stats;
	if (ib_bootstrap_run(b->m, t.upper, log_fd, b->opts.offline, &stats, err) < 0) {
		ib_layers_abort(&t);
		if ((*err)->exit_code == IB_EXIT_FAIL)
			ib_build_show_tail(log_path, TAIL_LINES);
		return ib_error_wrap(err, "bootstrap %s %s (log: %s)", b->m->base.distro, b->m->base.suite, log_path);
	}
	if (ib_layers_commit(&t, err) < 0) {
		ib_layers_abort(&t);
		return -1;
	}
	b->base_root = ib_layers_lookup(b->base_key);
	if (b->base_root == NULL)
		return ib_error_set(err, 0, "base layer %s vanished after it was made", b->base_key);
	b->base_ran = true;
	ib_log_info("bootstrap: done in %.1f s", now_s() - t0);
	return 0;
}

/* Everything a stage's sandbox gets besides its root: the binds, the
 * environment and the command. Shared by stages, their clean commands and
 * `imgbuild shell`, so a shell sees exactly what the stage saw. */
struct stage_env {
	struct ib_bind *binds;
	size_t n_binds;
	struct ib_strv owned; /* strings the binds point into */
	struct ib_strv env;
	const char **lowers;
	char *work;
};

static void stage_env_free(struct stage_env *e)
{
	free(e->binds);
	ib_strv_free(&e->owned);
	ib_strv_free(&e->env);
	free(e->lowers);
	free(e->work);
	memset(e, 0, sizeof(*e));
}

static const struct ib_driver *probe_driver(struct ib_build *b)
{
	if (!b->driver_probed) {
		b->driver_probed = true;
		ib_error_t err = NULL;
		if (ib_driver_discover(&b->driver, &err) < 0) {
			ib_log_warn("NVIDIA driver discovery failed, stages run without it: %s", err ? err->msg : "?");
			ib_error_free(&err);
			memset(&b->driver, 0, sizeof(b->driver));
		}
	}
	return b->driver.found ? &b->driver : NULL;
}

/* The class's shared compile cache, started once, when the first stage
 * needs it. A server that does not answer costs the build its hits, not the
 * build: ccache then works from the local cache alone. */
static void ccremote_ensure(struct ib_build *b)
{
	if (b->ccremote_tried || b->ccremote_url == NULL)
		return;
	b->ccremote_tried = true;
	cleanup_free char *dir = ib_path_join(b->build_dir, "ccache-remote");
	cleanup_free char *log = ib_path_join(b->logs_dir, "ccache-remote.log");
	ib_error_t err = NULL;
	b->ccremote = ib_ccremote_start(b->ccremote_url, b->opts.ccache_remote_write, dir, log, &err);
	if (b->ccremote == NULL) {
		ib_log_warn("%s (from %s); stages compile with the local ccache only", err ? err->msg : "?", b->ccremote_source);
		ib_error_free(&err);
		return;
	}
	ib_log_info("ccache remote %s: %s", ib_ccremote_shown(b->ccremote),
		    b->opts.ccache_remote_write ? "read-write" : "read-only (--ccache-remote-write lets this build fill it)");
}

static int stage_env_make(struct ib_build *b, size_t i, bool fresh_work, struct stage_env *e, ib_error_t *err)
{
	const struct ib_manifest *m = b->m;
	const struct ib_stage *s = &m->stages[i];
	memset(e, 0, sizeof(*e));

	e->lowers = xcalloc(i + 2, sizeof(char *));
	for (size_t k = 0; k < i; k++)
		e->lowers[k] = b->uppers[i - 1 - k];
	e->lowers[i] = b->base_root;

	/* Inputs: downloads verified in the store, sources exported. */
	if (s->inputs.n > 0 && ib_fetch_downloads(m, (const char *const *)s->inputs.v, b->opts.offline, err) < 0)
		return ib_error_wrap(err, "stage '%s'", s->name);
	e->binds = xcalloc(s->inputs.n + 5, sizeof(*e->binds));
	for (size_t k = 0; k < s->inputs.n; k++) {
		const char *name = s->inputs.v[k];
		const struct ib_download *d = ib_manifest_download(m, name);
		char *src = NULL;
		if (d) {
			src = ib_fetch_cached_path(d);
			if (src == NULL)
				return ib_error_set(err, 0, "stage '%s': download '%s' is not in the cache", s->name, name);
		} else {
			const struct ib_source *so = ib_manifest_source(m, name);
			if (so == NULL)
				return ib_error_usage(err, "stage '%s': unknown input '%s'", s->name, name);
			if (ib_git_export(so, b->opts.offline, &src, err) < 0)
				return ib_error_wrap(err, "stage '%s'", s->name);
		}
		ib_strv_push_owned(&e->owned, src);
		char *dst = xasprintf("/imgbuild/inputs/%s", name);
		ib_strv_push_owned(&e->owned, dst);
		e->binds[e->n_binds++] = (struct ib_bind){ src, dst, IB_BIND_RO };
	}

	e->work = xasprintf("%s/work/%s", b->build_dir, s->name);
	if (fresh_work && ib_path_exists(e->work) && ib_remove_tree(e->work, err) < 0)
		return -1;
	if (ib_mkdir_p(e->work, 0755, err) < 0)
		return -1;
	e->binds[e->n_binds++] = (struct ib_bind){ e->work, "/imgbuild/work", 0 };
	e->binds[e->n_binds++] = (struct ib_bind){ b->ccache_dir, "/imgbuild/ccache", 0 };
	e->binds[e->n_binds++] = (struct ib_bind){ s->script, "/imgbuild/stage.sh", IB_BIND_RO };
	/* The sandbox binds the host's resolv.conf itself for network stages. */
	ccremote_ensure(b);
	if (b->ccremote)
		e->binds[e->n_binds++] = (struct ib_bind){ ib_ccremote_dir(b->ccremote), IB_CCREMOTE_STAGE_DIR, IB_BIND_RO };

	ib_layers_stage_env(m, s, b->ccremote ? ib_ccremote_stage_url(b->ccremote) : NULL, &e->env);
	return 0;
}

static void spec_fill(struct ib_build *b, size_t i, struct stage_env *e, struct ib_sandbox_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->lower_dirs = e->lowers;
	spec->mount_point = b->mnt;
	spec->binds = e->binds;
	spec->n_binds = e->n_binds;
	spec->driver = probe_driver(b);
	spec->envp = e->env.v;
	spec->cwd = "/";
	spec->hostname = "imgbuild";
	spec->network = b->m->stages[i].network;
	spec->seccomp = true;
	spec->stdin_fd = -1;
	spec->stdout_fd = -1;
	spec->stderr_fd = -1;
}

/* Runs ARGV in SPEC with its output going to LOG_FD (and the status line). */
static int sandbox_logged(struct ib_sandbox_spec *spec, char *const *argv, const char *label, int log_fd, int *status,
			  ib_error_t *err)
{
	int write_fd = -1;
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct ib_proc_pump *pump = ib_proc_pump_start(label, log_fd, &write_fd, err);
	if (pump == NULL) {
		if (devnull >= 0)
			close(devnull);
		return -1;
	}
	spec->argv = argv;
	spec->stdin_fd = devnull;
	spec->stdout_fd = write_fd;
	spec->stderr_fd = write_fd;
	int rc = ib_sandbox_run(spec, status, err);
	close(write_fd);
	if (devnull >= 0)
		close(devnull);
	ib_proc_pump_finish(pump);
	return rc;
}

static void log_line(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(int fd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cleanup_free char *msg = xvasprintf(fmt, ap);
	ib_write_all(fd, msg, strlen(msg));
	va_end(ap);
}

/* Removes what the sandbox may have left as mount points in the upper layer:
 * /imgbuild is the engine's, never the image's. */
static int scrub_upper(const char *upper, ib_error_t *err)
{
	cleanup_free char *p = ib_path_join(upper, "imgbuild");
	struct stat st;
	if (lstat(p, &st) == 0 && ib_remove_tree(p, err) < 0)
		return -1;
	return 0;
}

static char *const stage_argv[] = {
	"/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash /imgbuild/stage.sh; fi; exec /bin/sh /imgbuild/stage.sh", NULL
};

static int run_stage(struct ib_build *b, size_t i, ib_error_t *err)
{
	const struct ib_stage *s = &b->m->stages[i];
	struct stage_env e;
	struct ib_layer_tmp t = { 0 };
	cleanup_free char *log_path = xasprintf("%s/%s.log", b->logs_dir, s->name);
	cleanup_fd int log_fd = -1;
	int rc = -1, status = 0;
	double t0 = now_s();

	if (stage_env_make(b, i, true, &e, err) < 0)
		goto out;
	if (ib_layers_begin(&t, b->keys[i], true, err) < 0)
		goto out;
	log_fd = open_log(log_path, true, err);
	if (log_fd < 0)
		goto out;

	ib_log_info("stage %s: running (log: %s)", s->name, log_path);
	struct ib_sandbox_spec spec;
	for (int attempt = 0; attempt <= s->retries; attempt++) {
		spec_fill(b, i, &e, &spec);
		spec.upper_dir = t.upper;
		spec.work_dir = t.work;
		if (attempt > 0) {
			ib_log_info("stage %s: failed with exit status %d, retry %d of %d", s->name, status, attempt, s->retries);
			log_line(log_fd, "\n=== imgbuild: retry %d of %d ===\n", attempt, s->retries);
			if (s->clean) {
				log_line(log_fd, "=== imgbuild: clean: %s ===\n", s->clean);
				char *clean_argv[] = { "/bin/sh", "-c", s->clean, NULL };
				int clean_status = 0;
				if (sandbox_logged(&spec, clean_argv, s->name, log_fd, &clean_status, err) < 0)
					goto out;
				if (clean_status != 0)
					ib_log_warn("stage %s: clean command exited with status %d", s->name, clean_status);
				spec_fill(b, i, &e, &spec);
				spec.upper_dir = t.upper;
				spec.work_dir = t.work;
			}
		}
		if (sandbox_logged(&spec, stage_argv, s->name, log_fd, &status, err) < 0)
			goto out;
		if (status == 0)
			break;
		if (ib_proc_check_interrupt(err) < 0)
			goto out;
	}
	if (status != 0) {
		ib_build_show_tail(log_path, TAIL_LINES);
		ib_error_set(err, 0,
			     "stage '%s' failed with exit status %d (log: %s; earlier stages are cached, "
			     "`imgbuild shell %s --stage %s` opens a shell where it ran)",
			     s->name, status, log_path, b->m->path, s->name);
		goto out;
	}
	if (scrub_upper(t.upper, err) < 0 || ib_layers_commit(&t, err) < 0)
		goto out;
	b->uppers[i] = ib_layers_lookup(b->keys[i]);
	if (b->uppers[i] == NULL) {
		ib_error_set(err, 0, "layer %s of stage '%s' vanished after it was made", b->keys[i], s->name);
		goto out;
	}
	b->ran[i] = true;
	ib_log_info("stage %s: done in %.1f s", s->name, now_s() - t0);
	rc = 0;
out:
	if (rc < 0 && t.tmp)
		ib_layers_abort(&t);
	stage_env_free(&e);
	return rc;
}

int ib_build_stages(struct ib_build *b, size_t upto, ib_error_t *err)
{
	if (upto > b->m->n_stages)
		upto = b->m->n_stages;
	/* Only what is missing needs the base: a fully cached build never
	 * touches the mirror, the downloads or git. */
	size_t first_missing = upto;
	for (size_t i = 0; i < upto; i++) {
		if (b->uppers[i] == NULL)
			b->uppers[i] = ib_layers_lookup(b->keys[i]);
		if (b->uppers[i] == NULL && first_missing == upto)
			first_missing = i;
	}
	if (ib_proc_check_interrupt(err) < 0 || ensure_base(b, err) < 0)
		return -1;
	for (size_t i = first_missing; i < upto; i++) {
		if (ib_proc_check_interrupt(err) < 0)
			return -1;
		/* A later layer may exist from an earlier build, but everything
		 * after a re-run stage has a new key, so this only skips layers
		 * whose whole ancestry matched. */
		if (b->uppers[i] != NULL)
			continue;
		if (run_stage(b, i, err) < 0)
			return -1;
	}
	return 0;
}

/* --- packing --- */

static int pack_key(struct ib_build *b, char key[IB_KEY_LEN + 1], ib_error_t *err)
{
	const struct ib_manifest *m = b->m;
	cleanup_sha256 struct ib_sha256 *h = ib_sha256_new();
	const char *top = m->n_stages ? b->keys[m->n_stages - 1] : b->base_key;
	uint8_t text_digest[IB_SHA256_LEN];
	char text_hex[IB_SHA256_HEX_LEN + 1];
	ib_sha256_buf(m->text, m->text_len, text_digest);
	ib_hex(text_digest, sizeof(text_digest), text_hex);
	const char *sign = b->opts.sign_key ? b->opts.sign_key : m->image.sign_key;
	char sign_hex[IB_SHA256_HEX_LEN + 1] = "";
	if (sign && ib_sha256_file(sign, sign_hex, err) < 0)
		return ib_error_wrap(err, "signing key");
	bool zstd = b->opts.zstd || m->image.compression == IB_COMPRESS_ZSTD;
	cleanup_free char *fields = xasprintf("%s\n%s\n%s\n%s\n%s\n%s\n", PACK_KEY_VERSION, top, text_hex, b->output,
					      zstd ? "zstd" : "none", sign_hex);
	ib_sha256_update(h, fields, strlen(fields));
	for (size_t i = 0; i < m->n_stages; i++)
		ib_sha256_update(h, b->keys[i], IB_KEY_LEN);
	uint8_t digest[IB_SHA256_LEN];
	ib_sha256_final(h, digest);
	ib_hex(digest, sizeof(digest), key);
	return 0;
}

/* The digest recorded beside OUTPUT (first word of OUTPUT.sha256), or "" */
static void read_sidecar(const char *output, char out[IB_SHA256_HEX_LEN + 1])
{
	out[0] = '\0';
	cleanup_free char *path = xasprintf("%s.sha256", output);
	ib_error_t err = NULL;
	cleanup_free char *text = ib_read_file(path, NULL, &err);
	if (text == NULL) {
		ib_error_free(&err);
		return;
	}
	if (strlen(text) >= IB_SHA256_HEX_LEN) {
		memcpy(out, text, IB_SHA256_HEX_LEN);
		out[IB_SHA256_HEX_LEN] = '\0';
	}
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* What a stage leaves in .imgbuild/lock.d and facts.d is read by imgbuild on
 * the host, outside any sandbox: the stage's tree is untrusted, so these are
 * opened relative to the tree's folder, one component at a time, never
 * through a symbolic link (which resolves on the host: lock.d -> /root/.ssh
 * would pack the host's keys), regular files only, and bounded in size. */
#define STAGE_FILE_MAX ((size_t)1 << 20)
#define STAGE_FILES_MAX 4096

/* REL below the folder ROOT_FD, no component a symbolic link; -1 with errno
 * (ELOOP for a link) and *AT naming the component that failed. */
static int open_beneath(int root_fd, const char *rel, int last_flags, char **at)
{
	cleanup_free char *copy = xstrdup(rel);
	int fd = dup(root_fd);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c;) {
		char *next = strtok_r(NULL, "/", &save);
		int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | (next ? O_DIRECTORY : last_flags);
		int nfd = strcmp(c, "..") == 0 ? (errno = EPERM, -1) : openat(fd, c, flags);
		int e = errno;
		close(fd);
		if (nfd < 0) {
			if (at)
				*at = xstrndup(rel, (size_t)(c - copy) + strlen(c));
			errno = e;
			return -1;
		}
		fd = nfd;
		c = next;
	}
	return fd;
}

/* "name=version" of every installed package in ROOT's dpkg status, sorted. */
static void installed_packages(const char *root, struct ib_strv *out)
{
	/* Not through a symbolic link either (see read_dir_files): a status file
	 * that is not a plain file of the tree lists no package. */
	cleanup_fd int root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0)
		return;
	cleanup_fd int dir_fd = open_beneath(root_fd, "var/lib/dpkg", O_DIRECTORY, NULL);
	if (dir_fd < 0)
		return;
	ib_error_t err = NULL;
	cleanup_free char *text = ib_read_file_at(dir_fd, "status", "/var/lib/dpkg/status", (size_t)256 << 20, NULL, &err);
	if (text == NULL) {
		ib_error_free(&err);
		return;
	}
	char *pkg = NULL, *ver = NULL;
	bool installed = false;
	char *save = NULL;
	/* Paragraphs end at an empty line; strtok_r drops those, so a new
	 * "Package:" line closes the previous paragraph. */
	for (char *line = strtok_r(text, "\n", &save);; line = strtok_r(NULL, "\n", &save)) {
		if (line == NULL || strncmp(line, "Package: ", 9) == 0) {
			if (pkg && ver && installed)
				ib_strv_push_owned(out, xasprintf("%s=%s", pkg, ver));
			pkg = ver = NULL;
			installed = false;
			if (line == NULL)
				break;
			pkg = line + 9;
		} else if (strncmp(line, "Version: ", 9) == 0) {
			ver = line + 9;
		} else if (strncmp(line, "Status: ", 8) == 0) {
			installed = strstr(line, " installed") != NULL && strstr(line, "not-installed") == NULL;
		}
	}
	if (out->n)
		qsort(out->v, out->n, sizeof(char *), cmp_strp);
}

/* The problem with /REL of the stage tree, as a sentence. */
static int stage_file_error(int e, const char *at, ib_error_t *err)
{
	if (e == ELOOP || e == ENOTDIR)
		return ib_error_set(err, 0,
				    "the image's /%s is a symbolic link (or not a folder): imgbuild reads .imgbuild/lock.d "
				    "and facts.d of the stages' tree only as plain folders of regular files (fix the stage "
				    "that made it)",
				    at);
	return ib_error_errno(err, e, "open the image's /%s", at);
}

/* Files in ROOT/DIR: "NAME" and its contents (trailing newlines trimmed).
 * A missing DIR is empty; anything else unexpected is an error. */
static int read_dir_files(const char *root, const char *dir, struct ib_strv *names, struct ib_strv *values, ib_error_t *err)
{
	cleanup_fd int root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0)
		return ib_error_errno(err, errno, "open '%s'", root);
	cleanup_free char *at = NULL;
	int dfd = open_beneath(root_fd, dir, O_DIRECTORY, &at);
	if (dfd < 0)
		return errno == ENOENT ? 0 : stage_file_error(errno, at, err);
	DIR *d = fdopendir(dfd);
	if (d == NULL) {
		close(dfd);
		return ib_error_errno(err, errno, "read the image's /%s", dir);
	}
	cleanup_strv struct ib_strv found = { 0 };
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			ib_strv_push(&found, e->d_name);
	int rc = 0;
	if (found.n > STAGE_FILES_MAX)
		rc = ib_error_set(err, 0,
				  "the image's /%s holds %zu files, more than the %d imgbuild reads (fix the stage "
				  "that wrote them)",
				  dir, found.n, STAGE_FILES_MAX);
	if (found.n)
		qsort(found.v, found.n, sizeof(char *), cmp_strp);
	for (size_t i = 0; i < found.n && rc == 0; i++) {
		cleanup_free char *shown = xasprintf("the image's /%s/%s", dir, found.v[i]);
		cleanup_free char *shown_esc = ib_escape(shown, false);
		size_t len = 0;
		/* O_NOFOLLOW on the name, O_NONBLOCK against a FIFO, then S_ISREG
		 * and the size limit on the opened fd (ib_read_file_at). */
		char *text = ib_read_file_at(dirfd(d), found.v[i], shown_esc, STAGE_FILE_MAX, &len, err);
		if (text == NULL) {
			rc = ib_error_wrap(err, "lock and facts (fix the stage that wrote it)");
			break;
		}
		while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
			text[--len] = '\0';
		ib_strv_push(names, found.v[i]);
		ib_strv_push_owned(values, text);
	}
	closedir(d);
	return rc;
}

/* The lock: what exactly went into the image, one "kind name value" line each. */
static char *make_lock(const struct ib_manifest *m, const char *root, ib_error_t *err)
{
	cleanup_buf struct ib_buf lock = { 0 };
	for (size_t i = 0; i < m->n_downloads; i++)
		ib_buf_printf(&lock, "download %s sha256:%s\n", m->downloads[i].name,
			      m->downloads[i].sha256 ? m->downloads[i].sha256 : "unknown");
	for (size_t i = 0; i < m->n_sources; i++)
		ib_buf_printf(&lock, "source %s %s\n", m->sources[i].name, m->sources[i].commit);
	cleanup_strv struct ib_strv pkgs = { 0 };
	installed_packages(root, &pkgs);
	for (size_t i = 0; i < pkgs.n; i++)
		ib_buf_printf(&lock, "package %s\n", pkgs.v[i]);
	cleanup_strv struct ib_strv names = { 0 }, values = { 0 };
	if (read_dir_files(root, IB_META_LOCK_D, &names, &values, err) < 0)
		return NULL;
	for (size_t i = 0; i < names.n; i++) {
		ib_buf_printf(&lock, "# %s\n", names.v[i]);
		ib_buf_printf(&lock, "%s\n", values.v[i]);
	}
	return ib_buf_steal(&lock);
}

static void add_fact(struct ib_strv *keys, struct ib_strv *values, const char *key, const char *value)
{
	if (value == NULL)
		return;
	for (size_t i = 0; i < keys->n; i++) {
		if (strcmp(keys->v[i], key) == 0) {
			free(values->v[i]);
			values->v[i] = xstrdup(value);
			return;
		}
	}
	ib_strv_push(keys, key);
	ib_strv_push(values, value);
}

/* Facts for facts.toml besides name and archs (pack writes those). */
static int make_facts(struct ib_build *b, const char *root, struct ib_strv *keys, struct ib_strv *values, ib_error_t *err)
{
	const struct ib_manifest *m = b->m;
	add_fact(keys, values, "distro", m->base.distro);
	add_fact(keys, values, "suite", m->base.suite);
	add_fact(keys, values, "gcc", m->toolchain.gcc);
	for (size_t i = 0; i < m->stack.pins.n; i++) /* every pin alike (manifest.h) */
		add_fact(keys, values, m->stack.pins.v[i].key, m->stack.pins.v[i].value);
	add_fact(keys, values, "base_key", b->base_key);
	for (size_t i = 0; i < m->n_stages; i++) {
		cleanup_free char *k = xasprintf("stage_key_%s", m->stages[i].name);
		add_fact(keys, values, k, b->keys[i]);
	}
	cleanup_strv struct ib_strv names = { 0 }, vals = { 0 };
	int rc = read_dir_files(root, IB_META_FACTS_D, &names, &vals, err);
	for (size_t i = 0; i < names.n; i++) {
		if (ib_facts_key_reserved(names.v[i]))
			ib_log_warn("ignoring /" IB_META_FACTS_D "/%s: not a plain key or set by imgbuild", names.v[i]);
		else
			add_fact(keys, values, names.v[i], vals.v[i]);
	}
	return rc;
}

/* In the pack child: assemble the read-only root and pack it. Writes the
 * digest (or "!message") to RESULT_FD. */
/* The stacked layers, read-only at b->mnt, in the helper's own mount namespace
 * (gone when it exits). */
static int mount_stack(struct ib_build *b, ib_error_t *err)
{
	const struct ib_manifest *m = b->m;
	if (unshare(CLONE_NEWNS) < 0)
		return ib_error_errno(err, errno, "unshare a mount namespace");
	if (ib_xmount(NULL, NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, err) < 0)
		return -1;
	if (m->n_stages == 0) {
		if (ib_xmount(NULL, b->base_root, b->mnt, NULL, MS_BIND | MS_REC, NULL, err) < 0 ||
		    ib_xmount(NULL, NULL, b->mnt, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL, err) < 0)
			return -1;
		return 0;
	}
	/* Relative lowerdir paths from the layers folder keep the option
	 * string under the page-size limit for many more layers. */
	cleanup_free char *layers = ib_layers_dir(err);
	if (layers == NULL)
		return -1;
	if (chdir(layers) < 0)
		return ib_error_errno(err, errno, "chdir '%s'", layers);
	cleanup_buf struct ib_buf opt = { 0 };
	ib_buf_adds(&opt, "lowerdir=");
	for (size_t k = m->n_stages; k-- > 0;)
		ib_buf_printf(&opt, "%s/upper:", b->keys[k]);
	ib_buf_printf(&opt, "%s/upper", b->base_key);
	if (ib_xmount(NULL, "imgbuild", b->mnt, "overlay", MS_RDONLY, opt.s, err) < 0)
		return -1;
	if (chdir("/") < 0)
		return ib_error_errno(err, errno, "chdir '/'");
	return 0;
}

/* In a helper process (ib_proc_call): mount the stack and pack it; the
 * answer is the image's digest. */
static int pack_in_helper(void *arg, struct ib_buf *result, ib_error_t *err)
{
	struct ib_build *b = arg;
	const struct ib_manifest *m = b->m;
	const char *root = b->mnt;
	char digest[IB_SHA256_HEX_LEN + 1] = "";
	cleanup_strv struct ib_strv fact_keys = { 0 };
	cleanup_strv struct ib_strv fact_values = { 0 };
	if (mount_stack(b, err) < 0)
		return -1;
	cleanup_free char *lock = make_lock(m, root, err);
	if (lock == NULL || make_facts(b, root, &fact_keys, &fact_values, err) < 0)
		return -1;

	cleanup_free struct ib_kv *facts = xcalloc(fact_keys.n + 1, sizeof(*facts));
	for (size_t i = 0; i < fact_keys.n; i++) {
		facts[i].key = fact_keys.v[i];
		facts[i].value = fact_values.v[i];
	}
	struct ib_pack_meta meta[] = {
		{ "manifest.toml", m->text, m->text_len },
		{ "lock", lock, strlen(lock) },
	};
	struct ib_pack_opts po;
	memset(&po, 0, sizeof(po));
	po.root = root;
	po.output = b->output;
	po.epoch = m->image.source_date_epoch;
	po.compression = (b->opts.zstd || m->image.compression == IB_COMPRESS_ZSTD) ? IB_COMPRESS_ZSTD : IB_COMPRESS_NONE;
	po.sign_key = b->opts.sign_key ? b->opts.sign_key : m->image.sign_key;
	po.name = m->image.name;
	po.meta = meta;
	po.n_meta = sizeof(meta) / sizeof(meta[0]);
	po.facts = facts;
	po.n_facts = fact_keys.n;
	po.fact_archs = m->stack.archs.n ? (const char *const *)m->stack.archs.v : NULL;
	if (ib_pack(&po, digest, err) < 0)
		return -1;
	ib_buf_adds(result, digest);
	return 0;
}

int ib_build_pack(struct ib_build *b, ib_error_t *err)
{
	const struct ib_manifest *m = b->m;
	if (m->n_stages && b->uppers[m->n_stages - 1] == NULL)
		return ib_error_set(err, 0, "pack: the last stage has not been built");
	char key[IB_KEY_LEN + 1];
	if (pack_key(b, key, err) < 0)
		return -1;
	cleanup_free char *packs = ib_cache_subdir("packs", err);
	if (packs == NULL)
		return -1;
	cleanup_free char *record = ib_path_join(packs, key);
	ib_error_t e2 = NULL;
	cleanup_free char *recorded = ib_read_file(record, NULL, &e2);
	ib_error_free(&e2);
	char sidecar[IB_SHA256_HEX_LEN + 1];
	read_sidecar(b->output, sidecar);
	if (recorded && strlen(recorded) >= IB_SHA256_HEX_LEN && sidecar[0] &&
	    strncmp(recorded, sidecar, IB_SHA256_HEX_LEN) == 0 && ib_path_exists(b->output)) {
		memcpy(b->digest, sidecar, sizeof(b->digest));
		b->pack_cached = true;
		return 0;
	}
	if (ensure_base(b, err) < 0 || ib_proc_check_interrupt(err) < 0)
		return -1;

	ib_log_info("packing %s", b->output);
	double t0 = now_s();
	cleanup_buf struct ib_buf digest = { 0 };
	if (ib_proc_call("pack", pack_in_helper, b, &digest, err) < 0) {
		/* A failed pack is a failed build (exit 1) whatever the cause; an
		 * interruption keeps its 130/143. */
		if ((*err)->exit_code == IB_EXIT_USAGE)
			ib_error_exit_code(err, IB_EXIT_FAIL);
		return ib_error_wrap(err, "pack");
	}
	if (digest.len != IB_SHA256_HEX_LEN)
		return ib_error_set(err, 0, "pack: the packing process answered '%s', not a digest", digest.s);
	memcpy(b->digest, digest.s, sizeof(b->digest));
	cleanup_free char *line = xasprintf("%s\n", b->digest);
	if (ib_write_file_atomic(record, line, strlen(line), 0644, err) < 0)
		return -1;
	b->packed = true;
	ib_log_info("packed in %.1f s", now_s() - t0);
	return 0;
}

/* --- imgbuild shell --- */

int ib_build_shell(struct ib_build *b, size_t index, char *const *argv, int *status, ib_error_t *err)
{
	if (index >= b->m->n_stages)
		return ib_error_usage(err, "no stage %zu", index);
	for (size_t k = 0; k < index; k++)
		if (b->uppers[k] == NULL)
			return ib_error_set(err, 0, "shell: stage '%s' has not been built", b->m->stages[k].name);
	if (ensure_base(b, err) < 0)
		return -1;
	struct stage_env e;
	if (stage_env_make(b, index, false, &e, err) < 0) {
		stage_env_free(&e);
		return -1;
	}
	static char *const shell_argv[] = { "/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash -i; fi; exec /bin/sh -i",
					    NULL };
	struct ib_sandbox_spec spec;
	spec_fill(b, index, &e, &spec);
	/* No upper: the sandbox puts a throw-away tmpfs over the layers. */
	spec.argv = argv && argv[0] ? argv : shell_argv;
	int rc = ib_sandbox_run(&spec, status, err);
	stage_env_free(&e);
	return rc;
}

/* --- the whole build --- */

int ib_build_run(const struct ib_manifest *m, const struct ib_build_opts *opts, ib_error_t *err)
{
	double t0 = now_s();
	struct ib_build *b = ib_build_new(m, opts, err);
	if (b == NULL)
		return -1;
	int rc = ib_build_stages(b, m->n_stages, err);
	if (rc == 0)
		rc = ib_build_pack(b, err);

	cleanup_buf struct ib_buf ran = { 0 }, cached = { 0 };
	size_t n_ran = 0;
	for (size_t i = 0; i < m->n_stages; i++) {
		if (b->uppers[i] == NULL)
			continue;
		if (b->ran[i]) {
			ib_buf_printf(&ran, "%s%s", n_ran ? ", " : "", m->stages[i].name);
			n_ran++;
		} else {
			ib_buf_printf(&cached, "%s%s", cached.len ? ", " : "", m->stages[i].name);
		}
	}
	if (rc == 0) {
		ib_log_info("stages run: %s; cached: %s; base: %s", ran.s ? ran.s : "none", cached.s ? cached.s : "none",
			    b->base_ran ? "bootstrapped" : "cached");
		ib_log_info("image: %s (sha256 %s%s)", b->output, b->digest, b->pack_cached ? ", unchanged" : "");
		double dt = now_s() - t0;
		if (n_ran == 0 && !b->base_ran && b->pack_cached)
			ib_log_info("no-change rebuild: %.2f s", dt);
		else
			ib_log_info("build finished in %.2f s", dt);
	}
	ib_build_free(b);
	return rc;
}
