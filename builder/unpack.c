#include "unpack.h"
#include "ib_archive.h"
#include "crypto.h"
#include "hash.h"
#include "log.h"
#include "paths.h"
#include "sign.h"
#include "unpack_writer.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Removes the tree at DIRFD/NAME without following symlinks or crossing into
 * another file system (a mount inside a half-unpacked tree is not ours). */
static void rm_tree_at(int at, const char *name, dev_t dev)
{
	struct stat st;
	if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlinkat(at, name, 0);
		return;
	}
	if (st.st_dev != dev)
		return;
	fchmodat(at, name, 0700, 0); /* a 0555 folder from the image */
	int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return;
	}
	cleanup_strv struct ib_strv names = { 0 };
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			ib_strv_push(&names, de->d_name);
	for (size_t i = 0; i < names.n; i++)
		rm_tree_at(dirfd(d), names.v[i], dev);
	closedir(d);
	unlinkat(at, name, AT_REMOVEDIR);
}

static void rm_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return;
	rm_tree_at(AT_FDCWD, path, st.st_dev);
}

struct src {
	int fd;
	struct ib_hash_pipe *pipe;
	int error;
	bool eof;
};

static ssize_t src_read(void *ctx, const void **buf)
{
	struct src *s = ctx;
	if (s->eof)
		return 0;
	size_t cap;
	uint8_t *b = ib_hash_pipe_get(s->pipe, &cap);
	size_t got = 0;
	while (got < cap) {
		ssize_t r = read(s->fd, b + got, cap - got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			s->error = errno;
			return -1;
		}
		if (r == 0) {
			s->eof = true;
			break;
		}
		got += (size_t)r;
	}
	if (got == 0)
		return 0;
	ib_hash_pipe_put(s->pipe, got);
	*buf = b;
	return (ssize_t)got;
}

/* Extracts into the current directory (TMP); fills DIGEST_HEX with the outer
 * digest of what was read and ROOT_MODE with the root entry's mode. */
static int extract_here(int fd, char digest_hex[IB_SHA256_HEX_LEN + 1], struct ib_tar_entry *root_out, ib_error_t *err)
{
	cleanup_hash_pipe struct ib_hash_pipe *pipe = ib_hash_pipe_new(4 << 20, 4);
	struct src s = { .fd = fd, .pipe = pipe };
	cleanup_archive_reader struct ib_archive_reader *r = ib_archive_reader_new(src_read, &s, err);
	if (r == NULL)
		return -1;
	cleanup_archive_disk struct ib_archive_disk *d = ib_archive_disk_new(geteuid() == 0, true, err);
	if (d == NULL)
		return -1;
	cleanup_entry_check struct ib_entry_check *chk = ib_entry_check_new();
	for (;;) {
		struct ib_tar_entry e;
		int rc = ib_archive_reader_next(r, &e, err);
		if (rc < 0)
			return -1;
		if (rc == 0)
			break;
		const char *norm;
		if (ib_entry_check(chk, &e, &norm, err) < 0)
			return -1;
		if (strcmp(norm, ".") == 0) {
			*root_out = e;
			root_out->path = NULL;
			root_out->link = NULL;
			root_out->xattrs = NULL;
			root_out->n_xattrs = 0;
			continue;
		}
		if (ib_archive_disk_extract(d, r, NULL, NULL, err) < 0)
			return -1;
	}
	if (ib_archive_disk_finish(d, err) < 0)
		return -1;
	const void *dummy;
	while (!s.eof && s.error == 0 && src_read(&s, &dummy) > 0)
		;
	if (s.error)
		return ib_error_errno(err, s.error, "read image");
	uint8_t digest[IB_SHA256_LEN];
	if (ib_hash_pipe_finish(pipe, digest, NULL, err) < 0)
		return -1;
	ib_hex(digest, sizeof(digest), digest_hex);
	return 0;
}

static bool empty_dir(const char *path)
{
	DIR *d = opendir(path);
	if (d == NULL)
		return false;
	struct dirent *de;
	bool empty = true;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			empty = false;
			break;
		}
	closedir(d);
	return empty;
}

static int cheap_check(const char *image, const char *hex, const struct ib_verify_opts *opts, ib_error_t *err);

/* DIR.unpack.XXXXXX, for mkdtemp. */
static char *tmp_beside(const char *dir)
{
	size_t l = strlen(dir);
	while (l > 1 && dir[l - 1] == '/')
		l--;
	return xasprintf("%.*s.unpack.XXXXXX", (int)l, dir);
}

