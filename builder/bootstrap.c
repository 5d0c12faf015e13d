/* The base root file system. See bootstrap.h. */
#include "bootstrap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aptsource.h"
#include "crypto.h"
#include "log.h"
#include "manifest.h"
#include "proc.h"
#include "paths.h"
#include "sandbox.h"
#include "store.h"
#include "util.h"

#define UBUNTU_ARCHIVE "http://archive.ubuntu.com/ubuntu"

char *ib_bootstrap_keyring(const struct ib_manifest *m)
{
	if (m->base.keyring)
		return xstrdup(m->base.keyring);
	if (m->base.distro && strcmp(m->base.distro, "ubuntu") == 0) {
		char *ours = ib_path_join(ib_data_dir(), "keys/ubuntu-archive-keyring.gpg");
		if (ib_path_exists(ours))
			return ours;
		free(ours);
		if (ib_path_exists("/usr/share/keyrings/ubuntu-archive-keyring.gpg"))
			return xstrdup("/usr/share/keyrings/ubuntu-archive-keyring.gpg");
		return NULL;
	}
	if (ib_path_exists("/usr/share/keyrings/debian-archive-keyring.gpg"))
		return xstrdup("/usr/share/keyrings/debian-archive-keyring.gpg");
	return NULL;
}

static bool in_path(const char *prog)
{
	const char *path = getenv("PATH");
	cleanup_free char *copy = xstrdup(path && *path ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
	char *save = NULL;
	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		cleanup_free char *full = ib_path_join(dir, prog);
		if (access(full, X_OK) == 0)
			return true;
	}
	/* root's PATH may lack the sbin folders where debootstrap lives. */
	cleanup_free char *sbin = ib_path_join("/usr/sbin", prog);
	return access(sbin, X_OK) == 0;
}

enum ib_bootstrap_tool ib_bootstrap_pick_tool(void)
{
	const char *force = getenv("IMGBUILD_BOOTSTRAP");
	if (force && strcmp(force, "debootstrap") == 0)
		return IB_BOOTSTRAP_DEBOOTSTRAP;
	return in_path("mmdebstrap") ? IB_BOOTSTRAP_MMDEBSTRAP : IB_BOOTSTRAP_DEBOOTSTRAP;
}

/* --- the per-suite index of cached .deb files: "NAME SHA256\n" lines --- */

struct deb_index {
	struct ib_strv names, digests;
	bool dirty;
};

static void deb_index_free(struct deb_index *x)
{
	ib_strv_free(&x->names);
	ib_strv_free(&x->digests);
}

static char *deb_index_path(const struct ib_manifest *m, ib_error_t *err)
{
	cleanup_free char *dir = ib_cache_subdir("debs", err);
	if (dir == NULL)
		return NULL;
	return xasprintf("%s/%s-%s.index", dir, m->base.distro, m->base.suite);
}

/* apt's package lists of the last bootstrap of this suite, kept beside the
 * .deb index. Offered to the next one, whose `apt-get update` then only
 * revalidates InRelease (unchanged: nothing else is fetched; changed: apt
 * fetches what changed), instead of downloading and unpacking the indexes
 * again. The image never has them (pack empties var/lib/apt/lists). */
static char *lists_cache_path(const char *index_path)
{
	size_t n = strlen(index_path) - strlen(".index");
	return xasprintf("%.*s.lists", (int)n, index_path);
}

/* Hard links of the cached lists into IN (the cache's files are never
 * written in place: a new set replaces the folder), for the setup hook to
 * copy into the new root. */
