#include "pack.h"
#include "ib_archive.h"
#include "hash.h"
#include "log.h"
#include "sign.h"
#include "uring.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/*
 * Why the listing comes last: entries are sorted by path, except
 * ./.imgbuild/listing, which ends the image. It holds every file's digest,
 * and the image's own SHA-256 is one sequential stream over every byte:
 * with the listing first, all files had to be hashed before the image's
 * digest could start (two passes; on this 2-core VM that bounds pack near
 * 3.5x `tar | sha256sum`). Last, one pass does it all: content goes into the
 * output with copy_file_range while the follower thread (hash.h) reads the
 * output back and hashes the image and, in the same strokes, each file's
 * content in it (two SHA-NI streams over the same bytes, sha256ni.h); the
 * listing is made when the follower has reached it. So the listing's digests
 * and IMAGE.sha256 are both of the bytes in the image. The facts and the
 * rest of .imgbuild/ keep their sorted place near the start, where a reader
 * finds them without reading the image; verify checks the listing after the
 * entries it has hashed (it keeps one line per entry, not the content).
 * zstd output cannot be read back uncompressed, so there the file digests
 * come from a pass of their own first (ib_hash_files), as before.
 */

/* Folders kept (with their mode) but packed empty: run-time or download state. */
static const char *const keep_empty[] = {
	"proc", "sys", "dev", "run", "tmp", "var/lib/apt/lists", "var/log/apt", "var/cache/apt/archives/partial", NULL,
};
/* Left out entirely (docs/sources.md §2); glob patterns on the path below the root. */
static const char *const drop[] = {
	"var/log/dpkg.log",
	"var/log/bootstrap.log",
	"var/log/alternatives.log",
	"var/lib/dbus/machine-id",
	"var/cache/ldconfig/aux-cache",
	"var/lib/systemd/catalog/database",
	"var/cache/apt/archives/*.deb",
	"var/cache/apt/*.bin",
	IB_META_DIR, /* pack writes its own */
	NULL,
};
/* Kept with empty content: systemd fills it at first boot. */
static const char *const emptied[] = { "etc/machine-id", NULL };

enum pkind { P_TREE, P_VIRTUAL };

struct pentry {
	char *rel; /* "" for the root, else "etc/passwd" */
	enum ib_entry_type type;
	mode_t mode;
	int64_t uid, gid, mtime, size;
	dev_t dev;
	ino_t ino;
	nlink_t nlink;
	char *link;	/* symlink target (tree) or hard link target rel */
	size_t primary; /* hard link: index of the entry holding the data */
	bool is_link_secondary;
	bool empty;	  /* content dropped (etc/machine-id) */
	bool xattrs_read; /* by the walk: a folder's through its descriptor, or a file has none */
	char *xattr_blob; /* names and values, see read_xattrs */
	struct ib_xattr *xattrs;
	size_t n_xattrs;
	uint8_t digest[IB_SHA256_LEN];
	const void *data; /* P_VIRTUAL content, not owned (or owned via data_owned) */
	char *data_owned;
	enum pkind kind;
};

struct plist {
	struct pentry *v;
	size_t n, cap;
};

static struct pentry *plist_add(struct plist *l)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1024;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	struct pentry *e = &l->v[l->n++];
	memset(e, 0, sizeof(*e));
	return e;
}

static void plist_free(struct plist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].rel);
		free(l->v[i].link);
		free(l->v[i].xattr_blob);
		free(l->v[i].xattrs);
		free(l->v[i].data_owned);
	}
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static void plist_cleanup(struct plist *l)
{
	plist_free(l);
}
#define cleanup_plist __attribute__((cleanup(plist_cleanup)))

static bool match_any(const char *const *pats, const char *rel)
{
	for (size_t i = 0; pats[i]; i++)
		if (fnmatch(pats[i], rel, FNM_PATHNAME) == 0)
			return true;
	return false;
}

/* xattrs kept: everything but SELinux labels (the host's policy, not the
 * image's) and overlayfs' own trusted.overlay.* bookkeeping. Sorted by name. */
static bool keep_xattr(const char *name)
{
	return strcmp(name, "security.selinux") != 0 && strncmp(name, "trusted.overlay.", 16) != 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* FD >= 0: the entry's own open file (flistxattr: no path lookup, the
 * cheapest per-file call); else by path, not following a symlink. FULL names
 * it in errors. */
static ssize_t x_list(int fd, const char *full, char *buf, size_t len)
{
	return fd >= 0 ? flistxattr(fd, buf, len) : llistxattr(full, buf, len);
}

static ssize_t x_get(int fd, const char *full, const char *name, void *buf, size_t len)
{
	return fd >= 0 ? fgetxattr(fd, name, buf, len) : lgetxattr(full, name, buf, len);
}

/* listxattrat(2), Linux 6.13: a name's xattrs relative to a folder's
 * descriptor, without a descriptor of its own or a lookup from the root.
 * glibc has no wrapper yet; x86_64 and arm64 share the number. */
#ifndef SYS_listxattrat
#define SYS_listxattrat 465
#endif
static int listxattrat_missing; /* ENOSYS once: not asked again */

/* True only when the kernel says NAME under DIRFD has no xattrs at all.
 * Any doubt (an older kernel, an error) is false: write_entry then reads
 * them the usual way, and reports the error. */
static bool has_no_xattrs(int dirfd, const char *name)
{
	if (__atomic_load_n(&listxattrat_missing, __ATOMIC_RELAXED))
		return false;
	long n = syscall(SYS_listxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, NULL, (size_t)0);
	if (n < 0 && errno == ENOSYS)
		__atomic_store_n(&listxattrat_missing, 1, __ATOMIC_RELAXED);
	return n == 0 || (n < 0 && errno == ENOTSUP);
}

