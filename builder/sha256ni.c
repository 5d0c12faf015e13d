#include "sha256ni.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

#define SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* FIPS 180-4, 4.2.2: the first 32 bits of the fractional parts of the cube
 * roots of the first 64 primes. */
static const uint32_t round_constants[64] __attribute__((aligned(16))) = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
	0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
	0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
	0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

bool ib_sha256ni_available(void)
{
	static int cached = -1;
	if (cached < 0) {
		unsigned a, b, c, d;
		bool ok = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSSE3) && (c & bit_SSE4_1) &&
			  __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
		/* A way to test the OpenSSL path on a machine that has both. */
		const char *off = getenv("IMGBUILD_NO_SHA_NI");
		cached = ok && !(off && *off && strcmp(off, "0") != 0);
	}
	return cached;
}

/* The instructions keep the state as (A,B,E,F) and (C,D,G,H), A in the top
 * lane; the standard layout is A..H in order. */
SHA_TARGET static void state_load(const uint32_t s[8], __m128i *abef, __m128i *cdgh)
{
	__m128i badc = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)s), 0xB1);
	__m128i hgfe = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(s + 4)), 0x1B);
	*abef = _mm_alignr_epi8(badc, hgfe, 8);
	*cdgh = _mm_blend_epi16(hgfe, badc, 0xF0);
}

SHA_TARGET static void state_store(uint32_t s[8], __m128i abef, __m128i cdgh)
{
	__m128i abef_up = _mm_shuffle_epi32(abef, 0x1B);
	__m128i ghcd = _mm_shuffle_epi32(cdgh, 0xB1);
	_mm_storeu_si128((__m128i *)s, _mm_blend_epi16(abef_up, ghcd, 0xF0));
	_mm_storeu_si128((__m128i *)(s + 4), _mm_alignr_epi8(ghcd, abef_up, 8));
}

/* Message words 4j..4j+3: loaded (big-endian) for j < 4, else scheduled from
 * the four groups before, which W holds in a ring of four. */
#define SCHEDULE(W, j, p, bswap)                                                                                               \
	do {                                                                                                                   \
		if ((j) < 4)                                                                                                   \
			W[(j)] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 16 * (j))), bswap);                  \
		else                                                                                                           \
			W[(j)&3] = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(W[(j)&3], W[((j) + 1) & 3]),        \
								      _mm_alignr_epi8(W[((j) + 3) & 3], W[((j) + 2) & 3], 4)), \
							W[((j) + 3) & 3]);                                                     \
	} while (0)

SHA_TARGET static void blocks1(uint32_t s[8], const uint8_t *p, size_t nblocks)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
	__m128i abef, cdgh;
	state_load(s, &abef, &cdgh);
	for (; nblocks > 0; nblocks--, p += 64) {
		__m128i abef0 = abef, cdgh0 = cdgh, w[4];
#pragma GCC unroll 16
		for (int j = 0; j < 16; j++) {
			SCHEDULE(w, j, p, bswap);
			__m128i wk = _mm_add_epi32(w[j & 3], _mm_load_si128((const __m128i *)(round_constants + 4 * j)));
			cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
			abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E));
		}
		abef = _mm_add_epi32(abef, abef0);
		cdgh = _mm_add_epi32(cdgh, cdgh0);
	}
	state_store(s, abef, cdgh);
}

/* blocks1 for two streams, their rounds interleaved: while one stream's round
 * waits for its result, the other's issues. */
SHA_TARGET static void blocks2(uint32_t sa[8], const uint8_t *pa, uint32_t sb[8], const uint8_t *pb, size_t nblocks)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
	__m128i abef_a, cdgh_a, abef_b, cdgh_b;
	state_load(sa, &abef_a, &cdgh_a);
	state_load(sb, &abef_b, &cdgh_b);
	for (; nblocks > 0; nblocks--, pa += 64, pb += 64) {
		__m128i abef_a0 = abef_a, cdgh_a0 = cdgh_a, abef_b0 = abef_b, cdgh_b0 = cdgh_b, wa[4], wb[4];
#pragma GCC unroll 16
		for (int j = 0; j < 16; j++) {
			SCHEDULE(wa, j, pa, bswap);
			SCHEDULE(wb, j, pb, bswap);
			__m128i k = _mm_load_si128((const __m128i *)(round_constants + 4 * j));
			__m128i wka = _mm_add_epi32(wa[j & 3], k), wkb = _mm_add_epi32(wb[j & 3], k);
			cdgh_a = _mm_sha256rnds2_epu32(cdgh_a, abef_a, wka);
			cdgh_b = _mm_sha256rnds2_epu32(cdgh_b, abef_b, wkb);
			abef_a = _mm_sha256rnds2_epu32(abef_a, cdgh_a, _mm_shuffle_epi32(wka, 0x0E));
			abef_b = _mm_sha256rnds2_epu32(abef_b, cdgh_b, _mm_shuffle_epi32(wkb, 0x0E));
		}
		abef_a = _mm_add_epi32(abef_a, abef_a0);
		cdgh_a = _mm_add_epi32(cdgh_a, cdgh_a0);
		abef_b = _mm_add_epi32(abef_b, abef_b0);
		cdgh_b = _mm_add_epi32(cdgh_b, cdgh_b0);
	}
	state_store(sa, abef_a, cdgh_a);
	state_store(sb, abef_b, cdgh_b);
}

/* blocks2 over the same bytes (an image and a file's content in it): the
 * message schedule depends only on the bytes, so it is made once and feeds
 * both streams' rounds, which then are all the SHA unit does. */
