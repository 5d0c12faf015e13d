/* Stage cache keys and layer folders. See layers.h. */
#include "layers.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bootstrap.h"
#include "log.h"
#include "manifest.h"
#include "paths.h"
#include "sandbox.h"

/* Bump when the meaning of a layer changes (what the engine adds or removes),
 * so old layers are never mistaken for new ones. */
#define BASE_KEY_VERSION "imgbuild-base-3"
#define STAGE_KEY_VERSION "imgbuild-stage-1"

/* Each field is fed as "tag\0value\0" so that no two different field lists
 * hash the same bytes. */
static void feed(struct ib_sha256 *h, const char *tag, const char *value)
{
	ib_sha256_update(h, tag, strlen(tag) + 1);
	value = value ? value : "";
	ib_sha256_update(h, value, strlen(value) + 1);
}

static void feed_strv(struct ib_sha256 *h, const char *tag, const struct ib_strv *v)
{
	char n[32];
	snprintf(n, sizeof(n), "%zu", v->n);
	feed(h, tag, n);
	for (size_t i = 0; i < v->n; i++)
		feed(h, tag, v->v[i]);
}

static void finish(struct ib_sha256 *h, char key[IB_KEY_LEN + 1])
{
	uint8_t digest[IB_SHA256_LEN];
	ib_sha256_final(h, digest);
	ib_hex(digest, sizeof(digest), key);
}

int ib_layers_base_key(const struct ib_manifest *m, char key[IB_KEY_LEN + 1], ib_error_t *err)
{
	cleanup_sha256 struct ib_sha256 *h = ib_sha256_new();
	feed(h, "version", BASE_KEY_VERSION);
	feed(h, "distro", m->base.distro);
	feed(h, "suite", m->base.suite);
	feed_strv(h, "extra_suites", &m->base.extra_suites);
	/* Debian manifests name no mirror: the host's is used, and the key stays
	 * the same on every host (the snapshot the suite names is what counts). */
	feed_strv(h, "mirrors", &m->base.mirrors);
	feed_strv(h, "components", &m->base.components);
	cleanup_free char *keyring = ib_bootstrap_keyring(m);
	if (keyring) {
		char hex[IB_SHA256_HEX_LEN + 1];
		if (ib_sha256_file(keyring, hex, err) < 0)
			return ib_error_wrap(err, "keyring");
		feed(h, "keyring", hex);
	} else {
		feed(h, "keyring", "host-default");
	}
	feed(h, "variant", m->base.variant ? m->base.variant : "minbase");
	feed_strv(h, "packages", &m->base.packages);
	char epoch[32];
	snprintf(epoch, sizeof(epoch), "%lld", (long long)m->image.source_date_epoch);
	feed(h, "epoch", epoch);
	finish(h, key);
	return 0;
}

/* Sets NAME=VALUE in OUT, replacing an earlier NAME. */
static void env_set(struct ib_strv *out, const char *name, const char *value)
{
	size_t len = strlen(name);
	char *entry = xasprintf("%s=%s", name, value ? value : "");
	for (size_t i = 0; i < out->n; i++) {
		if (strncmp(out->v[i], name, len) == 0 && out->v[i][len] == '=') {
			free(out->v[i]);
			out->v[i] = entry;
			return;
		}
	}
	ib_strv_push_owned(out, entry);
}

static void fact(struct ib_strv *out, const char *name, const char *value)
{
	if (value)
		env_set(out, name, value);
}

