#pragma once
/* The image's own metadata, under ./.imgbuild/ in every image: the paths, and
 * the facts (facts.toml, written by pack) as one struct that run --gpu,
 * verify --host and plan all read the same way. */
#include <stdbool.h>
#include <stddef.h>

#include <stdint.h>

#include "crypto.h"
#include "error.h"
#include "util.h"

#define IB_META_DIR ".imgbuild"
#define IB_META_FACTS ".imgbuild/facts.toml"
#define IB_META_LISTING ".imgbuild/listing"
#define IB_META_FACTS_D ".imgbuild/facts.d" /* stages add facts here (build.c) */
#define IB_META_LOCK_D ".imgbuild/lock.d"   /* stages add lock entries here (build.c) */

/* ---- facts.toml ---- */

/* Keys pack writes itself (name, builder, created, archs) and keys that are not
 * plain TOML bare keys: neither --fact nor a stage's facts.d may set them. */
bool ib_facts_key_reserved(const char *key);
/* facts.toml's text: name, builder, created = EPOCH, then FACTS as strings in
 * their order, then ARCHS (NULL-terminated; NULL: no archs key) as an array.
 * Refuses a reserved or repeated key. */
struct ib_kv;
char *ib_facts_write(const char *name, int64_t epoch, const struct ib_kv *facts, size_t n_facts, const char *const *archs,
		     size_t *out_len, ib_error_t *err);
/* An extra file's name under .imgbuild/: [A-Za-z0-9._-]+, not hidden, not
 * facts.toml or listing. */
bool ib_meta_name_ok(const char *name);

/* What facts.toml says about running the image. A key may sit at the top
 * level or under [stack]. */
struct ib_facts {
	char *min_driver;     /* NULL when absent */
	struct ib_strv archs; /* TORCH_CUDA_ARCH_LIST entries: "5.0", "6.1+PTX" */
	bool have_archs;      /* archs is present (it may be empty) */
	bool ptx_jit;	      /* the kernels carry PTX for the lowest arch */
};
void ib_facts_free(struct ib_facts *f);
/* Parses facts.toml's text; PATH names it in messages. */
int ib_facts_parse(const char *text, size_t len, const char *path, struct ib_facts *f, ib_error_t *err);
/* Reads TREE/.imgbuild/facts.toml. *found is false (and F empty) when there is none. */
int ib_facts_read_tree(const char *tree, struct ib_facts *f, bool *found, ib_error_t *err);
/* Splits an archs value the way TORCH_CUDA_ARCH_LIST is written: "5.0;6.1+PTX",
 * "5.0 6.1" or "5.0,6.1", appending each entry to OUT. */
void ib_facts_split_archs(const char *s, struct ib_strv *out);

/* ---- listing ----
 * ./.imgbuild/listing, one line per entry except the listing itself, sorted by
 * path (bytes), after a first line "imgbuild-listing 1":
 *     TYPE MODE UID GID SIZE SHA256 PATH TARGET
 * TYPE  f file, d folder, l symlink, h hard link
 * MODE  4 octal digits (with suid/sgid/sticky); UID GID decimal
 * SIZE  content bytes (0 but for f); SHA256 64 hex digits for f, else "-"
 * PATH  "." for the root, else "./a/b" (no trailing slash)
 * TARGET symlink target, or hard link's target PATH, else "-"
 * PATH and TARGET escape every byte <= 0x20, 0x7f and '\' as \ooo (3 octal
 * digits); a TARGET that is literally "-" is written \055. */

struct ib_listing_entry {
	char type; /* 'f' 'd' 'l' 'h' */
	unsigned mode;
	int64_t uid, gid, size;
	char sha256[IB_SHA256_HEX_LEN + 1]; /* "" when not a file */
	char *path;			    /* unescaped, owned */
	char *target;			    /* unescaped, owned, NULL when "-" */
};

#define IB_LISTING_HEADER "imgbuild-listing 1\n"
/* Appends ENTRY's line (with '\n'). */
void ib_listing_append(struct ib_buf *b, const struct ib_listing_entry *entry);
/* Parses one line (without '\n'). */
int ib_listing_parse_line(const char *line, size_t len, struct ib_listing_entry *out, ib_error_t *err);
void ib_listing_entry_free(struct ib_listing_entry *e);