SHA_TARGET static void blocks2_same(uint32_t sa[8], uint32_t sb[8], const uint8_t *p, size_t nblocks)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
	__m128i abef_a, cdgh_a, abef_b, cdgh_b;
	state_load(sa, &abef_a, &cdgh_a);
	state_load(sb, &abef_b, &cdgh_b);
	for (; nblocks > 0; nblocks--, p += 64) {
		__m128i abef_a0 = abef_a, cdgh_a0 = cdgh_a, abef_b0 = abef_b, cdgh_b0 = cdgh_b, w[4];
#pragma GCC unroll 16
		for (int j = 0; j < 16; j++) {
			SCHEDULE(w, j, p, bswap);
			__m128i wk = _mm_add_epi32(w[j & 3], _mm_load_si128((const __m128i *)(round_constants + 4 * j)));
			__m128i wk_hi = _mm_shuffle_epi32(wk, 0x0E);
			cdgh_a = _mm_sha256rnds2_epu32(cdgh_a, abef_a, wk);
			cdgh_b = _mm_sha256rnds2_epu32(cdgh_b, abef_b, wk);
			abef_a = _mm_sha256rnds2_epu32(abef_a, cdgh_a, wk_hi);
			abef_b = _mm_sha256rnds2_epu32(abef_b, cdgh_b, wk_hi);
		}
		abef_a = _mm_add_epi32(abef_a, abef_a0);
		cdgh_a = _mm_add_epi32(cdgh_a, cdgh_a0);
		abef_b = _mm_add_epi32(abef_b, abef_b0);
		cdgh_b = _mm_add_epi32(cdgh_b, cdgh_b0);
	}
	state_store(sa, abef_a, cdgh_a);
	state_store(sb, abef_b, cdgh_b);
}

#else /* no x86-64: never available, never called */

bool ib_sha256ni_available(void)
{
	return false;
}

static void blocks1(uint32_t s[8], const uint8_t *p, size_t nblocks)
{
	abort();
}

static void blocks2(uint32_t sa[8], const uint8_t *pa, uint32_t sb[8], const uint8_t *pb, size_t nblocks)
{
	abort();
}

static void blocks2_same(uint32_t sa[8], uint32_t sb[8], const uint8_t *p, size_t nblocks)
{
	abort();
}

#endif

void ib_sha256_lane_init(struct ib_sha256_lane *l)
{
	/* FIPS 180-4, 5.3.3 */
	static const uint32_t initial[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
	};
	memcpy(l->state, initial, sizeof(initial));
	l->bytes = 0;
	l->fill = 0;
}

void ib_sha256_lane_update(struct ib_sha256_lane *l, const void *data, size_t len)
{
	const uint8_t *p = data;
	l->bytes += len;
	if (l->fill > 0) {
		size_t take = 64 - l->fill < len ? 64 - l->fill : len;
		memcpy(l->tail + l->fill, p, take);
		l->fill += take;
		p += take;
		len -= take;
		if (l->fill < 64)
			return;
		blocks1(l->state, l->tail, 1);
		l->fill = 0;
	}
	if (len >= 64) {
		blocks1(l->state, p, len / 64);
		p += len / 64 * 64;
		len %= 64;
	}
	memcpy(l->tail, p, len);
	l->fill = len;
}

void ib_sha256_lane_update2(struct ib_sha256_lane *a, const void *da, struct ib_sha256_lane *b, const void *db, size_t len)
{
	if (a->fill != b->fill) {
		ib_sha256_lane_update(a, da, len);
		ib_sha256_lane_update(b, db, len);
		return;
	}
	if (a->fill != 0) {
		/* Both part-way into a block, equally (a file's content inside an
		 * image starts on a block boundary of both): finish that block, then
		 * go on together. */
		size_t lead = 64 - a->fill < len ? 64 - a->fill : len;
		ib_sha256_lane_update(a, da, lead);
		ib_sha256_lane_update(b, db, lead);
		da = (const uint8_t *)da + lead;
		db = (const uint8_t *)db + lead;
		len -= lead;
		if (a->fill != 0)
			return;
	}
	size_t whole = len / 64 * 64;
	if (whole > 0 && da == db)
		blocks2_same(a->state, b->state, da, whole / 64);
	else if (whole > 0)
		blocks2(a->state, da, b->state, db, whole / 64);
	a->bytes += whole;
	b->bytes += whole;
	ib_sha256_lane_update(a, (const uint8_t *)da + whole, len - whole);
	ib_sha256_lane_update(b, (const uint8_t *)db + whole, len - whole);
}

void ib_sha256_lane_final(struct ib_sha256_lane *l, uint8_t out[IB_SHA256_LEN])
{
	/* FIPS 180-4, 5.1.1: a 1 bit, zeros, the length in bits (64-bit big-endian). */
	uint64_t bits = l->bytes * 8;
	uint8_t pad[128] = { 0x80 };
	size_t padlen = (l->fill < 56 ? 56 : 120) - l->fill;
	for (int i = 0; i < 8; i++)
		pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
	uint64_t keep = l->bytes;
	ib_sha256_lane_update(l, pad, padlen + 8);
	l->bytes = keep;
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(l->state[i] >> 24);
		out[4 * i + 1] = (uint8_t)(l->state[i] >> 16);
		out[4 * i + 2] = (uint8_t)(l->state[i] >> 8);
		out[4 * i + 3] = (uint8_t)l->state[i];
	}
}
