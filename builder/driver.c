/* Host NVIDIA driver discovery (after libnvidia-container's nvc_info.c and
 * Apptainer's nvliblist.conf), binding into a sandbox, and `run --gpu` preflight. */
#include "driver.h"
#include "imgmeta.h"
#include "log.h"
#include "mounts.h"
#include "proc.h"
#include "util.h"
#include "version.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- ld.so.cache (glibc elf/cache.c, sysdeps/generic/dl-cache.h) ---- */

#define OLD_MAGIC "ld.so-1.7.0"
#define NEW_MAGIC "glibc-ld.so.cache"
#define NEW_VERSION "1.1"
#define FLAG_TYPE_MASK 0x00ff
#define FLAG_ELF_LIBC6 0x0003
#define FLAG_REQUIRED_MASK 0xff00
#define FLAG_X8664_LIB64 0x0300
#define FLAG_AARCH64_LIB64 0x0a00

struct old_entry {
	int32_t flags;
	uint32_t key, value;
};
struct new_entry {
	int32_t flags;
	uint32_t key, value;
	uint32_t osversion;
	uint64_t hwcap;
};
struct new_header {
	char magic[17];
	char version[3];
	uint32_t nlibs;
	uint32_t len_strings;
	uint8_t flags;
	uint8_t pad[3];
	uint32_t extension_offset;
	uint32_t unused[3];
};
_Static_assert(sizeof(struct old_entry) == 12, "old ld.so.cache entry");
_Static_assert(sizeof(struct new_entry) == 24, "new ld.so.cache entry");
_Static_assert(sizeof(struct new_header) == 48, "new ld.so.cache header");

bool ib_ldcache_native(int32_t flags)
{
	if ((flags & FLAG_TYPE_MASK) != FLAG_ELF_LIBC6)
		return false;
#if defined(__x86_64__)
	return (flags & FLAG_REQUIRED_MASK) == FLAG_X8664_LIB64;
#elif defined(__aarch64__)
	return (flags & FLAG_REQUIRED_MASK) == FLAG_AARCH64_LIB64;
#else
	return true;
#endif
}

/* A NUL-terminated string at BASE+OFF inside [data, data+len), or NULL. */
static const char *cache_string(const char *data, size_t len, size_t base, uint32_t off)
{
	if (base > len || off > len - base)
		return NULL;
	const char *s = data + base + off;
	const char *nul = memchr(s, '\0', len - base - off);
	return nul ? s : NULL;
}

static void ldcache_add(struct ib_ldcache *c, size_t *cap, const char *key, const char *path, int32_t flags)
{
	if (c->n == *cap) {
		*cap = *cap ? 2 * *cap : 64;
		c->entries = xrealloc(c->entries, *cap * sizeof(*c->entries));
	}
	c->entries[c->n].key = xstrdup(key);
	c->entries[c->n].path = xstrdup(path);
	c->entries[c->n].flags = flags;
	c->n++;
}

static int parse_new(const char *data, size_t len, size_t at, struct ib_ldcache *out, size_t *cap, ib_error_t *err)
{
	struct new_header h;
	if (at > len || len - at < sizeof(h))
		return ib_error_set(err, EINVAL, "ld.so.cache: truncated header");
	memcpy(&h, data + at, sizeof(h));
	if (memcmp(h.magic, NEW_MAGIC, 17) != 0 || memcmp(h.version, NEW_VERSION, 3) != 0)
		return ib_error_set(err, EINVAL, "ld.so.cache: unknown format");
	/* flags bits 0-1: 0 unknown, 1 invalid, 2 little endian, 3 big endian */
	int endian = h.flags & 3;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (endian == 1 || endian == 3)
#else
	if (endian == 1 || endian == 2)
#endif
		return ib_error_set(err, EINVAL, "ld.so.cache: written for another byte order");
	size_t avail = len - at - sizeof(h);
	if (h.nlibs > avail / sizeof(struct new_entry))
		return ib_error_set(err, EINVAL, "ld.so.cache: %u entries do not fit in %zu bytes", h.nlibs, avail);
	for (uint32_t i = 0; i < h.nlibs; i++) {
		struct new_entry e;
		memcpy(&e, data + at + sizeof(h) + i * sizeof(e), sizeof(e));
		/* new-format string offsets count from the start of the new header */
		const char *key = cache_string(data, len, at, e.key);
		const char *value = cache_string(data, len, at, e.value);
		if (key == NULL || value == NULL)
			return ib_error_set(err, EINVAL, "ld.so.cache: entry %u points outside the file", i);
		ldcache_add(out, cap, key, value, e.flags);
	}
	return 0;
}