void ib_layers_stage_env(const struct ib_manifest *m, const struct ib_stage *s, const char *ccache_remote, struct ib_strv *out)
{
	char epoch[32];
	snprintf(epoch, sizeof(epoch), "%lld", (long long)m->image.source_date_epoch);
	env_set(out, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	env_set(out, "HOME", "/root");
	env_set(out, "TZ", "UTC");
	env_set(out, "LC_ALL", "C.UTF-8");
	env_set(out, "SOURCE_DATE_EPOCH", epoch);
	env_set(out, "IMGBUILD_STAGE", s->name);
	env_set(out, "IMGBUILD_INPUTS", "/imgbuild/inputs");
	env_set(out, "IMGBUILD_WORK", "/imgbuild/work");
	env_set(out, "CCACHE_DIR", "/imgbuild/ccache");

	fact(out, "IMGBUILD_GCC", m->toolchain.gcc);
	/* Every pin alike (manifest.h): a new one reaches the stages and the
	 * layer keys without a change here. */
	for (size_t i = 0; i < m->stack.pins.n; i++) {
		cleanup_free char *name = xasprintf("IMGBUILD_%s", m->stack.pins.v[i].key);
		for (char *p = name; *p; p++)
			*p = (char)toupper((unsigned char)*p);
		fact(out, name, m->stack.pins.v[i].value);
	}
	if (m->stack.archs.n > 0) {
		size_t len = 1;
		for (size_t i = 0; i < m->stack.archs.n; i++)
			len += strlen(m->stack.archs.v[i]) + 1;
		cleanup_free char *joined = xcalloc(1, len);
		for (size_t i = 0; i < m->stack.archs.n; i++) {
			if (i)
				strcat(joined, ";");
			strcat(joined, m->stack.archs.v[i]);
		}
		env_set(out, "IMGBUILD_ARCHS", joined);
	}

	for (size_t i = 0; i < m->env.n; i++)
		env_set(out, m->env.v[i].key, m->env.v[i].value);
	for (size_t i = 0; i < s->env.n; i++)
		env_set(out, s->env.v[i].key, s->env.v[i].value);

	/* A shared remote cache changes where ccache looks, never what a stage
	 * makes, so it stays out of the key; it comes last so that a manifest
	 * cannot point its stages elsewhere (ccremote.h). */
	if (ccache_remote)
		env_set(out, "CCACHE_REMOTE_STORAGE", ccache_remote);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ib_layers_stage_key(const struct ib_manifest *m, const struct ib_stage *s, const char *parent_key, char key[IB_KEY_LEN + 1],
			ib_error_t *err)
{
	cleanup_sha256 struct ib_sha256 *h = ib_sha256_new();
	feed(h, "version", STAGE_KEY_VERSION);
	feed(h, "parent", parent_key);
	feed(h, "name", s->name);

	char hex[IB_SHA256_HEX_LEN + 1];
	if (ib_sha256_file(s->script, hex, err) < 0)
		return ib_error_wrap(err, "stage '%s' script", s->name);
	feed(h, "script", hex);

	cleanup_strv struct ib_strv env = { 0 };
	ib_layers_stage_env(m, s, NULL, &env);
	if (env.n > 0)
		qsort(env.v, env.n, sizeof(char *), cmp_str);
	feed_strv(h, "env", &env);

	feed(h, "network", s->network ? "true" : "false");
	for (size_t i = 0; i < s->inputs.n; i++) {
		const char *name = s->inputs.v[i];
		const struct ib_download *d = ib_manifest_download(m, name);
		const struct ib_source *src = ib_manifest_source(m, name);
		if (d) {
			if (d->sha256 == NULL)
				return ib_error_usage(err, "stage '%s': download '%s' has no sha256 (run imgbuild pin)", s->name,
						      name);
			feed(h, "download", name);
			feed(h, "sha256", d->sha256);
		} else if (src) {
			feed(h, "source", name);
			feed(h, "commit", src->commit);
			feed(h, "submodules", src->submodules ? "true" : "false");
		} else {
			return ib_error_usage(err, "stage '%s': unknown input '%s'", s->name, name);
		}
	}
	finish(h, key);
	return 0;
}

int ib_layers_all_keys(const struct ib_manifest *m, char base_key[IB_KEY_LEN + 1], char (*stage_keys)[IB_KEY_LEN + 1],
		       ib_error_t *err)
{
	if (ib_layers_base_key(m, base_key, err) < 0)
		return -1;
	const char *parent = base_key;
	for (size_t i = 0; i < m->n_stages; i++) {
		if (ib_layers_stage_key(m, &m->stages[i], parent, stage_keys[i], err) < 0)
			return -1;
		parent = stage_keys[i];
	}
	return 0;
}

char *ib_layers_dir(ib_error_t *err)
{
	return ib_cache_private_subdir("layers", err);
}

char *ib_layers_path(const char *key, ib_error_t *err)
{
	cleanup_free char *dir = ib_layers_dir(err);
	if (dir == NULL)
		return NULL;
	return ib_path_join(dir, key);
}

char *ib_layers_lookup(const char *key)
{
	ib_error_t err = NULL;
	cleanup_free char *path = ib_layers_path(key, &err);
	if (path == NULL) {
		ib_error_free(&err);
		return NULL;
	}
	cleanup_free char *done = ib_path_join(path, "done");
	if (!ib_path_exists(done))
		return NULL;
	return ib_path_join(path, "upper");
}

void ib_layer_tmp_free(struct ib_layer_tmp *t)
{
	free(t->key);
	free(t->tmp);
	free(t->upper);
	free(t->work);
	memset(t, 0, sizeof(*t));
}

int ib_layers_begin(struct ib_layer_tmp *t, const char *key, bool make_upper, ib_error_t *err)
{
	memset(t, 0, sizeof(*t));
	cleanup_free char *path = ib_layers_path(key, err);
	if (path == NULL)
		return -1;
	t->key = xstrdup(key);
	t->tmp = xasprintf("%s.tmp-%d", path, (int)getpid());
	t->upper = ib_path_join(t->tmp, "upper");
	t->work = ib_path_join(t->tmp, "ovlwork");
	if (ib_path_exists(t->tmp)) {
		/* Our own leftover from an attempt earlier in this run. */
		if (ib_remove_tree(t->tmp, err) < 0)
			goto fail;
	}
	if (mkdir(t->tmp, 0755) < 0) {
		ib_error_errno(err, errno, "mkdir '%s'", t->tmp);
		goto fail;
	}
	if (make_upper && (mkdir(t->upper, 0755) < 0 || mkdir(t->work, 0700) < 0)) {
		ib_error_errno(err, errno, "mkdir '%s'", t->upper);
		goto fail;
	}
	return 0;
fail:
	ib_layer_tmp_free(t);
	return -1;
}

int ib_layers_commit(struct ib_layer_tmp *t, ib_error_t *err)
{
	if (ib_path_exists(t->work) && ib_remove_tree(t->work, err) < 0)
		return -1;
	cleanup_free char *done = ib_path_join(t->tmp, "done");
	cleanup_free char *text = xasprintf("%s\n", t->key);
	if (ib_write_file_atomic(done, text, strlen(text), 0644, err) < 0)
		return -1;
	cleanup_free char *final = ib_layers_path(t->key, err);
	if (final == NULL)
		return -1;
	if (rename(t->tmp, final) < 0) {
		if (errno != EEXIST && errno != ENOTEMPTY)
			return ib_error_errno(err, errno, "rename '%s' to '%s'", t->tmp, final);
		/* Another build made the same layer, or a half-made one lacks its
		 * marker: a complete one wins, an incomplete one is replaced. */
		cleanup_free char *their_done = ib_path_join(final, "done");
		if (ib_path_exists(their_done)) {
			ib_layers_abort(t);
			return 0;
		}
		if (ib_remove_tree(final, err) < 0)
			return -1;
		if (rename(t->tmp, final) < 0)
			return ib_error_errno(err, errno, "rename '%s' to '%s'", t->tmp, final);
	}
	ib_layer_tmp_free(t);
	return 0;
}

void ib_layers_abort(struct ib_layer_tmp *t)
{
	if (t->tmp && ib_path_exists(t->tmp)) {
		ib_error_t err = NULL;
		if (ib_remove_tree(t->tmp, &err) < 0) {
			ib_log_warn("could not remove '%s': %s", t->tmp, err ? err->msg : "?");
			ib_error_free(&err);
		}
	}
	ib_layer_tmp_free(t);
}

void ib_layers_sweep(void)
{
	ib_error_t err = NULL;
	cleanup_free char *dir = ib_layers_dir(&err);
	if (dir == NULL) {
		ib_error_free(&err);
		return;
	}
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		const char *dot = strstr(e->d_name, ".tmp-");
		if (dot == NULL || dot - e->d_name != IB_KEY_LEN)
			continue;
		char *end;
		long pid = strtol(dot + 5, &end, 10);
		if (*end != '\0' || pid <= 0)
			continue;
		if (pid != getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue;
		cleanup_free char *path = ib_path_join(dir, e->d_name);
		ib_log_debug("removing the unfinished layer '%s'", path);
		if (ib_remove_tree(path, &err) < 0) {
			ib_log_warn("could not remove '%s': %s", path, err ? err->msg : "?");
			ib_error_free(&err);
		}
	}
	closedir(d);
}
