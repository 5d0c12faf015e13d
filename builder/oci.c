/* OCI export: see oci.h. */
#include "oci.h"

#include <errno.h>
#include <stdarg.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ib_archive.h"
#include "deflate.h"
#include "hash.h"
#include "imgmeta.h"
#include "log.h"
#include "sandbox.h"
#include "toml.h"
#include "util.h"

/* What imgbuild run starts a command with (cmd_run.c), before profile.d. */
#define RUN_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define PROFILE_MAX ((size_t)64 << 10)
#define FACTS_MAX ((size_t)1 << 20)

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_INDEX "application/vnd.oci.image.index.v1+json"

void ib_oci_result_free(struct ib_oci_result *r)
{
	if (r == NULL)
		return;
	free(r->ref);
	r->ref = NULL;
}

/* ---------------- what verify hands over in its pass ---------------- */

struct capture {
	char *path;
	char *data;
	size_t len;
};

struct gather {
	struct capture *v; /* profile.d scripts, in path order */
	size_t n;
	struct ib_buf facts;
	char elf[20];
	size_t elf_len;
	const char *arch; /* GOARCH name from the first ELF program in /usr/bin or /bin */
	bool in_elf;
	bool in_facts;
};

static bool is_profile_script(const char *path)
{
	static const char dir[] = "./etc/profile.d/";
	size_t n = strlen(path);
	return strncmp(path, dir, sizeof(dir) - 1) == 0 && strchr(path + sizeof(dir) - 1, '/') == NULL && n > 3 &&
	       strcmp(path + n - 3, ".sh") == 0;
}

static size_t gather_want(void *ctx, const char *path, int64_t size)
{
	struct gather *g = ctx;
	g->in_elf = g->in_facts = false;
	if (strcmp(path, "./" IB_META_FACTS) == 0 && (size_t)size <= FACTS_MAX) {
		g->in_facts = true;
		return (size_t)size;
	}
	if (is_profile_script(path) && (size_t)size <= PROFILE_MAX) {
		g->v = xrealloc(g->v, (g->n + 1) * sizeof(*g->v));
		g->v[g->n++] = (struct capture){ xstrdup(path), xcalloc(1, (size_t)size + 1), 0 };
		return (size_t)size;
	}
	if (g->arch == NULL && size >= 20 && (strncmp(path, "./usr/bin/", 10) == 0 || strncmp(path, "./bin/", 6) == 0)) {
		g->in_elf = true;
		g->elf_len = 0;
		return 20;
	}
	return 0;
}

/* e_machine (and EI_DATA for the two endiannesses of ppc64) to GOARCH, the
 * names the image spec's "architecture" takes. */
static const char *goarch(const unsigned char *h)
{
	if (memcmp(h,
		   "\x7f"
		   "ELF",
		   4) != 0)
		return NULL;
	bool le = h[5] == 1;
	unsigned m = le ? (unsigned)h[18] | (unsigned)h[19] << 8 : (unsigned)h[19] | (unsigned)h[18] << 8;
	switch (m) {
	case 62: return "amd64";
	case 183: return "arm64";
	case 3: return "386";
	case 40: return "arm";
	case 21: return le ? "ppc64le" : "ppc64";
	case 22: return "s390x";
	case 243: return "riscv64";
	default: return NULL;
	}
}

static void gather_take(void *ctx, const char *path, const void *buf, size_t len)
{
	struct gather *g = ctx;
	if (g->in_facts) {
		ib_buf_add(&g->facts, buf, len);
	} else if (g->in_elf) {
		size_t n = len < sizeof(g->elf) - g->elf_len ? len : sizeof(g->elf) - g->elf_len;
		memcpy(g->elf + g->elf_len, buf, n);
		g->elf_len += n;
		if (g->elf_len == sizeof(g->elf))
			g->arch = goarch((const unsigned char *)g->elf);
	} else if (g->n > 0 && strcmp(g->v[g->n - 1].path, path) == 0) {
		struct capture *c = &g->v[g->n - 1];
		memcpy(c->data + c->len, buf, len); /* want() sized it to the entry */
		c->len += len;
	}
}

static void gather_free(struct gather *g)
{
	for (size_t i = 0; i < g->n; i++) {
		free(g->v[i].path);
		free(g->v[i].data);
	}
	free(g->v);
	ib_buf_free(&g->facts);
}

/* ---------------- Env ---------------- */

