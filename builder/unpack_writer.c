#include "unpack_writer.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* 4 MiB of queued content (two huge pages: a first touch of each 4 KiB page
 * is a costly fault in this VM) and 1,024 files; a file the queue cannot hold
 * is simply written by the caller. */
#define QUEUE_BYTES (4u << 20)
#define QUEUE_FILES 1024u
/* The thread sleeps when the queue is empty and is woken only once this many
 * files wait (or by a drain): waking it for every file cost more switching
 * than the file itself. */
#define WAKE_AT 32u
#define NO_FAILURE UINT64_MAX

struct queued {
	uint64_t end; /* where it ends in the byte ring (counted from the first byte ever queued) */
	size_t path_off, content_off;
	int64_t size, uid, gid, mtime;
	mode_t mode;
};

struct ib_unpack_writer {
	int into;
	bool keep_owners;
	mode_t umask;
	struct timespec started; /* the files' access time, as libarchive sets it */
	uint8_t *bytes;
	struct queued q[QUEUE_FILES];
	pthread_t thread;
	/* The queue itself needs no lock: the caller alone writes COMMITTED (and
	 * the entries below it); a file is taken by moving CLAIMED past it
	 * (compare-and-swap: the thread, and the caller in a drain, take from
	 * the same queue) and counted in DONE once on disk; each counter is
	 * published after what it covers. With a lock taken twice per file by
	 * each side, the two threads met on it ~850 times per minbase image, and
	 * each meeting is a futex call and a wake-up, which this VM makes costly
	 * (docs/performance.md, section 13). The lock and the conditions are
	 * only for sleeping: the thread when the queue is empty, the caller at
	 * the end of a drain. SLEEPING and DRAINING are each set before the
	 * sleeper's last look at the other side's counter, and the counters are
	 * stored before the other side looks at them, all sequentially
	 * consistent: either the sleeper sees the new count or the other side
	 * sees it asleep and signals under the lock. The lock also guards
	 * ERROR. */
	pthread_mutex_t lock;
	pthread_cond_t work, done_cond;
	_Atomic uint64_t committed, claimed, done; /* files */
	/* Freed up to: stored by the thread after each file, in order while it
	 * is the only taker; a drain, where files finish out of order, sets it
	 * to HEAD_BYTES once every file is done, and the caller reserves nothing
	 * in between. */
	_Atomic uint64_t tail_bytes;
	atomic_bool sleeping, draining, stop;
	/* The failing file first in the queue (NO_FAILURE: none), and its
	 * error: a file after it is not started, one before it still is, so
	 * the outcome does not depend on which taker got there first. */
	_Atomic uint64_t failed_at;
	char *error;
	atomic_size_t written; /* by the thread or a drain */
	/* Only the caller's thread: */
	uint64_t head_bytes; /* reserved up to */
	bool reserved;
	struct queued pending;
};

/* Below INTO only, no symlink anywhere on the way (the entry checks already
 * refuse every path through one; this is the kernel saying so too). */
static int create_beneath(int into, const char *path, mode_t mode)
{
	int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY;
	int fd = ib_openat2(into, path, flags, mode, IB_RESOLVE_BENEATH | IB_RESOLVE_NO_SYMLINKS | IB_RESOLVE_NO_MAGICLINKS);
	return fd >= 0 || errno != ENOSYS ? fd : openat(into, path, flags, mode);
}

/* 0, or -1 with errno and *WHAT naming the step that failed. */
static int write_one(struct ib_unpack_writer *w, const struct queued *f, const char **what)
{
	const char *path = (const char *)w->bytes + f->path_off;
	mode_t perm = f->mode & 0777;
	*what = "create";
	cleanup_fd int fd = create_beneath(w->into, path, perm);
	if (fd < 0)
		return -1;
	*what = "write";
	if (!ib_write_all(fd, w->bytes + f->content_off, (size_t)f->size))
		return -1;
	/* A new file is the creator's, or has its folder's group where that
	 * folder is set-group-ID: a stat says which, and costs less than a
	 * chown that changes nothing but still dirties the inode. */
	*what = "chown";
	struct stat st;
	if (w->keep_owners && (fstat(fd, &st) < 0 || st.st_uid != (uid_t)f->uid || st.st_gid != (gid_t)f->gid) &&
	    fchown(fd, (uid_t)f->uid, (gid_t)f->gid) < 0)
		return -1;
	/* The umask took bits the entry has (no set-id bits here, so a chown
	 * cleared nothing). */
	*what = "chmod";
	if ((perm & w->umask) != 0 && fchmod(fd, perm) < 0)
		return -1;
	*what = "set the times of";
	struct timespec t[2] = { w->started, { .tv_sec = (time_t)f->mtime, .tv_nsec = 0 } };
	if (futimens(fd, t) < 0)
		return -1;
	*what = "close";
	int c = fd;
	fd = -1;
	return close(c);
}

