/* Git sources, by running the git command. We do not use
 * `git submodule update`: it wants a non-bare work tree with a .git inside,
 * resolves URLs against the work tree's remote and keeps clones under .git/
 * where nothing is shared between sources. Instead every repository (the
 * superproject and each submodule) gets its own bare mirror in the cache, and
 * each tree is checked out from its mirror with a throw-away index, which is
 * what `update --init --recursive` amounts to. */
#include "git.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "log.h"
#include "manifest.h"
#include "proc.h"
#include "paths.h"
#include "util.h"

#define MAX_SUBMODULE_DEPTH 16

struct git_ctx {
	const struct ib_source *s; /* not owned */
	bool offline;
	char *home;    /* a fresh, empty HOME for git */
	char *git_dir; /* $cache/git */
	struct ib_strv env;
	bool used_mirror;     /* the superproject came from one of s->mirrors */
	const char *used_url; /* the URL that served it, NULL when cached (not owned) */
	int n_index;
};

struct submodule {
	char *path; /* relative to the export root */
	char *commit;
	char *mirror;
};

struct submodules {
	struct submodule *v;
	size_t n;
};

static void submodules_free(struct submodules *subs)
{
	for (size_t i = 0; i < subs->n; i++) {
		free(subs->v[i].path);
		free(subs->v[i].commit);
		free(subs->v[i].mirror);
	}
	free(subs->v);
	subs->v = NULL;
	subs->n = 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

static void rm_rf(const char *path)
{
	if (path && ib_path_exists(path))
		nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

static void git_ctx_free(struct git_ctx *ctx)
{
	rm_rf(ctx->home);
	free(ctx->home);
	free(ctx->git_dir);
	ib_strv_free(&ctx->env);
}

static int git_ctx_init(struct git_ctx *ctx, const struct ib_source *s, bool offline, ib_error_t *err)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->s = s;
	ctx->offline = offline;
	ctx->git_dir = ib_cache_subdir("git", err);
	if (ctx->git_dir == NULL)
		return -1;
	const char *tmp = getenv("TMPDIR");
	ctx->home = xasprintf("%s/imgbuild-git-home.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(ctx->home) == NULL) {
		int saved = errno;
		free(ctx->home);
		ctx->home = NULL;
		return ib_error_errno(err, saved, "create a temporary HOME for git");
	}
	/* Only what git needs to run and to reach the network: no user or system
	 * config (GIT_CONFIG_NOSYSTEM, an empty HOME), no prompts, fixed locale. */
	const char *path = getenv("PATH");
	ib_strv_push_owned(&ctx->env, xasprintf("PATH=%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin"));
	ib_strv_push_owned(&ctx->env, xasprintf("HOME=%s", ctx->home));
	ib_strv_push_owned(&ctx->env, xasprintf("XDG_CONFIG_HOME=%s", ctx->home));
	ib_strv_push(&ctx->env, "GIT_CONFIG_NOSYSTEM=1");
	ib_strv_push(&ctx->env, "GIT_TERMINAL_PROMPT=0");
	ib_strv_push(&ctx->env, "GIT_ASKPASS=/bin/false");
	ib_strv_push(&ctx->env, "SSH_ASKPASS=/bin/false");
	ib_strv_push(&ctx->env, "LC_ALL=C");
	ib_strv_push(&ctx->env, "TZ=UTC");
	static const char *const pass[] = { "http_proxy", "https_proxy", "HTTP_PROXY",	  "HTTPS_PROXY",  "no_proxy", "NO_PROXY",
					    "all_proxy",  "ALL_PROXY",	 "SSL_CERT_FILE", "SSL_CERT_DIR", NULL };
	for (size_t i = 0; pass[i]; i++) {
		const char *v = getenv(pass[i]);
		if (v)
			ib_strv_push_owned(&ctx->env, xasprintf("%s=%s", pass[i], v));
	}
	return 0;
}

struct git_opts {
	const char *git_dir;   /* --git-dir, may be NULL */
	const char *work_tree; /* --work-tree, also the child's cwd; may be NULL */
	const char *index;     /* GIT_INDEX_FILE, may be NULL */
	bool rewrites;	       /* apply s->rewrites as url.<new>.insteadOf=<old> */
	bool quiet_fail;       /* a failure is expected sometimes: log it only at debug */
};

static char *trim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

/* Runs git with ARGS (NULL-terminated). Captures stdout into *out when OUT is
 * not NULL; a failure's error carries git's last stderr lines. */
static int run_git(struct git_ctx *ctx, const struct git_opts *o, const char *const *args, char **out, ib_error_t *err)
{
	cleanup_strv struct ib_strv argv = { 0 };
	ib_strv_push(&argv, "git");
	static const char *const config[] = {
		"protocol.file.allow=always", /* local and file:// repositories, also for submodules */
		"core.autocrlf=false",	      "core.symlinks=true", "core.fsmonitor=false",    "gc.auto=0",
		"advice.detachedHead=false",  "safe.directory=*",   "init.defaultBranch=main", NULL,
	};
	for (size_t i = 0; config[i]; i++) {
		ib_strv_push(&argv, "-c");
		ib_strv_push(&argv, config[i]);
	}
	if (o->rewrites) {
		for (size_t i = 0; i < ctx->s->rewrites.n; i++) {
			ib_strv_push(&argv, "-c");
			ib_strv_push_owned(
				&argv, xasprintf("url.%s.insteadOf=%s", ctx->s->rewrites.v[i].value, ctx->s->rewrites.v[i].key));
		}
	}
	if (o->git_dir)
		ib_strv_push_owned(&argv, xasprintf("--git-dir=%s", o->git_dir));
	if (o->work_tree)
		ib_strv_push_owned(&argv, xasprintf("--work-tree=%s", o->work_tree));
	for (size_t i = 0; args[i]; i++)
		ib_strv_push(&argv, args[i]);

	cleanup_strv struct ib_strv env = { 0 };
	for (size_t i = 0; i < ctx->env.n; i++)
		ib_strv_push(&env, ctx->env.v[i]);
	if (o->index)
		ib_strv_push_owned(&env, xasprintf("GIT_INDEX_FILE=%s", o->index));

	struct ib_proc_cmd pc = { .argv = argv.v, .envp = env.v, .cwd = o->work_tree };
	struct ib_proc_output po;
	int rc = ib_proc_capture(&pc, &po, err);
	if (rc < 0)
		return ib_error_wrap(err, "git");

	/* The command as a user could retype it, for messages. */
	size_t clen = 1;
	size_t first = 1 + 2 * 8 + (o->rewrites ? 2 * ctx->s->rewrites.n : 0); /* skip our -c pairs */
	for (size_t i = first; i < argv.n; i++)
		clen += strlen(argv.v[i]) + 1;
	cleanup_free char *cmd = xcalloc(1, clen + 4);
	strcpy(cmd, "git");
	for (size_t i = first; i < argv.n; i++) {
		strcat(cmd, " ");
		strcat(cmd, argv.v[i]);
	}

	if (po.status != 0) {
		const char *why = po.err_tail;
		if (po.signal) {
			rc = ib_error_set(err, 0, "'%s' was killed by signal %d%s%s", cmd, po.signal, *why ? ": " : "", why);
		} else {
			if (o->quiet_fail)
				ib_log_debug("'%s' failed (exit %d): %s", cmd, po.status, why);
			rc = ib_error_set(err, 0, "'%s' failed (exit %d)%s%s", cmd, po.status, *why ? ": " : "", why);
		}
	} else if (out) {
		*out = steal_pointer(&po.out);
	}
	ib_proc_output_free(&po);
	return rc;
}

static char *hash_hex(const char *s)
{
	uint8_t d[IB_SHA256_LEN];
	char hex[IB_SHA256_HEX_LEN + 1];
	ib_sha256_buf(s, strlen(s), d);
	ib_hex(d, sizeof(d), hex);
	return xstrdup(hex);
}

static bool valid_commit(const char *s)
{
	if (s == NULL || strlen(s) != 40)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* The bare mirror for URL, created empty when missing. */
static char *ensure_mirror(struct git_ctx *ctx, const char *url, ib_error_t *err)
{
	cleanup_free char *key = hash_hex(url);
	cleanup_free char *path = xasprintf("%s/%s.git", ctx->git_dir, key);
	if (ib_path_exists(path))
		return steal_pointer(&path);
	/* Made beside its final name and renamed, so a crash leaves no half-made repository. */
	cleanup_free char *tmp = xasprintf("%s/.tmp-%s-XXXXXX", ctx->git_dir, key);
	if (mkdtemp(tmp) == NULL) {
		ib_error_errno(err, errno, "create '%s'", tmp);
		return NULL;
	}
	const char *args[] = { "init", "--bare", "-q", tmp, NULL };
	struct git_opts o = { 0 };
	if (run_git(ctx, &o, args, NULL, err) < 0) {
		rm_rf(tmp);
		return NULL;
	}
	/* Remember where it came from, for people looking at the cache. */
	cleanup_free char *note = xasprintf("%s/imgbuild-url", tmp);
	cleanup_free char *line = xasprintf("%s\n", url);
	if (ib_write_file_atomic(note, line, strlen(line), 0644, err) < 0) {
		rm_rf(tmp);
		return NULL;
	}
	if (rename(tmp, path) < 0) {
		int saved = errno;
		rm_rf(tmp);
		if (saved != EEXIST && saved != ENOTEMPTY) {
			ib_error_errno(err, saved, "rename '%s' to '%s'", tmp, path);
			return NULL;
		}
	}
	return steal_pointer(&path);
}

static bool has_commit(struct git_ctx *ctx, const char *mirror, const char *commit)
{
	cleanup_free char *spec = xasprintf("%s^{commit}", commit);
	const char *args[] = { "cat-file", "-e", spec, NULL };
	struct git_opts o = { .git_dir = mirror, .quiet_fail = true };
	ib_error_t err = NULL;
	int rc = run_git(ctx, &o, args, NULL, &err);
	ib_error_free(&err);
	return rc == 0;
}

/* The commit refs/tags/TAG peels to in MIRROR, or NULL. */
static char *tag_commit(struct git_ctx *ctx, const char *mirror, const char *tag)
{
	cleanup_free char *spec = xasprintf("refs/tags/%s^{commit}", tag);
	const char *args[] = { "rev-parse", "-q", "--verify", spec, NULL };
	struct git_opts o = { .git_dir = mirror, .quiet_fail = true };
	ib_error_t err = NULL;
	char *out = NULL;
	if (run_git(ctx, &o, args, &out, &err) < 0) {
		ib_error_free(&err);
		return NULL;
	}
	trim(out);
	if (!valid_commit(out)) {
		free(out);
		return NULL;
	}
	return out;
}

static char *join_reasons(const struct ib_strv *reasons)
{
	size_t len = 1;
	for (size_t i = 0; i < reasons->n; i++)
		len += strlen(reasons->v[i]) + 3;
	char *s = xcalloc(1, len);
	for (size_t i = 0; i < reasons->n; i++) {
		strcat(s, "\n  ");
		strcat(s, reasons->v[i]);
	}
	return s;
}

/* Fetches the tag into the superproject's mirror from the first URL that
 * answers, then checks where it points. */
static int fetch_superproject(struct git_ctx *ctx, const char *mirror, ib_error_t *err)
{
	const struct ib_source *s = ctx->s;
	cleanup_free char *have = tag_commit(ctx, mirror, s->tag);
	if (have && strcmp(have, s->commit) == 0) {
		ib_log_debug("source %s: tag %s is cached at %s", s->name, s->tag, have);
		return 0;
	}
	if (ctx->offline)
		return ib_error_set(err, 0, "offline: source '%s' (tag %s of %s) is not in the cache", s->name, s->tag, s->url);
	cleanup_free char *refspec = xasprintf("+refs/tags/%s:refs/tags/%s", s->tag, s->tag);
	cleanup_strv struct ib_strv reasons = { 0 };
	const char *used = NULL;
	for (size_t i = 0; i <= s->mirrors.n && used == NULL; i++) {
		const char *url = i == 0 ? s->url : s->mirrors.v[i - 1];
		ib_log_info("source %s: fetching tag %s from %s", s->name, s->tag, url);
		const char *args[] = { "fetch", "-q", "--no-tags", "--no-write-fetch-head", url, refspec, NULL };
		struct git_opts o = { .git_dir = mirror };
		ib_error_t ferr = NULL;
		if (run_git(ctx, &o, args, NULL, &ferr) == 0) {
			used = url;
			ctx->used_mirror = i > 0;
			ctx->used_url = url;
		} else {
			ib_log_warn("source %s: %s: %s", s->name, url, ferr->msg);
			ib_strv_push_owned(&reasons, xasprintf("%s: %s", url, ferr->msg));
			ib_error_free(&ferr);
		}
	}
	if (used == NULL) {
		cleanup_free char *list = join_reasons(&reasons);
		return ib_error_set(err, 0, "fetch tag '%s' of source '%s' failed from every URL:%s", s->tag, s->name, list);
	}
	cleanup_free char *got = tag_commit(ctx, mirror, s->tag);
	if (got == NULL)
		return ib_error_set(err, 0, "source '%s': tag '%s' from %s does not point to a commit", s->name, s->tag, used);
	if (strcmp(got, s->commit) != 0)
		return ib_error_set(err, 0,
				    "source '%s': tag '%s' from %s resolves to commit %s, but the manifest pins commit %s "
				    "(the tag has moved; check it and update the manifest)",
				    s->name, s->tag, used, got, s->commit);
	return 0;
}

/* Git's rule for relative submodule URLs: "../x" is relative to the
 * superproject's URL with its last component dropped. */
static char *resolve_submodule_url(const char *base, const char *rel)
{
	if (strncmp(rel, "./", 2) != 0 && strncmp(rel, "../", 3) != 0)
		return xstrdup(rel);
	cleanup_free char *b = xstrdup(base);
	size_t n = strlen(b);
	while (n > 1 && b[n - 1] == '/')
		b[--n] = '\0';
	for (;;) {
		if (strncmp(rel, "./", 2) == 0) {
			rel += 2;
		} else if (strncmp(rel, "../", 3) == 0) {
			char *cut = strrchr(b, '/');
			char *colon = strrchr(b, ':');
			if (colon && (cut == NULL || colon > cut))
				cut = colon; /* scp-like host:path */
			if (cut)
				*cut = '\0';
			rel += 3;
		} else
			break;
	}
	return xasprintf("%s/%s", b, rel);
}

struct candidate {
	char *url;
	bool rewrites;
};

/* Fetches COMMIT of a submodule into its mirror from the first candidate that
 * has it: by commit id first (servers that allow it send just what is
 * needed), else every branch and tag. *served_out: the URL that worked. */
static int fetch_submodule_commit(struct git_ctx *ctx, const char *mirror, const struct candidate *cands, size_t n_cands,
				  const char *commit, const char *path, const char **served_out, ib_error_t *err)
{
	cleanup_strv struct ib_strv reasons = { 0 };
	for (size_t t = 0; t < n_cands; t++) {
		const char *url = cands[t].url;
		struct git_opts o = { .git_dir = mirror, .rewrites = cands[t].rewrites, .quiet_fail = true };
		const char *by_id[] = { "fetch", "-q", "--no-tags", "--no-write-fetch-head", url, commit, NULL };
		const char *all[] = { "fetch",
				      "-q",
				      "--no-tags",
				      "--no-write-fetch-head",
				      url,
				      "+refs/heads/*:refs/heads/*",
				      "+refs/tags/*:refs/tags/*",
				      NULL };
		ib_error_t ferr = NULL;
		ib_log_info("submodule %s: fetching %s from %s%s", path, commit, url,
			    cands[t].rewrites ? " (with the source's URL rewrites)" : "");
		bool got = run_git(ctx, &o, by_id, NULL, &ferr) == 0 && has_commit(ctx, mirror, commit);
		ib_error_free(&ferr);
		if (!got)
			got = run_git(ctx, &o, all, NULL, &ferr) == 0 && has_commit(ctx, mirror, commit);
		if (got) {
			*served_out = url;
			return 0;
		}
		ib_strv_push_owned(&reasons, xasprintf("%s%s: %s", url, cands[t].rewrites ? " (rewritten)" : "",
						       ferr ? ferr->msg : "commit not found after fetching every branch and tag"));
		ib_error_free(&ferr);
	}
	cleanup_free char *list = join_reasons(&reasons);
	return ib_error_set(err, 0, "submodule '%s' of source '%s': cannot fetch commit %s:%s", path, ctx->s->name, commit, list);
}

/* Where to look for a submodule, in order. A relative URL is first resolved
 * against the URL that actually served its parent (a mirror keeps siblings
 * beside it), then against the parent's canonical URL. With the superproject
 * from a mirror the submodules' own hosts are likely unreachable too, so the
 * source's rewrites come first then; else last. */
static size_t submodule_candidates(struct git_ctx *ctx, const char *raw, const char *canonical, const char *served_base,
				   struct candidate out[4])
{
	size_t n = 0;
	bool have_rewrites = ctx->s->rewrites.n > 0;
	bool rewrites_first = ctx->used_mirror && have_rewrites;
	if (served_base) {
		char *u = resolve_submodule_url(served_base, raw);
		if (strcmp(u, canonical) != 0)
			out[n++] = (struct candidate){ u, false };
		else
			free(u);
	}
	if (rewrites_first)
		out[n++] = (struct candidate){ xstrdup(canonical), true };
	out[n++] = (struct candidate){ xstrdup(canonical), false };
	if (have_rewrites && !rewrites_first)
		out[n++] = (struct candidate){ xstrdup(canonical), true };
	return n;
}

/* The submodules recorded in COMMIT of MIRROR (gitlinks + .gitmodules), each
 * fetched into its own mirror, then theirs, depth first. */
static int collect_submodules(struct git_ctx *ctx, const char *mirror, const char *commit, const char *base_url,
			      const char *served_base, const char *prefix, int depth, struct submodules *out, ib_error_t *err)
{
	if (depth > MAX_SUBMODULE_DEPTH)
		return ib_error_set(err, 0, "source '%s': submodules nested deeper than %d at '%s'", ctx->s->name,
				    MAX_SUBMODULE_DEPTH, prefix);
	cleanup_free char *tree = NULL;
	const char *ls[] = { "ls-tree", "-r", "-z", commit, NULL };
	struct git_opts o = { .git_dir = mirror };
	if (run_git(ctx, &o, ls, &tree, err) < 0)
		return -1;
	bool any = false;
	for (char *p = tree; *p; p += strlen(p) + 1)
		if (strncmp(p, "160000 commit ", 14) == 0)
			any = true;
	if (!any)
		return 0;

	cleanup_free char *modules = NULL;
	cleanup_free char *blob = xasprintf("%s:.gitmodules", commit);
	const char *cfg[] = { "config", "-z", "--blob", blob, "--get-regexp", "^submodule\\.", NULL };
	ib_error_t cerr = NULL;
	if (run_git(ctx, &o, cfg, &modules, &cerr) < 0) {
		ib_error_free(&cerr);
		modules = xstrdup("");
	}

	for (char *p = tree; *p; p += strlen(p) + 1) {
		if (strncmp(p, "160000 commit ", 14) != 0)
			continue;
		cleanup_free char *sub_commit = xstrndup(p + 14, 40);
		const char *path = strchr(p, '\t');
		if (path == NULL || !valid_commit(sub_commit))
			return ib_error_set(err, 0, "source '%s': cannot parse 'git ls-tree' line '%s'", ctx->s->name, p);
		path++;
		/* .gitmodules: "submodule.NAME.path\nVALUE\0"; find NAME whose path is PATH. */
		cleanup_free char *name = NULL;
		for (char *q = modules; *q; q += strlen(q) + 1) {
			char *nl = strchr(q, '\n');
			if (nl == NULL)
				continue;
			size_t klen = (size_t)(nl - q);
			if (klen > 15 && strncmp(nl - 5, ".path", 5) == 0 && strcmp(nl + 1, path) == 0)
				name = xstrndup(q + 10, klen - 10 - 5);
		}
		cleanup_free char *url_key = name ? xasprintf("submodule.%s.url", name) : NULL;
		const char *raw_url = NULL;
		for (char *q = modules; url_key && *q; q += strlen(q) + 1) {
			char *nl = strchr(q, '\n');
			if (nl && (size_t)(nl - q) == strlen(url_key) && strncmp(q, url_key, strlen(url_key)) == 0)
				raw_url = nl + 1;
		}
		if (raw_url == NULL)
			return ib_error_set(err, 0, "source '%s': submodule '%s%s' has no URL in .gitmodules of commit %s",
					    ctx->s->name, prefix, path, commit);
		cleanup_free char *url = resolve_submodule_url(base_url, raw_url);
		cleanup_free char *full_path = xasprintf("%s%s", prefix, path);
		cleanup_free char *sub_mirror = ensure_mirror(ctx, url, err);
		if (sub_mirror == NULL)
			return -1;
		cleanup_free char *served = NULL;
		if (!has_commit(ctx, sub_mirror, sub_commit)) {
			if (ctx->offline)
				return ib_error_set(
					err, 0, "offline: submodule '%s' (commit %s of %s) of source '%s' is not in the cache",
					full_path, sub_commit, url, ctx->s->name);
			struct candidate cands[4];
			size_t n_cands = submodule_candidates(ctx, raw_url, url, served_base, cands);
			const char *used = NULL;
			int rc = fetch_submodule_commit(ctx, sub_mirror, cands, n_cands, sub_commit, full_path, &used, err);
			if (rc == 0)
				served = xstrdup(used);
			for (size_t k = 0; k < n_cands; k++)
				free(cands[k].url);
			if (rc < 0)
				return -1;
		}
		out->v = xrealloc(out->v, (out->n + 1) * sizeof(*out->v));
		out->v[out->n++] = (struct submodule){ .path = xstrdup(full_path),
						       .commit = xstrdup(sub_commit),
						       .mirror = xstrdup(sub_mirror) };
		cleanup_free char *sub_prefix = xasprintf("%s/", full_path);
		if (collect_submodules(ctx, sub_mirror, sub_commit, url, served, sub_prefix, depth + 1, out, err) < 0)
			return -1;
	}
	return 0;
}

/* Writes COMMIT's tree from MIRROR into DIR, through a throw-away index so the
 * mirror is never touched. */
static int checkout_tree(struct git_ctx *ctx, const char *mirror, const char *commit, const char *dir, ib_error_t *err)
{
	cleanup_free char *index = xasprintf("%s/index.%d", ctx->home, ctx->n_index++);
	struct git_opts o = { .git_dir = mirror, .work_tree = dir, .index = index };
	const char *read_tree[] = { "read-tree", commit, NULL };
	const char *checkout[] = { "checkout-index", "-a", "-f", NULL };
	if (run_git(ctx, &o, read_tree, NULL, err) < 0 || run_git(ctx, &o, checkout, NULL, err) < 0)
		return ib_error_wrap(err, "check out %s", commit);
	unlink(index);
	return 0;
}

static struct timespec fixed_time[2];
static int normalise_failed_errno;
static char normalise_failed_path[4096];

static int normalise_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	/* Git writes files with the umask's modes; only "executable or not" is
	 * content. Read-only files, writable folders (the cache stays deletable). */
	if (type == FTW_F) {
		mode_t mode = (st->st_mode & 0111) ? 0555 : 0444;
		if (chmod(path, mode) < 0)
			goto fail;
	} else if (type == FTW_DP) {
		const char *base = strrchr(path, '/');
		if (base && strcmp(base + 1, ".git") == 0) {
			errno = EINVAL;
			goto fail;
		}
		if (chmod(path, 0755) < 0)
			goto fail;
	} else if (type != FTW_SL) {
		errno = EINVAL;
		goto fail;
	}
	/* Folders come after their contents (FTW_DEPTH), so their mtime sticks. */
	if (utimensat(AT_FDCWD, path, fixed_time, AT_SYMLINK_NOFOLLOW) < 0)
		goto fail;
	return 0;
fail:
	normalise_failed_errno = errno;
	snprintf(normalise_failed_path, sizeof(normalise_failed_path), "%s", path);
	return -1;
}

/* Same bytes, same modes, same mtimes for every export of a commit. */
static int normalise_tree(const char *dir, int64_t mtime, ib_error_t *err)
{
	fixed_time[0].tv_sec = fixed_time[1].tv_sec = (time_t)mtime;
	fixed_time[0].tv_nsec = fixed_time[1].tv_nsec = 0;
	normalise_failed_errno = 0;
	if (nftw(dir, normalise_entry, 32, FTW_DEPTH | FTW_PHYS) != 0) {
		if (normalise_failed_errno == EINVAL)
			return ib_error_set(err, EINVAL, "unexpected entry '%s' in an export (a .git or special file)",
					    normalise_failed_path);
		return ib_error_errno(err, normalise_failed_errno ? normalise_failed_errno : errno, "normalise '%s'",
				      normalise_failed_errno ? normalise_failed_path : dir);
	}
	return 0;
}

static char *sources_dir(ib_error_t *err)
{
	return ib_cache_subdir("sources", err);
}

/* Name of the pointer that maps a commit with submodules to its export. */
static char *pointer_path(const char *dir, const char *commit)
{
	return xasprintf("%s/%s+submodules", dir, commit);
}

char *ib_git_cached_export(const struct ib_source *s)
{
	if (s == NULL || !valid_commit(s->commit))
		return NULL;
	ib_error_t err = NULL;
	cleanup_free char *dir = sources_dir(&err);
	if (dir == NULL) {
		ib_error_free(&err);
		return NULL;
	}
	cleanup_free char *path = s->submodules ? pointer_path(dir, s->commit) : xasprintf("%s/%s", dir, s->commit);
	char *real = realpath(path, NULL);
	struct stat st;
	if (real && (stat(real, &st) < 0 || !S_ISDIR(st.st_mode))) {
		free(real);
		return NULL;
	}
	return real;
}

static int64_t commit_time(struct git_ctx *ctx, const char *mirror, const char *commit, ib_error_t *err)
{
	cleanup_free char *out = NULL;
	const char *args[] = { "show", "-s", "--format=%ct", commit, NULL };
	struct git_opts o = { .git_dir = mirror };
	if (run_git(ctx, &o, args, &out, err) < 0)
		return -1;
	char *end;
	long long t = strtoll(trim(out), &end, 10);
	if (*end != '\0' || t < 0)
		return ib_error_set(err, 0, "cannot read the commit time of %s ('%s')", commit, out);
	return t;
}

static int export_source(struct git_ctx *ctx, char **tree_out, ib_error_t *err)
{
	const struct ib_source *s = ctx->s;
	cleanup_free char *mirror = ensure_mirror(ctx, s->url, err);
	if (mirror == NULL)
		return -1;
	if (fetch_superproject(ctx, mirror, err) < 0)
		return -1;

	struct submodules subs = { 0 };
	if (s->submodules && collect_submodules(ctx, mirror, s->commit, s->url, ctx->used_url, "", 0, &subs, err) < 0) {
		submodules_free(&subs);
		return -1;
	}
	/* The key names the submodule commits too: the same superproject commit
	 * exported with and without submodules gives different trees. */
	cleanup_free char *key = NULL;
	if (subs.n > 0) {
		cleanup_strv struct ib_strv lines = { 0 };
		size_t len = 1;
		for (size_t i = 0; i < subs.n; i++) {
			ib_strv_push_owned(&lines, xasprintf("%s %s\n", subs.v[i].commit, subs.v[i].path));
			len += strlen(lines.v[i]);
		}
		cleanup_free char *state = xcalloc(1, len);
		for (size_t i = 0; i < lines.n; i++)
			strcat(state, lines.v[i]);
		cleanup_free char *h = hash_hex(state);
		key = xasprintf("%s-%.16s", s->commit, h);
	} else
		key = xstrdup(s->commit);

	cleanup_free char *dir = sources_dir(err);
	if (dir == NULL) {
		submodules_free(&subs);
		return -1;
	}
	cleanup_free char *final = xasprintf("%s/%s", dir, key);
	if (!ib_path_exists(final)) {
		cleanup_free char *tmp = xasprintf("%s/.tmp-%s-XXXXXX", dir, key);
		if (mkdtemp(tmp) == NULL) {
			submodules_free(&subs);
			return ib_error_errno(err, errno, "create '%s'", tmp);
		}
		int rc = checkout_tree(ctx, mirror, s->commit, tmp, err);
		for (size_t i = 0; rc == 0 && i < subs.n; i++) {
			cleanup_free char *sub_dir = xasprintf("%s/%s", tmp, subs.v[i].path);
			rc = ib_mkdir_p(sub_dir, 0755, err);
			if (rc == 0)
				rc = checkout_tree(ctx, subs.v[i].mirror, subs.v[i].commit, sub_dir, err);
			if (rc < 0)
				ib_error_wrap(err, "submodule '%s'", subs.v[i].path);
		}
		int64_t t = rc == 0 ? commit_time(ctx, mirror, s->commit, err) : -1;
		if (t < 0)
			rc = -1;
		if (rc == 0)
			rc = normalise_tree(tmp, t, err);
		if (rc == 0 && rename(tmp, final) < 0 && errno != EEXIST && errno != ENOTEMPTY)
			rc = ib_error_errno(err, errno, "rename '%s' to '%s'", tmp, final);
		rm_rf(tmp); /* gone after a successful rename; else a failed or raced export */
		if (rc < 0) {
			submodules_free(&subs);
			return ib_error_wrap(err, "export source '%s'", s->name);
		}
		ib_log_info("source %s: exported %s%s", s->name, key, subs.n ? " with its submodules" : "");
	}
	submodules_free(&subs);

	if (s->submodules) {
		/* A symlink replaced atomically, so ib_git_cached_export finds the
		 * export without running git. */
		cleanup_free char *ptr = pointer_path(dir, s->commit);
		cleanup_free char *tmp_ptr = xasprintf("%s.tmp.%d", ptr, (int)getpid());
		unlink(tmp_ptr);
		if (symlink(key, tmp_ptr) < 0)
			return ib_error_errno(err, errno, "symlink '%s'", tmp_ptr);
		if (rename(tmp_ptr, ptr) < 0) {
			int saved = errno;
			unlink(tmp_ptr);
			return ib_error_errno(err, saved, "rename '%s' to '%s'", tmp_ptr, ptr);
		}
	}
	*tree_out = steal_pointer(&final);
	return 0;
}

int ib_git_export(const struct ib_source *s, bool offline, char **tree_out, ib_error_t *err)
{
	if (!valid_commit(s->commit))
		return ib_error_usage(err, "source '%s': commit '%s' is not 40 lowercase hex digits", s->name,
				      s->commit ? s->commit : "(none)");
	if (s->tag == NULL || *s->tag == '\0')
		return ib_error_usage(err, "source '%s' has no tag", s->name);
	char *cached = ib_git_cached_export(s);
	if (cached) {
		ib_log_debug("source %s: cached at '%s'", s->name, cached);
		*tree_out = cached;
		return 0;
	}
	struct git_ctx ctx;
	if (git_ctx_init(&ctx, s, offline, err) < 0) {
		git_ctx_free(&ctx);
		return -1;
	}
	int rc = export_source(&ctx, tree_out, err);
	git_ctx_free(&ctx);
	return rc;
}