static void env_set(struct ib_strv *env, const char *name, size_t name_len, const char *value)
{
	char *kv = xasprintf("%.*s=%s", (int)name_len, name, value);
	for (size_t i = 0; i < env->n; i++)
		if (strncmp(env->v[i], name, name_len) == 0 && env->v[i][name_len] == '=') {
			free(env->v[i]);
			env->v[i] = kv;
			return;
		}
	ib_strv_push_owned(env, kv);
}

/* One shell word of literal text: 'single quoted' parts, \x escapes and
 * plain characters, concatenated (env.sh writes 'it'\''s'). NULL when the
 * word needs the shell (expansions, double quotes). *P moves past it. */
static char *literal_word(const char **p)
{
	const char *s = *p;
	size_t cap = strlen(s) + 1, n = 0;
	char *out = xmalloc(cap);
	while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != ';') {
		if (*s == '\'') {
			const char *end = strchr(s + 1, '\'');
			if (end == NULL)
				goto shell;
			memcpy(out + n, s + 1, (size_t)(end - s - 1));
			n += (size_t)(end - s - 1);
			s = end + 1;
		} else if (*s == '\\' && s[1] && s[1] != '\n') {
			out[n++] = s[1];
			s += 2;
		} else if (strchr("$`\"&|<>()*?[~{}", *s)) {
			goto shell;
		} else {
			out[n++] = *s++;
		}
	}
	out[n] = '\0';
	*p = s;
	return out;
shell:
	free(out);
	return NULL;
}

void ib_oci_env_from_profile(const char *const *texts, size_t n, struct ib_strv *env, size_t *skipped)
{
	ib_strv_push(env, "PATH=" RUN_PATH);
	ib_strv_push(env, "HOME=/root");
	*skipped = 0;
	for (size_t t = 0; t < n; t++) {
		for (const char *line = texts[t]; line && *line;) {
			const char *eol = strchr(line, '\n');
			size_t len = eol ? (size_t)(eol - line) : strlen(line);
			cleanup_free char *l = xstrndup(line, len);
			line = eol ? eol + 1 : line + len;
			const char *s = l;
			while (*s == ' ' || *s == '\t')
				s++;
			if (*s == '\0' || *s == '#')
				continue;
			if (strncmp(s, "export ", 7) == 0)
				for (s += 7; *s == ' ' || *s == '\t'; s++)
					;
			const char *name = s;
			if (!(*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))) {
				(*skipped)++;
				continue;
			}
			while (*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9'))
				s++;
			size_t name_len = (size_t)(s - name);
			if (*s != '=') {
				(*skipped)++;
				continue;
			}
			s++;
			cleanup_free char *value = literal_word(&s);
			while (value && (*s == ' ' || *s == '\t'))
				s++;
			if (value == NULL || (*s != '\0' && *s != '#')) {
				(*skipped)++;
				continue;
			}
			env_set(env, name, name_len, value);
		}
	}
}

/* ---------------- JSON ---------------- */

static void json_str(struct ib_buf *b, const char *s)
{
	ib_buf_add(b, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			ib_buf_add(b, e, 2);
		} else if (c < 0x20 || c == 0x7f) {
			char e[8];
			snprintf(e, sizeof(e), "\\u%04x", c);
			ib_buf_add(b, e, 6);
		} else {
			ib_buf_add(b, (const char *)&c, 1);
		}
	}
	ib_buf_add(b, "\"", 1);
}

/* ---------------- output: a folder or a tar of it ---------------- */

struct out {
	bool tar;
	int fd;	       /* the tar being written, or the blob being written in a folder */
	char *tmp;     /* temporary folder or file beside the output */
	int64_t epoch; /* tar headers' mtime */
	uint64_t off;  /* tar: bytes written */
	struct ib_sha256 *blob_sha;
	uint64_t blob_len;
};

static int write_all(int fd, const void *buf, size_t len, ib_error_t *err)
{
	if (!ib_write_all(fd, buf, len))
		return ib_error_errno(err, errno, "export: write");
	return 0;
}

static void octal(char *field, size_t width, uint64_t v)
{
	/* WIDTH-1 digits and a NUL, as ustar writes them. */
	field[width - 1] = '\0';
	for (size_t i = width - 1; i-- > 0; v >>= 3)
		field[i] = (char)('0' + (v & 7));
}

/* A ustar header. Sizes past 8 GiB use the base-256 form (GNU, and what
 * Go's archive/tar in podman, skopeo and umoci reads). NAME fits 100 bytes:
 * the longest is blobs/sha256/ and 64 hex digits. */