/* Makes TMP beside DIR and enters it; CWD gets the folder to return to. */
static int enter_tmp(const char *dir, char **tmp_out, int *cwd_out, ib_error_t *err)
{
	cleanup_free char *tmp = tmp_beside(dir);
	if (mkdtemp(tmp) == NULL)
		return ib_error_errno(err, errno, "unpack: make a temporary folder beside '%s'", dir);
	int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cwd < 0 || chdir(tmp) < 0) {
		int e = errno;
		if (cwd >= 0)
			close(cwd);
		rm_tree(tmp);
		return ib_error_errno(err, e, "unpack: enter '%s'", tmp);
	}
	*cwd_out = cwd;
	*tmp_out = steal_pointer(&tmp);
	return 0;
}

/* Verifies and extracts in one read of the image (verify.c writes each entry
 * once it passed the path checks, and hashes the very bytes it writes); the
 * tree is kept only when every check held. Before the first byte is written,
 * IMAGE.sha256 must carry a good signature (or --allow-unsigned): an image
 * that cannot pass is refused by the plain verify, which writes nothing. */
static int verify_extract(const char *image, const char *dir, const struct ib_verify_opts *opts, char got[IB_SHA256_HEX_LEN + 1],
			  char **tmp_out, struct ib_tar_entry *root, ib_error_t *err)
{
	struct ib_verify_opts vo = opts ? *opts : (struct ib_verify_opts){ 0 };
	char hex[IB_SHA256_HEX_LEN + 1];
	ib_error_t pre = NULL;
	if (ib_verify_read_sha256_file(image, hex, &pre) < 0 || cheap_check(image, hex, &vo, &pre) < 0) {
		ib_error_free(&pre);
		struct ib_verify_report rep;
		int rc = ib_verify(image, &vo, &rep, err);
		ib_verify_report_free(&rep);
		if (rc < 0)
			return ib_error_wrap(err, "unpack: refusing an image that does not verify");
		/* It verifies now (its signature came meanwhile): the one pass below checks it all again. */
	}
	cleanup_free char *tmp = tmp_beside(dir);
	if (mkdtemp(tmp) == NULL)
		return ib_error_errno(err, errno, "unpack: make a temporary folder beside '%s'", dir);
	cleanup_fd int into = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	cleanup_archive_disk struct ib_archive_disk *d = NULL;
	int rc = into < 0 ? ib_error_errno(err, errno, "unpack: open '%s'", tmp) : 0;
	if (rc == 0)
		d = ib_archive_disk_new(geteuid() == 0, true, err);
	if (rc == 0 && d == NULL)
		rc = -1;
	/* Without the thread (it could not start), this thread writes every file. */
	cleanup_unpack_writer struct ib_unpack_writer *writer =
		rc == 0 && getenv("IMGBUILD_UNPACK_ONE_WRITER") == NULL ? ib_unpack_writer_new(into, geteuid() == 0) : NULL;
	if (rc == 0) {
		vo.disk = d;
		vo.into = into;
		vo.writer = writer;
		vo.root = root;
		struct ib_verify_report rep;
		rc = ib_verify(image, &vo, &rep, err);
		ib_log_debug("unpack: %zu of %" PRIu64 " files written through the second thread's queue",
			     ib_unpack_writer_files(writer), rep.files);
		memcpy(got, rep.sha256, IB_SHA256_HEX_LEN + 1);
		ib_verify_report_free(&rep);
		if (rc < 0)
			ib_error_wrap(err, "unpack: refusing an image that does not verify");
	}
	if (rc < 0) {
		rm_tree(tmp);
		return -1;
	}
	*tmp_out = steal_pointer(&tmp);
	return 0;
}

