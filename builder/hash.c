#include "hash.h"
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

/* A ring of blocks between one producer and the worker threads: one hashes
 * the blocks in order; when there is an output file, writers pwrite() them
 * at their offsets, in any order. A block is free again once hashed and
 * written. Two writers: on this kind of VM the copy into fresh page-cache
 * pages (host faults on first touch) costs more than the SHA-256 itself, and
 * two vCPUs fault in parallel.
 * For zero-copy readers (_get/_put from a libarchive read callback) a block
 * stays untouched until N_BLOCKS-1 more were handed over: libarchive may keep
 * pointing into the block it got last. */
#define N_WRITERS 2

struct block {
	uint8_t *data;
	size_t len;
	uint64_t off;	/* in the output */
	int pending;	/* hash and write still to do */
};

struct ib_hash_pipe {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t hasher, writers[N_WRITERS];
	int n_writers;
	bool closing;
	int out_fd;
	size_t block_size;
	int n;
	struct block *ring;
	uint64_t produced, hashed, write_next;
	uint64_t offset;	/* output bytes handed over */
	size_t fill;		/* bytes in the block being filled by _write */
	bool filling;
	int write_errno;	/* the writers' error, or the reader's */
	struct ib_sha256 *sha;
	/* Reader mode (_new_reader): the thread reads, hashes, then hands over. */
	bool reader, eof, stop;
	int in_fd;
	uint64_t consumed;
};

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
		size_t got = 0;
		int rerr = 0;
		bool eof = false;
		while (got < p->block_size) {
			ssize_t r = read(p->in_fd, b->data + got, p->block_size - got);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				rerr = errno;
				break;
			}
			if (r == 0) {
				eof = true;
				break;
			}
			got += (size_t)r;
		}
		if (got)
			ib_sha256_update(p->sha, b->data, got);
		pthread_mutex_lock(&p->lock);
		b->len = got;
		p->offset += got;
		if (got)
			p->produced++;
		if (rerr)
			p->write_errno = rerr;
		if (rerr || eof)
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
	p->out_fd = -1;
	p->in_fd = in_fd;
	p->reader = true;
	p->block_size = block_size;
	p->n = n_blocks < 5 ? 5 : n_blocks;
	p->ring = xcalloc((size_t)p->n, sizeof(*p->ring));
	for (int i = 0; i < p->n; i++)
		p->ring[i].data = xmalloc(block_size);
	p->sha = ib_sha256_new();
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
		int e = p->write_errno;
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
		ib_sha256_update(p->sha, b->data, b->len);
		pthread_mutex_lock(&p->lock);
		b->pending--;
		p->hashed++;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void *writer_main(void *arg)
{
	struct ib_hash_pipe *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->write_next == p->produced && !p->closing)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->write_next == p->produced)
			break;
		struct block *b = &p->ring[p->write_next % (uint64_t)p->n];
		p->write_next++;
		bool skip = p->write_errno != 0;
		pthread_mutex_unlock(&p->lock);
		int werr = 0;
		const uint8_t *q = b->data;
		size_t left = skip ? 0 : b->len;
		uint64_t off = b->off;
		while (left > 0) {
			ssize_t w = pwrite(p->out_fd, q, left, (off_t)off);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				werr = errno;
				break;
			}
			q += w;
			off += (uint64_t)w;
			left -= (size_t)w;
		}
		pthread_mutex_lock(&p->lock);
		if (werr && p->write_errno == 0)
			p->write_errno = werr;
		b->pending--;
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct ib_hash_pipe *ib_hash_pipe_new(int out_fd, size_t block_size, int n_blocks)
{
	struct ib_hash_pipe *p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->out_fd = out_fd;
	p->block_size = block_size;
	p->n = n_blocks < 3 ? 3 : n_blocks;
	p->ring = xcalloc((size_t)p->n, sizeof(*p->ring));
	for (int i = 0; i < p->n; i++)
		p->ring[i].data = xmalloc(block_size);
	p->sha = ib_sha256_new();
	if (pthread_create(&p->hasher, NULL, hasher_main, p) != 0)
		ib_die_oom();
	if (out_fd >= 0)
		for (int i = 0; i < N_WRITERS; i++)
			if (pthread_create(&p->writers[p->n_writers], NULL, writer_main, p) == 0)
				p->n_writers++;
	if (out_fd >= 0 && p->n_writers == 0)
		ib_die_oom();
	return p;
}

