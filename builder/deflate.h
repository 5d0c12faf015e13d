#pragma once
/* The only wrapper of zlib: a gzip writer that compresses on several threads
 * and gives the same bytes for the same input whatever the thread count.
 *
 * pigz's scheme (pigz.c, "parallel compression"): the input is cut into
 * IB_GZIP_BLOCK-byte blocks; each block is deflated on its own, primed with
 * the 32 KiB of input before it as the dictionary (so matches still reach
 * back across the cut, and the ratio stays within a fraction of a percent of
 * one stream), and ends with a sync flush (an empty stored block), which
 * leaves the output byte-aligned, so the blocks' outputs concatenate into one
 * deflate stream. The last block ends with Z_FINISH. Each block's CRC-32 is
 * computed beside it and joined in order with crc32_combine. Output depends
 * only on the input, the block size and the level, all fixed here; the
 * header carries no name and no time (MTIME 0, XFL 0, OS 3), as gzip -n. */
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define IB_GZIP_LEVEL 6
#define IB_GZIP_BLOCK ((size_t)128 << 10)

/* Receives the gzip stream in order, on the thread that calls _write/_finish. */
typedef int (*ib_gzip_sink_fn)(void *ctx, const void *buf, size_t len, ib_error_t *err);

struct ib_gzip;
/* THREADS compressing threads (0: one per CPU). */
struct ib_gzip *ib_gzip_new(int threads, ib_gzip_sink_fn sink, void *ctx);
int ib_gzip_write(struct ib_gzip *g, const void *buf, size_t len, ib_error_t *err);
/* Compresses what is left, writes the trailer; total input bytes in *IN when not NULL. */
int ib_gzip_finish(struct ib_gzip *g, uint64_t *in, ib_error_t *err);
/* Stops the threads and frees; NULL is a no-op. */
void ib_gzip_free(struct ib_gzip *g);
void ib_gzip_cleanup(struct ib_gzip **g);
#define cleanup_gzip __attribute__((cleanup(ib_gzip_cleanup)))
