#include "hash.h"
#include "sha256ni.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A SHA-256 on the SHA-NI lanes where the CPU has them, else OpenSSL's: the
 * follower hashes the image and, in the same pass, each file's content in it,
 * two streams over the same bytes, which the lanes run interleaved. */
struct dual_sha {
	bool ni;
	struct ib_sha256_lane lane;
	struct ib_sha256 *ctx;
};

static void dual_init(struct dual_sha *d)
{
	d->ni = ib_sha256ni_available();
	if (d->ni)
		ib_sha256_lane_init(&d->lane);
	else
		d->ctx = ib_sha256_new();
}

static void dual_update(struct dual_sha *d, const void *p, size_t n)
{
	if (d->ni)
		ib_sha256_lane_update(&d->lane, p, n);
	else
		ib_sha256_update(d->ctx, p, n);
}

/* The same N bytes into both. */
static void dual_update_both(struct dual_sha *a, struct dual_sha *b, const void *p, size_t n)
{
	if (a->ni && b->ni) {
		ib_sha256_lane_update2(&a->lane, p, &b->lane, p, n);
	} else {
		dual_update(a, p, n);
		dual_update(b, p, n);
	}
}

static void dual_final(struct dual_sha *d, uint8_t out[IB_SHA256_LEN])
{
	if (d->ni) {
		ib_sha256_lane_final(&d->lane, out);
	} else {
		ib_sha256_final(d->ctx, out);
		ib_sha256_free(d->ctx);
		d->ctx = NULL;
	}
}

static void dual_free(struct dual_sha *d)
{
	if (!d->ni)
		ib_sha256_free(d->ctx);
	d->ctx = NULL;
}

struct extent {
	uint64_t off, len;
	uint8_t *digest;
	atomic_int owner; /* EXT_FREE, then whichever thread hashes its content */
};
enum { EXT_FREE, EXT_STREAM, EXT_HELPER };

/* An image's bytes in order: its digest, and in the same strokes the digest
 * of each extent (a file's content inside it). Extents are allocated once (no
 * realloc under the hashing thread's feet) and added in offset order by the
 * producer, each before any of its bytes is handed over; n_ext is published
 * under the owner's lock. */
struct stream {
	struct dual_sha image;
	struct extent *ext;
	size_t n_ext, cap_ext;
	size_t next_ext;      /* the hashing thread's: first extent not finished */
	struct dual_sha file; /* of ext[next_ext], once it has begun ... */
	bool in_file;
	bool file_mine; /* ... unless a helper took that extent */
};

static void stream_init(struct stream *s, size_t max_extents)
{
	memset(s, 0, sizeof(*s));
	dual_init(&s->image);
	s->cap_ext = max_extents;
	s->ext = max_extents ? xcalloc(max_extents, sizeof(*s->ext)) : NULL;
}

static void stream_free(struct stream *s)
{
	dual_free(&s->image);
	if (s->in_file && s->file_mine)
		dual_free(&s->file);
	free(s->ext);
	s->ext = NULL;
}

/* Call with the owner's lock held. */
static void stream_add_extent(struct stream *s, uint64_t handed_over, uint64_t off, uint64_t len, uint8_t *digest)
{
	/* Programming errors: the hashing thread may already be past these bytes. */
	if (s->n_ext == s->cap_ext || off < handed_over || (s->n_ext && off < s->ext[s->n_ext - 1].off + s->ext[s->n_ext - 1].len)) {
		fprintf(stderr, "imgbuild: bug: file content at %llu announced out of order or beyond %zu\n",
			(unsigned long long)off, s->cap_ext);
		abort();
	}
	struct extent *e = &s->ext[s->n_ext++];
	e->off = off;
	e->len = len;
	e->digest = digest;
	atomic_init(&e->owner, EXT_FREE);
}

/* Bytes [FROM, TO) of the image are at P: into the image's digest, and into
 * the digest of each extent they overlap (N_EXT: extents published so far). */
static void stream_hash(struct stream *h, const uint8_t *p, uint64_t from, uint64_t to, size_t n_ext)
{
	while (from < to) {
		struct extent *e = h->next_ext < n_ext ? &h->ext[h->next_ext] : NULL;
		if (e == NULL || from < e->off) {
			uint64_t stop = e && e->off < to ? e->off : to;
			dual_update(&h->image, p, (size_t)(stop - from));
			p += stop - from;
			from = stop;
			continue;
		}
		if (!h->in_file) {
			int free_ext = EXT_FREE;
			h->file_mine = atomic_compare_exchange_strong(&e->owner, &free_ext, EXT_STREAM);
			if (h->file_mine)
				dual_init(&h->file);
			h->in_file = true;
		}
		uint64_t stop = e->off + e->len < to ? e->off + e->len : to;
		if (h->file_mine)
			dual_update_both(&h->image, &h->file, p, (size_t)(stop - from));
		else
			dual_update(&h->image, p, (size_t)(stop - from));
		p += stop - from;
		from = stop;
		if (from == e->off + e->len) {
			if (h->file_mine)
				dual_final(&h->file, e->digest);
			h->in_file = false;
			h->next_ext++;
		}
	}
}

/* 0, or how many extents were never reached. */
static size_t stream_final(struct stream *s, uint8_t digest[IB_SHA256_LEN])
{
	dual_final(&s->image, digest);
	return s->n_ext - s->next_ext;
}