static void tar_header(uint8_t h[512], const char *name, char type, unsigned mode, uint64_t size, int64_t mtime)
{
	memset(h, 0, 512);
	memcpy(h, name, strlen(name));
	octal((char *)h + 100, 8, mode);
	octal((char *)h + 108, 8, 0);
	octal((char *)h + 116, 8, 0);
	if (size < (1ULL << 33)) {
		octal((char *)h + 124, 12, size);
	} else {
		h[124] = 0x80;
		for (int i = 11; i >= 4; i--, size >>= 8)
			h[124 + i] = (uint8_t)size;
	}
	octal((char *)h + 136, 12, mtime > 0 ? (uint64_t)mtime : 0);
	h[156] = (uint8_t)type;
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	octal((char *)h + 148, 7, sum);
	h[155] = ' ';
}

static int tar_pad(struct out *o, ib_error_t *err)
{
	static const uint8_t zero[512];
	size_t pad = (size_t)((512 - o->off % 512) % 512);
	if (pad && write_all(o->fd, zero, pad, err) < 0)
		return -1;
	o->off += pad;
	return 0;
}

static int out_dir_entry(struct out *o, const char *name, ib_error_t *err)
{
	if (!o->tar) {
		cleanup_free char *p = ib_path_join(o->tmp, name);
		if (mkdir(p, 0755) < 0)
			return ib_error_errno(err, errno, "export: mkdir '%s'", p);
		return 0;
	}
	uint8_t h[512];
	tar_header(h, name, '5', 0755, 0, o->epoch);
	if (write_all(o->fd, h, sizeof(h), err) < 0)
		return -1;
	o->off += 512;
	return 0;
}

static int out_file(struct out *o, const char *name, const void *data, size_t len, ib_error_t *err)
{
	if (!o->tar) {
		cleanup_free char *p = ib_path_join(o->tmp, name);
		cleanup_fd int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			return ib_error_errno(err, errno, "export: create '%s'", p);
		return write_all(fd, data, len, err);
	}
	uint8_t h[512];
	tar_header(h, name, '0', 0644, len, o->epoch);
	if (write_all(o->fd, h, sizeof(h), err) < 0 || write_all(o->fd, data, len, err) < 0)
		return -1;
	o->off += 512 + len;
	return tar_pad(o, err);
}

static int out_blob(struct out *o, const struct ib_buf *b, char hex[IB_SHA256_HEX_LEN + 1], ib_error_t *err)
{
	uint8_t d[IB_SHA256_LEN];
	ib_sha256_buf(b->s, b->len, d);
	ib_hex(d, sizeof(d), hex);
	cleanup_free char *name = xasprintf("blobs/sha256/%s", hex);
	return out_file(o, name, b->s, b->len, err);
}

/* What precedes the layer. Written before verify's pass, when the image's
 * time for the tar headers is not known yet; in a tar, written over once
 * it is (the same length). */
static int write_prefix(struct out *o, ib_error_t *err)
{
	static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
	if (out_file(o, "oci-layout", layout, sizeof(layout) - 1, err) < 0 || out_dir_entry(o, "blobs/", err) < 0 ||
	    out_dir_entry(o, "blobs/sha256/", err) < 0)
		return -1;
	return 0;
}

static int rewrite_prefix(struct out *o, ib_error_t *err)
{
	uint64_t end = o->off;
	if (lseek(o->fd, 0, SEEK_SET) < 0)
		return ib_error_errno(err, errno, "export: seek '%s'", o->tmp);
	o->off = 0;
	if (write_prefix(o, err) < 0)
		return -1;
	o->off = end;
	if (lseek(o->fd, 0, SEEK_END) < 0)
		return ib_error_errno(err, errno, "export: seek '%s'", o->tmp);
	return 0;
}

