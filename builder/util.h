#pragma once
/* Small helpers every module uses: cleanup attributes, allocation that aborts
 * on OOM, whole-file I/O and atomic writes. (After bubblewrap's utils.h.) */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "error.h"

void ib_die_oom(void) __attribute__((noreturn));
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
/* Large buffers (verify's ring of blocks): anonymous mappings on a 2 MiB
 * boundary, in transparent huge pages where the kernel gives them. Each first
 * touch of a 4 KiB page is a fault, and in a VM whose page tables the host
 * shadows a costly one; a huge page is one fault for 512 of them. Lengths
 * are the caller's; dies on failure like xmalloc. */
void *ib_big_alloc(size_t len);
void ib_big_free(void *p, size_t len);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static inline void cleanup_freep(void *p)
{
	void **pp = (void **)p;
	free(*pp);
}
void ib_close_fdp(int *fd);
void ib_fclosep(FILE **f);
#define cleanup_free __attribute__((cleanup(cleanup_freep)))
#define cleanup_fd __attribute__((cleanup(ib_close_fdp)))
#define cleanup_file __attribute__((cleanup(ib_fclosep)))

static inline void *ib_steal_pointer(void *pp)
{
	void **ptr = (void **)pp;
	void *ret = *ptr;
	*ptr = NULL;
	return ret;
}
#define steal_pointer(pp) ((__typeof__(*(pp)))ib_steal_pointer(pp))

static inline int ib_steal_fd(int *fd)
{
	int ret = *fd;
	*fd = -1;
	return ret;
}

/* A growable NULL-terminated string list. */
struct ib_strv {
	char **v;
	size_t n, cap;
};
void ib_strv_push(struct ib_strv *s, const char *str); /* copies str */
void ib_strv_push_owned(struct ib_strv *s, char *str);
void ib_strv_free(struct ib_strv *s);
#define cleanup_strv __attribute__((cleanup(ib_strv_free)))

/* The one growable string: S is NUL-terminated once anything was added
 * (NULL before). */
struct ib_buf {
	char *s;
	size_t len, cap;
};
/* Room for MORE bytes (and the terminating NUL) past LEN, in one allocation. */
void ib_buf_reserve(struct ib_buf *b, size_t more);
void ib_buf_add(struct ib_buf *b, const void *data, size_t n);
void ib_buf_adds(struct ib_buf *b, const char *s);
void ib_buf_addc(struct ib_buf *b, char c);
void ib_buf_printf(struct ib_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the string over ("" when nothing was added) and empties B. */
char *ib_buf_steal(struct ib_buf *b);
void ib_buf_free(struct ib_buf *b);
#define cleanup_buf __attribute__((cleanup(ib_buf_free)))

/* Reads a whole regular file (NUL-terminated, length in *len when len != NULL).
 * FIFOs, devices and folders are refused without blocking, and so is a file
 * larger than IB_READ_FILE_MAX (or MAX): inputs such as IMAGE.sig are untrusted. */
#define IB_READ_FILE_MAX ((size_t)256 << 20)
char *ib_read_file(const char *path, size_t *len, ib_error_t *err);
char *ib_read_file_max(const char *path, size_t max, size_t *len, ib_error_t *err);
/* NAME relative to DIRFD, never through a symbolic link in its last component
 * (O_NOFOLLOW); SHOWN names it in errors. */
char *ib_read_file_at(int dirfd, const char *name, const char *shown, size_t max, size_t *len, ib_error_t *err);
/* The one write loop: all of BUF, retrying short writes and EINTR; false with
 * errno set on error. Async-signal-safe, for forked children too. */
bool ib_write_all(int fd, const void *buf, size_t n);
/* Reads exactly N bytes; false on EOF or error. */
bool ib_read_all(int fd, void *buf, size_t n);
/* openat2(2) (Linux 5.6) with FLAGS, MODE and RESOLVE (RESOLVE_* below). When
 * the kernel has none (ENOSYS), or a seccomp filter that does not know it
 * refuses it (EPERM for every call), returns -1 with errno ENOSYS, then and on
 * every later call: the caller falls back to its own walk. A refusal of this
 * one path (EPERM: an immutable folder, an LSM) is returned as it is. */
int ib_openat2(int dirfd, const char *path, int flags, mode_t mode, unsigned long long resolve);
/* False once the kernel refused openat2; tests set it to force the fallbacks. */
extern bool ib_have_openat2;
#define IB_RESOLVE_NO_MAGICLINKS 0x02ULL
#define IB_RESOLVE_NO_SYMLINKS 0x04ULL
#define IB_RESOLVE_BENEATH 0x08ULL
#define IB_RESOLVE_IN_ROOT 0x10ULL
/* The one positioned read loop: LEN bytes of FD from OFF into BUF, retrying
 * short reads and EINTR. Returns the bytes read, fewer than LEN only at the
 * end of the file; -1 with errno set on error. */
ssize_t ib_pread_full(int fd, void *buf, size_t len, off_t off);
/* Writes to PATH.tmp.PID, fsyncs, renames over PATH: readers see old or new, never half. */
int ib_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, ib_error_t *err);
int ib_mkdir_p(const char *path, mode_t mode, ib_error_t *err);
bool ib_path_exists(const char *path);
/* Joins two path parts with exactly one '/'. */
char *ib_path_join(const char *a, const char *b);
/* S with terminal control characters (C0 but tab, DEL, C1) written as \xNN or
 * \u00NN, so that a name or fact from an image or manifest cannot move the
 * cursor or draw a line of its own; newlines kept when KEEP_NEWLINES. */
char *ib_escape(const char *s, bool keep_newlines);
/* Lowercase hex of len bytes into out (2*len+1 bytes). */
void ib_hex(const uint8_t *bytes, size_t len, char *out);

/* The closest of the first N CANDIDATES to WORD when close enough to be a typo
 * (for "did you mean"), else NULL. */
const char *ib_nearest(const char *word, const char *const *candidates, size_t n);