int ib_ldcache_parse(const void *vdata, size_t len, struct ib_ldcache *out, ib_error_t *err)
{
	const char *data = vdata;
	struct ib_ldcache c = { 0 };
	size_t cap = 0;
	int rc;
	if (len >= sizeof(OLD_MAGIC) - 1 && memcmp(data, OLD_MAGIC, sizeof(OLD_MAGIC) - 1) == 0) {
		/* struct cache_file { char magic[11]; uint32_t nlibs; struct file_entry libs[]; } */
		if (len < 16) {
			rc = ib_error_set(err, EINVAL, "ld.so.cache: truncated header");
			goto fail;
		}
		uint32_t nlibs;
		memcpy(&nlibs, data + 12, 4);
		if (nlibs > (len - 16) / sizeof(struct old_entry)) {
			rc = ib_error_set(err, EINVAL, "ld.so.cache: %u entries do not fit in %zu bytes", nlibs, len);
			goto fail;
		}
		size_t table_end = 16 + (size_t)nlibs * sizeof(struct old_entry);
		size_t new_at = (table_end + 7) & ~(size_t)7;
		if (new_at + sizeof(struct new_header) <= len && memcmp(data + new_at, NEW_MAGIC, 17) == 0) {
			/* glibc < 2.32 wrote both; the new table carries the same entries */
			rc = parse_new(data, len, new_at, &c, &cap, err);
			if (rc < 0)
				goto fail;
		} else {
			for (uint32_t i = 0; i < nlibs; i++) {
				struct old_entry e;
				memcpy(&e, data + 16 + i * sizeof(e), sizeof(e));
				/* old-format string offsets count from the end of the entry table */
				const char *key = cache_string(data, len, table_end, e.key);
				const char *value = cache_string(data, len, table_end, e.value);
				if (key == NULL || value == NULL) {
					rc = ib_error_set(err, EINVAL, "ld.so.cache: entry %u points outside the file", i);
					goto fail;
				}
				ldcache_add(&c, &cap, key, value, e.flags);
			}
		}
	} else if (len >= 17 && memcmp(data, NEW_MAGIC, 17) == 0) {
		rc = parse_new(data, len, 0, &c, &cap, err);
		if (rc < 0)
			goto fail;
	} else {
		rc = ib_error_set(err, EINVAL, "ld.so.cache: not an ld.so.cache file");
		goto fail;
	}
	*out = c;
	return 0;
fail:
	ib_ldcache_free(&c);
	return rc;
}

void ib_ldcache_free(struct ib_ldcache *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->entries[i].key);
		free(c->entries[i].path);
	}
	free(c->entries);
	c->entries = NULL;
	c->n = 0;
}

/* ---- discovery ---- */

/* docs/sources.md §1: utility and compute libraries (prefix lib, suffix .so.<version>). */
static const char *const driver_libs[] = {
	"nvidia-ml",   "nvidia-cfg", /* utility */
	"cuda",	       "cudadebugger",	 "nvidia-opencl", "nvidia-ptxjitcompiler", "nvidia-allocator", "nvidia-compiler",
	"nvidia-nvvm", "nvidia-gpucomp", /* compute */
};
static const char *const driver_bins[] = {
	"nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control", "nvidia-cuda-mps-server",
};
static const char *const bin_dirs[] = { "/usr/bin", "/usr/local/bin", "/usr/local/nvidia/bin", "/bin", "/usr/sbin" };

static char *host_path(const struct ib_driver *d, const char *path)
{
	return d->host_root[0] ? ib_path_join(d->host_root, path) : xstrdup(path);
}

/* Folds "." and ".." in an absolute PATH, never above "/": a relative link
 * target ("../../usr/lib/...") must not climb out of the host root. Frees PATH. */
static char *normalize(char *path)
{
	char *out = xmalloc(strlen(path) + 2);
	size_t o = 0;
	const char *p = path;
	while (*p) {
		while (*p == '/')
			p++;
		size_t len = strcspn(p, "/");
		if (len == 0)
			break;
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--; /* the '/' before the dropped component */
		} else if (!(len == 1 && p[0] == '.')) {
			out[o++] = '/';
			memcpy(out + o, p, len);
			o += len;
		}
		p += len;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	free(path);
	return out;
}

/* Resolves symlinks of PATH (absolute, as seen by the host) inside the host root,
 * so that an absolute link target stays under $IMGBUILD_HOST_ROOT. Returns the
 * host-root-relative path, or NULL. */
static char *resolve_in_root(const struct ib_driver *d, const char *path)
{
	cleanup_free char *cur = xstrdup(path);
	for (int hops = 0; hops < 40; hops++) {
		cleanup_free char *full = host_path(d, cur);
		struct stat st;
		if (lstat(full, &st) < 0)
			return NULL;
		if (!S_ISLNK(st.st_mode))
			return steal_pointer(&cur);
		char target[PATH_MAX];
		ssize_t n = readlink(full, target, sizeof(target) - 1);
		if (n < 0)
			return NULL;
		target[n] = '\0';
		char *next;
		if (target[0] == '/') {
			next = xstrdup(target);
		} else {
			char *slash = strrchr(cur, '/');
			*slash = '\0';
			next = xasprintf("%s/%s", cur, target);
		}
		free(cur);
		cur = normalize(next); /* frees NEXT */
	}
	return NULL;
}

/* "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Sun ..." (the
 * open module says "... Open Kernel Module for x86_64  580.159.04 ..."): the
 * first token of the first line made only of digits and dots, with a dot. */
static char *parse_version(const char *text)
{
	const char *p = strstr(text, "NVRM version:");
	if (p == NULL)
		return NULL;
	const char *eol = strchr(p, '\n');
	if (eol == NULL)
		eol = p + strlen(p);
	while (p < eol) {
		while (p < eol && isspace((unsigned char)*p))
			p++;
		const char *start = p;
		bool digits = true, dot = false;
		while (p < eol && !isspace((unsigned char)*p)) {
			if (*p == '.')
				dot = true;
			else if (!isdigit((unsigned char)*p))
				digits = false;
			p++;
		}
		if (p > start && digits && dot && isdigit((unsigned char)*start))
			return xstrndup(start, (size_t)(p - start));
	}
	return NULL;
}

static bool lib_wanted(const char *key, bool old_driver)
{
	for (size_t i = 0; i < sizeof(driver_libs) / sizeof(driver_libs[0]) + 1; i++) {
		const char *name = i < sizeof(driver_libs) / sizeof(driver_libs[0])
					   ? driver_libs[i]
					   : (old_driver ? "nvidia-fatbinaryloader" : NULL);
		if (name == NULL)
			continue;
		size_t n = strlen(name);
		if (!strncmp(key, "lib", 3) && !strncmp(key + 3, name, n) && !strncmp(key + 3 + n, ".so", 3) &&
		    (key[6 + n] == '\0' || key[6 + n] == '.'))
			return true;
	}
	return false;
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcmp(s + a - b, suffix);
}