/* The layer's bytes, in order, from the compressor or the copier. */
static int layer_sink(void *ctx, const void *buf, size_t len, ib_error_t *err)
{
	struct out *o = ctx;
	if (o->blob_sha)
		ib_sha256_update(o->blob_sha, buf, len);
	o->blob_len += len;
	return write_all(o->fd, buf, len, err);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The layer's uncompressed bytes go to one of these. */
struct feed {
	enum ib_oci_compression comp;
	struct out *o;
	struct ib_gzip *gz;
	struct ib_archive_writer *zw;
	struct ib_sha256 *raw_sha; /* zstd image: the decompressed bytes (diff_id) */
	struct ib_hash_pipe *pipe;
	bool passthrough; /* zstd image to zstd layer: the image's bytes are the layer */
	ib_error_t source_err;
};

static int feed(struct feed *f, const void *buf, size_t len, ib_error_t *err)
{
	if (f->raw_sha)
		ib_sha256_update(f->raw_sha, buf, len);
	if (f->passthrough)
		return 0;
	switch (f->comp) {
	case IB_OCI_GZIP: return ib_gzip_write(f->gz, buf, len, err);
	case IB_OCI_ZSTD: return ib_archive_writer_data(f->zw, buf, len, err);
	default: return layer_sink(f->o, buf, len, err);
	}
}

/* The decompressor's source: the image's bytes as the reader thread hashed
 * them, and, passing through, the layer itself. */
static ssize_t zstd_source(void *ctx, const void **buf)
{
	struct feed *f = ctx;
	ssize_t n = ib_hash_pipe_next(f->pipe, buf);
	if (n > 0 && f->passthrough && layer_sink(f->o, *buf, (size_t)n, &f->source_err) < 0) {
		errno = EIO;
		return -1;
	}
	return n;
}

/* Streams the image through the compressor into O's current position. The
 * image's bytes are hashed again as they are read (on the reader thread) and
 * must still be the bytes verify accepted. A zstd image is decompressed on
 * the way (the layer's diff_id is of the tar inside). */
static int write_layer(struct out *o, int image_fd, bool zstd_image, enum ib_oci_compression comp, int threads,
		       const char *verified_hex, struct ib_oci_result *res, ib_error_t *err)
{
	cleanup_hash_pipe struct ib_hash_pipe *pipe = ib_hash_pipe_new_reader(image_fd, 1 << 20, 8);
	cleanup_gzip struct ib_gzip *gz = NULL;
	cleanup_archive_writer struct ib_archive_writer *zw = NULL;
	cleanup_archive_reader struct ib_archive_reader *zr = NULL;
	cleanup_sha256 struct ib_sha256 *raw_sha = zstd_image ? ib_sha256_new() : NULL;
	struct feed f = { .comp = comp, .o = o, .raw_sha = raw_sha, .pipe = pipe, .passthrough = zstd_image && comp == IB_OCI_ZSTD };
	if (comp == IB_OCI_GZIP)
		f.gz = gz = ib_gzip_new(threads, layer_sink, o);
	else if (comp == IB_OCI_ZSTD && !f.passthrough &&
		 (f.zw = zw = ib_archive_compressor_new(IB_COMPRESS_ZSTD, threads, 0, layer_sink, o, err)) == NULL)
		return -1;
	if (zstd_image) {
		zr = ib_archive_decompressor_new(zstd_source, &f, err);
		if (zr == NULL)
			return ib_error_wrap(err, "export: decompress the image");
		for (;;) {
			const void *buf;
			size_t n;
			int d = ib_archive_reader_data(zr, &buf, &n, err);
			if (d < 0) {
				if (f.source_err) {
					ib_error_free(err);
					*err = steal_pointer(&f.source_err);
				}
				return ib_error_wrap(err, "export: decompress the image");
			}
			if (d == 0)
				break;
			if (feed(&f, buf, n, err) < 0)
				return -1;
		}
	} else {
		for (;;) {
			const void *buf;
			ssize_t n = ib_hash_pipe_next(pipe, &buf);
			if (n < 0)
				return ib_error_errno(err, errno, "export: read the image");
			if (n == 0)
				break;
			if (feed(&f, buf, (size_t)n, err) < 0)
				return -1;
		}
	}
	if (gz && ib_gzip_finish(gz, NULL, err) < 0)
		return -1;
	if (zw && ib_archive_writer_finish(zw, err) < 0)
		return -1;
	uint8_t d[IB_SHA256_LEN];
	uint64_t total = 0;
	char file_hex[IB_SHA256_HEX_LEN + 1];
	if (ib_hash_pipe_finish(pipe, d, &total, err) < 0)
		return -1;
	ib_hex(d, sizeof(d), file_hex);
	if (strcmp(file_hex, verified_hex) != 0)
		return ib_error_set(err, 0, "export: the image changed while it was read (sha256 %s, verified %s): nothing written",
				    file_hex, verified_hex);
	if (raw_sha) {
		ib_sha256_final(raw_sha, d);
		ib_hex(d, sizeof(d), res->diff_id);
	} else {
		memcpy(res->diff_id, file_hex, sizeof(file_hex));
	}
	res->image_size = total;
	ib_sha256_final(o->blob_sha, d);
	ib_hex(d, sizeof(d), res->layer_digest);
	res->layer_size = o->blob_len;
	return 0;
}

/* One pass (a tar image): verify's reading thread hands every byte of the
 * image here right after hashing it, and the layer is written from them
 * while verify parses the same blocks on this thread. The layer goes into a
 * temporary file, named only once verify has passed: an image that fails is
 * never exported. Against verify first and a second read for the layer, this
 * saves the second read and hash, and overlaps verify with compressing. */
struct layer_tap {
	struct feed f;
	uint64_t total;
	ib_error_t err; /* the first failure; later bytes are dropped */
};

static void layer_tap(void *ctx, const void *buf, size_t len)
{
	struct layer_tap *t = ctx;
	/* The zstd check was made on another open of the file: one replaced
	 * since by a zstd image must not go into a layer typed as tar. */
	if (t->total == 0 && t->err == NULL && len >= 4 && memcmp(buf, "\x28\xb5\x2f\xfd", 4) == 0)
		ib_error_set(&t->err, 0, "export: the image changed while it was read (now zstd): nothing written");
	t->total += len;
	if (t->err == NULL)
		feed(&t->f, buf, len, &t->err);
}

/* ---------------- the export ---------------- */

static char *fact_str(const struct ib_toml_value *root, const char *key)
{
	const struct ib_toml_value *v = ib_toml_get(root, key);
	if (v == NULL)
		v = ib_toml_get(ib_toml_get(root, "stack"), key);
	if (v && v->type == IB_TOML_STRING)
		return xstrdup(v->u.str);
	if (v && v->type == IB_TOML_ARRAY) {
		struct ib_buf b = { 0 };
		for (size_t i = 0; i < v->len; i++)
			if (v->items[i]->type == IB_TOML_STRING) {
				if (b.len)
					ib_buf_adds(&b, ";");
				ib_buf_adds(&b, v->items[i]->u.str);
			}
		return ib_buf_steal(&b);
	}
	return xstrdup("");
}

static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	if (d == NULL)
		return false;
	struct dirent *de;
	bool empty = true;
	while (empty && (de = readdir(d)) != NULL)
		empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
	closedir(d);
	return empty;
}