/* The next committed file nobody has taken yet, for the caller of this. */
static bool claim(struct ib_unpack_writer *w, uint64_t *idx)
{
	uint64_t c = atomic_load(&w->claimed);
	while (c != atomic_load(&w->committed))
		if (atomic_compare_exchange_weak(&w->claimed, &c, c + 1)) {
			*idx = c;
			return true;
		}
	return false;
}

/* Writes file IDX (or skips it, after an earlier file failed). */
static void write_claimed(struct ib_unpack_writer *w, uint64_t idx)
{
	const struct queued *f = &w->q[idx % QUEUE_FILES];
	if (idx > atomic_load(&w->failed_at))
		return;
	const char *what = NULL;
	if (write_one(w, f, &what) == 0) {
		atomic_fetch_add(&w->written, 1);
		return;
	}
	char *msg = xasprintf("%s '%s': %s", what, (const char *)w->bytes + f->path_off, strerror(errno));
	pthread_mutex_lock(&w->lock);
	if (idx < atomic_load(&w->failed_at)) {
		free(w->error);
		w->error = steal_pointer(&msg);
		atomic_store(&w->failed_at, idx);
	}
	pthread_mutex_unlock(&w->lock);
	free(msg);
}

static bool failed(struct ib_unpack_writer *w)
{
	return atomic_load(&w->failed_at) != NO_FAILURE;
}

/* Sleeps until a file is committed; false when stopped with nothing left. */
static bool wait_for_work(struct ib_unpack_writer *w)
{
	pthread_mutex_lock(&w->lock);
	atomic_store(&w->sleeping, true);
	while (atomic_load(&w->committed) == atomic_load(&w->claimed) && !atomic_load(&w->stop))
		pthread_cond_wait(&w->work, &w->lock);
	atomic_store(&w->sleeping, false);
	bool more = atomic_load(&w->committed) != atomic_load(&w->claimed);
	pthread_mutex_unlock(&w->lock);
	return more || !atomic_load(&w->stop);
}

static void *run(void *arg)
{
	struct ib_unpack_writer *w = arg;
	/* Background work: the caller's thread and the scan's (which the caller
	 * waits for) come first on the two cores; a queue left full only means
	 * the caller writes the next file itself. */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
	for (;;) {
		uint64_t idx;
		if (!claim(w, &idx)) {
			if (!wait_for_work(w))
				break;
			continue;
		}
		write_claimed(w, idx);
		atomic_store(&w->tail_bytes, w->q[idx % QUEUE_FILES].end);
		uint64_t done = atomic_fetch_add(&w->done, 1) + 1;
		/* A drain waits only for the last file. */
		if (atomic_load(&w->draining) && done == atomic_load(&w->committed)) {
			pthread_mutex_lock(&w->lock);
			pthread_cond_signal(&w->done_cond);
			pthread_mutex_unlock(&w->lock);
		}
	}
	return NULL;
}

struct ib_unpack_writer *ib_unpack_writer_new(int into, bool keep_owners)
{
	struct ib_unpack_writer *w = xcalloc(1, sizeof(*w));
	w->into = into;
	w->keep_owners = keep_owners;
	w->umask = umask(0);
	umask(w->umask);
	clock_gettime(CLOCK_REALTIME, &w->started);
	w->started.tv_nsec = 0;
	w->bytes = ib_big_alloc(QUEUE_BYTES);
	atomic_init(&w->failed_at, NO_FAILURE);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->work, NULL);
	pthread_cond_init(&w->done_cond, NULL);
	if (pthread_create(&w->thread, NULL, run, w) != 0) {
		pthread_cond_destroy(&w->done_cond);
		pthread_cond_destroy(&w->work);
		pthread_mutex_destroy(&w->lock);
		ib_big_free(w->bytes, QUEUE_BYTES);
		free(w);
		return NULL;
	}
	return w;
}