static int find_libs(struct ib_driver *d, ib_error_t *err)
{
	cleanup_free char *cache_path = host_path(d, "/etc/ld.so.cache");
	size_t len = 0;
	cleanup_free char *data = ib_read_file(cache_path, &len, err);
	if (data == NULL)
		return ib_error_wrap(err, "read the host's library cache");
	struct ib_ldcache cache = { 0 };
	if (ib_ldcache_parse(data, len, &cache, err) < 0)
		return ib_error_wrap(err, "'%s'", cache_path);
	bool old_driver = ib_version_cmp_n(d->version, "450", 1) < 0;
	cleanup_free char *suffix = xasprintf(".so.%s", d->version);
	size_t cap = 0;
	for (size_t i = 0; i < cache.n; i++) {
		const struct ib_ldcache_entry *e = &cache.entries[i];
		if (!ib_ldcache_native(e->flags) || !lib_wanted(e->key, old_driver))
			continue;
		cleanup_free char *resolved = resolve_in_root(d, e->path);
		if (resolved == NULL)
			continue;
		const char *name = strrchr(resolved, '/') ? strrchr(resolved, '/') + 1 : resolved;
		/* Only the running driver's files: a leftover libcuda of another
		 * version would give "driver/library version mismatch". */
		if (!has_suffix(name, suffix))
			continue;
		bool dup = false;
		for (size_t k = 0; k < d->n_libs; k++) {
			struct ib_driver_lib *l = &d->libs[k];
			if (strcmp(l->name, name))
				continue;
			/* The cache lists the highest-priority copy first, and may also list
			 * the development link (libcuda.so): keep a versioned SONAME. */
			dup = true;
			if ((l->soname == NULL || !strstr(l->soname, ".so.")) && strstr(e->key, ".so.") && strcmp(e->key, name)) {
				free(l->soname);
				l->soname = xstrdup(e->key);
			}
		}
		if (dup)
			continue;
		if (d->n_libs == cap) {
			cap = cap ? 2 * cap : 16;
			d->libs = xrealloc(d->libs, cap * sizeof(*d->libs));
		}
		struct ib_driver_lib *l = &d->libs[d->n_libs++];
		l->path = host_path(d, resolved);
		l->name = xstrdup(name);
		l->soname = strcmp(e->key, name) && strstr(e->key, ".so.") ? xstrdup(e->key) : NULL;
		if (!strncmp(name, "libcuda.so.", 11))
			d->libcuda = l->path;
	}
	ib_ldcache_free(&cache);
	return 0;
}

static bool is_script(const char *path)
{
	char magic[2] = { 0 };
	cleanup_fd int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd >= 0 && read(fd, magic, 2) == 2 && magic[0] == '#' && magic[1] == '!';
}

/* The absolute path a wrapper script execs TOOL from: the word after "exec",
 * or a line's first word, that is an absolute path whose file name contains
 * TOOL ("exec /usr/local/nvidia/bin/nvidia-smi \"$@\""). Not a shell parser:
 * what it cannot read, it does not follow (and the script itself is bound). */
static char *script_target(const char *path, const char *tool)
{
	ib_error_t e = NULL;
	cleanup_free char *text = ib_read_file_max(path, 64 * 1024, NULL, &e);
	ib_error_free(&e);
	if (text == NULL)
		return NULL;
	for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *w = line + strspn(line, " \t");
		if (*w == '#')
			continue;
		if (strncmp(w, "exec", 4) == 0 && (w[4] == ' ' || w[4] == '\t'))
			w += 4 + strspn(w + 4, " \t");
		if (*w == '"' || *w == '\'')
			w++;
		if (*w != '/')
			continue;
		size_t len = strcspn(w, " \t\"';&|");
		char *target = xstrndup(w, len);
		const char *base = strrchr(target, '/') + 1;
		if (strstr(base, tool) && !strchr(target, '$'))
			return target;
		free(target);
	}
	return NULL;
}

/* Follows REL (an absolute path as the host sees it) to the file that runs:
 * symlinks resolved inside the host root, a "#!" wrapper followed to what it
 * execs, a few levels deep. Returns the host path of an executable that is not
 * a script, or NULL. */
static char *follow_tool(const struct ib_driver *d, const char *rel, const char *tool, int depth)
{
	cleanup_free char *real = resolve_in_root(d, rel);
	if (real == NULL)
		return NULL;
	cleanup_free char *p = host_path(d, real);
	struct stat st;
	if (stat(p, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111))
		return NULL;
	if (!is_script(p))
		return steal_pointer(&p);
	cleanup_free char *next = depth < 4 ? script_target(p, tool) : NULL;
	if (next == NULL)
		return NULL;
	ib_log_debug("driver: %s is a wrapper script that runs %s", p, next);
	return follow_tool(d, next, tool, depth + 1);
}

/* Some hosts put a wrapper script in /usr/bin that execs the real tool from a
 * folder the image never sees (seen on the GPU test machine: /usr/bin/nvidia-smi
 * runs /usr/local/nvidia/bin/nvidia-smi, and the image's PATH has no such
 * folder, so the bound wrapper exited 127), or a chain of symlinks
 * (alternatives). Bind the file that runs, under the tool's name; a script
 * whose target cannot be read is bound only when there is nothing else. */
