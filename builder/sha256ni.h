#pragma once
/* SHA-256 on the CPU's SHA extensions, two independent streams at once.
 *
 * Why not OpenSSL for this: one SHA-256 stream is a chain of dependent rounds,
 * so a core runs it at the instruction's latency (1.8 GB/s here) with its
 * SHA unit half idle. Two streams interleaved fill that unit: 3.2 GB/s of
 * hashing per core on this machine (AMD EPYC), for pack's per-file digests.
 * One stream here is no faster than OpenSSL's; callers keep OpenSSL
 * (crypto.h) where they have one stream, and wherever ib_sha256ni_available()
 * says no. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"

struct ib_sha256_lane {
	uint32_t state[8];
	uint64_t bytes;	  /* all bytes given so far */
	uint8_t tail[64]; /* bytes not yet a whole block */
	size_t fill;
};

/* True when this CPU has the SHA extensions (and SSSE3/SSE4.1). The other
 * functions must not be called when it is false. */
bool ib_sha256ni_available(void);

void ib_sha256_lane_init(struct ib_sha256_lane *l);
void ib_sha256_lane_update(struct ib_sha256_lane *l, const void *data, size_t len);
/* Advances both lanes by LEN bytes each (A's bytes from DA, B's from DB),
 * interleaved; DA == DB is fine. Interleaving needs both lanes at the same
 * offset within a block; otherwise this is two single-lane updates. */
void ib_sha256_lane_update2(struct ib_sha256_lane *a, const void *da, struct ib_sha256_lane *b, const void *db, size_t len);
void ib_sha256_lane_final(struct ib_sha256_lane *l, uint8_t out[IB_SHA256_LEN]);
