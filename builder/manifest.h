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
	int line, col; /* 0 when the value came from a default */
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

/* One [stack] pin. */
struct ib_pin {
	char *key;	    /* lowercase: [a-z][a-z0-9_]* */
	char *value;	    /* a version: digits and dots */
	struct ib_pos pos;  /* 0 when derived */
	char *derived_from; /* the pin the compat data derived it from, or NULL when written */
};

struct ib_pins {
	struct ib_pin *v;
	size_t n;
};

struct ib_download {
	char *name;
	char *url;		/* may be mirror://debian/... or mirror://ubuntu/... */
	struct ib_strv mirrors; /* fallback URLs, tried in order after url */
	char *sha256;		/* 64 lowercase hex digits, or NULL when the manifest says "unknown" */
	struct ib_pos pos, sha256_pos;
	bool project_file; /* `path`: url is file:// of it, sha256 its content's, taken at load */
};

struct ib_source {
	char *name;
	char *url;
	struct ib_strv mirrors;	    /* fallback repository URLs, in order */
	struct ib_kv_list rewrites; /* url.<value>.insteadOf <key>, applied to submodules with mirrors */
	char *tag;
	char *commit; /* 40 hex digits the tag must resolve to */
	bool submodules;
	struct ib_pos pos;
};

struct ib_stage {
	char *name;
	char *script;	       /* absolute path, inside the project root */
	struct ib_strv inputs; /* names of downloads and sources */
	struct ib_kv_list env;
	bool network;
	int retries; /* extra attempts after the first */
	char *clean; /* shell command run (in the sandbox) before each retry; may be NULL */
	struct ib_pos pos;
};

struct ib_manifest {
	char *path;	    /* absolute path of the manifest file */
	char *file;	    /* as the user named it: later checks' messages point there */
	char *dir;	    /* its folder */
	char *project_root; /* nearest ancestor holding stages/, else dir */
	char *text;	    /* the manifest's bytes as read (recorded in the image) */
	size_t text_len;

	struct {
		char *name;
		int64_t source_date_epoch;
		char *output; /* absolute; default <cwd>/<name>.tar[.zst] */
		enum ib_compression compression;
		char *sign_key; /* secret key path or NULL */
		struct ib_pos pos;
	} image;

	struct {
		char *distro; /* "debian" | "ubuntu" */
		char *suite;
		struct ib_strv extra_suites; /* e.g. bionic-updates, bionic-security */
		struct ib_strv mirrors;	     /* empty for debian: take the host's apt mirror */
		struct ib_strv components;
		char *keyring; /* absolute path or NULL (host default) */
		char *variant; /* minbase | buildd | ... */
		struct ib_strv packages;
		struct ib_pos pos;
	} base;

	struct {
		char *gcc; /* major version, e.g. "7"; NULL when no toolchain section */
		struct ib_pos pos;
	} toolchain;

	/* What the image carries: [stack]. Every key but archs is a pin, key =
	 * "version", and one rule applies to all of them alike: the stage sees
	 * IMGBUILD_<KEY>, the image's facts get KEY, the layer keys cover it. Which
	 * keys exist and what they mean is data (builder/compat.toml [[pin]] rows,
	 * checked by ib_compat_resolve), so a new pin needs no change here. */
	struct {
		struct ib_pins pins;  /* sorted by key: the manifest's line order changes nothing */
		struct ib_strv archs; /* "3.5", "6.1+PTX": what run --gpu checks GPUs against */
		struct ib_pos pos, archs_pos;
	} stack;

	struct ib_kv_list env; /* exported into every stage and /etc/profile.d */

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
/* The [stack] pin KEY, or NULL when the manifest has none. */
const struct ib_pin *ib_manifest_pin(const struct ib_manifest *m, const char *key);
/* Its value, or NULL. */
const char *ib_manifest_pin_value(const struct ib_manifest *m, const char *key);
/* Adds pin KEY = VALUE, derived from pin FROM (compat data fills in what a
 * manifest may leave out); keeps the list sorted. KEY must not be set yet. */
void ib_manifest_pin_derive(struct ib_manifest *m, const char *key, const char *value, const char *from);
/* Value of KEY in a kv list, or NULL. */
const char *ib_kv_get(const struct ib_kv_list *list, const char *key);
