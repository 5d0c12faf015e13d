/* The parallel gzip writer (deflate.c): what it writes is a gzip stream that
 * zlib's own inflate and gzip(1) both accept and that gives the input back;
 * the bytes are the same for 1, 2, 3 and 8 threads and for any way the
 * input is handed over (so the export's layer digest does not depend on the
 * machine); the header has no name and no time; lengths around the block
 * size (the cut) and the empty input work. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "deflate.h"
#include "util.h"

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static int sink(void *ctx, const void *data, size_t len, ib_error_t *err)
{
	(void)err;
	struct buf *b = ctx;
	if (b->len + len > b->cap) {
		b->cap = (b->len + len) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

/* Text-like input (compressible, with matches across block cuts) mixed with noise. */
static uint8_t *make_input(size_t n, unsigned seed)
{
	uint8_t *p = xmalloc(n ? n : 1);
	static const char words[] = "usr lib x86_64-linux-gnu libc.so.6 include stdio.h torch cuda ";
	srand(seed);
	for (size_t i = 0; i < n; i++)
		p[i] = (i / 4096) % 3 == 2 ? (uint8_t)rand() : (uint8_t)words[(i * 7 + i / 100) % (sizeof(words) - 1)];
	return p;
}

static struct buf gz_compress(const uint8_t *in, size_t n, int threads, size_t piece)
{
	struct buf out = { 0 };
	ib_error_t err = NULL;
	struct ib_gzip *g = ib_gzip_new(threads, sink, &out);
	for (size_t off = 0; off < n;) {
		size_t k = n - off < piece ? n - off : piece;
		assert_int_equal(ib_gzip_write(g, in + off, k, &err), 0);
		off += k;
	}
	uint64_t total = 0;
	assert_int_equal(ib_gzip_finish(g, &total, &err), 0);
	assert_int_equal(total, n);
	ib_gzip_free(g);
	return out;
}

static void assert_inflates_to(const struct buf *gz, const uint8_t *in, size_t n)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);	/* gzip wrapper only */
	uint8_t *back = xmalloc(n + 16);
	zs.next_in = gz->p;
	zs.avail_in = (uInt)gz->len;
	zs.next_out = back;
	zs.avail_out = (uInt)(n + 16);
	assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);	/* also checks CRC and ISIZE */
	assert_int_equal(zs.total_out, n);
	assert_int_equal(zs.avail_in, 0);
	assert_memory_equal(back, in, n);
	inflateEnd(&zs);
	free(back);
}

static void test_roundtrip_lengths(void **state)
{
	(void)state;
	const size_t B = IB_GZIP_BLOCK;
	size_t lens[] = { 0, 1, 100, B - 1, B, B + 1, 2 * B, 3 * B + 12345, 40 * B + 7 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t *in = make_input(lens[i], (unsigned)i);
		struct buf gz = gz_compress(in, lens[i], 2, 65536);
		/* RFC 1952 header: deflate, no flags, MTIME 0, XFL 0, OS Unix. */
		static const uint8_t hdr[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3 };
		assert_true(gz.len >= 18);
		assert_memory_equal(gz.p, hdr, sizeof(hdr));
		assert_inflates_to(&gz, in, lens[i]);
		free(gz.p);
		free(in);
	}
}

static void test_same_bytes_any_threads_any_pieces(void **state)
{
	(void)state;
	size_t n = 25 * IB_GZIP_BLOCK + 999;
	uint8_t *in = make_input(n, 7);
	struct buf ref = gz_compress(in, n, 1, n);
	int threads[] = { 2, 3, 8 };
	size_t pieces[] = { 1000, IB_GZIP_BLOCK, 3 * IB_GZIP_BLOCK + 1 };
	for (size_t t = 0; t < 3; t++)
		for (size_t p = 0; p < 3; p++) {
			struct buf got = gz_compress(in, n, threads[t], pieces[p]);
			assert_int_equal(got.len, ref.len);
			assert_memory_equal(got.p, ref.p, ref.len);
			free(got.p);
		}
	/* The dictionary carries matches over the cuts: within 1% of one zlib stream. */
	uLongf one_len = compressBound((uLong)n);
	uint8_t *one = xmalloc(one_len);
	assert_int_equal(compress2(one, &one_len, in, (uLong)n, IB_GZIP_LEVEL), Z_OK);
	assert_true((double)ref.len < (double)one_len * 1.01 + 64);
	free(one);
	free(ref.p);
	free(in);
}

static void test_gzip_tool_reads_it(void **state)
{
	(void)state;
	size_t n = 5 * IB_GZIP_BLOCK + 3;
	uint8_t *in = make_input(n, 3);
	struct buf gz = gz_compress(in, n, 2, 4096);
	char path[] = "/tmp/deflate_test.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, gz.p, gz.len), (ssize_t)gz.len);
	close(fd);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "gzip -t < %s", path);
	int rc = system(cmd);
	unlink(path);
	assert_int_equal(rc, 0);
	free(gz.p);
	free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_lengths),
		cmocka_unit_test(test_same_bytes_any_threads_any_pieces),
		cmocka_unit_test(test_gzip_tool_reads_it),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
