#pragma once
/* Hashing that keeps the second core busy: a scan, whose thread hashes an
 * image and its files' content while the caller reads and parses it (verify,
 * unpack); a pipe whose thread SHA-256es the blocks handed to it, in order
 * (the unverified unpack, export); a follower that hashes a file as it is written (pack: the image's
 * digest and its files'); and a parallel hasher for many files (pack --zstd). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crypto.h"
#include "error.h"

struct ib_hash_pipe;

/* A producer fills the blocks (_get/_put) and the thread hashes them in
 * order. BLOCK_SIZE bytes per block, N_BLOCKS in flight (>= 3 so a reader may
 * keep the last one). */
struct ib_hash_pipe *ib_hash_pipe_new(size_t block_size, int n_blocks);
/* Reading ahead instead: the thread reads IN_FD (not owned, from its current
 * offset to EOF) into the ring and hashes each block before it hands it over,
 * so a parser on the calling thread gets exactly the bytes hashed, and the
 * read's copy is on the other core. Use _next, then _finish, which reads and
 * hashes whatever the parser left. */
struct ib_hash_pipe *ib_hash_pipe_new_reader(int in_fd, size_t block_size, int n_blocks);
/* A consumer of an image's raw bytes (export's layer) that needs no read of
 * its own: gets every block, in order, of exactly the bytes whose digest the
 * hasher gives. */
typedef void (*ib_hash_tap_fn)(void *ctx, const void *buf, size_t len);
/* The next block in *BUF (valid until _next is called N_BLOCKS-3 more times),
 * its length; 0 at EOF; -1 with errno set on a read error. */
ssize_t ib_hash_pipe_next(struct ib_hash_pipe *p, const void **buf);
/* Zero-copy: a free block to fill (waits for one); hand it over with _put. */
void *ib_hash_pipe_get(struct ib_hash_pipe *p, size_t *cap);
void ib_hash_pipe_put(struct ib_hash_pipe *p, size_t len);
/* Waits for the thread and gives the digest of everything; reader mode's
 * read error, if any, is reported here. Total bytes in *total when not NULL. */
int ib_hash_pipe_finish(struct ib_hash_pipe *p, uint8_t digest[IB_SHA256_LEN], uint64_t *total, ib_error_t *err);
/* Stops the thread (if still running) and frees. NULL is a no-op. */
void ib_hash_pipe_free(struct ib_hash_pipe *p);
void ib_hash_pipe_cleanup(struct ib_hash_pipe **p);
#define cleanup_hash_pipe __attribute__((cleanup(ib_hash_pipe_cleanup)))

/* Verify's read: the calling thread reads IN_FD (not owned) into a ring of
 * BLOCK_SIZE blocks with _next and parses them; a thread of the scan hashes
 * the image and, in the same pass, the content extents the parser announces.
 * SIZE_HINT (the file's size) bounds how many extents it takes. TAP, when
 * not NULL, gets every block in order on that thread right after hashing. */
struct ib_hash_scan;
struct ib_hash_scan *ib_hash_scan_new(int in_fd, uint64_t size_hint, size_t block_size, int n_blocks, ib_hash_tap_fn tap,
				      void *tap_ctx);
/* The next block, as ib_hash_pipe_next (valid until N_BLOCKS-3 more calls). */
ssize_t ib_hash_scan_next(struct ib_hash_scan *s, const void **buf);
/* 1 with *OFF the image offset of P when [P, P+LEN) lies in one of the last
 * blocks handed out; 0 when it does not (libarchive's own copy, or
 * decompressed bytes). */
int ib_hash_scan_locate(const struct ib_hash_scan *s, const void *p, size_t len, uint64_t *off);
/* True when [P, P+LEN) holds the same bytes as the image at OFF, all of them
 * still in the last blocks handed out (libarchive may hand out a copy). */
