#include "uring.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Files per submission. Three requests each; the ring has room for a whole
 * batch, so nothing waits for space. 32 and 64 measured the same (23-24 ms
 * for the minbase's 6,494 small files); 256 with earlier submissions did not
 * help either (docs/performance.md, section 11). */
#define BATCH 64
#define RING_ENTRIES 256

enum { OP_OPEN, OP_READ, OP_CLOSE };

struct queued {
	int dirfd;
	const char *path;
	void *buf;
	size_t len;
	int open_res, read_res;
};

struct ib_uring_reads {
	int fd;
	void *rings;
	size_t rings_len;
	void *cq_map; /* only when the kernel maps the rings apart */
	size_t cq_map_len;
	struct io_uring_sqe *sqes;
	size_t sqes_len;
	unsigned *sq_tail, *sq_mask;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
	unsigned tail;	  /* ours: SQEs filled, published to *sq_tail on submit */
	size_t n;	  /* files queued since the last wait */
	unsigned pending; /* completions still to come */
	struct queued file[BATCH];
};

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
	return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned submit, unsigned complete, unsigned flags)
{
	return (int)syscall(__NR_io_uring_enter, fd, submit, complete, flags, NULL, 0);
}

static int sys_register(int fd, unsigned op, void *arg, unsigned nr)
{
	return (int)syscall(__NR_io_uring_register, fd, op, arg, nr);
}

void ib_uring_reads_free(struct ib_uring_reads *u)
{
	if (u == NULL)
		return;
	if (u->sqes != NULL && u->sqes != MAP_FAILED)
		munmap(u->sqes, u->sqes_len);
	if (u->cq_map != NULL && u->cq_map != MAP_FAILED)
		munmap(u->cq_map, u->cq_map_len);
	if (u->rings != NULL && u->rings != MAP_FAILED)
		munmap(u->rings, u->rings_len);
	if (u->fd >= 0)
		close(u->fd);
	free(u);
}

void ib_uring_reads_cleanup(struct ib_uring_reads **u)
{
	ib_uring_reads_free(*u);
}

static void *map_ring(int fd, size_t len, off_t what)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, what);
}

struct ib_uring_reads *ib_uring_reads_new(void)
{
	struct ib_uring_reads *u = xcalloc(1, sizeof(*u));
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN };
	u->fd = sys_setup(RING_ENTRIES, &p);
	if (u->fd < 0 && errno == EINVAL) { /* before 6.0: without the hints */
		memset(&p, 0, sizeof(p));
		u->fd = sys_setup(RING_ENTRIES, &p);
	}
	if (u->fd < 0)
		goto refused;
	size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	bool one_map = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
	u->rings_len = one_map && cq_len > sq_len ? cq_len : sq_len;
	u->rings = map_ring(u->fd, u->rings_len, IORING_OFF_SQ_RING);
	if (u->rings == MAP_FAILED)
		goto refused;
	uint8_t *cq = u->rings;
	if (!one_map) {
		u->cq_map_len = cq_len;
		u->cq_map = map_ring(u->fd, cq_len, IORING_OFF_CQ_RING);
		if (u->cq_map == MAP_FAILED)
			goto refused;
		cq = u->cq_map;
	}
	u->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
	u->sqes = map_ring(u->fd, u->sqes_len, IORING_OFF_SQES);
	if (u->sqes == MAP_FAILED)
		goto refused;
	uint8_t *sq = u->rings;
	u->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	u->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	unsigned *array = (unsigned *)(sq + p.sq_off.array);
	for (unsigned i = 0; i < p.sq_entries; i++)
		array[i] = i;
	u->cq_head = (unsigned *)(cq + p.cq_off.head);
	u->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	u->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	u->tail = *u->sq_tail;
	/* Open straight into registered slots (5.15; sparse tables 5.19): the
	 * read names the slot, so open, read and close go in one submission. */
	struct io_uring_rsrc_register files = { .nr = BATCH, .flags = IORING_RSRC_REGISTER_SPARSE };
	if (sys_register(u->fd, IORING_REGISTER_FILES2, &files, sizeof(files)) < 0)
		goto refused;
	return u;
refused:
	ib_uring_reads_free(u);
	return NULL;
}