static int read_xattrs(int fd, const char *full, struct pentry *e, ib_error_t *err)
{
	e->xattrs_read = true;
	ssize_t n = x_list(fd, full, NULL, 0);
	if (n < 0) {
		if (errno == ENOTSUP || errno == ENODATA)
			return 0;
		return ib_error_errno(err, errno, "list xattrs of '%s'", full);
	}
	if (n == 0)
		return 0;
	cleanup_free char *names = xmalloc((size_t)n + 1);
	n = x_list(fd, full, names, (size_t)n);
	if (n < 0)
		return ib_error_errno(err, errno, "list xattrs of '%s'", full);
	const char *keep[64];
	size_t nk = 0;
	for (char *p = names; p < names + n; p += strlen(p) + 1)
		if (keep_xattr(p) && nk < 64)
			keep[nk++] = p;
	if (nk == 0)
		return 0;
	qsort(keep, nk, sizeof(keep[0]), cmp_str);
	/* One blob: name\0 value..., with (offset, len) recorded in xattrs. */
	size_t cap = 4096, used = 0;
	char *blob = xmalloc(cap);
	size_t *name_off = xcalloc(nk, sizeof(size_t)), *val_off = xcalloc(nk, sizeof(size_t)),
	       *val_len = xcalloc(nk, sizeof(size_t));
	size_t got = 0;
	for (size_t i = 0; i < nk; i++) {
		ssize_t vl = x_get(fd, full, keep[i], NULL, 0);
		if (vl < 0) {
			if (errno == ENODATA)
				continue;
			free(blob), free(name_off), free(val_off), free(val_len);
			return ib_error_errno(err, errno, "read xattr '%s' of '%s'", keep[i], full);
		}
		size_t need = strlen(keep[i]) + 1 + (size_t)vl;
		while (used + need > cap) {
			cap *= 2;
			blob = xrealloc(blob, cap);
		}
		name_off[got] = used;
		memcpy(blob + used, keep[i], strlen(keep[i]) + 1);
		used += strlen(keep[i]) + 1;
		vl = x_get(fd, full, keep[i], blob + used, (size_t)vl);
		if (vl < 0) {
			free(blob), free(name_off), free(val_off), free(val_len);
			return ib_error_errno(err, errno, "read xattr '%s' of '%s'", keep[i], full);
		}
		val_off[got] = used;
		val_len[got] = (size_t)vl;
		used += (size_t)vl;
		got++;
	}
	e->xattr_blob = blob;
	e->xattrs = xcalloc(got ? got : 1, sizeof(struct ib_xattr));
	for (size_t i = 0; i < got; i++)
		e->xattrs[i] = (struct ib_xattr){ blob + name_off[i], blob + val_off[i], val_len[i] };
	e->n_xattrs = got;
	free(name_off), free(val_off), free(val_len);
	return 0;
}

#define DENTS_BUF ((size_t)32 << 10)

/* The walk runs on two threads (the follower has nothing to hash before the
 * first file is written, so the second core is free). Each has its own list
 * and counts, merged before the sort, which alone decides the image's order.
 * Folders a walker finds go to a shared queue as open descriptors, up to
 * WALK_QUEUE_MAX of them (so the walk never holds more open folders than
 * that plus its depth); past that a walker goes down into the folder itself. */
#define WALK_QUEUE_MAX 64

struct walk_item {
	int fd;
	char *rel;
};

struct walk_queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct walk_item v[WALK_QUEUE_MAX];
	size_t n;
	int active; /* walkers inside a folder they took */
	bool failed;
	ib_error_t err; /* the first failure */
};

struct walk {
	char *dents; /* DENTS_BUF bytes, walk_dir's */
	const char *root;
	int64_t epoch;
	struct plist *list;
	struct ib_pack_stats *st;
	struct walk_queue *q; /* NULL: one thread, folders walked as found */
};

/* Hands an open folder to whichever walker is free; false when the queue is
 * full (the caller walks it itself). */
static bool walk_offer(struct walk_queue *q, int fd, const char *rel)
{
	pthread_mutex_lock(&q->lock);
	bool room = q->n < WALK_QUEUE_MAX && !q->failed;
	if (room) {
		q->v[q->n++] = (struct walk_item){ fd, xstrdup(rel) };
		pthread_cond_signal(&q->cond);
	}
	pthread_mutex_unlock(&q->lock);
	return room;
}

static int walk_dir(struct walk *w, int dirfd, const char *rel, ib_error_t *err);

