#include "hash.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
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
	int write_errno;
	struct ib_sha256 *sha;
};

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
		return ib_error_errno(err, p->write_errno, "write");
	ib_sha256_final(p->sha, digest);
	if (total)
		*total = p->offset;
	return 0;
}

void ib_hash_pipe_free(struct ib_hash_pipe *p)
{
	if (p == NULL)
		return;
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