/* A ring of blocks between a parser and one hashing thread, in two modes.
 * Reader (_new_reader, verify): the thread reads the file ahead into the
 * ring and hashes each block before the parser gets it. Producer (_new,
 * unpack): libarchive's read callback fills blocks (_get/_put) and the thread
 * hashes them in order. Either way a block stays untouched until N_BLOCKS-1
 * more were handed over: libarchive may keep pointing into the block it got
 * last. */
struct block {
	uint8_t *data;
	size_t len;
};

struct ib_hash_pipe {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t hasher;
	bool closing;
	size_t block_size;
	int n;
	struct block *ring;
	uint64_t produced, hashed;
	uint64_t offset; /* bytes handed over */
	int read_errno;	 /* reader mode: the read's error */
	struct dual_sha sha;
	/* Reader mode: the thread reads, hashes, then hands over. */
	bool reader, eof, stop;
	int in_fd;
	uint64_t consumed;
};

/* Reads into BUF until CAP bytes, the end of the file or an error (its errno
 * in *ERR, else 0): fewer than CAP bytes means no more come. */
static size_t read_block(int fd, uint8_t *buf, size_t cap, int *err)
{
	size_t got = 0;
	*err = 0;
	while (got < cap) {
		ssize_t r = read(fd, buf + got, cap - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			*err = errno;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

static void *reader_main(void *arg)
{
	struct ib_hash_pipe *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		/* The parser may still point into the last three blocks it took
		 * (libarchive keeps the one before last); once it is done
		 * (closing) nothing is kept and the rest is read for the digest. */
		while (!p->stop && !p->closing && p->produced + 3 >= p->consumed + (uint64_t)p->n)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop)
			break;
		struct block *b = &p->ring[p->produced % (uint64_t)p->n];
		pthread_mutex_unlock(&p->lock);
		int rerr;
		size_t got = read_block(p->in_fd, b->data, p->block_size, &rerr);
		if (got)
			dual_update(&p->sha, b->data, got);
		pthread_mutex_lock(&p->lock);
		b->len = got;
		p->offset += got;
		if (got)
			p->produced++;
		if (rerr)
			p->read_errno = rerr;
		if (got < p->block_size)
			p->eof = true;
		pthread_cond_broadcast(&p->cond);
		if (p->eof)
			break;
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct ib_hash_pipe *ib_hash_pipe_new_reader(int in_fd, size_t block_size, int n_blocks)
{
	struct ib_hash_pipe *p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->in_fd = in_fd;
	p->reader = true;
	p->block_size = block_size;
	p->n = n_blocks < 5 ? 5 : n_blocks;
	p->ring = xcalloc((size_t)p->n, sizeof(*p->ring));
	for (int i = 0; i < p->n; i++)
		p->ring[i].data = xmalloc(block_size);
	dual_init(&p->sha);
	if (pthread_create(&p->hasher, NULL, reader_main, p) != 0)
		ib_die_oom();
	return p;
}

ssize_t ib_hash_pipe_next(struct ib_hash_pipe *p, const void **buf)
{
	pthread_mutex_lock(&p->lock);
	while (p->consumed == p->produced && !p->eof)
		pthread_cond_wait(&p->cond, &p->lock);
	if (p->consumed == p->produced) {
		int e = p->read_errno;
		pthread_mutex_unlock(&p->lock);
		if (e) {
			errno = e;
			return -1;
		}
		return 0;
	}
	struct block *b = &p->ring[p->consumed % (uint64_t)p->n];
	p->consumed++;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	*buf = b->data;
	return (ssize_t)b->len;
}

static void *hasher_main(void *arg)
{
	struct ib_hash_pipe *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->hashed == p->produced && !p->closing)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->hashed == p->produced)
			break;
		struct block *b = &p->ring[p->hashed % (uint64_t)p->n];
		pthread_mutex_unlock(&p->lock);
		dual_update(&p->sha, b->data, b->len);
		pthread_mutex_lock(&p->lock);
		p->hashed++;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct ib_hash_pipe *ib_hash_pipe_new(size_t block_size, int n_blocks)
{
	struct ib_hash_pipe *p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->block_size = block_size;
	p->n = n_blocks < 3 ? 3 : n_blocks;
	p->ring = xcalloc((size_t)p->n, sizeof(*p->ring));
	for (int i = 0; i < p->n; i++)
		p->ring[i].data = xmalloc(block_size);
	dual_init(&p->sha);
	if (pthread_create(&p->hasher, NULL, hasher_main, p) != 0)
		ib_die_oom();
	return p;
}

void *ib_hash_pipe_get(struct ib_hash_pipe *p, size_t *cap)
{
	pthread_mutex_lock(&p->lock);
	struct block *b = &p->ring[p->produced % (uint64_t)p->n];
	while (p->produced - p->hashed >= (uint64_t)(p->n - 1))
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
	*cap = p->block_size;
	return b->data;
}

void ib_hash_pipe_put(struct ib_hash_pipe *p, size_t len)
{
	pthread_mutex_lock(&p->lock);
	struct block *b = &p->ring[p->produced % (uint64_t)p->n];
	b->len = len;
	p->offset += len;
	p->produced++;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static void pipe_stop(struct ib_hash_pipe *p)
{
	pthread_mutex_lock(&p->lock);
	bool was = p->closing;
	p->closing = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (was)
		return;
	pthread_join(p->hasher, NULL);
}

int ib_hash_pipe_finish(struct ib_hash_pipe *p, uint8_t digest[IB_SHA256_LEN], uint64_t *total, ib_error_t *err)
{
	pipe_stop(p);
	if (p->read_errno)
		return ib_error_errno(err, p->read_errno, "read");
	dual_final(&p->sha, digest);
	if (total)
		*total = p->offset;
	return 0;
}

void ib_hash_pipe_free(struct ib_hash_pipe *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_mutex_unlock(&p->lock);
	pipe_stop(p);
	for (int i = 0; i < p->n; i++)
		free(p->ring[i].data);
	free(p->ring);
	dual_free(&p->sha);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

void ib_hash_pipe_cleanup(struct ib_hash_pipe **p)
{
	ib_hash_pipe_free(*p);
}

/* ---- the scan: verify's one read ---- */

/* The calling thread (the parser) reads the image into a ring of blocks and
 * parses them; the scan's thread hashes each block once the parser has said
 * which of its bytes are file content: the image's digest and, over the same
 * bytes, each content extent's (two lanes, sha256ni.h). So the read's copy
 * and libarchive are on one core and all hashing on the other, where the
 * image's own digest, one sequential stream, is the floor. The thread never
 * hashes past LIMIT: below it every extent is known. LIMIT moves when the
 * parser announces an extent (to its end) and whenever the parser asks for
 * a new block (to that block's start: libarchive only asks for more bytes
 * than it has when what it is reading, a header or content, goes on into
 * them, so no content begins before). */
struct scan_block {
	uint8_t *data;
	uint64_t off;
	size_t len;
};

/* The blocks libarchive may still hand out bytes from: the one it has and the
 * three before. */
#define SCAN_RECENT 4

struct ib_hash_scan {
	pthread_mutex_t lock;
	pthread_cond_t more;  /* the thread waits for bytes or a higher limit */
	pthread_cond_t freed; /* the parser waits for a block to reuse */
	pthread_t thread;
	bool running;
	int fd;
	size_t block_size;
	int n;
	struct scan_block *ring;
	uint64_t produced; /* blocks read (parser) */
	uint64_t finished; /* blocks hashed to their end (thread) */
	uint64_t hashed;   /* bytes hashed (thread) */
	uint64_t claimed;  /* bytes the thread is hashing up to */
	uint64_t read_off; /* bytes read (parser) */
	uint64_t limit;
	bool eof, abandon, thread_waiting, parser_waiting;
	int read_errno;
	struct stream hs;
	uint8_t (*digests)[IB_SHA256_LEN];
	ib_hash_tap_fn tap;
	void *tap_ctx;
	void *map; /* the ring's memory */
	size_t map_len;
};

static void *scan_main(void *arg)
{
	struct ib_hash_scan *s = arg;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct scan_block *b = NULL;
		uint64_t from = 0, to = 0;
		for (;;) {
			if (s->abandon)
				goto out;
			if (s->finished < s->produced) {
				b = &s->ring[s->finished % (uint64_t)s->n];
				from = s->hashed;
				to = b->off + b->len < s->limit ? b->off + b->len : s->limit;
				if (to > from)
					break;
			} else if (s->eof) {
				goto out;
			}
			s->thread_waiting = true;
			pthread_cond_wait(&s->more, &s->lock);
			s->thread_waiting = false;
		}
		s->claimed = to;
		size_t n_ext = s->hs.n_ext;
		pthread_mutex_unlock(&s->lock);
		stream_hash(&s->hs, b->data + (from - b->off), from, to, n_ext);
		bool whole = to == b->off + b->len;
		if (whole && s->tap)
			s->tap(s->tap_ctx, b->data, b->len);
		pthread_mutex_lock(&s->lock);
		s->hashed = to;
		if (whole) {
			s->finished++;
			/* Woken with half the ring free, the parser reads on for a
			 * while: a wake-up of an idle core costs this VM ~0.1 ms. */
			if (s->parser_waiting && s->produced - s->finished <= (uint64_t)s->n / 2)
				pthread_cond_signal(&s->freed);
		}
	}
out:
	s->abandon = true; /* nothing more is hashed: the parser must not wait */
	pthread_cond_signal(&s->freed);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

struct ib_hash_scan *ib_hash_scan_new(int fd, uint64_t size_hint, size_t block_size, int n_blocks, ib_hash_tap_fn tap, void *tap_ctx)
{
	struct ib_hash_scan *s = xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->more, NULL);
	pthread_cond_init(&s->freed, NULL);
	s->fd = fd;
	s->tap = tap;
	s->tap_ctx = tap_ctx;
	s->block_size = block_size;
	/* libarchive may point into the last three blocks it got. */
	s->n = n_blocks < SCAN_RECENT + 1 ? SCAN_RECENT + 1 : n_blocks;
	s->ring = xcalloc((size_t)s->n, sizeof(*s->ring));
	/* One ib_big_alloc (util.h): 16 blocks of 256 KiB are 1,024 first-touch
	 * faults in 4 KiB pages and 2 in huge pages. Verify of the minbase:
	 * 2,300 -> 1,270 page faults, 182-190 -> 165 ms (docs/performance.md,
	 * section 10). */
	s->map_len = block_size * (size_t)s->n;
	uint8_t *ring = s->map = ib_big_alloc(s->map_len);
	for (int i = 0; i < s->n; i++)
		s->ring[i].data = ring + (size_t)i * block_size;
	/* Every content extent follows a 512-byte header of its own; the
	 * arrays are only touched as far as they are used, and capped (64 bytes
	 * an extent: 256 MiB of address space at most). Files past the cap, or
	 * past the hint when the image grew, are hashed by the parser. */
	uint64_t hint_ext = size_hint / 1024 + 16;
	size_t max_ext = hint_ext < ((uint64_t)1 << 22) ? (size_t)hint_ext : (size_t)1 << 22;
	stream_init(&s->hs, max_ext);
	s->digests = xcalloc(max_ext, sizeof(*s->digests));
	if (pthread_create(&s->thread, NULL, scan_main, s) != 0)
		ib_die_oom();
	s->running = true;
	return s;
}

/* Wakes a sleeping hashing thread, but only for a quarter of the ring's worth
 * of bytes it may hash (or when PARSER_BLOCKED: the parser is about to wait for
 * a block): where the thread outruns the parser (unpack, whose parser also
 * makes the files), a wake-up for every block or file made it sleep and wake
 * ~1,300 times per image, each a futex call and two context switches that
 * cost this VM tens of microseconds. Called with the lock held. */
static void wake_thread(struct ib_hash_scan *s, bool parser_blocked)
{
	if (!s->thread_waiting)
		return;
	uint64_t known = s->limit < s->read_off ? s->limit : s->read_off;
	uint64_t ready = known > s->hashed ? known - s->hashed : 0;
	if (parser_blocked || s->eof || ready >= s->block_size * (uint64_t)s->n / 4)
		pthread_cond_signal(&s->more);
}

ssize_t ib_hash_scan_next(struct ib_hash_scan *s, const void **buf)
{
	pthread_mutex_lock(&s->lock);
	if (s->eof) {
		pthread_mutex_unlock(&s->lock);
		if (s->read_errno) {
			errno = s->read_errno;
			return -1;
		}
		return 0;
	}
	/* Asked for more: nothing before this block is content still unknown. */
	if (s->read_off > s->limit)
		s->limit = s->read_off;
	wake_thread(s, s->produced - s->finished >= (uint64_t)s->n);
	while (s->produced - s->finished >= (uint64_t)s->n && !s->abandon) {
		s->parser_waiting = true;
		pthread_cond_wait(&s->freed, &s->lock);
		s->parser_waiting = false;
	}
	bool abandoned = s->abandon;
	pthread_mutex_unlock(&s->lock);
	if (abandoned) {
		errno = EIO;
		return -1;
	}
	struct scan_block *b = &s->ring[s->produced % (uint64_t)s->n];
	int rerr;
	size_t got = read_block(s->fd, b->data, s->block_size, &rerr);
	pthread_mutex_lock(&s->lock);
	b->off = s->read_off;
	b->len = got;
	if (got) {
		s->produced++;
		s->read_off += got;
	}
	if (rerr || got < s->block_size) {
		s->eof = true;
		s->read_errno = rerr;
	}
	wake_thread(s, false);
	pthread_mutex_unlock(&s->lock);
	if (got == 0 && rerr) {
		errno = rerr;
		return -1;
	}
	*buf = b->data;
	return (ssize_t)got;
}

/* The Kth last block handed out (1: the last), or NULL. Only the parser
 * calls this (through _locate and _same), and only it writes the ring's
 * offsets. */
static const struct scan_block *recent_block(const struct ib_hash_scan *s, uint64_t k)
{
	if (k > SCAN_RECENT || k > s->produced)
		return NULL;
	return &s->ring[(s->produced - k) % (uint64_t)s->n];
}

int ib_hash_scan_locate(const struct ib_hash_scan *s, const void *p, size_t len, uint64_t *off)
{
	const uint8_t *q = p;
	const struct scan_block *b;
	for (uint64_t k = 1; (b = recent_block(s, k)) != NULL; k++) {
		if (q >= b->data && q <= b->data + b->len && len <= b->len - (size_t)(q - b->data)) {
			*off = b->off + (uint64_t)(q - b->data);
			return 1;
		}
	}
	return 0;
}

bool ib_hash_scan_same(const struct ib_hash_scan *s, uint64_t off, const void *p, size_t len)
{
	/* The bytes may span the last blocks handed out. */
	const uint8_t *q = p;
	while (len > 0) {
		const struct scan_block *hit;
		for (uint64_t k = 1; (hit = recent_block(s, k)) != NULL; k++)
			if (off >= hit->off && off < hit->off + hit->len)
				break;
		if (hit == NULL)
			return false;
		size_t in = (size_t)(off - hit->off);
		size_t n = hit->len - in < len ? hit->len - in : len;
		if (memcmp(hit->data + in, q, n) != 0)
			return false;
		q += n;
		off += n;
		len -= n;
	}
	return true;
}

ssize_t ib_hash_scan_extent(struct ib_hash_scan *s, uint64_t off, uint64_t len)
{
	pthread_mutex_lock(&s->lock);
	struct stream *h = &s->hs;
	bool ok = len > 0 && h->n_ext < h->cap_ext && off >= s->claimed && off >= s->hashed &&
		  (h->n_ext == 0 || off >= h->ext[h->n_ext - 1].off + h->ext[h->n_ext - 1].len);
	ssize_t idx = -1;
	if (ok) {
		idx = (ssize_t)h->n_ext;
		struct extent *e = &h->ext[h->n_ext++];
		e->off = off;
		e->len = len;
		e->digest = s->digests[idx];
		atomic_init(&e->owner, EXT_FREE);
		if (off + len > s->limit) {
			s->limit = off + len;
			wake_thread(s, false);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return idx;
}

bool ib_hash_scan_behind(struct ib_hash_scan *s)
{
	pthread_mutex_lock(&s->lock);
	bool behind = s->produced - s->finished >= (uint64_t)s->n - 1;
	pthread_mutex_unlock(&s->lock);
	return behind;
}

static void scan_stop(struct ib_hash_scan *s, bool abandon)
{
	if (!s->running)
		return;
	pthread_mutex_lock(&s->lock);
	if (abandon)
		s->abandon = true;
	s->limit = UINT64_MAX;
	pthread_cond_signal(&s->more);
	pthread_mutex_unlock(&s->lock);
	if (!abandon) {
		/* The rest of the file, past where the parser stopped, counts. */
		const void *buf;
		while (ib_hash_scan_next(s, &buf) > 0)
			;
		pthread_mutex_lock(&s->lock);
		s->eof = true;
		pthread_cond_signal(&s->more);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_join(s->thread, NULL);
	s->running = false;
}

int ib_hash_scan_finish(struct ib_hash_scan *s, uint8_t digest[IB_SHA256_LEN], uint64_t *total, ib_error_t *err)
{
	scan_stop(s, false);
	if (s->read_errno)
		return ib_error_errno(err, s->read_errno, "read");
	size_t missed = stream_final(&s->hs, digest);
	if (total)
		*total = s->read_off;
	if (missed)
		return ib_error_set(err, 0, "%zu file contents run past the end of the image", missed);
	return 0;
}

const uint8_t *ib_hash_scan_digest(const struct ib_hash_scan *s, size_t idx)
{
	return s->digests[idx];
}

void ib_hash_scan_free(struct ib_hash_scan *s)
{
	if (s == NULL)
		return;
	scan_stop(s, true);
	stream_free(&s->hs);
	ib_big_free(s->map, s->map_len);
	free(s->ring);
	free(s->digests);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->more);
	pthread_cond_destroy(&s->freed);
	free(s);
}

void ib_hash_scan_cleanup(struct ib_hash_scan **s)
{
	ib_hash_scan_free(*s);
}

/* ---- the follower ---- */

struct ib_hash_follow {
	pthread_mutex_t lock;
	pthread_cond_t cond;	 /* the thread waits here for bytes ... */
	pthread_cond_t progress; /* ... and _wait here for the thread */
	pthread_t thread;
	bool running, done, abandon, running_thread_done;
	int fd;
	uint64_t avail, hashed;
	int err_no;
	struct stream hs;
};

/* The thread takes at most this much at a time, and reads it back in
 * FOLLOW_READ pieces into one buffer it keeps. Not mapped: this VM shadows
 * guest page tables, so the first touch of every page of a new mapping
 * faults to the host (~2 us), which cost more than the copy a read makes
 * into a buffer that stays mapped and in the cache. On the 171 MB minbase,
 * pack took 0.33 s with 8 MiB MAP_POPULATE windows and 0.24 s this way
 * (0.39 -> 0.25 s on a 256 MB synthetic tree, 0.74 -> 0.52 s on the demo
 * tree; docs/performance.md). */
#define FOLLOW_WINDOW ((uint64_t)8 << 20)
#define FOLLOW_READ ((size_t)256 << 10)

static int hash_range(struct ib_hash_follow *h, uint64_t from, uint64_t to, size_t n_ext, uint8_t **buf)
{
	if (*buf == NULL)
		*buf = xmalloc(FOLLOW_READ);
	while (from < to) {
		size_t want = (size_t)(to - from) < FOLLOW_READ ? (size_t)(to - from) : FOLLOW_READ;
		ssize_t r = pread(h->fd, *buf, want, (off_t)from);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? errno : EIO;
		stream_hash(&h->hs, *buf, from, from + (uint64_t)r, n_ext);
		from += (uint64_t)r;
	}
	return 0;
}

static void *follow_main(void *arg)
{
	struct ib_hash_follow *h = arg;
	uint8_t *buf = NULL;
	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (h->hashed == h->avail && !h->done && !h->abandon)
			pthread_cond_wait(&h->cond, &h->lock);
		if (h->abandon || h->hashed == h->avail)
			break;
		uint64_t from = h->hashed, to = h->avail;
		size_t n_ext = h->hs.n_ext;
		pthread_mutex_unlock(&h->lock);
		if (to - from > FOLLOW_WINDOW)
			to = from + FOLLOW_WINDOW;
		int e = hash_range(h, from, to, n_ext, &buf);
		pthread_mutex_lock(&h->lock);
		if (e) {
			h->err_no = e;
			break;
		}
		h->hashed = to;
		pthread_cond_broadcast(&h->progress);
	}
	h->running_thread_done = true;
	pthread_cond_broadcast(&h->progress);
	pthread_mutex_unlock(&h->lock);
	free(buf);
	return NULL;
}

struct ib_hash_follow *ib_hash_follow_new(int fd, size_t max_extents)
{
	struct ib_hash_follow *h = xcalloc(1, sizeof(*h));
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	pthread_cond_init(&h->progress, NULL);
	h->fd = fd;
	stream_init(&h->hs, max_extents);
	if (pthread_create(&h->thread, NULL, follow_main, h) != 0)
		ib_die_oom();
	h->running = true;
	return h;
}

void ib_hash_follow_extent(struct ib_hash_follow *h, uint64_t off, uint64_t len, uint8_t digest[IB_SHA256_LEN])
{
	if (len == 0) {
		ib_sha256_buf("", 0, digest);
		return;
	}
	pthread_mutex_lock(&h->lock);
	stream_add_extent(&h->hs, h->avail, off, len, digest);
	pthread_mutex_unlock(&h->lock);
}

void ib_hash_follow_advance(struct ib_hash_follow *h, uint64_t written)
{
	pthread_mutex_lock(&h->lock);
	if (written > h->avail) {
		h->avail = written;
		pthread_cond_signal(&h->cond);
	}
	pthread_mutex_unlock(&h->lock);
}

int ib_hash_follow_wait(struct ib_hash_follow *h, uint64_t upto, ib_error_t *err)
{
	pthread_mutex_lock(&h->lock);
	while (h->hashed < upto && h->err_no == 0 && !h->running_thread_done)
		pthread_cond_wait(&h->progress, &h->lock);
	int e = h->err_no;
	bool short_of = h->hashed < upto;
	pthread_mutex_unlock(&h->lock);
	if (e)
		return ib_error_errno(err, e, "read back the output");
	if (short_of)
		return ib_error_set(err, 0, "read back the output: it stopped short");
	return 0;
}

static void follow_stop(struct ib_hash_follow *h, bool abandon)
{
	if (!h->running)
		return;
	pthread_mutex_lock(&h->lock);
	h->done = true;
	h->abandon = abandon;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	h->running = false;
}

int ib_hash_follow_finish(struct ib_hash_follow *h, uint8_t digest[IB_SHA256_LEN], ib_error_t *err)
{
	follow_stop(h, false);
	if (h->err_no)
		return ib_error_errno(err, h->err_no, "read back the output");
	size_t missed = stream_final(&h->hs, digest);
	if (missed)
		return ib_error_set(err, 0, "read back the output: %zu file contents not reached", missed);
	return 0;
}

void ib_hash_follow_free(struct ib_hash_follow *h)
{
	if (h == NULL)
		return;
	follow_stop(h, true);
	stream_free(&h->hs);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	pthread_cond_destroy(&h->progress);
	free(h);
}

void ib_hash_follow_cleanup(struct ib_hash_follow **h)
{
	ib_hash_follow_free(*h);
}

int ib_hash_ncpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		int n = CPU_COUNT(&set);
		if (n > 0)
			return n;
	}
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

struct files_job {
	int dirfd;
	const char *const *paths;
	size_t n;
	uint8_t (*digests)[IB_SHA256_LEN];
	int64_t *sizes;
	atomic_size_t next;
	atomic_bool failed;
	pthread_mutex_t lock;
	ib_error_t err; /* the first failure */
};

/* Runs from this size on are hashed through mappings, but only in a file
 * nobody else can truncate (the image being written, an unnamed file): a tree
 * file truncated while mapped would raise SIGBUS and kill pack. Tree files are
 * read. */
#define MAP_MIN ((off_t)1 << 20)

static int hash_one(struct files_job *j, size_t i, uint8_t *buf, size_t cap, struct ib_sha256 **ctx, ib_error_t *err)
{
	cleanup_fd int fd = openat(j->dirfd, j->paths[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return ib_error_errno(err, errno, "open '%s'", j->paths[i]);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return ib_error_errno(err, errno, "stat '%s'", j->paths[i]);
	if (!S_ISREG(st.st_mode))
		return ib_error_set(err, 0, "'%s' is no longer a regular file", j->paths[i]);
	if (st.st_size > (off_t)cap)
		posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (*ctx == NULL)
		*ctx = ib_sha256_new();
	int64_t total = 0;
	/* Stop at the size fstat gave: saves the read() that returns 0 on every
	 * file (pack writes exactly this many bytes). */
	while (total < st.st_size) {
		ssize_t r = read(fd, buf, cap);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return ib_error_errno(err, errno, "read '%s'", j->paths[i]);
		}
		if (r == 0)
			break;
		ib_sha256_update(*ctx, buf, (size_t)r);
		total += r;
	}
	ib_sha256_final(*ctx, j->digests[i]);
	ib_sha256_free(*ctx);
	*ctx = NULL;
	j->sizes[i] = total;
	return 0;
}

static void files_fail(struct files_job *j, ib_error_t *err)
{
	pthread_mutex_lock(&j->lock);
	if (j->err == NULL)
		j->err = steal_pointer(err);
	pthread_mutex_unlock(&j->lock);
	ib_error_free(err);
	atomic_store(&j->failed, true);
}

/* One file: OpenSSL, one stream (no SHA-NI on this CPU). */
static void *files_main(void *arg)
{
	struct files_job *j = arg;
	size_t cap = 1 << 20;
	cleanup_free uint8_t *buf = xmalloc(cap);
	struct ib_sha256 *ctx = NULL;
	while (!atomic_load(&j->failed)) {
		size_t i = atomic_fetch_add(&j->next, 1);
		if (i >= j->n)
			break;
		ib_error_t err = NULL;
		if (hash_one(j, i, buf, cap, &ctx, &err) < 0) {
			files_fail(j, &err);
			ib_sha256_free(ctx);
			ctx = NULL;
		}
	}
	ib_sha256_free(ctx);
	return NULL;
}

/* Two runs of bytes at a time per thread, their blocks hashed together on
 * the SHA unit (sha256ni.h). A run is SIZE bytes of FD from BASE: a whole
 * file for ib_hash_files, a file's content inside the image for the
 * follower's helper. Each slot holds one run and the bytes of it ready to
 * hash (a read buffer, or a mapping for big runs). */
struct lane_item {
	int fd;
	bool own_fd;
	bool may_map; /* only files nobody else can truncate (the image being written) */
	uint64_t base;
	int64_t size;
	uint8_t *digest;
	int64_t *size_out; /* may be NULL */
	const char *name;
};

struct lane_source {
	/* The next run; false when none is left or on failure (*err set). */
	bool (*next)(struct lane_source *src, struct lane_item *it, ib_error_t *err);
	atomic_bool *stop; /* set by another thread's failure */
};

struct slot {
	struct lane_item it;
	bool active;
	int64_t off;	  /* bytes of the run made ready so far */
	const uint8_t *p; /* ready, not yet hashed */
	size_t avail;
	void *map;
	size_t maplen;
	uint8_t *buf;
	struct ib_sha256_lane lane;
};

static void slot_unmap(struct slot *s)
{
	if (s->map) {
		munmap(s->map, s->maplen);
		s->map = NULL;
	}
}

static void slot_close(struct slot *s)
{
	slot_unmap(s);
	if (s->active && s->it.own_fd && s->it.fd >= 0)
		close(s->it.fd);
	s->active = false;
}

/* Makes the next bytes ready; false once the run is done (or on error). */
static bool slot_fill(struct slot *s, size_t cap, ib_error_t *err)
{
	slot_unmap(s);
	if (s->off >= s->it.size)
		return false;
	uint64_t at = s->it.base + (uint64_t)s->off;
	if (s->it.may_map && s->it.size >= MAP_MIN) {
		uint64_t len = (uint64_t)(s->it.size - s->off) < FOLLOW_WINDOW ? (uint64_t)(s->it.size - s->off) : FOLLOW_WINDOW;
		uint64_t lead = at & (uint64_t)(sysconf(_SC_PAGESIZE) - 1);
		void *m = mmap(NULL, (size_t)(lead + len), PROT_READ, MAP_SHARED | MAP_POPULATE, s->it.fd, (off_t)(at - lead));
		if (m != MAP_FAILED) {
			s->map = m;
			s->maplen = (size_t)(lead + len);
			s->p = (const uint8_t *)m + lead;
			s->avail = (size_t)len;
			s->off += (int64_t)len;
			return true;
		}
	}
	size_t want = (uint64_t)(s->it.size - s->off) < cap ? (size_t)(s->it.size - s->off) : cap;
	for (;;) {
		ssize_t r = pread(s->it.fd, s->buf, want, (off_t)at);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ib_error_errno(err, errno, "read '%s'", s->it.name);
			return false;
		}
		if (r == 0) { /* shrank: its digest and size are what was there */
			s->it.size = s->off;
			return false;
		}
		s->p = s->buf;
		s->avail = (size_t)r;
		s->off += r;
		return true;
	}
}

static void slot_finish(struct slot *s)
{
	ib_sha256_lane_final(&s->lane, s->it.digest);
	if (s->it.size_out)
		*s->it.size_out = s->it.size;
	slot_close(s);
}

static int lanes_run(struct lane_source *src, ib_error_t *err)
{
	size_t cap = 1 << 20;
	struct slot slots[2];
	for (int k = 0; k < 2; k++) {
		memset(&slots[k], 0, sizeof(slots[k]));
		slots[k].buf = xmalloc(cap);
	}
	bool more = true; /* runs left to take */
	while (*err == NULL && !(src->stop && atomic_load(src->stop))) {
		/* Every slot with nothing ready gets bytes, or its next run. */
		for (int k = 0; k < 2 && *err == NULL; k++) {
			struct slot *s = &slots[k];
			while (s->avail == 0 && *err == NULL) {
				if (s->active && slot_fill(s, cap, err))
					break;
				if (s->active && *err == NULL)
					slot_finish(s);
				if (*err || !more)
					break;
				if (!(more = src->next(src, &s->it, err)))
					break;
				s->active = true;
				s->off = 0;
				ib_sha256_lane_init(&s->lane);
			}
		}
		if (*err)
			break;
		struct slot *a = &slots[0], *b = &slots[1];
		size_t both = (a->avail < b->avail ? a->avail : b->avail) & ~(size_t)63;
		if (both > 0 && a->lane.fill == 0 && b->lane.fill == 0) {
			ib_sha256_lane_update2(&a->lane, a->p, &b->lane, b->p, both);
			a->p += both, a->avail -= both;
			b->p += both, b->avail -= both;
		} else if (a->avail || b->avail) {
			/* The shorter alone (a run's last bytes): the other lane
			 * stays block-aligned for the next round together. */
			struct slot *s = !b->avail || (a->avail && a->avail <= b->avail) ? a : b;
			ib_sha256_lane_update(&s->lane, s->p, s->avail);
			s->avail = 0;
		} else {
			break; /* both idle: nothing left */
		}
	}
	for (int k = 0; k < 2; k++) {
		slot_close(&slots[k]);
		free(slots[k].buf);
	}
	return *err ? -1 : 0;
}

struct files_source {
	struct lane_source src;
	struct files_job *j;
};

static bool files_next(struct lane_source *src, struct lane_item *it, ib_error_t *err)
{
	struct files_job *j = ((struct files_source *)src)->j;
	size_t i = atomic_fetch_add(&j->next, 1);
	if (i >= j->n || atomic_load(&j->failed))
		return false;
	*it = (struct lane_item){ .fd = -1, .own_fd = true, .digest = j->digests[i], .size_out = &j->sizes[i], .name = j->paths[i] };
	it->fd = openat(j->dirfd, j->paths[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (it->fd < 0)
		return ib_error_errno(err, errno, "open '%s'", j->paths[i]), false;
	struct stat st;
	if (fstat(it->fd, &st) < 0) {
		int e = errno;
		close(it->fd);
		return ib_error_errno(err, e, "stat '%s'", j->paths[i]), false;
	}
	if (!S_ISREG(st.st_mode)) {
		close(it->fd);
		return ib_error_set(err, 0, "'%s' is no longer a regular file", j->paths[i]), false;
	}
	it->size = st.st_size;
	return true;
}

static void *files_main_ni(void *arg)
{
	struct files_job *j = arg;
	struct files_source fs = { .src = { .next = files_next, .stop = &j->failed }, .j = j };
	ib_error_t err = NULL;
	if (lanes_run(&fs.src, &err) < 0)
		files_fail(j, &err);
	return NULL;
}

int ib_hash_files(int dirfd, const char *const *paths, size_t n, int threads, uint8_t (*digests)[IB_SHA256_LEN], int64_t *sizes,
		  ib_error_t *err)
{
	struct files_job j = { .dirfd = dirfd, .paths = paths, .n = n, .digests = digests, .sizes = sizes };
	atomic_init(&j.next, 0);
	atomic_init(&j.failed, false);
	pthread_mutex_init(&j.lock, NULL);
	if (threads <= 0)
		threads = ib_hash_ncpus();
	if ((size_t)threads > n)
		threads = n ? (int)n : 1;
	void *(*worker)(void *) = ib_sha256ni_available() ? files_main_ni : files_main;
	pthread_t tids[64];
	if (threads > 64)
		threads = 64;
	int started = 0;
	for (int t = 1; t < threads; t++)
		if (pthread_create(&tids[started], NULL, worker, &j) == 0)
			started++;
	worker(&j);
	for (int t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	pthread_mutex_destroy(&j.lock);
	if (j.err) {
		*err = j.err;
		return -1;
	}
	return 0;
}

/* ---- the follower's helper (uses the lanes above) ---- */

struct help_source {
	struct lane_source src;
	struct ib_hash_follow *h;
	size_t next, end;
};

static bool help_next(struct lane_source *src, struct lane_item *it, ib_error_t *err)
{
	struct help_source *hs = (struct help_source *)src;
	if (hs->next == hs->end)
		return false;
	struct extent *e = &hs->h->hs.ext[hs->next++];
	*it = (struct lane_item){
		.fd = hs->h->fd, .may_map = true, .base = e->off, .size = (int64_t)e->len, .digest = e->digest, .name = "the image"
	};
	return true;
}

int ib_hash_follow_help(struct ib_hash_follow *h, ib_error_t *err)
{
	pthread_mutex_lock(&h->lock);
	size_t end = h->hs.n_ext;
	pthread_mutex_unlock(&h->lock);
	/* From the last extent back to the one the thread has begun. */
	size_t first = end;
	while (first > 0) {
		int free_ext = EXT_FREE;
		if (!atomic_compare_exchange_strong(&h->hs.ext[first - 1].owner, &free_ext, EXT_HELPER))
			break;
		first--;
	}
	if (ib_sha256ni_available()) {
		struct help_source hs = { .src = { .next = help_next }, .h = h, .next = first, .end = end };
		return lanes_run(&hs.src, err);
	}
	/* No SHA-NI: one OpenSSL stream at a time, read into a buffer. */
	size_t cap = 1 << 20;
	cleanup_free uint8_t *buf = xmalloc(cap);
	for (size_t i = first; i < end; i++) {
		struct extent *e = &h->hs.ext[i];
		cleanup_sha256 struct ib_sha256 *sha = ib_sha256_new();
		for (uint64_t off = e->off; off < e->off + e->len;) {
			size_t want = e->off + e->len - off < cap ? (size_t)(e->off + e->len - off) : cap;
			ssize_t r = pread(h->fd, buf, want, (off_t)off);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return ib_error_errno(err, r < 0 ? errno : EIO, "read back the output");
			ib_sha256_update(sha, buf, (size_t)r);
			off += (uint64_t)r;
		}
		ib_sha256_final(sha, e->digest);
	}
	return 0;
}
