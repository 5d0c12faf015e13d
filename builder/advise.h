#pragma once
/* imgbuild advise's engine: which chips a GPU name, PCI id or "auto" (this
 * host's GPUs) can mean, and a manifest written from the nearest seed manifest
 * that plan accepts for them. All knowledge is data (builder/compat.toml,
 * builder/chips.toml) read through compat.h; cmd_advise.c prints. */
#include <stddef.h>

#include "compat.h"
#include "error.h"

/* One chip to advise on, with where it was found. */
struct ib_advise_target {
	struct ib_chip_match m;
	char *found;				       /* "host GPU 0000:01:00.0" for auto, else NULL */
	char *own_name, *own_chip, *own_pci, *own_src; /* storage when the match came from pci.ids */
};

/* The chips GPU can mean: a marketing name or PCI id looked up in chips.toml,
 * or "auto" for every NVIDIA GPU of this host (or of $IMGBUILD_HOST_ROOT). For
 * auto, a GPU that matches nothing and a host without one are said on stdout. */
int ib_advise_targets(const struct ib_compat *c, const char *gpu, struct ib_advise_target **t, size_t *n, ib_error_t *err);
void ib_advise_targets_free(struct ib_advise_target *t, size_t n);
/* Writes OUT from the nearest seed manifest (DATADIR/manifests) that plan
 * accepts for every chip in T that has a stack; says which on stdout. */
int ib_advise_write_manifest(const struct ib_compat *c, const struct ib_advise_target *t, size_t n, const char *out,
			     ib_error_t *err);
