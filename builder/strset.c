#include "strset.h"
#include "util.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* SipHash-2-4 (Aumasson and Bernstein) under a key drawn once per process:
 * the names come from the image before its signature is checked, and with an
 * unkeyed hash (FNV) crafted names all land in one probe chain, making the
 * set quadratic. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                          \
	do {                                                              \
		v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32); \
		v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                    \
		v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                    \
		v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32); \
	} while (0)

static uint64_t siphash(const uint8_t *in, size_t len, uint64_t k0, uint64_t k1)
{
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
	uint64_t b = (uint64_t)len << 56;
	const uint8_t *end = in + (len & ~(size_t)7);
	for (; in != end; in += 8) {
		uint64_t m;
		memcpy(&m, in, 8); /* x86 and arm64 are little-endian, as SipHash reads */
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)in[i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t hash_key[2];

static uint64_t hash_str(const char *s)
{
	if (hash_key[0] == 0 && hash_key[1] == 0) {
		if (getrandom(hash_key, sizeof(hash_key), 0) != sizeof(hash_key)) {
			/* No entropy yet (early boot): the address space layout still varies. */
			hash_key[0] = (uint64_t)(uintptr_t)&hash_key ^ (uint64_t)getpid() << 32;
			hash_key[1] = (uint64_t)(uintptr_t)s ^ (uint64_t)time(NULL);
		}
		hash_key[0] |= 1;
	}
	return siphash((const uint8_t *)s, strlen(s), hash_key[0], hash_key[1]);
}

static void grow(struct ib_strset *s)
{
	struct ib_strset bigger = { .probes = s->probes };
	bigger.cap = s->cap ? s->cap * 2 : 1024;
	bigger.slot = xcalloc(bigger.cap, sizeof(char *));
	bigger.kind = xcalloc(bigger.cap, 1);
	for (size_t i = 0; i < s->cap; i++)
		if (s->slot[i]) {
			size_t j = hash_str(s->slot[i]) & (bigger.cap - 1);
			while (bigger.slot[j]) {
				j = (j + 1) & (bigger.cap - 1);
				bigger.probes++;
			}
			bigger.slot[j] = s->slot[i];
			bigger.kind[j] = s->kind[i];
			bigger.n++;
		}
	free(s->slot);
	free(s->kind);
	*s = bigger;
}

void ib_strset_put(struct ib_strset *s, const char *key, unsigned char kind)
{
	if ((s->n + 1) * 2 > s->cap)
		grow(s);
	size_t j = hash_str(key) & (s->cap - 1);
	while (s->slot[j]) {
		if (strcmp(s->slot[j], key) == 0) {
			s->kind[j] = kind;
			return;
		}
		j = (j + 1) & (s->cap - 1);
		s->probes++;
	}
	s->slot[j] = xstrdup(key);
	s->kind[j] = kind;
	s->n++;
}

unsigned char ib_strset_get(struct ib_strset *s, const char *key)
{
	if (s->cap == 0)
		return 0;
	size_t j = hash_str(key) & (s->cap - 1);
	while (s->slot[j]) {
		if (strcmp(s->slot[j], key) == 0)
			return s->kind[j];
		j = (j + 1) & (s->cap - 1);
		s->probes++;
	}
	return 0;
}

void ib_strset_free(struct ib_strset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->slot[i]);
	free(s->slot);
	free(s->kind);
	memset(s, 0, sizeof(*s));
}