static bool ends_with_slash(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && s[n - 1] == '/';
}

static const char *const layer_types[] = {
	[IB_OCI_GZIP] = "application/vnd.oci.image.layer.v1.tar+gzip",
	[IB_OCI_NONE] = "application/vnd.oci.image.layer.v1.tar",
	[IB_OCI_ZSTD] = "application/vnd.oci.image.layer.v1.tar+zstd",
};

/* One export's state, shared by the steps of ib_oci_export. */
struct export
{
	const struct ib_oci_opts *opts;
	struct ib_oci_result *res;
	struct out o;
	char *out_path;	 /* the output, without a trailing slash */
	bool out_exists; /* an empty folder there, to be replaced */
	int image_fd;
	uint64_t header_off; /* tar: the layer's placeholder header */
	char *layer_tmp;     /* folder: the layer blob until its digest is known */
	struct gather g;
	struct ib_verify_report rep;
	struct ib_toml_value *facts;
	char *name, *cuda, *archs, *min_driver;
	struct ib_strv env;
	char created[32];
	struct ib_buf config, manifest;
};

static void export_free(struct export *x)
{
	struct out *o = &x->o;
	if (o->fd >= 0)
		close(o->fd);
	if (o->tmp) {
		if (o->tar)
			unlink(o->tmp);
		else {
			ib_error_t e2 = NULL;
			if (ib_remove_tree(o->tmp, &e2) < 0)
				ib_log_warn("export: %s", e2->msg);
			ib_error_free(&e2);
		}
		free(o->tmp);
	}
	ib_sha256_free(o->blob_sha);
	if (x->image_fd >= 0)
		close(x->image_fd);
	if (x->facts)
		ib_toml_free(x->facts);
	ib_verify_report_free(&x->rep);
	gather_free(&x->g);
	ib_strv_free(&x->env);
	ib_buf_free(&x->config);
	ib_buf_free(&x->manifest);
	free(x->out_path);
	free(x->layer_tmp);
	free(x->name);
	free(x->cuda);
	free(x->archs);
	free(x->min_driver);
}

/* Where it goes, checked before the long work; then the temporary output
 * beside it, with the layout's first files. */
