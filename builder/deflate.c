/* Parallel deterministic gzip on zlib: see deflate.h for the scheme. */
#include "deflate.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <zlib.h>

#include "hash.h"
#include "util.h"

#define DICT ((size_t)32 << 10) /* deflate's window: what a match may reach back */

enum job_state { JOB_FREE, JOB_FILLING, JOB_READY, JOB_BUSY, JOB_DONE };

struct job {
	enum job_state state;
	uint8_t *in; /* DICT bytes of dictionary room, then the block */
	size_t dict_len, len;
	bool last;
	uint8_t *out;
	size_t out_len, out_cap;
	uint32_t crc;
	int zerr; /* zlib's code when deflate failed, else Z_OK */
};

struct ib_gzip {
	ib_gzip_sink_fn sink;
	void *ctx;
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	struct job *jobs;
	size_t n_jobs;
	uint64_t submitted, taken, emitted; /* job sequence numbers; job k is jobs[k % n_jobs] */
	struct job *cur;		    /* being filled by the caller, not yet submitted */
	bool stop, header_sent, finished;
	pthread_t *tids;
	int n_threads;
	uint32_t crc;
	uint64_t total;
};

/* Room for a block's deflate output: zlib's own bound for a stream, plus the
 * sync flush's empty stored block and a margin. */
static size_t out_bound(size_t len)
{
	return len + (len >> 12) + (len >> 14) + (len >> 25) + 13 + 64;
}

static void compress_job(z_stream *zs, struct job *j)
{
	j->zerr = Z_OK;
	j->crc = (uint32_t)crc32(0L, j->in + DICT, (uInt)j->len);
	if (deflateReset(zs) != Z_OK) {
		j->zerr = Z_STREAM_ERROR;
		return;
	}
	if (j->dict_len && deflateSetDictionary(zs, j->in + DICT - j->dict_len, (uInt)j->dict_len) != Z_OK) {
		j->zerr = Z_STREAM_ERROR;
		return;
	}
	zs->next_in = j->in + DICT;
	zs->avail_in = (uInt)j->len;
	j->out_len = 0;
	int flush = j->last ? Z_FINISH : Z_SYNC_FLUSH;
	for (;;) {
		if (j->out_cap - j->out_len < 64) {
			j->out_cap *= 2;
			j->out = xrealloc(j->out, j->out_cap);
		}
		zs->next_out = j->out + j->out_len;
		zs->avail_out = (uInt)(j->out_cap - j->out_len);
		int rc = deflate(zs, flush);
		j->out_len = j->out_cap - zs->avail_out;
		if (rc == Z_STREAM_END)
			return;
		if (rc != Z_OK && rc != Z_BUF_ERROR) {
			j->zerr = rc;
			return;
		}
		/* A sync flush is complete when deflate left output room unused. */
		if (flush == Z_SYNC_FLUSH && zs->avail_in == 0 && zs->avail_out != 0)
			return;
	}
}

static void *worker_main(void *arg)
{
	struct ib_gzip *g = arg;
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	/* Raw deflate (-15): the gzip header and trailer are written once, here. */
	int init = deflateInit2(&zs, IB_GZIP_LEVEL, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
	pthread_mutex_lock(&g->mu);
	for (;;) {
		while (!g->stop && g->taken == g->submitted)
			pthread_cond_wait(&g->work, &g->mu);
		if (g->stop)
			break;
		struct job *j = &g->jobs[g->taken++ % g->n_jobs];
		j->state = JOB_BUSY;
		pthread_mutex_unlock(&g->mu);
		if (init == Z_OK)
			compress_job(&zs, j);
		else
			j->zerr = init;
		pthread_mutex_lock(&g->mu);
		j->state = JOB_DONE;
		pthread_cond_broadcast(&g->done);
	}
	pthread_mutex_unlock(&g->mu);
	if (init == Z_OK)
		deflateEnd(&zs);
	return NULL;
}

struct ib_gzip *ib_gzip_new(int threads, ib_gzip_sink_fn sink, void *ctx)
{
	struct ib_gzip *g = xcalloc(1, sizeof(*g));
	g->sink = sink;
	g->ctx = ctx;
	g->n_threads = threads > 0 ? threads : ib_hash_ncpus();
	if (g->n_threads > 64)
		g->n_threads = 64;
	/* Two blocks per thread in flight keeps every thread busy while the
	 * caller fills the next and writes out the oldest. */
	g->n_jobs = (size_t)g->n_threads * 2 + 2;
	g->jobs = xcalloc(g->n_jobs, sizeof(*g->jobs));
	for (size_t i = 0; i < g->n_jobs; i++) {
		g->jobs[i].in = xmalloc(DICT + IB_GZIP_BLOCK);
		g->jobs[i].out_cap = out_bound(IB_GZIP_BLOCK);
		g->jobs[i].out = xmalloc(g->jobs[i].out_cap);
	}
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->work, NULL);
	pthread_cond_init(&g->done, NULL);
	g->crc = (uint32_t)crc32(0L, Z_NULL, 0);
	g->tids = xcalloc((size_t)g->n_threads, sizeof(*g->tids));
	for (int i = 0; i < g->n_threads; i++)
		if (pthread_create(&g->tids[i], NULL, worker_main, g) != 0)
			ib_die_oom();
	return g;
}

