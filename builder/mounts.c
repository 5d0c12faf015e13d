#include "mounts.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

void ib_mount_journal_init(struct ib_mount_journal *j)
{
	j->targets = NULL;
	j->n = j->cap = 0;
}

void ib_mount_journal_free(struct ib_mount_journal *j)
{
	for (size_t i = 0; i < j->n; i++)
		free(j->targets[i]);
	free(j->targets);
	ib_mount_journal_init(j);
}

void ib_mount_journal_undo(struct ib_mount_journal *j)
{
	/* Newest first: a mount made on top of another (a bind into a tmpfs) must
	 * go before the one below it. libnvidia-container walks oldest-first. */
	for (size_t i = j->n; i-- > 0;)
		umount2(j->targets[i], MNT_DETACH);
	ib_mount_journal_free(j);
}

static void journal_add(struct ib_mount_journal *j, const char *target)
{
	if (j->n == j->cap) {
		j->cap = j->cap ? 2 * j->cap : 16;
		j->targets = xrealloc(j->targets, j->cap * sizeof(char *));
	}
	j->targets[j->n++] = xstrdup(target);
}

int ib_xmount(struct ib_mount_journal *j, const char *src, const char *target, const char *fstype, unsigned long flags,
	      const void *data, ib_error_t *err)
{
	if (mount(src, target, fstype, flags, data) < 0) {
		if (flags & MS_REMOUNT)
			return ib_error_errno(err, errno, "remount '%s'", target);
		if (flags & (MS_PRIVATE | MS_SLAVE | MS_SHARED | MS_UNBINDABLE))
			return ib_error_errno(err, errno, "make '%s' private", target);
		return ib_error_errno(err, errno, "mount '%s' on '%s'", src ? src : fstype, target);
	}
	if (j && !(flags & (MS_REMOUNT | MS_PRIVATE | MS_SLAVE | MS_SHARED | MS_UNBINDABLE)))
		journal_add(j, target);
	return 0;
}

int ib_xumount(const char *target, int flags, ib_error_t *err)
{
	if (umount2(target, flags) < 0)
		return ib_error_errno(err, errno, "unmount '%s'", target);
	return 0;
}

/* Flags a bind remount must repeat: in a user namespace the kernel refuses to
 * clear nosuid/nodev/noexec/rdonly/atime flags locked on the source mount. */
static unsigned long locked_flags(const char *path)
{
	struct statvfs sv;
	unsigned long f = 0;
	if (statvfs(path, &sv) < 0)
		return 0;
	if (sv.f_flag & ST_NOSUID)
		f |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV)
		f |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC)
		f |= MS_NOEXEC;
	if (sv.f_flag & ST_RDONLY)
		f |= MS_RDONLY;
	if (sv.f_flag & ST_NOATIME)
		f |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME)
		f |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME)
		f |= MS_RELATIME;
	return f;
}

static int bind_mount(struct ib_mount_journal *j, const char *src, const char *dst, unsigned long rec, unsigned long flags,
		      ib_error_t *err)
{
	if (ib_xmount(j, src, dst, NULL, MS_BIND | rec, NULL, err) < 0)
		return -1;
	unsigned long want = flags | locked_flags(dst);
	if (want == 0)
		return 0;
	if (ib_xmount(NULL, NULL, dst, NULL, MS_BIND | MS_REMOUNT | want, NULL, err) < 0)
		return ib_error_wrap(err, "bind '%s'", src);
	return 0;
}

int ib_bind_mount(struct ib_mount_journal *j, const char *src, const char *dst, unsigned long flags, ib_error_t *err)
{
	return bind_mount(j, src, dst, MS_REC, flags, err);
}

int ib_bind_mount_flat(struct ib_mount_journal *j, const char *src, const char *dst, unsigned long flags, ib_error_t *err)
{
	return bind_mount(j, src, dst, 0, flags, err);
}

int ib_make_mount_point(const char *dst, bool directory, ib_error_t *err)
{
	struct stat st;
	if (lstat(dst, &st) == 0)
		return 0;
	cleanup_free char *parent = xstrdup(dst);
	char *slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = '\0';
		if (ib_mkdir_p(parent, 0755, err) < 0)
			return -1;
	}
	if (directory) {
		if (mkdir(dst, 0755) < 0 && errno != EEXIST)
			return ib_error_errno(err, errno, "mkdir '%s'", dst);
		return 0;
	}
	int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 && errno != EEXIST)
		return ib_error_errno(err, errno, "create '%s'", dst);
	if (fd >= 0)
		close(fd);
	return 0;
}