void *ib_hash_pipe_get(struct ib_hash_pipe *p, size_t *cap)
{
	pthread_mutex_lock(&p->lock);
	struct block *b = &p->ring[p->produced % (uint64_t)p->n];
	while (p->produced - p->hashed >= (uint64_t)(p->n - 1) || b->pending > 0)
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
	b->off = p->offset;
	b->pending = p->out_fd >= 0 ? 2 : 1;
	p->offset += len;
	p->produced++;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static int pipe_errno(struct ib_hash_pipe *p)
{
	pthread_mutex_lock(&p->lock);
	int e = p->write_errno;
	pthread_mutex_unlock(&p->lock);
	return e;
}

int ib_hash_pipe_write(struct ib_hash_pipe *p, const void *buf, size_t len, ib_error_t *err)
{
	const uint8_t *src = buf;
	while (len > 0) {
		size_t cap;
		if (!p->filling) {
			int e = pipe_errno(p);
			if (e)
				return ib_error_errno(err, e, "write");
			(void)ib_hash_pipe_get(p, &cap);
			p->filling = true;
			p->fill = 0;
		}
		uint8_t *dst = p->ring[p->produced % (uint64_t)p->n].data;
		size_t take = p->block_size - p->fill;
		if (take > len)
			take = len;
		memcpy(dst + p->fill, src, take);
		p->fill += take;
		src += take;
		len -= take;
		if (p->fill == p->block_size) {
			p->filling = false;
			ib_hash_pipe_put(p, p->fill);
		}
	}
	return 0;
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
	for (int i = 0; i < p->n_writers; i++)
		pthread_join(p->writers[i], NULL);
}

int ib_hash_pipe_finish(struct ib_hash_pipe *p, uint8_t digest[IB_SHA256_LEN], uint64_t *total, ib_error_t *err)
{
	if (p->filling) {
		p->filling = false;
		ib_hash_pipe_put(p, p->fill);
	}
	pipe_stop(p);
	if (p->write_errno)
		return ib_error_errno(err, p->write_errno, p->reader ? "read" : "write");
	ib_sha256_final(p->sha, digest);
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
	ib_sha256_free(p->sha);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

void ib_hash_pipe_cleanup(struct ib_hash_pipe **p)
{
	ib_hash_pipe_free(*p);
}

/* ---- the follower ---- */

struct ib_hash_follow {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool running, done, abandon;
	int fd;
	uint64_t avail, hashed;
	int err_no;
	struct ib_sha256 *sha;
};

/* At most this much mapped at once: a window is mapped with MAP_POPULATE (one
 * call fills its page tables from the page cache, instead of a fault per
 * 64 KiB of fault-around), hashed, unmapped. Against pread into a buffer this
 * saves the copy, ~0.1 s of CPU per GB here. */
#define FOLLOW_WINDOW ((uint64_t)8 << 20)

static int hash_range(struct ib_sha256 *sha, int fd, uint64_t from, uint64_t to, uint8_t **buf)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t mapoff = from & ~(uint64_t)(page - 1);
	size_t maplen = (size_t)(to - mapoff);
	void *m = mmap(NULL, maplen, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t)mapoff);
	if (m != MAP_FAILED) {
		ib_sha256_update(sha, (const uint8_t *)m + (from - mapoff), (size_t)(to - from));
		munmap(m, maplen);
		return 0;
	}
	/* A file system without mmap: read it. */
	if (*buf == NULL)
		*buf = xmalloc(FOLLOW_WINDOW);
	while (from < to) {
		ssize_t r = pread(fd, *buf, (size_t)(to - from), (off_t)from);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? errno : EIO;
		ib_sha256_update(sha, *buf, (size_t)r);
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
		pthread_mutex_unlock(&h->lock);
		if (to - from > FOLLOW_WINDOW)
			to = from + FOLLOW_WINDOW;
		int e = hash_range(h->sha, h->fd, from, to, &buf);
		pthread_mutex_lock(&h->lock);
		if (e) {
			h->err_no = e;
			break;
		}
		h->hashed = to;
	}
	pthread_mutex_unlock(&h->lock);
	free(buf);
	return NULL;
}

struct ib_hash_follow *ib_hash_follow_new(int fd)
{
	struct ib_hash_follow *h = xcalloc(1, sizeof(*h));
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	h->fd = fd;
	h->sha = ib_sha256_new();
	if (pthread_create(&h->thread, NULL, follow_main, h) != 0)
		ib_die_oom();
	h->running = true;
	return h;
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
	ib_sha256_final(h->sha, digest);
	return 0;
}

void ib_hash_follow_free(struct ib_hash_follow *h)
{
	if (h == NULL)
		return;
	follow_stop(h, true);
	ib_sha256_free(h->sha);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
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
	ib_error_t err;	/* the first failure */
};

/* Files from this size on are hashed through mappings. A file truncated
 * while mapped would raise SIGBUS; pack's trees are not being written to
 * (pack.c), and small files, the ones that change under a live system
 * (logs), are read. */
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
	if (st.st_size >= MAP_MIN) {
		/* Big files through mappings, no copy (see FOLLOW_WINDOW). */
		uint8_t *unused = NULL;
		for (uint64_t off = 0; off < (uint64_t)st.st_size;) {
			uint64_t to = (uint64_t)st.st_size - off > FOLLOW_WINDOW ? off + FOLLOW_WINDOW : (uint64_t)st.st_size;
			int e = hash_range(*ctx, fd, off, to, &unused);
			if (e) {
				free(unused);
				return ib_error_errno(err, e, "read '%s'", j->paths[i]);
			}
			off = to;
		}
		free(unused);
		total = st.st_size;
	}
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
			pthread_mutex_lock(&j->lock);
			if (j->err == NULL)
				j->err = steal_pointer(&err);
			pthread_mutex_unlock(&j->lock);
			ib_error_free(&err);
			atomic_store(&j->failed, true);
			ib_sha256_free(ctx);
			ctx = NULL;
		}
	}
	ib_sha256_free(ctx);
	return NULL;
}

int ib_hash_files(int dirfd, const char *const *paths, size_t n, int threads, uint8_t (*digests)[IB_SHA256_LEN],
		  int64_t *sizes, ib_error_t *err)
{
	struct files_job j = { .dirfd = dirfd, .paths = paths, .n = n, .digests = digests, .sizes = sizes };
	atomic_init(&j.next, 0);
	atomic_init(&j.failed, false);
	pthread_mutex_init(&j.lock, NULL);
	if (threads <= 0)
		threads = ib_hash_ncpus();
	if ((size_t)threads > n)
		threads = n ? (int)n : 1;
	pthread_t tids[64];
	if (threads > 64)
		threads = 64;
	int started = 0;
	for (int t = 1; t < threads; t++)
		if (pthread_create(&tids[started], NULL, files_main, &j) == 0)
			started++;
	files_main(&j);
	for (int t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	pthread_mutex_destroy(&j.lock);
	if (j.err) {
		*err = j.err;
		return -1;
	}
	return 0;
}
