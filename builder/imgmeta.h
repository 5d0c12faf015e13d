#pragma once
/* The image's own metadata, under ./.imgbuild/ in every image: the paths, and
 * the facts (facts.toml, written by pack) as one struct that run --gpu,
 * verify --host and plan all read the same way. */
#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "util.h"

#define IB_META_DIR ".imgbuild"
#define IB_META_FACTS ".imgbuild/facts.toml"
#define IB_META_LISTING ".imgbuild/listing"
#define IB_META_FACTS_D ".imgbuild/facts.d"	/* stages add facts here (build.c) */
#define IB_META_LOCK_D ".imgbuild/lock.d"	/* stages add lock entries here (build.c) */

/* What facts.toml says about running the image. A key may sit at the top
 * level or under [stack]. */
struct ib_facts {
	char *min_driver;	/* NULL when absent */
	struct ib_strv archs;	/* TORCH_CUDA_ARCH_LIST entries: "5.0", "6.1+PTX" */
	bool have_archs;	/* archs is present (it may be empty) */
	bool ptx_jit;	/* the kernels carry PTX for the lowest arch */
};
void ib_facts_free(struct ib_facts *f);
/* Parses facts.toml's text; PATH names it in messages. */
int ib_facts_parse(const char *text, size_t len, const char *path, struct ib_facts *f, ib_error_t *err);
/* Reads TREE/.imgbuild/facts.toml. *found is false (and F empty) when there is none. */
int ib_facts_read_tree(const char *tree, struct ib_facts *f, bool *found, ib_error_t *err);
/* Splits an archs value the way TORCH_CUDA_ARCH_LIST is written: "5.0;6.1+PTX",
 * "5.0 6.1" or "5.0,6.1", appending each entry to OUT. */
void ib_facts_split_archs(const char *s, struct ib_strv *out);
