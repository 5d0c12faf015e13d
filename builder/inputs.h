#pragma once
/* A manifest's inputs as a whole: every download (fetch.h) and every git
 * source (git.h) fetched into the cache, and `pin`, which records the sha256
 * of downloads marked "unknown" by rewriting those bytes of the manifest. */
#include <stdbool.h>
#include <stdio.h>

#include "error.h"
#include "util.h"

struct ib_manifest;

/* Fetches every download and exports every source of M. TREES receives one
 * exported tree per source, in M's order. Online the first failure stops it;
 * OFFLINE checks everything and names every missing input in one error. */
int ib_inputs_fetch(const struct ib_manifest *m, bool offline, struct ib_strv *trees, ib_error_t *err);

/* Downloads each download of M whose sha256 is "unknown" once and writes the
 * digest it got into the manifest file in place: only the 9 bytes of each quoted
 * "unknown" change. Every place to edit is found before anything is downloaded.
 * Prints one trust-on-first-use line per pin to REPORT; *n_pinned gets their count. */
int ib_inputs_pin(const struct ib_manifest *m, FILE *report, size_t *n_pinned, ib_error_t *err);