static int add_path(struct walk *w, int dirfd, const char *name, const char *rel, ib_error_t *err)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return ib_error_errno(err, errno, "stat '%s/%s'", w->root, rel);
	if (*rel && match_any(drop, rel)) {
		w->st->skipped_excluded++;
		return 0;
	}
	enum ib_entry_type type;
	if (S_ISREG(st.st_mode)) {
		type = IB_ENTRY_FILE;
	} else if (S_ISDIR(st.st_mode)) {
		type = IB_ENTRY_DIR;
	} else if (S_ISLNK(st.st_mode)) {
		type = IB_ENTRY_SYMLINK;
	} else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
		/* Includes overlayfs whiteouts (char 0:0): an image has no devices,
		 * the sandbox binds /dev at run time. */
		if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 0 && minor(st.st_rdev) == 0)
			ib_log_debug("pack: skip overlay whiteout '%s'", rel);
		else
			ib_log_debug("pack: skip device node '%s'", rel);
		w->st->skipped_devices++;
		return 0;
	} else {
		/* fifos and sockets are run-time objects too: left out. */
		ib_log_debug("pack: skip fifo/socket '%s'", rel);
		w->st->skipped_special++;
		return 0;
	}
	struct pentry *e = plist_add(w->list);
	e->kind = P_TREE;
	e->rel = xstrdup(rel);
	e->type = type;
	e->mode = st.st_mode & 07777;
	e->uid = st.st_uid;
	e->gid = st.st_gid;
	e->mtime = st.st_mtime < w->epoch ? st.st_mtime : w->epoch;
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	e->nlink = st.st_nlink;
	e->size = type == IB_ENTRY_FILE ? st.st_size : 0;
	if (type == IB_ENTRY_FILE && match_any(emptied, rel)) {
		e->empty = true;
		e->size = 0;
	}
	if (type == IB_ENTRY_FILE && e->size == 0)
		ib_sha256_buf("", 0, e->digest);
	if (type == IB_ENTRY_SYMLINK) {
		size_t cap = (size_t)st.st_size + 2;
		if (cap < 256)
			cap = 256;
		for (;;) {
			char *buf = xmalloc(cap);
			ssize_t n = readlinkat(dirfd, name, buf, cap);
			if (n < 0) {
				free(buf);
				return ib_error_errno(err, errno, "readlink '%s/%s'", w->root, rel);
			}
			if ((size_t)n < cap) {
				buf[n] = '\0';
				e->link = buf;
				break;
			}
			free(buf);
			cap *= 2;
		}
	}
	/* A file's xattrs are read by write_entry, on the writing thread: the
	 * walk is the part of pack nothing else can overlap. Only whether it
	 * has any is asked here, where the folder is open: for a file read
	 * through io_uring, which cannot list xattrs, write_entry would
	 * otherwise look the path up once more just to learn it has none. */
	if (type == IB_ENTRY_FILE && e->size > 0 && has_no_xattrs(dirfd, name))
		e->xattrs_read = true;
	if (type == IB_ENTRY_DIR) {
		cleanup_free char *full = *rel ? xasprintf("%s/%s", w->root, rel) : xstrdup(w->root);
		if (*rel && match_any(keep_empty, rel))
			return 0;
		cleanup_fd int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return ib_error_errno(err, errno, "open '%s'", full);
		/* The folder is open anyway: its xattrs cost one call without a
		 * path lookup here, where write_entry would look it up again. */
		if (read_xattrs(fd, full, e, err) < 0)
			return -1;
		if (w->q && walk_offer(w->q, fd, rel)) {
			fd = -1; /* the queue's now */
			return 0;
		}
		return walk_dir(w, fd, rel, err);
	}
	return 0;
}

/* The names in a folder, read with getdents64 on the descriptor the walk
 * holds: against fdopendir, no dup, fcntl and second close per folder. */
struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static int walk_dir(struct walk *w, int dirfd, const char *rel, ib_error_t *err)
{
	cleanup_strv struct ib_strv names = { 0 };
	/* One buffer for the whole walk: the names are copied out before the
	 * walk goes down into a child. */
	char *buf = w->dents;
	for (;;) {
		long n = syscall(SYS_getdents64, dirfd, buf, DENTS_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ib_error_errno(err, errno, "read folder '%s/%s'", w->root, rel);
		if (n == 0)
			break;
		for (long off = 0; off < n;) {
			struct linux_dirent64 *de = (struct linux_dirent64 *)(buf + off);
			off += de->d_reclen;
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			ib_strv_push(&names, de->d_name);
		}
	}
	int rc = 0;
	for (size_t i = 0; i < names.n && rc == 0; i++) {
		cleanup_free char *child = *rel ? xasprintf("%s/%s", rel, names.v[i]) : xstrdup(names.v[i]);
		rc = add_path(w, dirfd, names.v[i], child, err);
	}
	return rc;
}

static int walk_dir(struct walk *w, int dirfd, const char *rel, ib_error_t *err);

/* With the lock held: a walker is out of the folder it took (RC its result,
 * E its error, taken). The first failure stops every walker; the last walker
 * out of an empty queue ends the walk. */
static void walk_left(struct walk_queue *q, int rc, ib_error_t *e)
{
	q->active--;
	if (rc < 0 && !q->failed) {
		q->failed = true;
		q->err = steal_pointer(e);
	}
	ib_error_free(e);
	if (q->failed || (q->n == 0 && q->active == 0))
		pthread_cond_broadcast(&q->cond);
}

/* Takes folders from the queue until it is empty and no walker is inside a
 * folder (which could still offer more), or a walker failed. */
static void walk_drain(struct walk *w)
{
	struct walk_queue *q = w->q;
	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (q->n == 0 && q->active > 0 && !q->failed)
			pthread_cond_wait(&q->cond, &q->lock);
		if (q->failed || q->n == 0)
			break;
		struct walk_item it = q->v[--q->n];
		q->active++;
		pthread_mutex_unlock(&q->lock);
		ib_error_t e = NULL;
		int rc = walk_dir(w, it.fd, it.rel, &e);
		close(it.fd);
		free(it.rel);
		pthread_mutex_lock(&q->lock);
		walk_left(q, rc, &e);
	}
	pthread_mutex_unlock(&q->lock);
}

static void *walk_thread(void *arg)
{
	walk_drain(arg);
	return NULL;
}

/* The tree below ROOTFD (not closed) into W's list, on two threads where the
 * machine has two cores. */
static int walk_tree(struct walk *w, int rootfd, ib_error_t *err)
{
	if (ib_hash_ncpus() < 2)
		return walk_dir(w, rootfd, "", err);
	struct walk_queue q = { .active = 1 };
	pthread_mutex_init(&q.lock, NULL);
	pthread_cond_init(&q.cond, NULL);
	cleanup_free char *dents = xmalloc(DENTS_BUF);
	struct plist list2 = { 0 };
	struct ib_pack_stats st2 = { 0 };
	struct walk w2 = { .dents = dents, .root = w->root, .epoch = w->epoch, .list = &list2, .st = &st2, .q = &q };
	w->q = &q;
	pthread_t t;
	if (pthread_create(&t, NULL, walk_thread, &w2) != 0)
		ib_die_oom();
	ib_error_t e = NULL;
	int rc = walk_dir(w, rootfd, "", &e);
	pthread_mutex_lock(&q.lock);
	walk_left(&q, rc, &e);
	pthread_mutex_unlock(&q.lock);
	walk_drain(w);
	pthread_join(t, NULL);
	w->q = NULL;
	for (size_t i = 0; i < q.n; i++) { /* left after a failure */
		close(q.v[i].fd);
		free(q.v[i].rel);
	}
	for (size_t i = 0; i < list2.n; i++)
		*plist_add(w->list) = list2.v[i];
	free(list2.v);
	w->st->skipped_devices += st2.skipped_devices;
	w->st->skipped_special += st2.skipped_special;
	w->st->skipped_excluded += st2.skipped_excluded;
	pthread_mutex_destroy(&q.lock);
	pthread_cond_destroy(&q.cond);
	if (q.failed) {
		*err = q.err;
		return -1;
	}
	return 0;
}