static void wake(struct ib_unpack_writer *w)
{
	pthread_mutex_lock(&w->lock);
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->lock);
}

static uint64_t align8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

void *ib_unpack_writer_reserve(struct ib_unpack_writer *w, const struct ib_tar_entry *e, const char *path)
{
	if (w == NULL || e->type != IB_ENTRY_FILE || e->size > IB_UNPACK_WRITER_MAX || e->n_xattrs > 0 || (e->mode & 07000) != 0)
		return NULL;
	size_t path_len = strlen(path) + 1;
	uint64_t need = align8(path_len) + align8((uint64_t)e->size);
	uint64_t tail = atomic_load(&w->tail_bytes);
	/* Full means at least WAKE_AT files wait (63 of the largest fill the
	 * bytes), so the thread is awake. */
	bool full = atomic_load(&w->committed) - atomic_load(&w->done) >= QUEUE_FILES || failed(w);
	if (full)
		return NULL;
	/* One piece in the ring: skip to its start when the end is too near. */
	uint64_t start = w->head_bytes;
	uint64_t at = start % QUEUE_BYTES;
	if (at + need > QUEUE_BYTES)
		start += QUEUE_BYTES - at;
	if (start + need - tail > QUEUE_BYTES)
		return NULL;
	size_t off = (size_t)(start % QUEUE_BYTES);
	memcpy(w->bytes + off, path, path_len);
	w->pending = (struct queued){ .end = start + need,
				      .path_off = off,
				      .content_off = off + (size_t)align8(path_len),
				      .size = e->size,
				      .uid = e->uid,
				      .gid = e->gid,
				      .mtime = e->mtime,
				      .mode = e->mode };
	w->reserved = true;
	return w->bytes + w->pending.content_off;
}

void ib_unpack_writer_commit(struct ib_unpack_writer *w)
{
	if (!w->reserved)
		return;
	w->reserved = false;
	w->head_bytes = w->pending.end;
	uint64_t committed = atomic_load_explicit(&w->committed, memory_order_relaxed);
	w->q[committed % QUEUE_FILES] = w->pending;
	atomic_store(&w->committed, ++committed);
	if (atomic_load(&w->sleeping) && committed - atomic_load(&w->claimed) >= WAKE_AT)
		wake(w);
}

void ib_unpack_writer_cancel(struct ib_unpack_writer *w)
{
	w->reserved = false;
}

int ib_unpack_writer_drain(struct ib_unpack_writer *w, ib_error_t *err)
{
	if (w == NULL)
		return 0;
	uint64_t committed = atomic_load_explicit(&w->committed, memory_order_relaxed);
	if (atomic_load(&w->done) != committed) {
		/* Both take from the queue: at the end of an unpack the thread
		 * (at nice 10) had ~20 ms of files left, and this thread only
		 * waited. */
		if (atomic_load(&w->sleeping))
			wake(w);
		uint64_t idx;
		while (claim(w, &idx)) {
			write_claimed(w, idx);
			atomic_fetch_add(&w->done, 1);
		}
		pthread_mutex_lock(&w->lock);
		atomic_store(&w->draining, true);
		while (atomic_load(&w->done) != committed)
			pthread_cond_wait(&w->done_cond, &w->lock);
		atomic_store(&w->draining, false);
		pthread_mutex_unlock(&w->lock);
	}
	atomic_store(&w->tail_bytes, w->head_bytes);
	if (!failed(w))
		return 0;
	pthread_mutex_lock(&w->lock);
	int rc = ib_error_set(err, 0, "%s", w->error);
	pthread_mutex_unlock(&w->lock);
	return rc;
}

size_t ib_unpack_writer_files(const struct ib_unpack_writer *w)
{
	return w ? atomic_load(&w->written) : 0;
}

void ib_unpack_writer_free(struct ib_unpack_writer *w)
{
	if (w == NULL)
		return;
	atomic_store(&w->stop, true);
	wake(w);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->done_cond);
	pthread_cond_destroy(&w->work);
	pthread_mutex_destroy(&w->lock);
	free(w->error);
	ib_big_free(w->bytes, QUEUE_BYTES);
	free(w);
}

void ib_unpack_writer_cleanup(struct ib_unpack_writer **w)
{
	ib_unpack_writer_free(*w);
}