static void find_bins(struct ib_driver *d)
{
	for (size_t i = 0; i < sizeof(driver_bins) / sizeof(driver_bins[0]); i++) {
		cleanup_free char *script = NULL;
		bool found = false;
		for (size_t k = 0; k < sizeof(bin_dirs) / sizeof(bin_dirs[0]) && !found; k++) {
			cleanup_free char *rel = xasprintf("%s/%s", bin_dirs[k], driver_bins[i]);
			cleanup_free char *real = follow_tool(d, rel, driver_bins[i], 0);
			if (real) {
				ib_strv_push(&d->bins, real);
				ib_strv_push(&d->bin_names, driver_bins[i]);
				found = true;
				continue;
			}
			cleanup_free char *at = resolve_in_root(d, rel);
			cleanup_free char *p = at ? host_path(d, at) : NULL;
			struct stat st;
			if (script == NULL && p && stat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) && is_script(p))
				script = steal_pointer(&p);
		}
		if (!found && script) {
			ib_strv_push(&d->bins, script);
			ib_strv_push(&d->bin_names, driver_bins[i]);
		}
	}
}

static void add_dev(struct ib_driver *d, size_t *cap, const char *dst)
{
	cleanup_free char *p = host_path(d, dst);
	struct stat st;
	if (stat(p, &st) < 0)
		return;
	if (d->n_devs == *cap) {
		*cap = *cap ? 2 * *cap : 16;
		d->devs = xrealloc(d->devs, *cap * sizeof(*d->devs));
	}
	d->devs[d->n_devs].path = steal_pointer(&p);
	d->devs[d->n_devs].dst = xstrdup(dst);
	d->n_devs++;
}

static int cmp_str(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	/* nvidia2 before nvidia10 */
	if (strlen(x) != strlen(y))
		return strlen(x) < strlen(y) ? -1 : 1;
	return strcmp(x, y);
}

static void find_devices(struct ib_driver *d)
{
	size_t cap = 0;
	add_dev(d, &cap, "/dev/nvidiactl");
	cleanup_strv struct ib_strv names = { 0 };
	cleanup_free char *devdir = host_path(d, "/dev");
	DIR *dir = opendir(devdir);
	if (dir) {
		struct dirent *e;
		while ((e = readdir(dir)) != NULL) {
			const char *n = e->d_name;
			if (!strncmp(n, "nvidia", 6) && isdigit((unsigned char)n[6]) && strspn(n + 6, "0123456789") == strlen(n + 6))
				ib_strv_push_owned(&names, xasprintf("/dev/%s", n));
		}
		closedir(dir);
	}
	if (names.n)
		qsort(names.v, names.n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < names.n; i++)
		add_dev(d, &cap, names.v[i]);
	ib_strv_free(&names);
	add_dev(d, &cap, "/dev/nvidia-uvm");
	add_dev(d, &cap, "/dev/nvidia-uvm-tools");
	add_dev(d, &cap, "/dev/nvidia-modeset");
	cleanup_free char *capsdir = host_path(d, "/dev/nvidia-caps");
	dir = opendir(capsdir);
	if (dir) {
		struct dirent *e;
		while ((e = readdir(dir)) != NULL)
			if (e->d_name[0] != '.')
				ib_strv_push_owned(&names, xasprintf("/dev/nvidia-caps/%s", e->d_name));
		closedir(dir);
		if (names.n)
			qsort(names.v, names.n, sizeof(char *), cmp_str);
		for (size_t i = 0; i < names.n; i++)
			add_dev(d, &cap, names.v[i]);
	}
}

int ib_driver_discover(struct ib_driver *d, ib_error_t *err)
{
	memset(d, 0, sizeof(*d));
	const char *root = getenv("IMGBUILD_HOST_ROOT");
	d->host_root = xstrdup(root ? root : "");
	size_t rl = strlen(d->host_root);
	while (rl > 0 && d->host_root[rl - 1] == '/')
		d->host_root[--rl] = '\0';

	cleanup_free char *vpath = host_path(d, "/proc/driver/nvidia/version");
	if (access(vpath, F_OK) < 0)
		return 0; /* no kernel module: no driver */
	cleanup_free char *text = ib_read_file(vpath, NULL, err);
	if (text == NULL)
		return -1;
	d->version = parse_version(text);
	if (d->version == NULL)
		return ib_error_set(err, EINVAL, "'%s': no driver version in it", vpath);
	d->found = true;
	if (find_libs(d, err) < 0)
		return -1;
	find_bins(d);
	find_devices(d);
	cleanup_free char *sock = host_path(d, IB_DRIVER_SOCKET);
	struct stat st;
	if (stat(sock, &st) == 0 && !S_ISDIR(st.st_mode))
		d->socket = steal_pointer(&sock);
	return 0;
}

void ib_driver_free(struct ib_driver *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->n_libs; i++) {
		free(d->libs[i].path);
		free(d->libs[i].name);
		free(d->libs[i].soname);
	}
	free(d->libs);
	for (size_t i = 0; i < d->n_devs; i++) {
		free(d->devs[i].path);
		free(d->devs[i].dst);
	}
	free(d->devs);
	ib_strv_free(&d->bins);
	ib_strv_free(&d->bin_names);
	free(d->socket);
	free(d->version);
	free(d->host_root);
	memset(d, 0, sizeof(*d));
}

/* lib<name>.so for a SONAME lib<name>.so.1: the link dlopen("libcuda.so") needs. */
static char *dev_link(const char *soname)
{
	const char *so = strstr(soname, ".so.");
	return so ? xstrndup(soname, (size_t)(so - soname) + 3) : NULL;
}