static unsigned stage_cached_lists(const char *cache, const char *in)
{
	DIR *d = opendir(cache);
	if (d == NULL)
		return 0;
	unsigned n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		cleanup_free char *from = ib_path_join(cache, de->d_name);
		cleanup_free char *to = ib_path_join(in, de->d_name);
		if (link(from, to) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* OUT (the lists the customize hook copied out) becomes the cache. Best
 * effort: a build that loses a race with another keeps the other's. */
static void publish_lists(const char *out, const char *cache)
{
	cleanup_free char *old = xasprintf("%s.old.%d", cache, (int)getpid());
	bool had = rename(cache, old) == 0;
	if (rename(out, cache) < 0 && had)
		(void)rename(old, cache);
	if (had && ib_path_exists(old)) {
		ib_error_t e = NULL;
		if (ib_remove_tree(old, &e) < 0)
			ib_error_free(&e);
	}
}

static const char *deb_index_get(const struct deb_index *x, const char *name)
{
	for (size_t i = 0; i < x->names.n; i++)
		if (strcmp(x->names.v[i], name) == 0)
			return x->digests.v[i];
	return NULL;
}

static void deb_index_put(struct deb_index *x, const char *name, const char *digest)
{
	for (size_t i = 0; i < x->names.n; i++) {
		if (strcmp(x->names.v[i], name) == 0) {
			if (strcmp(x->digests.v[i], digest) != 0) {
				free(x->digests.v[i]);
				x->digests.v[i] = xstrdup(digest);
				x->dirty = true;
			}
			return;
		}
	}
	ib_strv_push(&x->names, name);
	ib_strv_push(&x->digests, digest);
	x->dirty = true;
}

static void deb_index_load(struct deb_index *x, const char *path)
{
	ib_error_t err = NULL;
	cleanup_free char *text = ib_read_file(path, NULL, &err);
	if (text == NULL) {
		ib_error_free(&err);
		return;
	}
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');
		if (sp == NULL)
			continue;
		*sp = '\0';
		if (strchr(line, '/') || !ib_store_valid_digest(sp + 1))
			continue;
		ib_strv_push(&x->names, line);
		ib_strv_push(&x->digests, sp + 1);
	}
}

static int deb_index_save(struct deb_index *x, const char *path, ib_error_t *err)
{
	if (!x->dirty)
		return 0;
	cleanup_buf struct ib_buf b = { 0 };
	for (size_t i = 0; i < x->names.n; i++)
		ib_buf_printf(&b, "%s %s\n", x->names.v[i], x->digests.v[i]);
	return ib_write_file_atomic(path, b.s ? b.s : "", b.len, 0644, err);
}

static bool is_deb(const char *name)
{
	size_t n = strlen(name);
	return n > 4 && strcmp(name + n - 4, ".deb") == 0 && name[0] != '.' && strchr(name, '/') == NULL;
}

/* Hard-links every cached .deb of the index into DIR under its file name.
 * Links, not copies: the store, DIR and the new root share the cache's file
 * system, and apt and dpkg only read them. */
static unsigned stage_cached_debs(const struct deb_index *x, const char *dir)
{
	unsigned n = 0;
	for (size_t i = 0; i < x->names.n; i++) {
		ib_error_t err = NULL;
		cleanup_free char *src = ib_store_path(x->digests.v[i], &err);
		if (src == NULL) {
			ib_error_free(&err);
			continue;
		}
		cleanup_free char *dst = ib_path_join(dir, x->names.v[i]);
		if (link(src, dst) == 0)
			n++;
		else if (errno != ENOENT)
			ib_log_debug("cannot link '%s' into '%s': %s", src, dir, strerror(errno));
	}
	return n;
}

/* Moves every new .deb in DIR into the store and the index. */
static int collect_debs(struct deb_index *x, const char *dir, struct ib_bootstrap_stats *stats, ib_error_t *err)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return ib_error_errno(err, errno, "open '%s'", dir);
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		if (!is_deb(e->d_name))
			continue;
		stats->packages++;
		const char *known = deb_index_get(x, e->d_name);
		if (known && ib_store_has(known))
			continue;
		stats->downloaded++;
		cleanup_free char *path = ib_path_join(dir, e->d_name);
		char digest[IB_SHA256_HEX_LEN + 1];
		if (ib_store_commit(path, NULL, e->d_name, digest, err) < 0) {
			rc = -1;
			break;
		}
		deb_index_put(x, e->d_name, digest);
	}
	closedir(d);
	return rc;
}

/* --- running the tool --- */

/* The child (from ib_proc_fork: its own group, dies with imgbuild, default
 * signals): a private mount namespace first, so that whatever the tool
 * mounts (mmdebstrap and debootstrap mount /proc, /sys and /dev into the new
 * root in root mode) stays out of the host's namespace and is torn down by the
 * kernel when the last process in it exits. */