static int unpack(const char *image, const char *dir, const struct ib_verify_opts *opts, bool no_verify,
		  char got[IB_SHA256_HEX_LEN + 1], ib_error_t *err)
{
	struct stat st;
	bool dir_existed = false;
	if (lstat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode) || !empty_dir(dir))
			return ib_error_usage(err, "unpack: '%s' exists and is not an empty folder", dir);
		dir_existed = true;
	}
	struct ib_tar_entry root = { .type = IB_ENTRY_DIR, .mode = 0755 };
	cleanup_free char *tmp = NULL;
	int rc;
	if (!no_verify) {
		if (verify_extract(image, dir, opts, got, &tmp, &root, err) < 0)
			return -1;
		rc = 0;
	} else {
		ib_log_warn("UNPACKING '%s' WITHOUT VERIFYING IT (--no-verify): its digest, signature and listing are "
			    "NOT checked; only path safety is",
			    image);
		cleanup_fd int fd = open(image, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (fd < 0)
			return ib_error_errno(err, errno, "unpack: open '%s'", image);
		cleanup_fd int cwd = -1;
		if (enter_tmp(dir, &tmp, &cwd, err) < 0)
			return -1;
		rc = extract_here(fd, got, &root, err);
		if (fchdir(cwd) < 0 && rc == 0)
			rc = ib_error_errno(err, errno, "unpack: return to the working folder");
	}
	if (rc == 0 && geteuid() == 0 && chown(tmp, (uid_t)root.uid, (gid_t)root.gid) < 0)
		rc = ib_error_errno(err, errno, "chown '%s'", tmp);
	if (rc == 0 && chmod(tmp, root.mode & 07777) < 0)
		rc = ib_error_errno(err, errno, "chmod '%s'", tmp);
	if (rc == 0 && dir_existed && rmdir(dir) < 0)
		rc = ib_error_errno(err, errno, "replace the empty folder '%s'", dir);
	if (rc == 0 && rename(tmp, dir) < 0)
		rc = ib_error_errno(err, errno, "rename '%s' to '%s'", tmp, dir);
	if (rc < 0) {
		rm_tree(tmp);
		return ib_error_wrap(err, "unpack '%s'", image);
	}
	return 0;
}

int ib_unpack(const char *image, const char *dir, const struct ib_verify_opts *opts, bool no_verify, ib_error_t *err)
{
	char got[IB_SHA256_HEX_LEN + 1];
	return unpack(image, dir, opts, no_verify, got, err);
}

/* .unpack-HEX.XXXXXX folders of unpacks of this digest that died (kill -9,
 * power loss); only called while holding the digest's unpack lock, so none of
 * them is still being written. */
static void remove_stale_unpacks(const char *images, const char *hex)
{
	DIR *d = opendir(images);
	if (d == NULL)
		return;
	cleanup_free char *prefix = xasprintf(".unpack-%s.", hex);
	cleanup_strv struct ib_strv stale = { 0 };
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			ib_strv_push(&stale, de->d_name);
	closedir(d);
	for (size_t i = 0; i < stale.n; i++) {
		cleanup_free char *p = ib_path_join(images, stale.v[i]);
		ib_log_info("removing '%s', left by an unpack that did not finish", p);
		rm_tree(p);
	}
}