bool ib_hash_scan_same(const struct ib_hash_scan *s, uint64_t off, const void *p, size_t len);
/* Bytes [OFF, OFF+LEN) of the image get a digest of their own (announce each
 * before the parser asks for the block after its first byte): the extent's
 * index for _digest, or -1 when the thread may be past OFF, the extents are
 * out of order or there are too many (the parser hashes that content itself). */
ssize_t ib_hash_scan_extent(struct ib_hash_scan *s, uint64_t off, uint64_t len);
/* True while the thread is behind the parser (the ring is full): content the
 * parser hashes itself then costs no time. */
bool ib_hash_scan_behind(struct ib_hash_scan *s);
/* Reads and hashes the rest of the file, waits for the thread: the image's
 * digest and size; fails on a read error or an extent past the end. */
int ib_hash_scan_finish(struct ib_hash_scan *s, uint8_t digest[IB_SHA256_LEN], uint64_t *total, ib_error_t *err);
/* An extent's digest, once _finish succeeded. */
const uint8_t *ib_hash_scan_digest(const struct ib_hash_scan *s, size_t idx);
void ib_hash_scan_free(struct ib_hash_scan *s);
void ib_hash_scan_cleanup(struct ib_hash_scan **s);
#define cleanup_hash_scan __attribute__((cleanup(ib_hash_scan_cleanup)))

/* Hashes FD's bytes from offset 0 on a thread of its own, as the caller
 * reports them written: the digest of exactly what is in the file (pack's
 * IMAGE.sha256), read back from the page cache in 256 KiB pieces into one
 * buffer (hash.c says why not mapped). FD is not owned and must be open for reading. In the same pass it
 * hashes up to MAX_EXTENTS byte ranges of the file on their own (the
 * content of each file in the image): where the CPU has SHA-NI, both digests
 * of a byte cost little more than one (sha256ni.h). */
struct ib_hash_follow;
struct ib_hash_follow *ib_hash_follow_new(int fd, size_t max_extents);
/* Bytes [OFF, OFF+LEN) get their own digest, into DIGEST (which must stay
 * valid until _wait or _finish has passed them). Announced in offset order,
 * each before any of its bytes is handed over with _advance. */
void ib_hash_follow_extent(struct ib_hash_follow *h, uint64_t off, uint64_t len, uint8_t digest[IB_SHA256_LEN]);
/* Bytes [0, WRITTEN) are in the file: hash up to there. */
void ib_hash_follow_advance(struct ib_hash_follow *h, uint64_t written);
/* Called by the writer once it has written and advanced everything: takes
 * the extents the thread has not begun, from the last back, and hashes their
 * content on the calling thread (two at a time on SHA-NI), while the thread
 * hashes the image alone through them. The writer's core is idle otherwise. */
int ib_hash_follow_help(struct ib_hash_follow *h, ib_error_t *err);
/* Waits until bytes [0, UPTO) are hashed (advanced first), so digests of
 * extents ending there are filled in. */
int ib_hash_follow_wait(struct ib_hash_follow *h, uint64_t upto, ib_error_t *err);
/* Waits for the thread to hash everything advanced to; the digest. */
int ib_hash_follow_finish(struct ib_hash_follow *h, uint8_t digest[IB_SHA256_LEN], ib_error_t *err);
void ib_hash_follow_free(struct ib_hash_follow *h);
void ib_hash_follow_cleanup(struct ib_hash_follow **h);
#define cleanup_hash_follow __attribute__((cleanup(ib_hash_follow_cleanup)))

/* Hashes N files (paths relative to DIRFD, opened O_NOFOLLOW) with THREADS
 * threads (0: one per CPU). DIGESTS[i] and SIZES[i] receive each file's SHA-256
 * and byte count, read up to the size fstat reports when it is opened. */
int ib_hash_files(int dirfd, const char *const *paths, size_t n, int threads, uint8_t (*digests)[IB_SHA256_LEN], int64_t *sizes,
		  ib_error_t *err);

/* Number of CPUs this process may use (at least 1). */
int ib_hash_ncpus(void);