static int send_header(struct ib_gzip *g, ib_error_t *err)
{
	if (g->header_sent)
		return 0;
	/* ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=3 (Unix): no name, no time. */
	static const uint8_t hdr[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3 };
	g->header_sent = true;
	return g->sink(g->ctx, hdr, sizeof(hdr), err);
}

/* Writes out the oldest job once it is done; 0 when nothing was waiting. */
static int emit_oldest(struct ib_gzip *g, ib_error_t *err)
{
	if (g->emitted == g->submitted)
		return 0;
	struct job *j = &g->jobs[g->emitted % g->n_jobs];
	pthread_mutex_lock(&g->mu);
	while (j->state != JOB_DONE)
		pthread_cond_wait(&g->done, &g->mu);
	pthread_mutex_unlock(&g->mu);
	if (j->zerr != Z_OK)
		return ib_error_set(err, 0, "gzip: deflate failed (zlib error %d)", j->zerr);
	if (send_header(g, err) < 0 || g->sink(g->ctx, j->out, j->out_len, err) < 0)
		return -1;
	g->crc = (uint32_t)crc32_combine(g->crc, j->crc, (z_off_t)j->len);
	j->state = JOB_FREE;
	g->emitted++;
	return 1;
}

static bool oldest_done(struct ib_gzip *g)
{
	if (g->emitted == g->submitted)
		return false;
	pthread_mutex_lock(&g->mu);
	bool done = g->jobs[g->emitted % g->n_jobs].state == JOB_DONE;
	pthread_mutex_unlock(&g->mu);
	return done;
}

static void submit(struct ib_gzip *g, bool last)
{
	struct job *j = g->cur;
	j->last = last;
	pthread_mutex_lock(&g->mu);
	j->state = JOB_READY;
	g->submitted++;
	pthread_cond_signal(&g->work);
	pthread_mutex_unlock(&g->mu);
	g->cur = NULL;
}

/* The next job to fill, its dictionary the last DICT bytes of the input so
 * far (which the previous job, still in the ring, holds). */
static int start_job(struct ib_gzip *g, ib_error_t *err)
{
	while (g->submitted - g->emitted >= g->n_jobs)
		if (emit_oldest(g, err) < 0)
			return -1;
	struct job *j = &g->jobs[g->submitted % g->n_jobs];
	j->dict_len = 0;
	if (g->submitted > 0) {
		const struct job *prev = &g->jobs[(g->submitted - 1) % g->n_jobs];
		size_t have = prev->dict_len + prev->len;
		size_t n = have < DICT ? have : DICT;
		memcpy(j->in + DICT - n, prev->in + DICT + prev->len - n, n);
		j->dict_len = n;
	}
	j->len = 0;
	j->state = JOB_FILLING;
	g->cur = j;
	return 0;
}

int ib_gzip_write(struct ib_gzip *g, const void *buf, size_t len, ib_error_t *err)
{
	const uint8_t *p = buf;
	while (len > 0) {
		if (g->cur == NULL && start_job(g, err) < 0)
			return -1;
		struct job *j = g->cur;
		if (j->len == IB_GZIP_BLOCK) {
			/* Full, and more input follows: so not the last block. */
			submit(g, false);
			/* Write out whatever is done without waiting. */
			while (oldest_done(g))
				if (emit_oldest(g, err) < 0)
					return -1;
			continue;
		}
		size_t n = IB_GZIP_BLOCK - j->len;
		if (n > len)
			n = len;
		memcpy(j->in + DICT + j->len, p, n);
		j->len += n;
		g->total += n;
		p += n;
		len -= n;
	}
	return 0;
}

int ib_gzip_finish(struct ib_gzip *g, uint64_t *in, ib_error_t *err)
{
	if (g->finished)
		return ib_error_set(err, 0, "gzip: finished twice");
	if (g->cur == NULL && start_job(g, err) < 0)
		return -1;
	submit(g, true);
	int r;
	while ((r = emit_oldest(g, err)) > 0)
		;
	if (r < 0 || send_header(g, err) < 0)
		return -1;
	uint8_t trailer[8];
	uint32_t isize = (uint32_t)g->total; /* RFC 1952: the size modulo 2^32 */
	for (int i = 0; i < 4; i++) {
		trailer[i] = (uint8_t)(g->crc >> (8 * i));
		trailer[4 + i] = (uint8_t)(isize >> (8 * i));
	}
	if (g->sink(g->ctx, trailer, sizeof(trailer), err) < 0)
		return -1;
	g->finished = true;
	if (in)
		*in = g->total;
	return 0;
}

void ib_gzip_free(struct ib_gzip *g)
{
	if (g == NULL)
		return;
	pthread_mutex_lock(&g->mu);
	g->stop = true;
	pthread_cond_broadcast(&g->work);
	pthread_mutex_unlock(&g->mu);
	for (int i = 0; i < g->n_threads; i++)
		pthread_join(g->tids[i], NULL);
	for (size_t i = 0; i < g->n_jobs; i++) {
		free(g->jobs[i].in);
		free(g->jobs[i].out);
	}
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->work);
	pthread_cond_destroy(&g->done);
	free(g->jobs);
	free(g->tids);
	free(g);
}

void ib_gzip_cleanup(struct ib_gzip **g)
{
	ib_gzip_free(*g);
}
