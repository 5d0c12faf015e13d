#pragma once
/* The manifest: a typed view of the TOML file, checked against the schema.
 * Paths are resolved against the manifest's folder. Every field remembers
 * where it was written (struct ib_pos) so later checks can name file:line:col. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "util.h"

struct ib_pos {
	int line, col;	/* 0 when the value came from a default */
};

enum ib_compression { IB_COMPRESS_NONE, IB_COMPRESS_ZSTD };

struct ib_kv {
	char *key;
	char *value;
	struct ib_pos pos;
};

struct ib_kv_list {
	struct ib_kv *v;
	size_t n;
};

struct ib_download {
	char *name;
	char *url;		/* may be mirror://debian/... or mirror://ubuntu/... */
	struct ib_strv mirrors;	/* fallback URLs, tried in order after url */
	char *sha256;		/* 64 lowercase hex digits, or NULL when the manifest says "unknown" */
	struct ib_pos pos, sha256_pos;
	bool project_file;	/* `path`: url is file:// of it, sha256 its content's, taken at load */
};

struct ib_source {
	char *name;
	char *url;
	struct ib_strv mirrors;	/* fallback repository URLs, in order */
	struct ib_kv_list rewrites;	/* url.<value>.insteadOf <key>, applied to submodules with mirrors */
	char *tag;
	char *commit;		/* 40 hex digits the tag must resolve to */
	bool submodules;
	struct ib_pos pos;
};

struct ib_stage {
	char *name;
	char *script;		/* absolute path, inside the project root */
	struct ib_strv inputs;	/* names of downloads and sources */
	struct ib_kv_list env;
	bool network;
	int retries;		/* extra attempts after the first */
	char *clean;		/* shell command run (in the sandbox) before each retry; may be NULL */
	struct ib_pos pos;
};

struct ib_manifest {
	char *path;		/* absolute path of the manifest file */
	char *dir;		/* its folder */
	char *project_root;	/* nearest ancestor holding stages/, else dir */
	char *text;		/* the manifest's bytes as read (recorded in the image) */
	size_t text_len;

	struct {
		char *name;
		int64_t source_date_epoch;
		char *output;	/* absolute; default <cwd>/<name>.tar[.zst] */
		enum ib_compression compression;
		char *sign_key;	/* secret key path or NULL */
		struct ib_pos pos;
	} image;

	struct {
		char *distro;	/* "debian" | "ubuntu" */
		char *suite;
		struct ib_strv extra_suites;	/* e.g. bionic-updates, bionic-security */
		struct ib_strv mirrors;	/* empty for debian: take the host's apt mirror */
		struct ib_strv components;
		char *keyring;	/* absolute path or NULL (host default) */
		char *variant;	/* minbase | buildd | ... */
		struct ib_strv packages;
		struct ib_pos pos;
	} base;

	struct {
		char *gcc;	/* major version, e.g. "7"; NULL when no toolchain section */
		struct ib_pos pos;
	} toolchain;

	/* What the image carries; compatibility rules read these. All optional. */
	struct {
		char *cuda, *cudnn, *cudnn_cuda, *magma_cuda, *min_driver;
		char *torch, *torchvision, *python;
		struct ib_strv archs;	/* "3.5", "6.1", "6.1+PTX" */
		bool min_driver_derived;	/* min_driver filled from the CUDA version */
		struct ib_pos pos, cuda_pos, cudnn_pos, magma_pos, archs_pos, min_driver_pos;
		struct ib_pos torch_pos, torchvision_pos, python_pos;
	} stack;

	struct ib_kv_list env;	/* exported into every stage and /etc/profile.d */

	struct ib_download *downloads;
	size_t n_downloads;
	struct ib_source *sources;
	size_t n_sources;
	struct ib_stage *stages;
	size_t n_stages;
};

/* Loads and checks PATH. Errors read "PATH:LINE:COL: problem (hint)" and exit 2. */
struct ib_manifest *ib_manifest_load(const char *path, ib_error_t *err);
/* As ib_manifest_load, on bytes already in memory (fuzzing, tests). */
struct ib_manifest *ib_manifest_parse(const char *path, const char *text, size_t len, ib_error_t *err);
void ib_manifest_free(struct ib_manifest *m);
static inline void ib_manifest_freep(struct ib_manifest **m)
{
	ib_manifest_free(*m);
}
#define cleanup_manifest __attribute__((cleanup(ib_manifest_freep)))

const struct ib_download *ib_manifest_download(const struct ib_manifest *m, const char *name);
const struct ib_source *ib_manifest_source(const struct ib_manifest *m, const char *name);
/* Value of KEY in a kv list, or NULL. */
const char *ib_kv_get(const struct ib_kv_list *list, const char *key);