static void __attribute__((noreturn)) child_exec(char *const *argv, char *const *envp, int out_fd)
{
	static const char fail_ns[] = "imgbuild: cannot make a private mount namespace for the bootstrap\n";
	static const char fail_exec[] = "imgbuild: cannot run the bootstrap tool\n";
	/* A PID namespace too: the tool's workers (apt, dpkg, tar) would otherwise be
	 * re-parented to init when imgbuild is killed and go on writing into an
	 * abandoned layer. The tool runs as PID 1 of the namespace; when it dies, for
	 * any reason, the kernel kills everything else in it. */
	if (unshare(CLONE_NEWNS | CLONE_NEWPID) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		(void)!write(out_fd, fail_ns, sizeof(fail_ns) - 1);
		_exit(127);
	}
	/* The tool stays in this group, so that the wait's SIGTERM to the group
	 * reaches the tool's workers too. */
	pid_t tool = ib_proc_clone(0, IB_PROC_SAME_GROUP | IB_PROC_FROM_CHILD, NULL);
	if (tool < 0) {
		(void)!write(out_fd, fail_exec, sizeof(fail_exec) - 1);
		_exit(127);
	}
	if (tool > 0) {
		/* This process stays outside the namespace only to hand the tool's status
		 * up; if it dies (imgbuild killed, SIGTERM), the tool's PDEATHSIG fires. */
		close(out_fd);
		int code = ib_proc_reap(tool);
		_exit(code < 0 ? 1 : code);
	}
	int devnull = open("/dev/null", O_RDONLY);
	if (devnull >= 0)
		dup2(devnull, STDIN_FILENO);
	dup2(out_fd, STDOUT_FILENO);
	dup2(out_fd, STDERR_FILENO);
	execvpe(argv[0], argv, envp);
	(void)!write(STDERR_FILENO, fail_exec, sizeof(fail_exec) - 1);
	_exit(127);
}

static int run_tool(char *const *argv, char *const *envp, int log_fd, const char *label, ib_error_t *err)
{
	int write_fd = -1;
	struct ib_proc_pump *pump = ib_proc_pump_start(label, log_fd, &write_fd, err);
	if (pump == NULL)
		return -1;
	pid_t pid = ib_proc_fork(err);
	if (pid < 0) {
		close(write_fd);
		ib_proc_pump_finish(pump);
		return -1;
	}
	if (pid == 0)
		child_exec(argv, envp, write_fd);
	close(write_fd);
	int status = 0;
	int rc = ib_proc_wait(pid, &status, err);
	ib_proc_pump_finish(pump);
	if (rc < 0)
		return -1;
	if (status != 0)
		return ib_error_set(err, 0, "%s failed with exit status %d", argv[0], status);
	return 0;
}

static void push_env(struct ib_strv *env, const char *name)
{
	const char *v = getenv(name);
	if (v && *v)
		ib_strv_push_owned(env, xasprintf("%s=%s", name, v));
}

static char *join(const struct ib_strv *v, const char *sep)
{
	size_t len = 1;
	for (size_t i = 0; i < v->n; i++)
		len += strlen(v->v[i]) + strlen(sep);
	char *out = xcalloc(1, len);
	for (size_t i = 0; i < v->n; i++) {
		if (i)
			strcat(out, sep);
		strcat(out, v->v[i]);
	}
	return out;
}

/* Single quotes for a path inside a hook's shell command. */
static char *shell_quote(const char *s)
{
	size_t len = 3;
	for (const char *p = s; *p; p++)
		len += *p == '\'' ? 4 : 1;
	char *out = xmalloc(len), *o = out;
	*o++ = '\'';
	for (const char *p = s; *p; p++) {
		if (*p == '\'') {
			memcpy(o, "'\\''", 4);
			o += 4;
		} else {
			*o++ = *p;
		}
	}
	*o++ = '\'';
	*o = '\0';
	return out;
}

static int resolve_mirrors(const struct ib_manifest *m, struct ib_strv *out, ib_error_t *err)
{
	for (size_t i = 0; i < m->base.mirrors.n; i++)
		ib_strv_push(out, m->base.mirrors.v[i]);
	if (out->n > 0)
		return 0;
	if (strcmp(m->base.distro, "ubuntu") == 0) {
		ib_strv_push(out, UBUNTU_ARCHIVE);
		return 0;
	}
	/* Debian manifests name no mirror: the host's own, never written into any file here. */
	char *host = ib_host_apt_mirror(m->base.distro, err);
	if (host == NULL)
		return ib_error_wrap(err, "find the host's %s mirror", m->base.distro);
	ib_strv_push_owned(out, host);
	return 0;
}