static char *stamp_of(const char *image)
{
	struct stat st;
	if (stat(image, &st) < 0)
		return NULL;
	return xasprintf("%lld %lld.%09ld %llu\n", (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
			 (unsigned long long)st.st_ino);
}

/* The cheap check for a cached tree: IMAGE.sha256 names it and, unless
 * unsigned images are allowed, IMAGE.sig holds for that digest. */
static int cheap_check(const char *image, const char *hex, const struct ib_verify_opts *opts, ib_error_t *err)
{
	cleanup_free char *sig = xasprintf("%s.sig", image);
	if (!ib_path_exists(sig)) {
		if (opts && opts->allow_unsigned)
			return 0;
		return ib_error_set(err, 0, "'%s' is not signed", image);
	}
	struct ib_pubkey *keys = NULL;
	size_t n = 0;
	if (ib_sign_trusted_keys(opts ? opts->key : NULL, &keys, &n, err) < 0)
		return -1;
	int rc = ib_sign_verify_image(sig, hex, keys, n, NULL, err);
	ib_pubkey_list_free(keys, n);
	return rc;
}

int ib_unpack_cached(const char *image, const struct ib_verify_opts *opts, char **tree_out, ib_error_t *err)
{
	/* IMAGE.sha256 is read once (a regular file, not a FIFO that could answer
	 * twice); every later step checks the digest of the bytes it read against
	 * this value, never the name again. */
	char hex[IB_SHA256_HEX_LEN + 1];
	if (ib_verify_read_sha256_file(image, hex, err) < 0)
		return ib_error_wrap(err, "unpack '%s'", image);
	cleanup_free char *images = ib_cache_private_subdir("images", err);
	if (images == NULL)
		return -1;
	cleanup_free char *key = ib_path_join(images, hex);
	cleanup_free char *tree = ib_path_join(key, "tree");
	cleanup_free char *stamp_path = ib_path_join(key, "image.stamp");
	cleanup_free char *now = stamp_of(image);
	if (now == NULL)
		return ib_error_errno(err, errno, "stat '%s'", image);

	if (ib_path_exists(tree)) {
		if (cheap_check(image, hex, opts, err) < 0)
			return ib_error_wrap(err, "cached image '%s'", image);
		size_t len;
		cleanup_free char *old = ib_read_file(stamp_path, &len, NULL);
		if (old == NULL || strcmp(old, now) != 0) {
			/* The file changed since it was cached: verify it again, and
			 * take the cached tree only if what was read has the digest
			 * the tree is filed under. */
			struct ib_verify_opts vo = opts ? *opts : (struct ib_verify_opts){ 0 };
			vo.quiet = true;
			struct ib_verify_report rep;
			int rc = ib_verify(image, &vo, &rep, err);
			bool same = strcmp(rep.sha256, hex) == 0;
			ib_verify_report_free(&rep);
			if (rc < 0)
				return -1;
			if (!same)
				return ib_error_set(err, 0, "'%s' does not match its .sha256", image);
			ib_write_file_atomic(stamp_path, now, strlen(now), 0644, NULL);
		}
		*tree_out = steal_pointer(&tree);
		return 0;
	}

	/* The ranks of an MPI job start together on a cold cache: one unpacks, the
	 * others wait on this lock and then take its tree, which appears only by the
	 * final rename (never half-made). The kernel drops the lock of a killed
	 * holder; its temporary folder is removed by the next holder. */
	cleanup_free char *lock_path = xasprintf("%s/%s.lock", images, hex);
	cleanup_fd int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lock < 0)
		return ib_error_errno(err, errno, "open '%s'", lock_path);
	if (flock(lock, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK)
			return ib_error_errno(err, errno, "lock '%s'", lock_path);
		ib_log_info("waiting for another imgbuild process unpacking '%s' into the cache", image);
		while (flock(lock, LOCK_EX) < 0)
			if (errno != EINTR)
				return ib_error_errno(err, errno, "lock '%s'", lock_path);
	}
	if (ib_path_exists(tree)) {
		/* Another process unpacked it meanwhile, maybe trusting other keys. */
		if (cheap_check(image, hex, opts, err) < 0)
			return ib_error_wrap(err, "cached image '%s'", image);
		*tree_out = steal_pointer(&tree);
		return 0;
	}
	remove_stale_unpacks(images, hex);

	/* Unpacked beside the cache entry and renamed into place only once the
	 * bytes extracted (and verified) are known to have the digest it is
	 * named by: no other run can pick up a tree that is not that image's. */
	struct stat st;
	if (lstat(key, &st) == 0)
		rm_tree(key); /* a stamp left without its tree */
	cleanup_free char *tmp_key = xasprintf("%s/.unpack-%s.XXXXXX", images, hex);
	if (mkdtemp(tmp_key) == NULL)
		return ib_error_errno(err, errno, "unpack: make a folder in '%s'", images);
	cleanup_free char *tmp_tree = ib_path_join(tmp_key, "tree");
	cleanup_free char *tmp_stamp = ib_path_join(tmp_key, "image.stamp");
	struct ib_verify_opts vo = opts ? *opts : (struct ib_verify_opts){ 0 };
	vo.quiet = true;
	char got[IB_SHA256_HEX_LEN + 1] = "";
	int rc = unpack(image, tmp_tree, &vo, false, got, err);
	if (rc == 0 && strcmp(got, hex) != 0)
		rc = ib_error_set(err, 0,
				  "'%s' changed while it was read: its .sha256 named %s, the image verified is %s; "
				  "nothing was cached (check who writes these files, then run again)",
				  image, hex, got);
	if (rc == 0)
		rc = ib_write_file_atomic(tmp_stamp, now, strlen(now), 0644, err);
	if (rc == 0 && rename(tmp_key, key) < 0) {
		/* Another process may have won the race to the same digest. */
		if ((errno == EEXIST || errno == ENOTEMPTY) && ib_path_exists(tree) && !empty_dir(tree)) {
			rm_tree(tmp_key);
			*tree_out = steal_pointer(&tree);
			return 0;
		}
		rc = ib_error_errno(err, errno, "rename '%s' to '%s'", tmp_key, key);
	}
	if (rc < 0) {
		rm_tree(tmp_key);
		return -1;
	}
	ib_log_debug("unpacked '%s' into the image cache (%s)", image, hex);
	*tree_out = steal_pointer(&tree);
	return 0;
}