static int cmp_rel(const void *a, const void *b)
{
	return strcmp(((const struct pentry *)a)->rel, ((const struct pentry *)b)->rel);
}

struct inode_ref {
	dev_t dev;
	ino_t ino;
	size_t idx;
};

static int cmp_inode(const void *a, const void *b)
{
	const struct inode_ref *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Files with several names: the first name in path order holds the data, the
 * others become hard links to it (tar's convention). */
static void link_hardlinks(struct plist *l)
{
	size_t n = 0;
	struct inode_ref *refs = xmalloc((l->n + 1) * sizeof(*refs));
	for (size_t i = 0; i < l->n; i++) {
		struct pentry *e = &l->v[i];
		if (e->kind == P_TREE && e->type == IB_ENTRY_FILE && e->nlink > 1 && !e->empty)
			refs[n++] = (struct inode_ref){ e->dev, e->ino, i };
	}
	qsort(refs, n, sizeof(*refs), cmp_inode);
	for (size_t i = 1; i < n; i++) {
		size_t first = i - 1;
		while (first > 0 && refs[first - 1].dev == refs[i].dev && refs[first - 1].ino == refs[i].ino)
			first--;
		if (refs[first].dev != refs[i].dev || refs[first].ino != refs[i].ino)
			continue;
		struct pentry *e = &l->v[refs[i].idx];
		e->type = IB_ENTRY_HARDLINK;
		e->is_link_secondary = true;
		e->primary = refs[first].idx;
		e->link = xstrdup(l->v[refs[first].idx].rel);
		e->size = 0;
	}
	free(refs);
}

static char *tar_path(const char *rel)
{
	return *rel ? xasprintf("./%s", rel) : xstrdup("./");
}

static char *listing_path(const char *rel)
{
	return *rel ? xasprintf("./%s", rel) : xstrdup(".");
}

static struct pentry *add_virtual(struct plist *l, const char *rel, enum ib_entry_type type, int64_t epoch)
{
	struct pentry *e = plist_add(l);
	e->kind = P_VIRTUAL;
	e->rel = xstrdup(rel);
	e->type = type;
	e->mode = type == IB_ENTRY_DIR ? 0755 : 0644;
	e->mtime = epoch;
	return e;
}

static int add_meta_file(struct plist *l, const char *name, const void *data, size_t len, int64_t epoch, bool copy, ib_error_t *err)
{
	if (!ib_meta_name_ok(name))
		return ib_error_usage(err, "metadata name '%s': use [A-Za-z0-9._-], not facts.toml or listing", name);
	cleanup_free char *rel = xasprintf(IB_META_DIR "/%s", name);
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].rel, rel) == 0)
			return ib_error_usage(err, "metadata file '%s' given twice", name);
	struct pentry *e = add_virtual(l, rel, IB_ENTRY_FILE, epoch);
	if (copy) {
		e->data_owned = xmalloc(len + 1);
		memcpy(e->data_owned, data, len);
		e->data = e->data_owned;
	} else {
		e->data = data;
	}
	e->size = (int64_t)len;
	ib_sha256_buf(data, len, e->digest);
	return 0;
}

static int add_meta_dir(struct plist *l, const char *dir, int64_t epoch, ib_error_t *err)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return ib_error_errno(err, errno, "open '%s'", dir);
	cleanup_strv struct ib_strv names = { 0 };
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			ib_strv_push(&names, de->d_name);
	closedir(d);
	int rc = 0;
	for (size_t i = 0; i < names.n && rc == 0; i++) {
		cleanup_free char *path = ib_path_join(dir, names.v[i]);
		struct stat st;
		if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		size_t len;
		cleanup_free char *data = ib_read_file(path, &len, err);
		if (data == NULL)
			rc = -1;
		else
			rc = add_meta_file(l, names.v[i], data, len, epoch, true, err);
	}
	return rc;
}

/* ---- output ---- */

/* The image goes to the file in two ways. Header bytes (and padding, and
 * with zstd everything) come from libarchive through sink_write into STAGE,
 * which is pwritten when full; content is put straight into the file at its
 * offset: copy_file_range from the tree (one kernel copy, page cache to page
 * cache; read + write would be two, plus the user-space buffer), or, for
 * small files, read into STAGE beside their headers (one pwrite for many
 * files instead of a syscall pair each). The image's SHA-256 is computed by a
 * second thread from the file itself as it is written (hash.h's follower), so
 * IMAGE.sha256 is the digest of the bytes on disk, whatever the tree did. */
struct out {
	int fd;
	uint8_t *stage;
	size_t fill, cap;
	uint64_t off;		     /* the file offset of stage[0] */
	struct ib_hash_follow *hash; /* not owned */
	/* Small files are read into the stage through io_uring when the
	 * kernel allows it (NULL otherwise), and must all be in before the
	 * stage is written out. */
	struct ib_uring_reads *reads;
	uint64_t batched; /* files read that way */
};

/* Files up to this size are read into the stage; larger ones are copied by the kernel. */
#define SMALL_FILE ((int64_t)64 << 10)
/* copy_file_range in pieces this large, so the hashing thread starts early. */
#define COPY_CHUNK ((size_t)8 << 20)

static int out_flush(struct out *o, ib_error_t *err)
{
	if (o->reads != NULL && ib_uring_reads_wait(o->reads, err) < 0)
		return -1;
	size_t done = 0;
	while (done < o->fill) {
		ssize_t w = pwrite(o->fd, o->stage + done, o->fill - done, (off_t)(o->off + done));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return ib_error_errno(err, errno, "write");
		}
		done += (size_t)w;
	}
	o->off += o->fill;
	o->fill = 0;
	ib_hash_follow_advance(o->hash, o->off);
	return 0;
}