void ib_driver_print(const struct ib_driver *d, FILE *out)
{
	if (!d->found) {
		fprintf(out,
			"no NVIDIA driver found (no %s%s/proc/driver/nvidia/version: the nvidia kernel module is not loaded)\n",
			d->host_root[0] ? d->host_root : "", "");
		return;
	}
	fprintf(out, "NVIDIA driver %s\n", d->version);
	if (d->host_root[0])
		fprintf(out, "host root: %s\n", d->host_root);
	fprintf(out, "libraries (read-only, into %s):\n", IB_DRIVER_LIB_DIR);
	if (d->n_libs == 0)
		fprintf(out, "  (none: no lib*.so.%s in the host's ld.so.cache)\n", d->version);
	for (size_t i = 0; i < d->n_libs; i++) {
		fprintf(out, "  %s -> %s/%s", d->libs[i].path, IB_DRIVER_LIB_DIR, d->libs[i].name);
		if (d->libs[i].soname) {
			cleanup_free char *dl = dev_link(d->libs[i].soname);
			fprintf(out, " (links %s", d->libs[i].soname);
			if (dl && strcmp(dl, d->libs[i].soname))
				fprintf(out, ", %s", dl);
			fputc(')', out);
		}
		fputc('\n', out);
	}
	fprintf(out, "binaries (read-only, into %s):\n", IB_DRIVER_BIN_DIR);
	if (d->bins.n == 0)
		fprintf(out, "  (none)\n");
	for (size_t i = 0; i < d->bins.n; i++)
		fprintf(out, "  %s -> %s/%s\n", d->bins.v[i], IB_DRIVER_BIN_DIR, d->bin_names.v[i]);
	fprintf(out, "devices:\n");
	if (d->n_devs == 0)
		fprintf(out, "  (none)\n");
	for (size_t i = 0; i < d->n_devs; i++)
		fprintf(out, "  %s -> %s\n", d->devs[i].path, d->devs[i].dst);
	fprintf(out, "socket:\n  %s%s\n", d->socket ? d->socket : "(none)", d->socket ? " -> " IB_DRIVER_SOCKET : "");
	fprintf(out, "environment:\n  LD_LIBRARY_PATH=%s:...\n  PATH=%s:...\n", IB_DRIVER_LIB_DIR, IB_DRIVER_BIN_DIR);
	bool uvm = false;
	for (size_t i = 0; i < d->n_devs; i++)
		uvm |= !strcmp(d->devs[i].dst, "/dev/nvidia-uvm");
	if (!uvm)
		fprintf(out, "warning: /dev/nvidia-uvm is missing: CUDA fails with CUDA_ERROR_UNKNOWN until the nvidia_uvm "
			     "module is loaded ('modprobe nvidia-uvm')\n");
}

/* ---- binding (in the sandbox child, private mount namespace) ---- */

static int bind_file(struct ib_mount_journal *j, const char *src, const char *dst, unsigned long flags, ib_error_t *err)
{
	if (ib_make_mount_point(dst, false, err) < 0)
		return -1;
	return ib_bind_mount(j, src, dst, flags, err);
}

int ib_driver_bind(const struct ib_driver *d, const char *root, struct ib_mount_journal *j, ib_error_t *err)
{
	if (!d->found)
		return 0;
	cleanup_free char *libdir = ib_path_join(root, IB_DRIVER_LIB_DIR);
	cleanup_free char *bindir = ib_path_join(root, IB_DRIVER_BIN_DIR);
	if (ib_mkdir_p(libdir, 0755, err) < 0 || ib_mkdir_p(bindir, 0755, err) < 0)
		return -1;
	const unsigned long file_flags = MS_RDONLY | MS_NODEV | MS_NOSUID;
	for (size_t i = 0; i < d->n_libs; i++) {
		const struct ib_driver_lib *l = &d->libs[i];
		cleanup_free char *dst = ib_path_join(libdir, l->name);
		if (bind_file(j, l->path, dst, file_flags, err) < 0)
			return -1;
		if (l->soname) {
			cleanup_free char *link = ib_path_join(libdir, l->soname);
			if (symlink(l->name, link) < 0 && errno != EEXIST)
				return ib_error_errno(err, errno, "symlink '%s'", link);
			cleanup_free char *dl = dev_link(l->soname);
			if (dl && strcmp(dl, l->soname)) {
				cleanup_free char *dlp = ib_path_join(libdir, dl);
				if (symlink(l->soname, dlp) < 0 && errno != EEXIST)
					return ib_error_errno(err, errno, "symlink '%s'", dlp);
			}
		}
	}
	for (size_t i = 0; i < d->bins.n; i++) {
		cleanup_free char *dst = ib_path_join(bindir, d->bin_names.v[i]);
		if (bind_file(j, d->bins.v[i], dst, file_flags, err) < 0)
			return -1;
	}
	for (size_t i = 0; i < d->n_devs; i++) {
		/* libnvidia-container's device flags; nodev would make the node unusable. */
		cleanup_free char *dst = ib_path_join(root, d->devs[i].dst);
		if (bind_file(j, d->devs[i].path, dst, MS_RDONLY | MS_NOSUID | MS_NOEXEC, err) < 0)
			return -1;
	}
	if (d->socket) {
		/* /var/run is /run in every image we build, and /run is emptied before
		 * packing, so a tmpfs there hides nothing and keeps the socket out of the layer. */
		/* Looked up inside the image: a link there (/var -> /) must not
		 * put the tmpfs over a folder of the host. */
		ib_error_t none = NULL;
		cleanup_free char *run = ib_resolve_in_root(root, "/run", IB_IN_ROOT_NONE, &none);
		ib_error_free(&none);
		cleanup_free char *varrun = ib_resolve_in_root(root, "/var/run", IB_IN_ROOT_NONE, &none);
		ib_error_free(&none);
		struct stat st;
		const char *target = NULL;
		if (varrun && lstat(varrun, &st) == 0 && S_ISDIR(st.st_mode))
			target = varrun;
		else if (run && lstat(run, &st) == 0 && S_ISDIR(st.st_mode))
			target = run;
		if (target == NULL) {
			ib_log_debug("no /run in the image: not binding the persistenced socket");
			return 0;
		}
		if (ib_xmount(j, "tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", err) < 0)
			return -1;
		cleanup_free char *dst = ib_path_join(target, "nvidia-persistenced/socket");
		if (bind_file(j, d->socket, dst, MS_NOSUID | MS_NODEV | MS_NOEXEC, err) < 0)
			return -1;
	}
	return 0;
}

