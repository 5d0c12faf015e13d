/* The content-addressed download cache. See store.h for the invariant. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "paths.h"
#include "util.h"

bool ib_store_valid_digest(const char *hex)
{
	if (hex == NULL || strlen(hex) != IB_SHA256_HEX_LEN)
		return false;
	for (const char *p = hex; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

char *ib_store_dir(ib_error_t *err)
{
	return ib_cache_subdir("downloads/sha256", err);
}

char *ib_store_path(const char *sha256, ib_error_t *err)
{
	if (!ib_store_valid_digest(sha256)) {
		ib_error_usage(err, "invalid sha256 '%s' (want 64 lowercase hex digits)", sha256 ? sha256 : "(null)");
		return NULL;
	}
	cleanup_free char *dir = ib_store_dir(err);
	if (dir == NULL)
		return NULL;
	return ib_path_join(dir, sha256);
}

bool ib_store_has(const char *sha256)
{
	ib_error_t err = NULL;
	cleanup_free char *path = ib_store_path(sha256, &err);
	if (path == NULL) {
		ib_error_free(&err);
		return false;
	}
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *ib_store_part_path(const char *sha256, ib_error_t *err)
{
	cleanup_free char *path = ib_store_path(sha256, err);
	if (path == NULL)
		return NULL;
	return xasprintf("%s.part", path);
}

int ib_store_tmpfile(char **path_out, ib_error_t *err)
{
	cleanup_free char *dir = ib_store_dir(err);
	if (dir == NULL)
		return -1;
	/* The leading dot and the suffix keep temporary names apart from entries,
	 * which are exactly 64 hex digits. */
	cleanup_free char *path = xasprintf("%s/.tmp-XXXXXX", dir);
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return ib_error_errno(err, errno, "create a temporary file in '%s'", dir);
	*path_out = steal_pointer(&path);
	return fd;
}

static int fsync_dir(const char *path, ib_error_t *err)
{
	cleanup_free char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = '\0';
	cleanup_fd int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		return ib_error_errno(err, errno, "sync '%s'", dir);
	return 0;
}

int ib_store_commit(const char *tmp_path, const char *sha256, const char *origin, char *actual_out, ib_error_t *err)
{
	char actual[IB_SHA256_HEX_LEN + 1];
	cleanup_fd int fd = open(tmp_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ib_error_errno(err, errno, "open '%s'", tmp_path);
	if (ib_sha256_fd(fd, actual, err) < 0)
		return -1;
	if (actual_out)
		memcpy(actual_out, actual, sizeof(actual));
	if (sha256 && strcmp(actual, sha256) != 0) {
		/* A mismatching file must never be readable under any name a lookup
		 * returns: remove it before reporting. */
		unlink(tmp_path);
		ib_error_set(err, 0, "sha256 mismatch for '%s': expected %s, got %s", origin, sha256, actual);
		return IB_STORE_MISMATCH;
	}
	cleanup_free char *dst = ib_store_path(actual, err);
	if (dst == NULL)
		return -1;
	/* fsync before rename: otherwise a crash can leave the new name pointing at
	 * a file whose data never reached the disk (ext4 "zero-length file" issue). */
	if (fchmod(fd, 0444) < 0 || fsync(fd) < 0)
		return ib_error_errno(err, errno, "sync '%s'", tmp_path);
	if (rename(tmp_path, dst) < 0)
		return ib_error_errno(err, errno, "rename '%s' to '%s'", tmp_path, dst);
	return fsync_dir(dst, err);
}

/* Entries checked by this process, with the inode state they were checked at:
 * a build asks for the same entry for each stage, and hashing once is enough
 * as long as the file is not changed (a write moves its ctime). */
struct checked {
	char hex[IB_SHA256_HEX_LEN + 1];
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec ctime;
};
static struct checked *checked;
static size_t n_checked;

static bool same_state(const struct checked *c, const struct stat *st)
{
	return c->dev == st->st_dev && c->ino == st->st_ino && c->size == st->st_size && c->ctime.tv_sec == st->st_ctim.tv_sec &&
	       c->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

int ib_store_check(const char *sha256, char **path_out, ib_error_t *err)
{
	cleanup_free char *path = ib_store_path(sha256, err);
	if (path == NULL)
		return -1;
	cleanup_fd int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return ib_error_errno(err, errno, "download store entry '%s' (delete it: rm -f '%s')", path, path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return ib_error_errno(err, errno, "stat '%s'", path);
	if (!S_ISREG(st.st_mode))
		return ib_error_set(err, 0,
				    "download store entry '%s' is not a regular file (delete it: rm -f '%s', then "
				    "imgbuild fetch MANIFEST fetches it again)",
				    path, path);
	for (size_t i = 0; i < n_checked; i++)
		if (strcmp(checked[i].hex, sha256) == 0 && same_state(&checked[i], &st)) {
			if (path_out)
				*path_out = steal_pointer(&path);
			return 1;
		}
	char actual[IB_SHA256_HEX_LEN + 1];
	if (ib_sha256_fd(fd, actual, err) < 0)
		return ib_error_wrap(err, "check the download store entry '%s'", path);
	if (strcmp(actual, sha256) != 0)
		return ib_error_set(err, 0,
				    "download store entry '%s' is corrupt: its content has sha256 %s (delete it: "
				    "rm -f '%s', then imgbuild fetch MANIFEST fetches it again)",
				    path, actual, path);
	checked = xrealloc(checked, (n_checked + 1) * sizeof(*checked));
	struct checked *c = &checked[n_checked++];
	memcpy(c->hex, sha256, sizeof(c->hex));
	c->dev = st.st_dev, c->ino = st.st_ino, c->size = st.st_size, c->ctime = st.st_ctim;
	if (path_out)
		*path_out = steal_pointer(&path);
	return 1;
}