/* Is BYTES, byte for byte, a keyring in FOLDER (*.gpg)? */
static bool keyring_in(const char *folder, const char *bytes, size_t len)
{
	DIR *d = opendir(folder);
	if (d == NULL)
		return false;
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 4, ".gpg") != 0)
			continue;
		cleanup_free char *p = ib_path_join(folder, e->d_name);
		struct stat st;
		if (stat(p, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size != len)
			continue;
		ib_error_t e2 = NULL;
		size_t got = 0;
		cleanup_free char *other = ib_read_file(p, &got, &e2);
		ib_error_free(&e2);
		found = other && got == len && memcmp(other, bytes, len) == 0;
	}
	closedir(d);
	return found;
}

/* The keyring decides whose maintainer scripts the bootstrap runs as root.
 * mmdebstrap --mode=root only chroots them (its unshare mode keeps real root
 * when run as root): the proc it mounts gives them /proc/1/root, the host's
 * tree. A mirror alone cannot get a package past apt's signature check, but a
 * manifest that brings its own keyring (and a file:// or http mirror signed
 * with it) could. So a manifest's keyring must be one the person running
 * imgbuild already trusts: the same bytes as a keyring of the host
 * (/usr/share/keyrings, /etc/apt/trusted.gpg.d) or of imgbuild's keys/. */
static int check_keyring_trusted(const struct ib_manifest *m, const char *bytes, size_t len, ib_error_t *err)
{
	cleanup_free char *ours = ib_path_join(ib_data_dir(), "keys");
	const char *const folders[] = { "/usr/share/keyrings", "/etc/apt/trusted.gpg.d", ours };
	for (size_t i = 0; i < sizeof(folders) / sizeof(folders[0]); i++)
		if (keyring_in(folders[i], bytes, len))
			return 0;
	return ib_error_usage(err,
			      "%s:%d: [base] keyring '%s' is not a keyring this host trusts, and the packages it "
			      "vouches for would run their maintainer scripts as root here; if you trust it, copy it "
			      "to /usr/share/keyrings/, else remove keyring to use the distribution's",
			      m->path, m->base.pos.line, m->base.keyring);
}

/* What one bootstrap works with, beside the new root: the package and list
 * folders the tools read and fill (in and out), and the arguments made of
 * the manifest. */
struct boot {
	const struct ib_manifest *m;
	const char *root_dir;
	char *dir; /* the new root's parent */
	struct ib_strv mirrors;
	char *debs_in, *debs_out, *lists_in, *lists_out;
	char *keyring; /* a copy in DIR, or the system's, or NULL */
	char *components, *packages;
	const char *variant;
	unsigned staged, lists_staged; /* packages and lists offered from the cache */
};

static void boot_free(struct boot *b)
{
	for (char **p = (char *[]){ b->debs_in, b->lists_in, b->lists_out, b->debs_out, NULL }; *p; p++) {
		if (ib_path_exists(*p)) {
			ib_error_t e2 = NULL;
			if (ib_remove_tree(*p, &e2) < 0)
				ib_error_free(&e2);
		}
	}
	if (b->keyring && strncmp(b->keyring, b->dir, strlen(b->dir)) == 0)
		unlink(b->keyring);
	free(b->debs_in);
	free(b->debs_out);
	free(b->lists_in);
	free(b->lists_out);
	free(b->keyring);
	free(b->components);
	free(b->packages);
	free(b->dir);
	ib_strv_free(&b->mirrors);
}

/* apt checks signatures as the unprivileged _apt user, which may not reach the
 * manifest's folder (mktemp -d makes it 0700): it gets a world-readable copy
 * beside the new root. */
static int stage_keyring(struct boot *b, ib_error_t *err)
{
	b->keyring = ib_bootstrap_keyring(b->m);
	if (b->keyring == NULL)
		return 0;
	size_t len = 0;
	cleanup_free char *bytes = ib_read_file(b->keyring, &len, err);
	if (bytes == NULL)
		return -1;
	if (b->m->base.keyring && check_keyring_trusted(b->m, bytes, len, err) < 0)
		return -1;
	free(b->keyring);
	b->keyring = ib_path_join(b->dir, "keyring.gpg");
	return ib_write_file_atomic(b->keyring, bytes, len, 0644, err);
}

