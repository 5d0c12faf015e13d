#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

void ib_die_oom(void)
{
	static const char msg[] = "imgbuild: out of memory\n";
	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	abort();
}

void *xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);
	if (p == NULL)
		ib_die_oom();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		ib_die_oom();
	return p;
}

void *xrealloc(void *old, size_t size)
{
	void *p = realloc(old, size ? size : 1);
	if (p == NULL)
		ib_die_oom();
	return p;
}

#define BIG_ALIGN ((size_t)2 << 20)

static size_t big_len(size_t len)
{
	return (len + BIG_ALIGN - 1) & ~(BIG_ALIGN - 1);
}

void *ib_big_alloc(size_t len)
{
	size_t want = big_len(len ? len : 1);
	/* Map one alignment more and trim, so the start is on the boundary. */
	uint8_t *m = mmap(NULL, want + BIG_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		ib_die_oom();
	uint8_t *p = (uint8_t *)(((uintptr_t)m + BIG_ALIGN - 1) & ~(uintptr_t)(BIG_ALIGN - 1));
	if (p > m)
		munmap(m, (size_t)(p - m));
	size_t tail = BIG_ALIGN - (size_t)(p - m);
	if (tail)
		munmap(p + want, tail);
	madvise(p, want, MADV_HUGEPAGE); /* a hint: without THP, 4 KiB pages */
	return p;
}

void ib_big_free(void *p, size_t len)
{
	if (p)
		munmap(p, big_len(len ? len : 1));
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (p == NULL)
		ib_die_oom();
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (p == NULL)
		ib_die_oom();
	return p;
}

char *xvasprintf(const char *fmt, va_list ap)
{
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		ib_die_oom();
	return s;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	return s;
}

void ib_close_fdp(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

void ib_fclosep(FILE **f)
{
	if (*f != NULL)
		fclose(*f);
}

void ib_strv_push_owned(struct ib_strv *s, char *str)
{
	if (s->n + 2 > s->cap) {
		s->cap = s->cap ? s->cap * 2 : 8;
		s->v = xrealloc(s->v, s->cap * sizeof(char *));
	}
	s->v[s->n++] = str;
	s->v[s->n] = NULL;
}

void ib_strv_push(struct ib_strv *s, const char *str)
{
	ib_strv_push_owned(s, xstrdup(str));
}

void ib_strv_free(struct ib_strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

void ib_buf_reserve(struct ib_buf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (b->len + more + 1 > cap)
		cap *= 2;
	b->s = xrealloc(b->s, cap);
	b->cap = cap;
}

void ib_buf_add(struct ib_buf *b, const void *data, size_t n)
{
	ib_buf_reserve(b, n);
	memcpy(b->s + b->len, data, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void ib_buf_adds(struct ib_buf *b, const char *s)
{
	ib_buf_add(b, s, strlen(s));
}

void ib_buf_addc(struct ib_buf *b, char c)
{
	ib_buf_add(b, &c, 1);
}

void ib_buf_printf(struct ib_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cleanup_free char *s = xvasprintf(fmt, ap);
	va_end(ap);
	ib_buf_adds(b, s);
}

char *ib_buf_steal(struct ib_buf *b)
{
	char *s = b->s ? b->s : xstrdup("");
	b->s = NULL;
	b->len = b->cap = 0;
	return s;
}

void ib_buf_free(struct ib_buf *b)
{
	free(b->s);
	b->s = NULL;
	b->len = b->cap = 0;
}

/* Reads FD (a regular file, checked here, not by its name) up to MAX bytes. */
static char *read_fd(int fd, const char *path, size_t max, size_t *len, ib_error_t *err)
{
	struct stat st;
	if (fstat(fd, &st) < 0) {
		ib_error_errno(err, errno, "stat '%s'", path);
		return NULL;
	}
	/* A FIFO would hang and a device (/dev/zero) never end: an untrusted
	 * IMAGE.sig or lock.d entry may be either. */
	if (!S_ISREG(st.st_mode)) {
		ib_error_set(err, 0, "'%s' is not a regular file (%s): refusing to read it", path,
			     S_ISFIFO(st.st_mode)			  ? "a FIFO"
			     : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
			     : S_ISDIR(st.st_mode)			  ? "a folder"
									  : "not a file");
		return NULL;
	}
	if ((uint64_t)st.st_size > max) {
		ib_error_set(err, 0, "'%s' is %lld bytes, more than the %zu this file may have", path, (long long)st.st_size, max);
		return NULL;
	}
	/* Regular files never block; the flag only mattered for the open. */
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	size_t cap = st.st_size > 0 && (uint64_t)st.st_size < max ? (size_t)st.st_size + 1 : 8192, n = 0;
	cleanup_free char *buf = xmalloc(cap);
	for (;;) {
		if (n + 1 >= cap) {
			if (n >= max) {
				/* It grew while being read (/proc files report size 0). */
				char c;
				if (read(fd, &c, 1) > 0) {
					ib_error_set(err, 0, "'%s' is more than the %zu bytes this file may have", path, max);
					return NULL;
				}
				break;
			}
			cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			buf = xrealloc(buf, cap);
		}
		ssize_t r = read(fd, buf + n, cap - n - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ib_error_errno(err, errno, "read '%s'", path);
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	return steal_pointer(&buf);
}

char *ib_read_file_max(const char *path, size_t max, size_t *len, ib_error_t *err)
{
	cleanup_fd int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		ib_error_errno(err, errno, "open '%s'", path);
		return NULL;
	}
	return read_fd(fd, path, max, len, err);
}

char *ib_read_file(const char *path, size_t *len, ib_error_t *err)
{
	return ib_read_file_max(path, IB_READ_FILE_MAX, len, err);
}

char *ib_read_file_at(int dirfd, const char *name, const char *shown, size_t max, size_t *len, ib_error_t *err)
{
	cleanup_fd int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ELOOP)
			ib_error_set(err, 0, "'%s' is a symbolic link: refusing to follow it", shown);
		else
			ib_error_errno(err, errno, "open '%s'", shown);
		return NULL;
	}
	return read_fd(fd, shown, max, len, err);
}

bool ib_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		if (w == 0) {
			errno = EIO;
			return false;
		}
		p += w;
		n -= (size_t)w;
	}
	return true;
}

bool ib_read_all(int fd, void *buf, size_t n)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
	}
	return true;
}