void ib_driver_env(const struct ib_driver *d, char *const *envp, struct ib_strv *out)
{
	bool have_ld = false, have_path = false;
	for (; envp && *envp; envp++) {
		if (d->found && !strncmp(*envp, "LD_LIBRARY_PATH=", 16)) {
			const char *old = *envp + 16;
			ib_strv_push_owned(out, xasprintf("LD_LIBRARY_PATH=%s%s%s", IB_DRIVER_LIB_DIR, *old ? ":" : "", old));
			have_ld = true;
		} else if (d->found && !strncmp(*envp, "PATH=", 5)) {
			const char *old = *envp + 5;
			ib_strv_push_owned(out, xasprintf("PATH=%s%s%s", IB_DRIVER_BIN_DIR, *old ? ":" : "", old));
			have_path = true;
		} else
			ib_strv_push(out, *envp);
	}
	if (d->found && !have_ld)
		ib_strv_push(out, "LD_LIBRARY_PATH=" IB_DRIVER_LIB_DIR);
	if (d->found && !have_path)
		ib_strv_push(out, "PATH=" IB_DRIVER_BIN_DIR ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	if (out->v == NULL) {
		out->cap = 8;
		out->v = xcalloc(out->cap, sizeof(char *));
	}
}

/* ---- preflight ---- */

int ib_driver_check_present(const struct ib_driver *d, const char *min_driver, ib_error_t *err)
{
	if (!d->found)
		return ib_error_set(err, ENODEV,
				    "--gpu: no NVIDIA driver on this host (no %s/proc/driver/nvidia/version): install the "
				    "driver or load its kernel module",
				    d->host_root);
	if (min_driver && *min_driver && ib_version_cmp(d->version, min_driver) < 0)
		return ib_error_set(err, ENODEV,
				    "--gpu: the host's NVIDIA driver %s is older than %s, the oldest this image's CUDA "
				    "supports: update the host driver to %s or newer",
				    d->version, min_driver, min_driver);
	return 0;
}

int ib_driver_check_uvm(const struct ib_driver *d, ib_error_t *err)
{
	for (size_t i = 0; i < d->n_devs; i++)
		if (!strcmp(d->devs[i].dst, "/dev/nvidia-uvm"))
			return 0;
	return ib_error_set(err, ENODEV,
			    "--gpu: %s/dev/nvidia-uvm is missing: the nvidia_uvm kernel module is not loaded, and CUDA "
			    "would fail with CUDA_ERROR_UNKNOWN; load it with 'modprobe nvidia-uvm' (as root) and try again",
			    d->host_root);
}

typedef int (*cu_init_fn)(unsigned);
typedef int (*cu_count_fn)(int *);
typedef int (*cu_get_fn)(int *, int);
typedef int (*cu_attr_fn)(int *, int, int);
typedef int (*cu_name_fn)(char *, int, int);

static const char *cu_error_name(int rc)
{
	switch (rc) {
	case 3: return "CUDA_ERROR_NOT_INITIALIZED";
	case 34: return "CUDA_ERROR_STUB_LIBRARY";
	case 35: return "CUDA_ERROR_INSUFFICIENT_DRIVER";
	case 100: return "CUDA_ERROR_NO_DEVICE";
	case 101: return "CUDA_ERROR_INVALID_DEVICE";
	case 304: return "CUDA_ERROR_OPERATING_SYSTEM";
	case 999: return "CUDA_ERROR_UNKNOWN";
	default: return "CUDA error";
	}
}

#ifndef IB_PORTABLE
static int query_gpus_here(const struct ib_driver *d, struct ib_gpu **gpus, size_t *n, ib_error_t *err)
{
	const char *path = getenv("IMGBUILD_LIBCUDA");
	if (path == NULL || *path == '\0')
		path = d && d->libcuda ? d->libcuda : "libcuda.so.1";
	/* Never dlclose'd: libcuda keeps threads and atexit handlers. */
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL)
		return ib_error_set(err, ENOENT, "--gpu: load '%s': %s", path, dlerror());
	cu_init_fn init = (cu_init_fn)dlsym(h, "cuInit");
	cu_count_fn count = (cu_count_fn)dlsym(h, "cuDeviceGetCount");
	cu_get_fn get = (cu_get_fn)dlsym(h, "cuDeviceGet");
	cu_attr_fn attr = (cu_attr_fn)dlsym(h, "cuDeviceGetAttribute");
	cu_name_fn name = (cu_name_fn)dlsym(h, "cuDeviceGetName");
	if (!init || !count || !attr)
		return ib_error_set(err, ENOENT, "--gpu: '%s' lacks cuInit/cuDeviceGetCount/cuDeviceGetAttribute", path);
	int rc = init(0);
	if (rc != 0)
		return ib_error_set(err, EIO, "--gpu: cuInit failed with %d (%s)%s", rc, cu_error_name(rc),
				    rc == 999 ? ": is the nvidia_uvm module loaded?" : "");
	int cnt = 0;
	if ((rc = count(&cnt)) != 0)
		return ib_error_set(err, EIO, "--gpu: cuDeviceGetCount failed with %d (%s)", rc, cu_error_name(rc));
	if (cnt <= 0)
		return ib_error_set(err, ENODEV, "--gpu: the driver sees no GPU");
	struct ib_gpu *g = xcalloc((size_t)cnt, sizeof(*g));
	for (int i = 0; i < cnt; i++) {
		int dev = i;
		if (get && (rc = get(&dev, i)) != 0) {
			free(g);
			return ib_error_set(err, EIO, "--gpu: cuDeviceGet(%d) failed with %d (%s)", i, rc, cu_error_name(rc));
		}
		g[i].index = i;
		/* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76 */
		if ((rc = attr(&g[i].major, 75, dev)) != 0 || (rc = attr(&g[i].minor, 76, dev)) != 0) {
			free(g);
			return ib_error_set(err, EIO, "--gpu: cuDeviceGetAttribute failed with %d (%s)", rc, cu_error_name(rc));
		}
		if (name == NULL || name(g[i].name, (int)sizeof(g[i].name), dev) != 0)
			snprintf(g[i].name, sizeof(g[i].name), "GPU %d", i);
		g[i].name[sizeof(g[i].name) - 1] = '\0';
	}
	*gpus = g;
	*n = (size_t)cnt;
	return 0;
}