static int boot_prepare(struct boot *b, const char *index_path, struct deb_index *index, ib_error_t *err)
{
	const struct ib_manifest *m = b->m;
	b->debs_in = ib_path_join(b->dir, "debs-in");
	b->debs_out = ib_path_join(b->dir, "debs-out");
	if (ib_mkdir_p(b->debs_in, 0755, err) < 0 || ib_mkdir_p(b->debs_out, 0755, err) < 0)
		return -1;
	b->staged = stage_cached_debs(index, b->debs_in);
	cleanup_free char *lists_cache = lists_cache_path(index_path);
	b->lists_in = ib_path_join(b->dir, "lists-in");
	b->lists_out = ib_path_join(b->dir, "lists-out");
	if (ib_mkdir_p(b->lists_in, 0755, err) < 0 || ib_mkdir_p(b->lists_out, 0755, err) < 0)
		return -1;
	b->lists_staged = stage_cached_lists(lists_cache, b->lists_in);
	if (stage_keyring(b, err) < 0)
		return -1;
	struct ib_strv comps_default = { 0 };
	if (m->base.components.n == 0)
		ib_strv_push(&comps_default, "main");
	b->components = join(m->base.components.n ? &m->base.components : &comps_default, ",");
	b->packages = join(&m->base.packages, ",");
	ib_strv_free(&comps_default);
	b->variant = m->base.variant ? m->base.variant : "minbase";
	return 0;
}