static int mount_id(const char *path, int *id)
{
	/* name_to_handle_at gives the mount id without parsing mountinfo. */
	struct {
		struct file_handle fh;
		unsigned char pad[128];
	} h;
	h.fh.handle_bytes = sizeof(h.pad);
	*id = -1;
	if (name_to_handle_at(AT_FDCWD, path, &h.fh, id, AT_SYMLINK_FOLLOW) < 0 && errno != EOVERFLOW)
		return -1;
	return *id >= 0 ? 0 : -1;
}

bool ib_is_mount_point(const char *path)
{
	cleanup_free char *parent = xasprintf("%s/..", path);
	struct stat a, b;
	if (stat(path, &a) < 0 || stat(parent, &b) < 0)
		return false;
	if (a.st_dev != b.st_dev || a.st_ino == b.st_ino)
		return true;
	int ia = -1, ib = -2;
	if (mount_id(path, &ia) == 0 && mount_id(parent, &ib) == 0)
		return ia != ib;
	return false;
}

/* ---- resolving a path inside an image root ---- */

/* An O_PATH descriptor for REL (no leading '/') under ROOTFD. */
static int open_in_root(int rootfd, const char *rel, const char *root, ib_error_t *err)
{
	if (*rel == '\0') {
		int fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
		return fd < 0 ? ib_error_errno(err, errno, "dup '%s'", root) : fd;
	}
	int fd = ib_openat2(rootfd, rel, O_PATH | O_CLOEXEC, 0, IB_RESOLVE_IN_ROOT | IB_RESOLVE_NO_MAGICLINKS);
	if (fd >= 0)
		return fd;
	if (errno != ENOSYS)
		return ib_error_errno(err, errno, "open '/%s' inside '%s'", rel, root);
	/* No openat2: one component at a time, never following a link. */
	cleanup_fd int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
	if (cur < 0)
		return ib_error_errno(err, errno, "dup '%s'", root);
	cleanup_free char *copy = xstrdup(rel);
	for (char *save = NULL, *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		int next = openat(cur, c, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
			return ib_error_errno(err, errno, "open '/%s' inside '%s'", rel, root);
		struct stat st;
		if (fstat(next, &st) < 0 || S_ISLNK(st.st_mode)) {
			close(next);
			return ib_error_set(err, ELOOP,
					    "open '/%s' inside '%s': '%s' is a symbolic link, which this kernel (no "
					    "openat2) cannot follow safely inside the image",
					    rel, root, c);
		}
		close(cur);
		cur = next;
	}
	return ib_steal_fd(&cur);
}

char *ib_resolve_in_root(const char *root, const char *path, enum ib_in_root_create create, ib_error_t *err)
{
	cleanup_fd int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		ib_error_errno(err, errno, "open '%s'", root);
		return NULL;
	}
	/* The components, without empty ones and '.'. */
	cleanup_strv struct ib_strv comps = { 0 };
	cleanup_free char *copy = xstrdup(path);
	for (char *save = NULL, *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (!strcmp(c, "."))
			continue;
		if (!strcmp(c, "..")) {
			ib_error_usage(err, "path '%s' inside the image: '..' is not allowed", path);
			return NULL;
		}
		ib_strv_push(&comps, c);
	}
	char *result = NULL;
	cleanup_fd int fd = -1;
	cleanup_free char *rel = xstrdup("");
	char link[64], buf[4096];
	for (size_t i = 0; i <= comps.n; i++) {
		if (i > 0) {
			char *longer = *rel ? xasprintf("%s/%s", rel, comps.v[i - 1]) : xstrdup(comps.v[i - 1]);
			free(rel);
			rel = longer;
		}
		ib_error_t e2 = NULL;
		int next = open_in_root(rootfd, rel, root, &e2);
		if (next < 0 && e2->status == ENOENT && i > 0 && create != IB_IN_ROOT_NONE && fd >= 0) {
			/* Made in the folder already resolved: mkdirat and O_EXCL|O_NOFOLLOW never follow a link. */
			const char *name = comps.v[i - 1];
			int r;
			if (i == comps.n && create == IB_IN_ROOT_FILE) {
				r = openat(fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
				if (r >= 0)
					close(r);
			} else
				r = mkdirat(fd, name, 0755);
			if (r < 0 && errno != EEXIST) {
				ib_error_free(&e2);
				ib_error_errno(err, errno, "create '/%s' inside '%s'", rel, root);
				goto out;
			}
			ib_error_free(&e2);
			/* EEXIST and still missing: a link that points nowhere. */
			next = open_in_root(rootfd, rel, root, &e2);
		}
		if (next < 0) {
			*err = e2;
			goto out;
		}
		if (fd >= 0)
			close(fd);
		fd = next;
	}
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, buf, sizeof(buf) - 1);
	if (n < 0) {
		ib_error_errno(err, errno, "resolve '%s' inside '%s'", path, root);
		goto out;
	}
	buf[n] = '\0';
	result = xstrdup(buf);
out:
	return result;
}
