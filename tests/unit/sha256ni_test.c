/* The SHA-NI lanes (sha256ni.c) against OpenSSL (crypto.c): every length from
 * 0 to 300 bytes, given whole, in random pieces, and two at once with lanes
 * that are and are not block-aligned; the FIPS 180-4 examples; a multi-megabyte
 * input. A wrong shuffle or round constant changes every digest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto.h"
#include "sha256ni.h"
#include "util.h"

static uint8_t *random_data(size_t n, unsigned seed)
{
	uint8_t *p = xmalloc(n ? n : 1);
	srand(seed);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rand();
	return p;
}

static void assert_digest_eq(const uint8_t *got, const uint8_t *want, const char *what, size_t len)
{
	if (memcmp(got, want, IB_SHA256_LEN) != 0) {
		char g[IB_SHA256_HEX_LEN + 1], w[IB_SHA256_HEX_LEN + 1];
		ib_hex(got, IB_SHA256_LEN, g);
		ib_hex(want, IB_SHA256_LEN, w);
		fail_msg("%s, %zu bytes: got %s, OpenSSL says %s", what, len, g, w);
	}
}

static void test_fips_examples(void **state)
{
	(void)state;
	if (!ib_sha256ni_available())
		skip();
	struct {
		const char *msg, *hex;
	} cases[] = {
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ib_sha256_lane l;
		uint8_t d[IB_SHA256_LEN];
		char hex[IB_SHA256_HEX_LEN + 1];
		ib_sha256_lane_init(&l);
		ib_sha256_lane_update(&l, cases[i].msg, strlen(cases[i].msg));
		ib_sha256_lane_final(&l, d);
		ib_hex(d, sizeof(d), hex);
		assert_string_equal(hex, cases[i].hex);
	}
}

static void test_every_length_every_split(void **state)
{
	(void)state;
	if (!ib_sha256ni_available())
		skip();
	uint8_t *data = random_data(300, 1);
	for (size_t len = 0; len <= 300; len++) {
		uint8_t want[IB_SHA256_LEN], got[IB_SHA256_LEN];
		ib_sha256_buf(data, len, want);

		struct ib_sha256_lane l;
		ib_sha256_lane_init(&l);
		ib_sha256_lane_update(&l, data, len);
		ib_sha256_lane_final(&l, got);
		assert_digest_eq(got, want, "whole", len);

		ib_sha256_lane_init(&l);
		for (size_t off = 0; off < len;) {
			size_t piece = 1 + (size_t)rand() % 97;
			if (piece > len - off)
				piece = len - off;
			ib_sha256_lane_update(&l, data + off, piece);
			off += piece;
		}
		ib_sha256_lane_final(&l, got);
		assert_digest_eq(got, want, "in pieces", len);
	}
	free(data);
}

/* Two different inputs through update2, after a lead-in that leaves the lanes
 * aligned (both 0 or 64), equally part-way into a block (17, 5 and 69), or
 * not alike (one odd): the interleaved path and its
 * fallback must both give each input's own digest. */
static void test_two_lanes(void **state)
{
	(void)state;
	if (!ib_sha256ni_available())
		skip();
	size_t lead_ins[][2] = { { 0, 0 }, { 64, 128 }, { 3, 0 }, { 0, 61 }, { 17, 17 }, { 5, 69 } };
	size_t lens[] = { 0, 1, 63, 64, 65, 127, 128, 1000, 4096 + 7, 65536 };
	uint8_t *a = random_data(70000, 2), *b = random_data(70000, 3);
	for (size_t i = 0; i < sizeof(lead_ins) / sizeof(lead_ins[0]); i++) {
		for (size_t j = 0; j < sizeof(lens) / sizeof(lens[0]); j++) {
			size_t la = lead_ins[i][0], lb = lead_ins[i][1], n = lens[j];
			struct ib_sha256_lane x, y;
			ib_sha256_lane_init(&x);
			ib_sha256_lane_init(&y);
			ib_sha256_lane_update(&x, a, la);
			ib_sha256_lane_update(&y, b, lb);
			ib_sha256_lane_update2(&x, a + la, &y, b + lb, n);
			/* and a second round, to catch state not written back */
			ib_sha256_lane_update2(&x, a + la + n, &y, b + lb + n, 192);
			uint8_t gx[IB_SHA256_LEN], gy[IB_SHA256_LEN], wx[IB_SHA256_LEN], wy[IB_SHA256_LEN];
			ib_sha256_lane_final(&x, gx);
			ib_sha256_lane_final(&y, gy);
			ib_sha256_buf(a, la + n + 192, wx);
			ib_sha256_buf(b, lb + n + 192, wy);
			assert_digest_eq(gx, wx, "lane a", la + n + 192);
			assert_digest_eq(gy, wy, "lane b", lb + n + 192);
		}
	}
	free(a);
	free(b);
}

static void test_large_same_input(void **state)
{
	(void)state;
	if (!ib_sha256ni_available())
		skip();
	size_t n = (size_t)5 << 20;
	uint8_t *data = random_data(n, 4);
	uint8_t want[IB_SHA256_LEN], ga[IB_SHA256_LEN], gb[IB_SHA256_LEN];
	ib_sha256_buf(data, n, want);
	struct ib_sha256_lane x, y;
	ib_sha256_lane_init(&x);
	ib_sha256_lane_init(&y);
	ib_sha256_lane_update2(&x, data, &y, data, n);
	ib_sha256_lane_final(&x, ga);
	ib_sha256_lane_final(&y, gb);
	assert_digest_eq(ga, want, "lane a, 5 MiB", n);
	assert_digest_eq(gb, want, "lane b, 5 MiB", n);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fips_examples),
		cmocka_unit_test(test_every_length_every_split),
		cmocka_unit_test(test_two_lanes),
		cmocka_unit_test(test_large_same_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