/* The tools' environment: fixed, but for the proxies and TMPDIR. */
static void boot_env(const struct ib_manifest *m, struct ib_strv *env)
{
	ib_strv_push(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	ib_strv_push(env, "HOME=/root");
	ib_strv_push(env, "TZ=UTC");
	ib_strv_push(env, "LC_ALL=C.UTF-8");
	ib_strv_push_owned(env, xasprintf("SOURCE_DATE_EPOCH=%lld", (long long)m->image.source_date_epoch));
	ib_strv_push(env, "DEBIAN_FRONTEND=noninteractive");
	push_env(env, "http_proxy");
	push_env(env, "https_proxy");
	push_env(env, "no_proxy");
	push_env(env, "TMPDIR");
}

/* mmdebstrap's hooks hand it the cached packages and lists and take back what
 * it downloaded; the rest makes the base the same on every host. */
static void mmdebstrap_hooks(const struct boot *b, struct ib_strv *argv)
{
	cleanup_free char *q_in = shell_quote(b->debs_in), *q_out = shell_quote(b->debs_out);
	cleanup_free char *q_lin = shell_quote(b->lists_in), *q_lout = shell_quote(b->lists_out);
	ib_strv_push_owned(argv, xasprintf("--setup-hook=mkdir -p \"$1/var/cache/apt/archives\" && "
					   "cp -al %s/. \"$1/var/cache/apt/archives/\"",
					   q_in));
	/* dpkg's fsyncs make a bootstrap wait on the disk for nothing: a
	 * layer is renamed into place only once complete, and a crash
	 * leaves no layer. Written by a hook, not --dpkgopt, which would
	 * leave the setting in the image (the customize hook removes it). */
	ib_strv_push(argv, "--setup-hook=mkdir -p \"$1/etc/dpkg/dpkg.cfg.d\" && "
			   "echo force-unsafe-io > \"$1/etc/dpkg/dpkg.cfg.d/99imgbuild-unsafe-io\"");
	if (b->lists_staged > 0)
		ib_strv_push_owned(argv, xasprintf("--setup-hook=cp -a %s/. \"$1/var/lib/apt/lists/\"", q_lin));
	ib_strv_push_owned(argv, xasprintf("--customize-hook=find \"$1/var/cache/apt/archives\" -maxdepth 1 "
					   "-name '*.deb' -exec cp -al -t %s {} +",
					   q_out));
	ib_strv_push_owned(argv, xasprintf("--customize-hook=rm -f \"$1/etc/dpkg/dpkg.cfg.d/99imgbuild-unsafe-io\" && "
					   "find \"$1/var/lib/apt/lists\" -maxdepth 1 -type f ! -name lock "
					   "-exec ln -t %s {} +",
					   q_lout));
	/* Host files mmdebstrap copies in would make the base differ per host;
	 * network stages get the host's resolv.conf bound over this file. */
	ib_strv_push(argv, "--customize-hook=rm -f \"$1/etc/resolv.conf\" && : > \"$1/etc/resolv.conf\" && "
			   "echo imgbuild > \"$1/etc/hostname\"");
	/* apt downloads as _apt when that user can reach the new root and as root
	 * when it cannot (a cache under a 0700 folder), leaving
	 * var/cache/apt/archives/partial owned by whoever downloaded: give it the
	 * owner apt itself would, so the image does not depend on where the cache lives. */
	ib_strv_push(argv, "--customize-hook=if [ -d \"$1/var/cache/apt/archives/partial\" ] && "
			   "chroot \"$1\" getent passwd _apt >/dev/null; then "
			   "chroot \"$1\" chown _apt:root /var/cache/apt/archives/partial; fi");
}

static int run_mmdebstrap(const struct boot *b, char *const *env, int log_fd, ib_error_t *err)
{
	const struct ib_manifest *m = b->m;
	ib_log_info("bootstrap: %s %s with mmdebstrap (%u cached packages offered)", m->base.distro, m->base.suite, b->staged);
	cleanup_strv struct ib_strv argv = { 0 };
	ib_strv_push(&argv, "mmdebstrap");
	ib_strv_push(&argv, "--mode=root");
	ib_strv_push(&argv, "--format=directory");
	ib_strv_push_owned(&argv, xasprintf("--variant=%s", b->variant));
	ib_strv_push_owned(&argv, xasprintf("--components=%s", b->components));
	if (b->keyring)
		ib_strv_push_owned(&argv, xasprintf("--keyring=%s", b->keyring));
	/* debootstrap's minbase has apt; mmdebstrap's has only Priority:
	 * required, which lacks apt on Ubuntu. Stages need apt either way. */
	if (strcmp(b->variant, "minbase") == 0)
		ib_strv_push_owned(&argv, xasprintf("--include=apt%s%s", m->base.packages.n ? "," : "", b->packages));
	else if (m->base.packages.n > 0)
		ib_strv_push_owned(&argv, xasprintf("--include=%s", b->packages));
	ib_strv_push(&argv, "--aptopt=Acquire::Languages \"none\"");
	/* The keyring packages of the new root make apt trust the archive;
	 * a signed-by pointing at a host path would dangle inside it. */
	ib_strv_push(&argv, "--skip=check/signed-by");
	/* Keep every downloaded .deb until the customize hook hands them out. */
	ib_strv_push(&argv, "--skip=essential/unlink");
	mmdebstrap_hooks(b, &argv);
	ib_strv_push(&argv, m->base.suite);
	ib_strv_push(&argv, b->root_dir);
	for (size_t i = 0; i < b->mirrors.n; i++) {
		ib_strv_push_owned(&argv, xasprintf("deb %s %s %s", b->mirrors.v[i], m->base.suite, b->components));
		for (size_t j = 0; j < m->base.extra_suites.n; j++)
			ib_strv_push_owned(&argv,
					   xasprintf("deb %s %s %s", b->mirrors.v[i], m->base.extra_suites.v[j], b->components));
	}
	/* --components wants commas, a deb line wants spaces. */
	for (size_t i = 0; i < argv.n; i++)
		if (strncmp(argv.v[i], "deb ", 4) == 0)
			for (char *p = argv.v[i]; *p; p++)
				if (*p == ',')
					*p = ' ';
	return run_tool(argv.v, env, log_fd, "bootstrap", err);
}

/* debootstrap knows one suite and one mirror; apt in the stages sees all of
 * them, and the host's resolv.conf and hostname stay out, as with mmdebstrap. */
static int debootstrap_finish(const struct boot *b, ib_error_t *err)
{
	const struct ib_manifest *m = b->m;
	cleanup_buf struct ib_buf sources = { 0 };
	for (size_t i = 0; i < b->mirrors.n; i++) {
		ib_buf_printf(&sources, "deb %s %s %s\n", b->mirrors.v[i], m->base.suite, b->components);
		for (size_t j = 0; j < m->base.extra_suites.n; j++)
			ib_buf_printf(&sources, "deb %s %s %s\n", b->mirrors.v[i], m->base.extra_suites.v[j], b->components);
	}
	for (size_t k = 0; k < sources.len; k++)
		if (sources.s[k] == ',')
			sources.s[k] = ' ';
	cleanup_free char *list = ib_path_join(b->root_dir, "etc/apt/sources.list");
	if (ib_write_file_atomic(list, sources.s ? sources.s : "", sources.len, 0644, err) < 0)
		return -1;
	cleanup_free char *resolv = ib_path_join(b->root_dir, "etc/resolv.conf");
	cleanup_free char *hostname = ib_path_join(b->root_dir, "etc/hostname");
	unlink(resolv);
	if (ib_write_file_atomic(resolv, "", 0, 0644, err) < 0 || ib_write_file_atomic(hostname, "imgbuild\n", 9, 0644, err) < 0)
		return -1;
	return 0;
}

static int run_debootstrap(struct boot *b, char *const *env, int log_fd, ib_error_t *err)
{
	const struct ib_manifest *m = b->m;
	ib_log_info("bootstrap: %s %s with debootstrap (%s; %u cached packages offered)", m->base.distro, m->base.suite,
		    in_path("mmdebstrap") ? "IMGBUILD_BOOTSTRAP=debootstrap" : "mmdebstrap not found", b->staged);
	cleanup_strv struct ib_strv argv = { 0 };
	ib_strv_push(&argv, "debootstrap");
	ib_strv_push_owned(&argv, xasprintf("--variant=%s", b->variant));
	ib_strv_push_owned(&argv, xasprintf("--components=%s", b->components));
	if (b->keyring)
		ib_strv_push_owned(&argv, xasprintf("--keyring=%s", b->keyring));
	if (m->base.packages.n > 0)
		ib_strv_push_owned(&argv, xasprintf("--include=%s", b->packages));
	/* debootstrap keeps its downloads in --cache-dir and reuses them. */
	ib_strv_push_owned(&argv, xasprintf("--cache-dir=%s", b->debs_in));
	ib_strv_push(&argv, m->base.suite);
	ib_strv_push(&argv, b->root_dir);
	ib_strv_push(&argv, b->mirrors.v[0]);
	if (run_tool(argv.v, env, log_fd, "bootstrap", err) < 0 || debootstrap_finish(b, err) < 0)
		return -1;
	free(b->debs_out);
	b->debs_out = xstrdup(b->debs_in);
	return 0;
}

int ib_bootstrap_run(const struct ib_manifest *m, const char *root_dir, int log_fd, bool offline,
		     struct ib_bootstrap_stats *stats, ib_error_t *err)
{
	memset(stats, 0, sizeof(*stats));
	if (offline)
		return ib_error_set(err, 0, "the base of '%s' (%s %s) is not cached and --offline forbids building it",
				    m->image.name, m->base.distro, m->base.suite);

	cleanup_free char *parent = xstrdup(root_dir);
	struct boot b = { .m = m, .root_dir = root_dir, .dir = xstrdup(dirname(parent)) };
	struct deb_index index = { 0 };
	cleanup_strv struct ib_strv env = { 0 };
	int rc = -1;
	cleanup_free char *index_path = NULL;

	if (resolve_mirrors(m, &b.mirrors, err) < 0)
		goto out;
	index_path = deb_index_path(m, err);
	if (index_path == NULL)
		goto out;
	deb_index_load(&index, index_path);
	if (boot_prepare(&b, index_path, &index, err) < 0)
		goto out;
	boot_env(m, &env);
	enum ib_bootstrap_tool tool = ib_bootstrap_pick_tool();
	if ((tool == IB_BOOTSTRAP_MMDEBSTRAP ? run_mmdebstrap(&b, env.v, log_fd, err) : run_debootstrap(&b, env.v, log_fd, err)) < 0)
		goto out;
	if (collect_debs(&index, b.debs_out, stats, err) < 0 || deb_index_save(&index, index_path, err) < 0)
		goto out;
	if (tool == IB_BOOTSTRAP_MMDEBSTRAP) {
		cleanup_free char *lists_cache = lists_cache_path(index_path);
		publish_lists(b.lists_out, lists_cache);
	}
	ib_log_info("bootstrap: %u packages, %u downloaded, %u from the cache", stats->packages, stats->downloaded,
		    stats->packages - stats->downloaded);
	rc = 0;
out:
	boot_free(&b);
	deb_index_free(&index);
	return rc;
}