#else
/* imgbuild-portable is static and cannot dlopen the host's libcuda: it runs
 * builder/portable/cuda-query.c (a dynamic program, embedded here) from a
 * memfd with LD_PRELOAD=LIBCUDA, so the host's ld.so loads libcuda. That file
 * says why it runs on any glibc from 2.2.5 on. */
__asm__(".pushsection .rodata\n.balign 16\ncuda_query_elf:\n.incbin \"" IB_CUDA_QUERY "\"\n"
	"cuda_query_elf_end:\n.popsection\n");
extern const char cuda_query_elf[], cuda_query_elf_end[];
extern char **environ;

static int query_gpus_here(const struct ib_driver *d, struct ib_gpu **gpus, size_t *n, ib_error_t *err)
{
	const char *path = getenv("IMGBUILD_LIBCUDA");
	if (path == NULL || *path == '\0')
		path = d && d->libcuda ? d->libcuda : "libcuda.so.1";
	cleanup_fd int mfd = memfd_create("imgbuild-cuda-query", MFD_CLOEXEC);
	size_t len = (size_t)(cuda_query_elf_end - cuda_query_elf);
	if (mfd < 0 || write(mfd, cuda_query_elf, len) != (ssize_t)len)
		return ib_error_errno(err, errno, "--gpu: write the GPU query program to a memfd");
	/* LD_PRELOAD in the program's environment only. */
	cleanup_strv struct ib_strv env = { 0 };
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) != 0)
			ib_strv_push(&env, *e);
	ib_strv_push_owned(&env, xasprintf("LD_PRELOAD=%s", path));
	char *args[] = { "cuda-query", NULL };
	/* stderr with stdout: ld.so's message when libcuda does not load comes
	 * first and is the one to show. */
	struct ib_proc_cmd cmd = { .argv = args, .envp = env.v, .exec_fd = mfd, .merge_stderr = true };
	cleanup_proc_output struct ib_proc_output o = { 0 };
	if (ib_proc_capture(&cmd, &o, err) < 0)
		return ib_error_wrap(err, "--gpu: run the GPU query program");
	char *out = o.out;

	char call[64];
	int rc = 0, cnt = 0, used = 0;
	if (sscanf(out, "cuda %63s %d", call, &rc) == 2) {
		if (strcmp(call, "cuInit") == 0)
			return ib_error_set(err, EIO, "--gpu: cuInit failed with %d (%s)%s", rc, cu_error_name(rc),
					    rc == 999 ? ": is the nvidia_uvm module loaded?" : "");
		return ib_error_set(err, EIO, "--gpu: %s failed with %d (%s)", call, rc, cu_error_name(rc));
	}
	if (sscanf(out, "error %d %n", &rc, &used) == 1 && used > 0) {
		out[strcspn(out, "\n")] = '\0';
		return ib_error_set(err, rc > 0 ? rc : EIO, "%s", out + used);
	}
	if (sscanf(out, "gpus %d%n", &cnt, &used) != 1 || cnt < 0 || cnt > 256) {
		out[strcspn(out, "\n")] = '\0';
		if (out[0]) /* ld.so: "ERROR: ld.so: object ... cannot be preloaded" or a missing symbol */
			return ib_error_set(err, ENOENT, "--gpu: load '%s': %s", path, out);
		return ib_error_set(err, EIO, "--gpu: the GPU query program failed (%s %d)", o.signal ? "signal" : "status",
				    o.signal ? o.signal : o.status);
	}
	if (cnt == 0)
		return ib_error_set(err, ENODEV, "--gpu: the driver sees no GPU");
	struct ib_gpu *g = xcalloc((size_t)cnt, sizeof(*g));
	char *line = strchr(out, '\n');
	for (int i = 0; i < cnt; i++) {
		int nm = 0;
		if (line == NULL || sscanf(line + 1, "%d %d %n", &g[i].major, &g[i].minor, &nm) != 2 || nm == 0) {
			free(g);
			return ib_error_set(err, EIO, "--gpu: the GPU query program's output is cut short");
		}
		char *name = line + 1 + nm;
		line = strchr(name, '\n');
		size_t nl = line ? (size_t)(line - name) : strlen(name);
		snprintf(g[i].name, sizeof(g[i].name), "%.*s", (int)nl, name);
		g[i].index = i;
	}
	*gpus = g;
	*n = (size_t)cnt;
	return 0;
}
#endif

/* cuInit starts driver threads, and the sandbox is made next with a raw clone()
 * whose child mallocs: safe only in a single-threaded parent (a driver thread
 * holding a malloc lock at clone time deadlocks the child; seen on an H200 with
 * driver 580). So libcuda is loaded in a forked helper that sends the results
 * back through a pipe and exits; imgbuild itself never loads libcuda
 * (libnvidia-container queries the driver in a separate process likewise). */