static struct io_uring_sqe *next_sqe(struct ib_uring_reads *u, uint8_t op, size_t file)
{
	struct io_uring_sqe *s = &u->sqes[u->tail++ & *u->sq_mask];
	memset(s, 0, sizeof(*s));
	s->opcode = op;
	s->user_data = (uint64_t)file * 4 + (op == IORING_OP_OPENAT ? OP_OPEN : op == IORING_OP_READ ? OP_READ : OP_CLOSE);
	return s;
}

int ib_uring_reads_add(struct ib_uring_reads *u, int dirfd, const char *path, void *buf, size_t len, ib_error_t *err)
{
	if (u->n == BATCH && ib_uring_reads_wait(u, err) < 0)
		return -1;
	size_t i = u->n++;
	u->file[i] = (struct queued){ .dirfd = dirfd, .path = path, .buf = buf, .len = len };
	/* A failed open cancels the read (a plain link); the close follows the
	 * read whatever it returned (a hard link), so no slot stays taken.
	 * No O_CLOEXEC: a registered slot is no descriptor, and the kernel
	 * refuses the flag for one. */
	struct io_uring_sqe *s = next_sqe(u, IORING_OP_OPENAT, i);
	s->fd = dirfd;
	s->addr = (uintptr_t)path;
	s->open_flags = O_RDONLY | O_NOFOLLOW | O_NOCTTY;
	s->file_index = (unsigned)i + 1;
	s->flags = IOSQE_IO_LINK;
	s = next_sqe(u, IORING_OP_READ, i);
	s->fd = (int)i;
	s->addr = (uintptr_t)buf;
	s->len = (unsigned)len;
	s->off = 0;
	s->flags = IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
	s = next_sqe(u, IORING_OP_CLOSE, i);
	s->file_index = (unsigned)i + 1;
	return 0;
}

static void reap(struct ib_uring_reads *u)
{
	unsigned head = *u->cq_head;
	unsigned tail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
	for (; head != tail; head++) {
		const struct io_uring_cqe *c = &u->cqes[head & *u->cq_mask];
		struct queued *q = &u->file[c->user_data / 4];
		if (c->user_data % 4 == OP_OPEN)
			q->open_res = c->res;
		else if (c->user_data % 4 == OP_READ)
			q->read_res = c->res;
		u->pending--;
	}
	__atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
}

/* io_uring reads a regular file whole unless it ends early, but nothing in
 * its contract promises that: the rest is read the plain way, and only a
 * file that really ends early is an error. */
static int read_rest(const struct queued *q, size_t got, ib_error_t *err)
{
	cleanup_fd int fd = openat(q->dirfd, q->path, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return ib_error_errno(err, errno, "open '%s'", q->path);
	ssize_t rest = ib_pread_full(fd, (uint8_t *)q->buf + got, q->len - got, (off_t)got);
	if (rest < 0)
		return ib_error_errno(err, errno, "read '%s'", q->path);
	if ((size_t)rest < q->len - got)
		return ib_error_set(err, 0, "'%s' shrank while being read", q->path);
	return 0;
}

int ib_uring_reads_wait(struct ib_uring_reads *u, ib_error_t *err)
{
	if (u->n == 0)
		return 0;
	unsigned submit = u->tail - *u->sq_tail;
	u->pending += submit;
	__atomic_store_n(u->sq_tail, u->tail, __ATOMIC_RELEASE);
	while (u->pending > 0) {
		int r = sys_enter(u->fd, submit, u->pending, IORING_ENTER_GETEVENTS);
		if (r < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY)
			return ib_error_errno(err, errno, "io_uring_enter");
		if (r > 0)
			submit -= (unsigned)r < submit ? (unsigned)r : submit;
		reap(u);
	}
	size_t n = u->n;
	u->n = 0;
	for (size_t i = 0; i < n; i++) {
		const struct queued *q = &u->file[i];
		if (q->open_res < 0)
			return ib_error_errno(err, -q->open_res, "open '%s'", q->path);
		if (q->read_res < 0)
			return ib_error_errno(err, -q->read_res, "read '%s'", q->path);
		if ((size_t)q->read_res < q->len && read_rest(q, (size_t)q->read_res, err) < 0)
			return -1;
	}
	return 0;
}