static int out_append(struct out *o, const void *buf, size_t len, ib_error_t *err)
{
	const uint8_t *p = buf;
	while (len > 0) {
		if (o->fill == o->cap && out_flush(o, err) < 0)
			return -1;
		size_t take = o->cap - o->fill < len ? o->cap - o->fill : len;
		memcpy(o->stage + o->fill, p, take);
		o->fill += take;
		p += take;
		len -= take;
	}
	return 0;
}

static int sink_write(void *ctx, const void *buf, size_t len, ib_error_t *err)
{
	if (buf == NULL) /* content write_entry already placed */
		return 0;
	return out_append(ctx, buf, len, err);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads exactly LEN bytes of FD from offset OFF into BUF. */
static int read_exact(int fd, uint8_t *buf, size_t len, off_t off, const char *rel, ib_error_t *err)
{
	ssize_t got = ib_pread_full(fd, buf, len, off);
	if (got < 0)
		return ib_error_errno(err, errno, "read '%s'", rel);
	/* Exactly the bytes pass 1 hashed are written: a file that grew since
	 * is cut at its hashed size (no extra read to look for EOF), one that
	 * shrank is an error. Nothing may change the tree while it is packed. */
	if ((size_t)got < len)
		return ib_error_set(err, 0, "'%s' shrank while being packed", rel);
	return 0;
}

static bool is_small(const struct out *o, const struct pentry *e)
{
	return e->size <= SMALL_FILE && (size_t)e->size <= o->cap;
}

/* The content of a tree file, straight into the output: FD is the open
 * file, or -1 to have io_uring open and read it below ROOTFD. */
static int place_file(struct out *o, int fd, int rootfd, const struct pentry *e, ib_error_t *err)
{
	size_t size = (size_t)e->size;
	if (is_small(o, e)) {
		if (o->cap - o->fill < size && out_flush(o, err) < 0)
			return -1;
		if (fd < 0 ? ib_uring_reads_add(o->reads, rootfd, e->rel, o->stage + o->fill, size, err)
			   : read_exact(fd, o->stage + o->fill, size, 0, e->rel, err))
			return -1;
		o->batched += fd < 0;
		o->fill += size;
		return 0;
	}
	if (out_flush(o, err) < 0)
		return -1;
	loff_t in = 0;
	bool kernel_copy = true;
	while (in < (loff_t)size) {
		size_t want = size - (size_t)in < COPY_CHUNK ? size - (size_t)in : COPY_CHUNK;
		if (kernel_copy) {
			loff_t out = (loff_t)o->off;
			ssize_t n = copy_file_range(fd, &in, o->fd, &out, want, 0);
			if (n > 0) {
				o->off = (uint64_t)out;
				ib_hash_follow_advance(o->hash, o->off);
				continue;
			}
			if (n == 0)
				return ib_error_set(err, 0, "'%s' shrank while being packed", e->rel);
			if (errno == EINTR)
				continue;
			/* Older kernels refuse across file systems (EXDEV), some file
			 * systems refuse outright: copy through the stage. */
			if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
				return ib_error_errno(err, errno, "copy '%s' into the image", e->rel);
			kernel_copy = false;
		}
		if (want > o->cap)
			want = o->cap;
		if (read_exact(fd, o->stage, want, (off_t)in, e->rel, err) < 0)
			return -1;
		o->fill = want;
		if (out_flush(o, err) < 0)
			return -1;
		in += (loff_t)want;
	}
	return 0;
}

static int write_entry(struct ib_archive_writer *w, struct out *o, bool direct, const char *root, int rootfd, struct pentry *e,
		       uint8_t *buf, size_t cap, ib_error_t *err)
{
	/* A file with content is opened first, and its xattrs read through
	 * that descriptor; other entries by path. A small one is left to
	 * io_uring, so its xattrs (when the walk could not tell it has none)
	 * are read by path too: measured without listxattrat, that still beats
	 * four calls of its own (docs/performance.md, section 11). */
	cleanup_fd int fd = -1;
	bool content = e->kind == P_TREE && e->type == IB_ENTRY_FILE && e->size > 0;
	bool queued = content && direct && o->reads != NULL && is_small(o, e);
	if (content && !queued) {
		fd = openat(rootfd, e->rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
		if (fd < 0)
			return ib_error_errno(err, errno, "open '%s'", e->rel);
	}
	if (e->kind == P_TREE && *e->rel && !e->xattrs_read) {
		cleanup_free char *full = xasprintf("%s/%s", root, e->rel);
		if (read_xattrs(fd, full, e, err) < 0)
			return -1;
	}
	cleanup_free char *path = tar_path(e->rel);
	cleanup_free char *link = e->type == IB_ENTRY_HARDLINK ? tar_path(e->link) : NULL;
	struct ib_tar_entry te = {
		.path = path,
		.type = e->type,
		.mode = e->mode,
		.uid = e->uid,
		.gid = e->gid,
		.size = e->type == IB_ENTRY_FILE ? e->size : 0,
		.mtime = e->mtime,
		.link = e->type == IB_ENTRY_HARDLINK ? link : e->link,
		.xattrs = e->xattrs,
		.n_xattrs = e->n_xattrs,
	};
	if (ib_archive_writer_add(w, &te, err) < 0)
		return -1;
	if (e->type != IB_ENTRY_FILE || e->size == 0)
		return 0;
	if (e->kind == P_VIRTUAL) {
		if (!direct)
			return ib_archive_writer_data(w, e->data, (size_t)e->size, err);
		if (out_append(o, e->data, (size_t)e->size, err) < 0)
			return -1;
		return ib_archive_writer_skip(w, e->size, err);
	}
	if (direct) {
		/* The follower hashes this file's bytes as it reads them back
		 * from the image: the listing holds the digest of what is in the
		 * image, whatever happens to the tree meanwhile. */
		ib_hash_follow_extent(o->hash, o->off + o->fill, (uint64_t)e->size, e->digest);
		if (place_file(o, fd, rootfd, e, err) < 0)
			return -1;
		return ib_archive_writer_skip(w, e->size, err);
	}
	/* Read, not mapped: a tree file truncated meanwhile must be an error,
	 * not a SIGBUS (hash.c, MAP_MIN). Plain tar never maps the tree either. */
	int64_t left = e->size;
	while (left > 0) {
		size_t want = (size_t)left < cap ? (size_t)left : cap;
		if (read_exact(fd, buf, want, (off_t)(e->size - left), e->rel, err) < 0)
			return -1;
		if (ib_archive_writer_data(w, buf, want, err) < 0)
			return -1;
		left -= (int64_t)want;
	}
	return 0;
}

/* The output file: an unnamed O_TMPFILE in the output's folder, so a pack that
 * dies (signal, power) leaves nothing behind; it gets a name only once
 * complete. File systems without O_TMPFILE get a dot-named temporary that the
 * failure paths unlink. */
struct outfile {
	int fd;
	int dirfd;
	char *tmpname; /* named fallback, or the link made at the end */
};

static int outfile_open(struct outfile *f, const char *output, ib_error_t *err)
{
	f->fd = -1;
	f->dirfd = -1;
	f->tmpname = NULL;
	cleanup_free char *dir = xstrdup(output);
	char *slash = strrchr(dir, '/');
	const char *base = slash ? slash + 1 : output;
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		strcpy(dir, ".");
	f->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (f->dirfd < 0)
		return ib_error_errno(err, errno, "open output folder '%s'", dir);
	f->fd = openat(f->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
	if (f->fd >= 0)
		return 0;
	f->tmpname = xasprintf(".%s.tmp.XXXXXX", base);
	cleanup_free char *full = xasprintf("%s/%s", dir, f->tmpname);
	f->fd = mkostemp(full, O_CLOEXEC);
	if (f->fd < 0)
		return ib_error_errno(err, errno, "create a temporary file beside '%s'", output);
	free(f->tmpname);
	f->tmpname = xstrdup(strrchr(full, '/') + 1);
	fchmod(f->fd, 0644);
	return 0;
}

static void outfile_abort(struct outfile *f)
{
	if (f->tmpname && f->dirfd >= 0)
		unlinkat(f->dirfd, f->tmpname, 0);
	if (f->fd >= 0)
		close(f->fd);
	if (f->dirfd >= 0)
		close(f->dirfd);
	free(f->tmpname);
	f->fd = f->dirfd = -1;
	f->tmpname = NULL;
}
#define cleanup_outfile __attribute__((cleanup(outfile_abort)))

/* No fsync of the image: it would make pack run at the disk's speed (a 1 GB
 * image took 3 s to sync here, more than the whole pack), and durability adds
 * nothing to integrity: an image cut short by a crash fails verify (its
 * .sha256 and signature name the full image), it is never taken for a good
 * one. The rename is still atomic for readers. */
static int outfile_commit(struct outfile *f, const char *output, ib_error_t *err)
{
	const char *base = strrchr(output, '/');
	base = base ? base + 1 : output;
	if (f->tmpname == NULL) {
		/* linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; /proc/self/fd does not. */
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
		for (int tries = 0; tries < 100; tries++) {
			char rnd[8];
			uint8_t r[4];
			if (ib_random_bytes(r, sizeof(r), err) < 0)
				return -1;
			ib_hex(r, 3, rnd);
			cleanup_free char *name = xasprintf(".%s.tmp.%s", base, rnd);
			if (linkat(AT_FDCWD, proc, f->dirfd, name, AT_SYMLINK_FOLLOW) == 0) {
				f->tmpname = steal_pointer(&name);
				break;
			}
			if (errno != EEXIST)
				return ib_error_errno(err, errno, "name '%s'", output);
		}
		if (f->tmpname == NULL)
			return ib_error_set(err, EEXIST, "name '%s': no free temporary name", output);
	}
	if (renameat(f->dirfd, f->tmpname, f->dirfd, base) < 0)
		return ib_error_errno(err, errno, "rename to '%s'", output);
	free(f->tmpname);
	f->tmpname = NULL;
	close(f->fd);
	close(f->dirfd);
	f->fd = f->dirfd = -1;
	return 0;
}

/* The listing: every entry but the listing itself, in image order. Its length
 * depends only on the metadata (digests are fixed-width hex), so a draft made
 * before the digests are known has the final length. */
static char *make_listing(const struct plist *l, const struct pentry *self, int64_t *len_out)
{
	struct ib_buf lbuf = { 0 };
	ib_buf_adds(&lbuf, IB_LISTING_HEADER);
	for (size_t i = 0; i < l->n; i++) {
		const struct pentry *e = &l->v[i];
		if (e == self)
			continue;
		cleanup_free char *lp = listing_path(e->rel);
		cleanup_free char *lt = e->type == IB_ENTRY_HARDLINK ? listing_path(e->link) : NULL;
		struct ib_listing_entry le = {
			.type = e->type == IB_ENTRY_FILE      ? 'f'
				: e->type == IB_ENTRY_DIR     ? 'd'
				: e->type == IB_ENTRY_SYMLINK ? 'l'
							      : 'h',
			.mode = (unsigned)e->mode,
			.uid = e->uid,
			.gid = e->gid,
			.size = e->type == IB_ENTRY_FILE ? e->size : 0,
			.path = lp,
			.target = e->type == IB_ENTRY_HARDLINK ? lt : e->link,
		};
		if (e->type == IB_ENTRY_FILE)
			ib_hex(e->digest, IB_SHA256_LEN, le.sha256);
		ib_listing_append(&lbuf, &le);
	}
	*len_out = (int64_t)lbuf.len;
	return ib_buf_steal(&lbuf);
}

static char *default_name(const char *output)
{
	const char *base = strrchr(output, '/');
	base = base ? base + 1 : output;
	size_t n = strlen(base);
	const char *sfx[] = { ".tar.zst", ".tzst", ".tar", NULL };
	for (size_t i = 0; sfx[i]; i++) {
		size_t l = strlen(sfx[i]);
		if (n > l && strcmp(base + n - l, sfx[i]) == 0)
			return xstrndup(base, n - l);
	}
	return xstrdup(base);
}

/* Bad options fail here, before the long part (the signing key too). */
static int check_opts(const struct ib_pack_opts *o, struct stat *rst, ib_error_t *err)
{
	if (o->root == NULL || o->output == NULL)
		return ib_error_usage(err, "pack: root and output are required");
	if (o->epoch < 0)
		return ib_error_usage(err, "pack: source_date_epoch must be >= 0");
	if (stat(o->root, rst) < 0)
		return ib_error_errno(err, errno, "pack '%s'", o->root);
	if (!S_ISDIR(rst->st_mode))
		return ib_error_usage(err, "pack '%s': not a folder", o->root);
	if (o->sign_key) {
		struct ib_seckey sk;
		int rc = ib_sign_read_seckey(o->sign_key, &sk, err);
		explicit_bzero(&sk, sizeof(sk));
		if (rc < 0)
			return ib_error_wrap(err, "pack");
	}
	return 0;
}

/* Every entry of the image in image order: the tree, then .imgbuild/ (facts,
 * the caller's metadata), and last the listing, whose content is made once
 * every other entry's digest is known (see the top of this file). */
static int collect(const struct ib_pack_opts *o, int rootfd, const struct stat *rst, struct plist *list,
		   struct ib_pack_stats *stats, ib_error_t *err)
{
	cleanup_free char *dents = xmalloc(DENTS_BUF);
	struct walk w = { .dents = dents, .root = o->root, .epoch = o->epoch, .list = list, .st = stats };
	struct pentry *root = plist_add(list);
	root->kind = P_TREE;
	root->rel = xstrdup("");
	root->type = IB_ENTRY_DIR;
	root->mode = rst->st_mode & 07777;
	root->uid = rst->st_uid;
	root->gid = rst->st_gid;
	root->mtime = rst->st_mtime < o->epoch ? rst->st_mtime : o->epoch;
	if (read_xattrs(rootfd, o->root, root, err) < 0)
		return ib_error_wrap(err, "pack");
	if (walk_tree(&w, rootfd, err) < 0)
		return ib_error_wrap(err, "pack '%s'", o->root);

	cleanup_free char *name = o->name ? xstrdup(o->name) : default_name(o->output);
	add_virtual(list, IB_META_DIR, IB_ENTRY_DIR, o->epoch);
	size_t facts_len;
	char *facts = ib_facts_write(name, o->epoch, o->facts, o->n_facts, o->fact_archs, &facts_len, err);
	if (facts == NULL)
		return -1;
	struct pentry *fe = add_virtual(list, IB_META_FACTS, IB_ENTRY_FILE, o->epoch);
	fe->data_owned = facts;
	fe->data = facts;
	fe->size = (int64_t)facts_len;
	ib_sha256_buf(facts, facts_len, fe->digest);
	for (size_t i = 0; i < o->n_meta; i++)
		if (add_meta_file(list, o->meta[i].name, o->meta[i].data, o->meta[i].len, o->epoch, false, err) < 0)
			return -1;
	if (o->meta_dir && add_meta_dir(list, o->meta_dir, o->epoch, err) < 0)
		return -1;

	qsort(list->v, list->n, sizeof(list->v[0]), cmp_rel);
	link_hardlinks(list);
	add_virtual(list, IB_META_LISTING, IB_ENTRY_FILE, o->epoch);
	return 0;
}

static bool is_tree_file(const struct pentry *e)
{
	return e->kind == P_TREE && e->type == IB_ENTRY_FILE && !e->empty;
}

/* zstd: the follower sees compressed bytes, so the file digests come from a
 * pass of their own first, on all cores. */
static int hash_files_first(const struct ib_pack_opts *o, int rootfd, struct plist *list, size_t nfiles,
			    struct ib_pack_stats *stats, ib_error_t *err)
{
	stats->bytes_in = 0;
	cleanup_free const char **paths = xcalloc(nfiles + 1, sizeof(char *));
	cleanup_free size_t *which = xcalloc(nfiles + 1, sizeof(size_t));
	cleanup_free uint8_t(*digests)[IB_SHA256_LEN] = xcalloc(nfiles + 1, IB_SHA256_LEN);
	cleanup_free int64_t *sizes = xcalloc(nfiles + 1, sizeof(int64_t));
	size_t k = 0;
	for (size_t i = 0; i < list->n; i++)
		if (is_tree_file(&list->v[i])) {
			paths[k] = list->v[i].rel;
			which[k++] = i;
		}
	if (ib_hash_files(rootfd, paths, nfiles, o->threads, digests, sizes, err) < 0)
		return ib_error_wrap(err, "pack '%s'", o->root);
	for (size_t j = 0; j < nfiles; j++) {
		struct pentry *e = &list->v[which[j]];
		memcpy(e->digest, digests[j], IB_SHA256_LEN);
		e->size = sizes[j];
		stats->bytes_in += (uint64_t)sizes[j];
	}
	return 0;
}

/* The size is known before writing, give or take the pax extended headers
 * (the listing's length does not depend on the digests in it): reserve it, so
 * a full disk fails here rather than after a gigabyte, and the blocks come in
 * one piece. */
static int reserve(const struct ib_pack_opts *o, struct plist *list, int fd, ib_error_t *err)
{
	struct pentry *listing = &list->v[list->n - 1];
	cleanup_free char *draft = make_listing(list, listing, &listing->size);
	uint64_t least = 1024;
	for (size_t i = 0; i < list->n; i++)
		least += 512 + (list->v[i].type == IB_ENTRY_FILE ? ((uint64_t)list->v[i].size + 511) / 512 * 512 : 0);
	if (fallocate(fd, 0, 0, (off_t)least) < 0 && errno != EOPNOTSUPP && errno != ENOSYS)
		return ib_error_errno(err, errno, "pack '%s': reserve %llu bytes", o->output, (unsigned long long)least);
	return 0;
}

/* Writes the tar to FD, the listing last; DIRECT (no compression) hashes
 * the files from the bytes written, through the follower. */
static int write_image(const struct ib_pack_opts *o, int rootfd, struct plist *list, size_t nfiles, bool direct, int fd,
		       uint8_t digest[IB_SHA256_LEN], struct ib_pack_stats *stats, ib_error_t *err)
{
	struct pentry *listing = &list->v[list->n - 1];
	cleanup_hash_follow struct ib_hash_follow *follow = ib_hash_follow_new(fd, direct ? nfiles : 0);
	struct out sink = { .fd = fd, .cap = 1 << 20, .hash = follow };
	/* owns the buffer sink.stage borrows */
	__attribute__((unused)) cleanup_free uint8_t *stage = sink.stage = xmalloc(sink.cap);
	/* After the stage, so it is closed first: nothing in flight then
	 * points into a freed stage. */
	cleanup_uring_reads struct ib_uring_reads *reads = sink.reads = direct ? ib_uring_reads_new() : NULL;
	cleanup_archive_writer struct ib_archive_writer *wr =
		ib_archive_writer_new(o->compression, o->threads, o->zstd_level, sink_write, &sink, err);
	if (wr == NULL)
		return ib_error_wrap(err, "pack");
	size_t cap = 1 << 20;
	cleanup_free uint8_t *buf = direct ? NULL : xmalloc(cap);
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < list->n; i++) {
		if (&list->v[i] == listing) {
			/* Every file's digest is in: in direct mode once the
			 * follower has hashed everything written so far. */
			rc = out_flush(&sink, err);
			if (rc == 0 && direct)
				rc = ib_hash_follow_help(follow, err);
			if (rc == 0 && direct)
				rc = ib_hash_follow_wait(follow, sink.off, err);
			if (rc < 0)
				break;
			listing->data_owned = make_listing(list, listing, &listing->size);
			listing->data = listing->data_owned;
		}
		rc = write_entry(wr, &sink, direct, o->root, rootfd, &list->v[i], buf, cap, err);
		if ((i & 1023) == 0)
			ib_log_status("packing %zu/%zu entries", i, list->n);
	}
	ib_log_status_clear();
	if (rc < 0 || ib_archive_writer_finish(wr, err) < 0 || out_flush(&sink, err) < 0 ||
	    (ftruncate(fd, (off_t)sink.off) < 0 && ib_error_errno(err, errno, "write") < 0) ||
	    ib_hash_follow_finish(follow, digest, err) < 0)
		return ib_error_wrap(err, "pack '%s'", o->output);
	stats->bytes_out = sink.off;
	stats->files_batched = sink.batched;
	return 0;
}

/* Checksum and signature first, image last: readers never see a new image
 * beside an old digest that would make it look tampered with ... or, after a
 * crash in between, the old image beside the new digest, which verify
 * rejects. */
static int publish(const struct ib_pack_opts *o, const char *hex, struct outfile *out, ib_error_t *err)
{
	const char *base = strrchr(o->output, '/');
	base = base ? base + 1 : o->output;
	cleanup_free char *sha_path = xasprintf("%s.sha256", o->output);
	cleanup_free char *sig_path = xasprintf("%s.sig", o->output);
	cleanup_free char *sha_line = xasprintf("%s  %s\n", hex, base);
	if (ib_write_file_atomic(sha_path, sha_line, strlen(sha_line), 0644, err) < 0)
		return ib_error_wrap(err, "pack");
	if (o->sign_key) {
		if (ib_sign_image(o->sign_key, base, hex, sig_path, err) < 0)
			return ib_error_wrap(err, "pack");
	} else if (unlink(sig_path) < 0 && errno != ENOENT) {
		return ib_error_errno(err, errno, "remove the old '%s'", sig_path);
	}
	if (outfile_commit(out, o->output, err) < 0)
		return ib_error_wrap(err, "pack");
	return 0;
}

int ib_pack(const struct ib_pack_opts *o, char digest_hex[IB_SHA256_HEX_LEN + 1], ib_error_t *err)
{
	struct ib_pack_stats stats = { 0 };
	struct stat rst;
	if (check_opts(o, &rst, err) < 0)
		return -1;
	cleanup_fd int rootfd = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return ib_error_errno(err, errno, "open '%s'", o->root);

	double t0 = now_s();
	cleanup_plist struct plist list = { 0 };
	if (collect(o, rootfd, &rst, &list, &stats, err) < 0)
		return -1;
	size_t nfiles = 0;
	for (size_t i = 0; i < list.n; i++)
		if (is_tree_file(&list.v[i])) {
			nfiles++;
			stats.bytes_in += (uint64_t)list.v[i].size;
		}
	stats.files = nfiles;
	double t_walked = now_s();
	bool direct = o->compression == IB_COMPRESS_NONE;
	if (!direct && hash_files_first(o, rootfd, &list, nfiles, &stats, err) < 0)
		return -1;
	double t1 = now_s();

	/* Until outfile_commit, every way out removes the temporary file. */
	cleanup_outfile struct outfile out = { .fd = -1, .dirfd = -1 };
	if (outfile_open(&out, o->output, err) < 0)
		return -1;
	if (direct && reserve(o, &list, out.fd, err) < 0)
		return -1;
	uint8_t digest[IB_SHA256_LEN];
	if (write_image(o, rootfd, &list, nfiles, direct, out.fd, digest, &stats, err) < 0)
		return -1;
	char hex[IB_SHA256_HEX_LEN + 1];
	ib_hex(digest, sizeof(digest), hex);
	if (publish(o, hex, &out, err) < 0)
		return -1;

	double t2 = now_s();
	stats.entries = list.n;
	stats.seconds_walk = t_walked - t0;
	stats.seconds_hash = t1 - t_walked;
	stats.seconds_write = t2 - t1;
	if (o->stats)
		*o->stats = stats;
	memcpy(digest_hex, hex, sizeof(hex));
	return 0;
}