static int query_in_helper(void *arg, struct ib_buf *result, ib_error_t *err)
{
	struct ib_gpu *g = NULL;
	size_t cnt = 0;
	if (query_gpus_here(arg, &g, &cnt, err) < 0)
		return -1;
	ib_buf_add(result, g, cnt * sizeof(*g));
	free(g);
	return 0;
}

int ib_driver_query_gpus(const struct ib_driver *d, struct ib_gpu **gpus, size_t *n, ib_error_t *err)
{
	cleanup_buf struct ib_buf r = { 0 };
	if (ib_proc_call("--gpu: the GPU query (libcuda crashed?)", query_in_helper, (void *)d, &r, err) < 0)
		return -1;
	size_t cnt = r.len / sizeof(struct ib_gpu);
	if (r.len % sizeof(struct ib_gpu) != 0 || cnt > 4096)
		return ib_error_set(err, EIO, "--gpu: the GPU query helper answered %zu bytes", r.len);
	struct ib_gpu *g = xcalloc(cnt ? cnt : 1, sizeof(*g));
	memcpy(g, r.s, r.len);
	for (size_t i = 0; i < cnt; i++)
		g[i].name[sizeof(g[i].name) - 1] = '\0';
	*gpus = g;
	*n = cnt;
	return 0;
}

struct arch {
	int major, minor;
	bool ptx, exact;
};

static bool parse_arch(const char *s, struct arch *a)
{
	while (isspace((unsigned char)*s))
		s++;
	if (!strncmp(s, "sm_", 3) || !strncmp(s, "compute_", 8)) {
		/* "sm_61": one digit of minor */
		const char *p = strchr(s, '_') + 1;
		size_t len = strspn(p, "0123456789");
		if (len < 2)
			return false;
		a->minor = p[len - 1] - '0';
		a->major = 0;
		for (size_t i = 0; i + 1 < len; i++)
			a->major = a->major * 10 + (p[i] - '0');
		a->ptx = s[0] == 'c';
		a->exact = p[len] == 'a';
		return true;
	}
	char *end;
	long maj = strtol(s, &end, 10);
	if (end == s || *end != '.')
		return false;
	const char *p = end + 1;
	long min = strtol(p, &end, 10);
	if (end == p)
		return false;
	a->major = (int)maj;
	a->minor = (int)min;
	a->exact = *end == 'a' || *end == 'f';
	if (*end == 'a' || *end == 'f')
		end++;
	a->ptx = !strcmp(end, "+PTX") || !strcmp(end, "+ptx");
	return a->ptx || *end == '\0';
}

int ib_driver_check_archs(const struct ib_gpu *gpus, size_t n_gpus, const char *const *archs, size_t n_archs, bool ptx_jit,
			  ib_error_t *err)
{
	cleanup_buf struct ib_buf list = { 0 };
	ib_buf_adds(&list, "");
	struct arch *parsed = xcalloc(n_archs ? n_archs : 1, sizeof(*parsed));
	for (size_t i = 0; i < n_archs; i++) {
		if (!parse_arch(archs[i], &parsed[i])) {
			free(parsed);
			return ib_error_set(err, EINVAL, "--gpu: the image's arch '%s' is not X.Y, X.Y+PTX or X.Ya", archs[i]);
		}
		ib_buf_printf(&list, "%ssm_%d%d%s%s", i ? ", " : "", parsed[i].major, parsed[i].minor, parsed[i].exact ? "a" : "",
			      parsed[i].ptx ? "+PTX" : "");
	}
	for (size_t g = 0; g < n_gpus; g++) {
		int cc = gpus[g].major * 10 + gpus[g].minor;
		bool covered = false;
		int lowest = -1;
		for (size_t i = 0; i < n_archs && !covered; i++) {
			const struct arch *a = &parsed[i];
			int ac = a->major * 10 + a->minor;
			if (lowest < 0 || ac < lowest)
				lowest = ac;
			if (a->exact)
				covered = ac == cc;
			else if (a->ptx)
				covered = cc >= ac;
			else
				covered = a->major == gpus[g].major && gpus[g].minor >= a->minor;
		}
		/* ptx_jit: the image's kernels carry PTX for its lowest arch. */
		if (!covered && ptx_jit && lowest >= 0 && cc >= lowest)
			covered = true;
		if (!covered) {
			free(parsed);
			return ib_error_set(err, ENODEV,
					    "--gpu: GPU %d (%s): this image was compiled for %s; this GPU is sm_%d%d "
					    "(\"no kernel image is available for execution on the device\"): rebuild with "
					    "%d.%d in [stack] archs",
					    gpus[g].index, gpus[g].name, n_archs ? list.s : "(no architectures)", gpus[g].major,
					    gpus[g].minor, gpus[g].major, gpus[g].minor);
		}
	}
	free(parsed);
	return 0;
}

int ib_driver_preflight(const struct ib_driver *d, const struct ib_facts *f, ib_error_t *err)
{
	if (ib_driver_check_present(d, f ? f->min_driver : NULL, err) < 0 || ib_driver_check_uvm(d, err) < 0)
		return -1;
	if (f == NULL || (!f->have_archs && !f->ptx_jit))
		return 0;
	struct ib_gpu *gpus = NULL;
	size_t n = 0;
	if (ib_driver_query_gpus(d, &gpus, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		ib_log_debug("GPU %d: %s, compute capability %d.%d", gpus[i].index, gpus[i].name, gpus[i].major, gpus[i].minor);
	int r = ib_driver_check_archs(gpus, n, (const char *const *)f->archs.v, f->archs.n, f->ptx_jit, err);
	free(gpus);
	return r;
}