ssize_t ib_pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = pread(fd, (char *)buf + got, len - got, off + (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

int ib_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, ib_error_t *err)
{
	cleanup_free char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	cleanup_fd int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return ib_error_errno(err, errno, "create '%s'", tmp);
	if (!ib_write_all(fd, data, len)) {
		int saved = errno;
		unlink(tmp);
		return ib_error_errno(err, saved, "write '%s'", tmp);
	}
	if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
		int saved = errno;
		unlink(tmp);
		return ib_error_errno(err, saved, "sync '%s'", tmp);
	}
	if (rename(tmp, path) < 0) {
		int saved = errno;
		unlink(tmp);
		return ib_error_errno(err, saved, "rename '%s' to '%s'", tmp, path);
	}
	return 0;
}

int ib_mkdir_p(const char *path, mode_t mode, ib_error_t *err)
{
	cleanup_free char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return ib_error_errno(err, errno, "mkdir '%s'", p);
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return ib_error_errno(err, errno, "mkdir '%s'", p);
	return 0;
}

bool ib_path_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

char *ib_path_join(const char *a, const char *b)
{
	size_t la = strlen(a);
	while (la > 1 && a[la - 1] == '/')
		la--;
	while (*b == '/')
		b++;
	return xasprintf("%.*s/%s", (int)la, a, b);
}

void ib_hex(const uint8_t *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * len] = '\0';
}

char *ib_escape(const char *s, bool keep_newlines)
{
	if (s == NULL)
		return NULL;
	size_t n = strlen(s);
	char *out = xmalloc(6 * n + 1), *o = out;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p < 0x20 && *p != '\t' && !(keep_newlines && *p == '\n')) || *p == 0x7f)
			o += sprintf(o, "\\x%02x", *p);
		else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) /* C1 controls as UTF-8 (CSI is U+009B) */
			o += sprintf(o, "\\u%04x", p[1]), p++;
		else
			*o++ = (char)*p;
	}
	*o = '\0';
	return out;
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return SIZE_MAX;
	size_t row[65];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

const char *ib_nearest(const char *word, const char *const *candidates, size_t n)
{
	const char *best = NULL;
	size_t best_d = SIZE_MAX;
	for (size_t i = 0; i < n && candidates[i]; i++) {
		size_t d = edit_distance(word, candidates[i]);
		if (d < best_d) {
			best_d = d;
			best = candidates[i];
		}
	}
	size_t len = strlen(word);
	if (best && (best_d <= 2 || best_d * 3 <= len) && best_d < len)
		return best;
	return NULL;
}

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

bool ib_have_openat2 = true;

static int raw_openat2(int dirfd, const char *path, int flags, mode_t mode, unsigned long long resolve)
{
	/* struct open_how of <linux/openat2.h>, which older headers lack. */
	struct {
		unsigned long long flags, mode, resolve;
	} how = { (unsigned long long)(unsigned)flags, mode, resolve };
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/* EPERM is what a seccomp filter older than openat2 answers (Docker's
 * profiles before 20.10), but also a real refusal: an immutable folder, an
 * LSM. Only the filter may turn openat2 off for the whole process, so an
 * EPERM asks once more with a call no kernel that has openat2 refuses. */
static bool openat2_filtered(void)
{
	int fd = raw_openat2(AT_FDCWD, "/", O_PATH | O_CLOEXEC, 0, 0);
	if (fd >= 0) {
		close(fd);
		return false;
	}
	return errno == EPERM || errno == ENOSYS;
}

int ib_openat2(int dirfd, const char *path, int flags, mode_t mode, unsigned long long resolve)
{
	if (!__atomic_load_n(&ib_have_openat2, __ATOMIC_RELAXED)) {
		errno = ENOSYS;
		return -1;
	}
	int fd = raw_openat2(dirfd, path, flags, mode, resolve);
	if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
		return fd;
	if (errno == EPERM && !openat2_filtered()) {
		errno = EPERM;
		return -1;
	}
	__atomic_store_n(&ib_have_openat2, false, __ATOMIC_RELAXED);
	errno = ENOSYS;
	return -1;
}