static int export_open_output(struct export *x, ib_error_t *err)
{
	const char *output = x->opts->output;
	struct out *o = &x->o;
	struct stat st;
	x->out_path = xstrdup(output);
	x->out_exists = stat(output, &st) == 0;
	o->tar = !ends_with_slash(output) && !(x->out_exists && S_ISDIR(st.st_mode));
	while (strlen(x->out_path) > 1 && ends_with_slash(x->out_path))
		x->out_path[strlen(x->out_path) - 1] = '\0';
	if (x->out_exists && o->tar)
		return ib_error_usage(err, "export: '%s' exists (remove it, or name a new file)", output);
	if (x->out_exists && !dir_is_empty(x->out_path))
		return ib_error_usage(err, "export: the folder '%s' is not empty (name a new or empty folder)", output);

	/* Open the image first: a zstd image's layer is read through this open
	 * file after verify (and hashed again); a tar image's is written from
	 * verify's own read (layer_tap). */
	x->image_fd = open(x->opts->image, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (x->image_fd < 0)
		return ib_error_errno(err, errno, "export: open '%s'", x->opts->image);

	o->tmp = xasprintf("%s.tmp-%ld", x->out_path, (long)getpid());
	if (o->tar) {
		o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (o->fd < 0) {
			ib_error_errno(err, errno, "export: create '%s'", o->tmp);
			free(o->tmp);
			o->tmp = NULL;
			return -1;
		}
	} else if (mkdir(o->tmp, 0755) < 0) {
		ib_error_errno(err, errno, "export: mkdir '%s'", o->tmp);
		free(o->tmp);
		o->tmp = NULL;
		return -1;
	}
	if (write_prefix(o, err) < 0)
		return -1;

	/* The layer: its header's name is its digest, known at the end, so a
	 * placeholder header goes first and is written over. */
	x->header_off = o->off;
	if (o->tar) {
		static const uint8_t zero[512];
		if (write_all(o->fd, zero, sizeof(zero), err) < 0)
			return -1;
		o->off += 512;
		return 0;
	}
	x->layer_tmp = xasprintf("%s/blobs/sha256/layer.tmp", o->tmp);
	o->fd = open(x->layer_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (o->fd < 0)
		return ib_error_errno(err, errno, "export: create '%s'", x->layer_tmp);
	return 0;
}

/* Verify the image and write the layer: a tar image's in verify's own pass
 * (layer_tap), a zstd image's decompressed in a second pass, after verify. */
static int export_layer(struct export *x, ib_error_t *err)
{
	const struct ib_oci_opts *opts = x->opts;
	struct ib_oci_result *res = x->res;
	struct out *o = &x->o;
	uint8_t magic[4] = { 0 };
	bool zstd_image = pread(x->image_fd, magic, sizeof(magic), 0) == 4 && memcmp(magic, "\x28\xb5\x2f\xfd", 4) == 0;
	bool one_pass = !zstd_image;
	cleanup_gzip struct ib_gzip *gz = NULL;
	cleanup_archive_writer struct ib_archive_writer *zw = NULL;
	struct layer_tap tap = { 0 };
	int rc = -1;

	o->blob_sha = one_pass && opts->compression == IB_OCI_NONE ? NULL : ib_sha256_new();
	tap.f = (struct feed){ .comp = opts->compression, .o = o };
	if (one_pass && opts->compression == IB_OCI_GZIP)
		tap.f.gz = gz = ib_gzip_new(opts->threads, layer_sink, o);
	else if (one_pass && opts->compression == IB_OCI_ZSTD &&
		 (tap.f.zw = zw = ib_archive_compressor_new(IB_COMPRESS_ZSTD, opts->threads, 0, layer_sink, o, err)) == NULL)
		return -1;

	double t0 = now();
	struct ib_verify_opts vo = *opts->verify;
	vo.want = gather_want;
	vo.take = gather_take;
	vo.ctx = &x->g;
	if (one_pass) {
		vo.raw = layer_tap;
		vo.raw_ctx = &tap;
	}
	if (ib_verify(opts->image, &vo, &x->rep, err) < 0) {
		ib_error_wrap(err, "export: not exported");
		goto out;
	}
	res->seconds_verify = now() - t0;
	t0 = now();
	if (one_pass) {
		if (tap.err) {
			*err = steal_pointer(&tap.err);
			goto out;
		}
		if ((gz && ib_gzip_finish(gz, NULL, err) < 0) || (zw && ib_archive_writer_finish(zw, err) < 0))
			goto out;
		/* The layer holds exactly the bytes whose digest verify checked. */
		memcpy(res->diff_id, x->rep.sha256, sizeof(x->rep.sha256));
		res->image_size = tap.total;
		if (o->blob_sha) {
			uint8_t d[IB_SHA256_LEN];
			ib_sha256_final(o->blob_sha, d);
			ib_hex(d, sizeof(d), res->layer_digest);
		} else {
			memcpy(res->layer_digest, x->rep.sha256, sizeof(x->rep.sha256));
		}
		res->layer_size = o->blob_len;
	} else {
		posix_fadvise(x->image_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
		if (lseek(x->image_fd, 0, SEEK_SET) < 0) {
			ib_error_errno(err, errno, "export: seek '%s'", opts->image);
			goto out;
		}
		if (write_layer(o, x->image_fd, zstd_image, opts->compression, opts->threads, x->rep.sha256, res, err) < 0)
			goto out;
	}
	res->seconds_layer = now() - t0;
	rc = 0;
out:
	ib_error_free(&tap.err);
	return rc;
}

/* The facts the config carries, read from what verify gathered: created
 * (the tar headers' time), the labels, and Env from profile.d. */
static int export_read_facts(struct export *x, ib_error_t *err)
{
	const char *image = x->opts->image;
	struct gather *g = &x->g;
	x->facts = ib_toml_parse(g->facts.s ? g->facts.s : "", g->facts.len, "facts.toml", err);
	if (x->facts == NULL)
		return -1;
	const struct ib_toml_value *created = ib_toml_get(x->facts, "created");
	if (created == NULL || created->type != IB_TOML_INTEGER)
		return ib_error_set(err, 0, "export '%s': the image's facts.toml has no created time", image);
	x->o.epoch = created->u.integer;
	if (x->o.tar && rewrite_prefix(&x->o, err) < 0)
		return -1;
	if (g->arch == NULL)
		return ib_error_set(err, 0, "export '%s': no ELF program in /usr/bin or /bin tells the image's architecture",
				    image);
	x->name = fact_str(x->facts, "name");
	x->cuda = fact_str(x->facts, "cuda");
	/* min_driver and archs as run --gpu reads them (imgmeta.h). */
	struct ib_facts run_facts;
	if (ib_facts_parse(g->facts.s ? g->facts.s : "", g->facts.len, IB_META_FACTS, &run_facts, err) < 0)
		return -1;
	x->min_driver = xstrdup(run_facts.min_driver ? run_facts.min_driver : "");
	struct ib_buf ab = { 0 };
	for (size_t i = 0; i < run_facts.archs.n; i++) {
		if (i)
			ib_buf_adds(&ab, ";");
		ib_buf_adds(&ab, run_facts.archs.v[i]);
	}
	x->archs = ib_buf_steal(&ab);
	ib_facts_free(&run_facts);

	const char **texts = xcalloc(g->n + 1, sizeof(*texts));
	for (size_t i = 0; i < g->n; i++)
		texts[i] = g->v[i].data;
	size_t skipped = 0;
	ib_oci_env_from_profile(texts, g->n, &x->env, &skipped);
	free(texts);
	if (skipped)
		ib_log_warn("export: %zu line(s) of the image's /etc/profile.d scripts are shell code, not NAME=VALUE, "
			    "and are not in the config's Env (imgbuild run would run them)",
			    skipped);
	struct tm tm;
	time_t epoch = (time_t)x->o.epoch;
	gmtime_r(&epoch, &tm);
	strftime(x->created, sizeof(x->created), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return 0;
}

/* The layer under its digest's name: the tar header written over the
 * placeholder, or the folder's blob renamed. */
static int export_name_layer(struct export *x, ib_error_t *err)
{
	struct out *o = &x->o;
	struct ib_oci_result *res = x->res;
	if (o->tar) {
		uint8_t h[512];
		cleanup_free char *lname = xasprintf("blobs/sha256/%s", res->layer_digest);
		tar_header(h, lname, '0', 0644, res->layer_size, o->epoch);
		if (pwrite(o->fd, h, sizeof(h), (off_t)x->header_off) != (ssize_t)sizeof(h))
			return ib_error_errno(err, errno, "export: write '%s'", o->tmp);
		o->off += res->layer_size;
		return tar_pad(o, err);
	}
	cleanup_free char *final = xasprintf("%s/blobs/sha256/%s", o->tmp, res->layer_digest);
	close(o->fd);
	o->fd = -1;
	if (rename(x->layer_tmp, final) < 0)
		return ib_error_errno(err, errno, "export: rename '%s'", x->layer_tmp);
	return 0;
}

/* The config: what a runtime needs to start it as imgbuild run would (Env
 * after profile.d, /bin/sh), and the facts a user checks before trusting it
 * with a GPU, as labels. Its digest goes into CONFIG_HEX. */
static int export_config(struct export *x, char config_hex[IB_SHA256_HEX_LEN + 1], ib_error_t *err)
{
	struct ib_buf *config = &x->config;
	ib_buf_printf(config, "{\"created\":\"%s\",\"architecture\":\"%s\",\"os\":\"linux\",\"config\":{\"Env\":[", x->created,
		      x->g.arch);
	for (size_t i = 0; i < x->env.n; i++) {
		if (i)
			ib_buf_adds(config, ",");
		json_str(config, x->env.v[i]);
	}
	ib_buf_adds(config, "],\"Cmd\":[\"/bin/sh\"],\"WorkingDir\":\"/\",\"Labels\":{");
	const char *labels[][2] = {
		{ "imgbuild.name", x->name },
		{ "imgbuild.cuda", x->cuda },
		{ "imgbuild.archs", x->archs },
		{ "imgbuild.min_driver", x->min_driver },
		{ "imgbuild.image.sha256", x->rep.sha256 },
		{ "imgbuild.signer.keynum", x->rep.signer_keynum },
	};
	for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
		if (i)
			ib_buf_adds(config, ",");
		json_str(config, labels[i][0]);
		ib_buf_adds(config, ":");
		json_str(config, labels[i][1]);
	}
	ib_buf_printf(
		config,
		"}},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:%s\"]},"
		"\"history\":[{\"created\":\"%s\",\"created_by\":\"imgbuild pack\",\"comment\":\"imgbuild image sha256:%s\"}]}",
		x->res->diff_id, x->created, x->rep.sha256);
	return out_blob(&x->o, config, config_hex, err);
}

/* The manifest (config and layer by digest) and the index that names it. */
static int export_manifest_index(struct export *x, const char *config_hex, ib_error_t *err)
{
	struct ib_oci_result *res = x->res;
	struct ib_buf *manifest = &x->manifest;
	cleanup_buf struct ib_buf index = { 0 };
	ib_buf_printf(manifest,
		      "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":{\"mediaType\":\"" MT_CONFIG
		      "\",\"digest\":\"sha256:%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"sha256:%s\","
		      "\"size\":%llu}],\"annotations\":{\"org.opencontainers.image.created\":\"%s\","
		      "\"org.opencontainers.image.title\":",
		      config_hex, x->config.len, layer_types[x->opts->compression], res->layer_digest,
		      (unsigned long long)res->layer_size, x->created);
	json_str(manifest, x->name);
	ib_buf_adds(manifest, "}}");
	if (out_blob(&x->o, manifest, res->manifest_digest, err) < 0)
		return -1;

	res->ref = x->opts->ref ? xstrdup(x->opts->ref) : xasprintf("%s:%.12s", *x->name ? x->name : "imgbuild", x->rep.sha256);
	ib_buf_printf(&index,
		      "{\"schemaVersion\":2,\"mediaType\":\"" MT_INDEX "\",\"manifests\":[{\"mediaType\":\"" MT_MANIFEST
		      "\",\"digest\":\"sha256:%s\",\"size\":%zu,\"annotations\":{\"org.opencontainers.image.ref.name\":",
		      res->manifest_digest, manifest->len);
	json_str(&index, res->ref);
	ib_buf_adds(&index, "}}]}");
	return out_file(&x->o, "index.json", index.s, index.len, err);
}

/* The tar's end, then the finished output renamed to its name. */
static int export_finish(struct export *x, ib_error_t *err)
{
	struct out *o = &x->o;
	if (o->tar) {
		static const uint8_t end[1024];
		if (write_all(o->fd, end, sizeof(end), err) < 0)
			return -1;
		int fd = o->fd;
		o->fd = -1;
		if (close(fd) < 0)
			return ib_error_errno(err, errno, "export: write '%s'", o->tmp);
	}
	/* An empty folder there is replaced by the finished layout. */
	if (!o->tar && x->out_exists && rmdir(x->out_path) < 0)
		return ib_error_errno(err, errno, "export: replace the empty folder '%s'", x->out_path);
	if (rename(o->tmp, x->out_path) < 0)
		return ib_error_errno(err, errno, "export: rename '%s' to '%s'", o->tmp, x->out_path);
	free(o->tmp);
	o->tmp = NULL;
	return 0;
}

int ib_oci_export(const struct ib_oci_opts *opts, struct ib_oci_result *res, ib_error_t *err)
{
	memset(res, 0, sizeof(*res));
	struct export x = { .opts = opts, .res = res, .o = { .fd = -1 }, .image_fd = -1 };
	char config_hex[IB_SHA256_HEX_LEN + 1];
	int rc = -1;
	if (export_open_output(&x, err) == 0 && export_layer(&x, err) == 0 && export_read_facts(&x, err) == 0 &&
	    export_name_layer(&x, err) == 0 && export_config(&x, config_hex, err) == 0 &&
	    export_manifest_index(&x, config_hex, err) == 0 && export_finish(&x, err) == 0)
		rc = 0;
	export_free(&x);
	if (rc < 0)
		ib_oci_result_free(res);
	return rc;
}
