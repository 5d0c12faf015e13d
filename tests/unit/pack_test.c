/* Unit tests for builder/pack.c on a small tree made here (as root: owners,
 * device nodes): overlayfs whiteouts (char 0:0), devices, fifos and sockets
 * stay out of the image; the listing is the last entry, sorted, with lines
 * written out by hand from the format in imgmeta.h; the digest pack returns
 * is that of the file it wrote (OpenSSL's, not the follower's); a reserved
 * fact fails the pack and leaves nothing at the output; small files read
 * through io_uring give the same image as a kernel that refuses it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <grp.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <unistd.h>

#include "ib_archive.h"
#include "crypto.h"
#include "imgmeta.h"
#include "manifest.h"
#include "pack.h"
#include "sandbox.h"
#include "util.h"

#define EPOCH 1577836800
#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static char top[64];
static char *root, *outdir;

static void put(const char *rel, const char *text, mode_t mode)
{
	cleanup_free char *path = ib_path_join(root, rel);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);	/* past the umask */
	close(fd);
}

static int setup(void **state)
{
	if (geteuid() != 0) {
		print_message("# skipped: needs root (owners, device nodes)\n");
		return -1;
	}
	strcpy(top, "/tmp/ib-pack-unit.XXXXXX");
	assert_non_null(mkdtemp(top));
	root = ib_path_join(top, "root");
	outdir = ib_path_join(top, "out");
	assert_int_equal(mkdir(root, 0755), 0);
	assert_int_equal(chmod(root, 0755), 0);
	assert_int_equal(mkdir(outdir, 0755), 0);
	cleanup_free char *dir = ib_path_join(root, "dir");
	assert_int_equal(mkdir(dir, 0750), 0);
	assert_int_equal(chmod(dir, 0750), 0);
	put("a", "abc", 0644);
	put("sp ace", "x", 0600);
	put("suid", "", 04755);
	cleanup_free char *suid = ib_path_join(root, "suid");
	assert_int_equal(chown(suid, 1234, 5678), 0);
	assert_int_equal(chmod(suid, 04755), 0);	/* chown drops setuid */
	cleanup_free char *a = ib_path_join(root, "a");
	cleanup_free char *hl = ib_path_join(root, "hl");
	assert_int_equal(link(a, hl), 0);
	cleanup_free char *lnk = ib_path_join(root, "dir/lnk");
	assert_int_equal(symlink("../a", lnk), 0);
	/* what overlayfs leaves for a deleted file, a device, a fifo, a socket */
	cleanup_free char *wh = ib_path_join(root, "wh");
	cleanup_free char *null = ib_path_join(root, "null");
	cleanup_free char *fifo = ib_path_join(root, "fifo");
	assert_int_equal(mknod(wh, S_IFCHR | 0000, makedev(0, 0)), 0);
	assert_int_equal(mknod(null, S_IFCHR | 0666, makedev(1, 3)), 0);
	assert_int_equal(mkfifo(fifo, 0644), 0);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", root);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s);
	return 0;
}

static int teardown(void **state)
{
	ib_error_t err = NULL;
	if (top[0] && ib_remove_tree(top, &err) < 0)
		ib_error_free(&err);
	free(root);
	free(outdir);
	return 0;
}

struct image {
	struct ib_strv paths;	/* in archive order */
	char *listing, *facts;
};

static ssize_t source_fd(void *ctx, const void **buf)
{
	static char block[65536];
	ssize_t n = read(*(int *)ctx, block, sizeof(block));
	*buf = block;
	return n;
}

static void read_image(const char *path, struct image *img)
{
	memset(img, 0, sizeof(*img));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ib_error_t err = NULL;
	cleanup_archive_reader struct ib_archive_reader *r = ib_archive_reader_new(source_fd, &fd, &err);
	struct ib_tar_entry e;
	int rc;
	while ((rc = ib_archive_reader_next(r, &e, &err)) == 1) {
		ib_strv_push(&img->paths, e.path);
		cleanup_buf struct ib_buf data = { 0 };
		const void *buf;
		size_t len;
		while ((rc = ib_archive_reader_data(r, &buf, &len, &err)) == 1)
			ib_buf_add(&data, buf, len);
		if (rc < 0)
			fail_msg("%s", err->msg);
		ib_buf_addc(&data, '\0');
		if (strcmp(e.path, "./" IB_META_LISTING) == 0)
			img->listing = ib_buf_steal(&data);
		else if (strcmp(e.path, "./" IB_META_FACTS) == 0)
			img->facts = ib_buf_steal(&data);
	}
	if (rc < 0)
		fail_msg("%s", err->msg);
	close(fd);
}

static void image_free(struct image *img)
{
	ib_strv_free(&img->paths);
	free(img->listing);
	free(img->facts);
}

static bool has_path(const struct image *img, const char *p)
{
	for (size_t i = 0; i < img->paths.n; i++)
		if (strcmp(img->paths.v[i], p) == 0)
			return true;
	return false;
}

static void expect_line(const char *listing, const char *line)
{
	cleanup_free char *needle = xasprintf("\n%s\n", line);
	if (strstr(listing, needle) == NULL)
		fail_msg("the listing lacks '%s':\n%s", line, listing);
}

static void test_pack_tree(void **state)
{
	cleanup_free char *out = ib_path_join(outdir, "t.tar");
	const struct ib_kv facts[] = { { .key = "cuda", .value = "10.2" } };
	struct ib_pack_stats stats = { 0 };
	struct ib_pack_opts o = { .root = root, .output = out, .epoch = EPOCH, .compression = IB_COMPRESS_NONE,
				  .facts = facts, .n_facts = 1, .threads = 2, .stats = &stats };
	char digest[IB_SHA256_HEX_LEN + 1];
	ib_error_t err = NULL;
	if (ib_pack(&o, digest, &err) < 0)
		fail_msg("%s", err->msg);
	char want[IB_SHA256_HEX_LEN + 1];
	assert_int_equal(ib_sha256_file(out, want, &err), 0);
	assert_string_equal(digest, want);
	assert_int_equal(stats.skipped_devices, 2);	/* the whiteout and /dev/null's twin */
	assert_int_equal(stats.skipped_special, 2);	/* the fifo and the socket */

	struct image img;
	read_image(out, &img);
	assert_false(has_path(&img, "./wh"));
	assert_false(has_path(&img, "./null"));
	assert_false(has_path(&img, "./fifo"));
	assert_false(has_path(&img, "./sock"));
	assert_true(has_path(&img, "./a"));
	assert_true(has_path(&img, "./sp ace"));
	/* the listing is the last entry */
	assert_string_equal(img.paths.v[img.paths.n - 1], "./" IB_META_LISTING);

	/* facts.toml: pack's own keys, then the given facts */
	assert_non_null(img.facts);
	struct ib_facts f;
	if (ib_facts_parse(img.facts, strlen(img.facts), "facts.toml", &f, &err) < 0)
		fail_msg("%s", err->msg);
	ib_facts_free(&f);
	assert_non_null(strstr(img.facts, "\nname = \"t\"\n"));
	assert_non_null(strstr(img.facts, "\ncreated = 1577836800\n"));
	assert_non_null(strstr(img.facts, "\ncuda = \"10.2\"\n"));

	/* the listing, line by line from the format (imgmeta.h) */
	const char *l = img.listing;
	assert_non_null(l);
	assert_memory_equal(l, IB_LISTING_HEADER, strlen(IB_LISTING_HEADER));
	uint8_t d[IB_SHA256_LEN];
	char x_hex[IB_SHA256_HEX_LEN + 1];
	ib_sha256_buf("x", 1, d);
	ib_hex(d, sizeof(d), x_hex);
	cleanup_free char *space_line = xasprintf("f 0600 0 0 1 %s ./sp\\040ace -", x_hex);
	expect_line(l, "d 0755 0 0 0 - . -");
	expect_line(l, "f 0644 0 0 3 " ABC_HEX " ./a -");
	expect_line(l, "d 0750 0 0 0 - ./dir -");
	expect_line(l, "l 0777 0 0 0 - ./dir/lnk ../a");
	expect_line(l, "h 0644 0 0 0 - ./hl ./a");
	expect_line(l, space_line);
	expect_line(l, "f 4755 1234 5678 0 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 ./suid -");
	assert_null(strstr(l, "./wh"));
	assert_null(strstr(l, "./null"));
	/* sorted by path bytes, each parsing, none twice, and no line for itself */
	const char *p = l + strlen(IB_LISTING_HEADER);
	cleanup_free char *prev = NULL;
	size_t lines = 0;
	while (*p) {
		const char *nl = strchr(p, '\n');
		assert_non_null(nl);
		struct ib_listing_entry e;
		if (ib_listing_parse_line(p, (size_t)(nl - p), &e, &err) < 0)
			fail_msg("'%.*s': %s", (int)(nl - p), p, err->msg);
		if (prev && strcmp(prev, e.path) >= 0)
			fail_msg("'%s' after '%s'", e.path, prev);
		assert_string_not_equal(e.path, "./" IB_META_LISTING);
		free(prev);
		prev = xstrdup(e.path);
		ib_listing_entry_free(&e);
		lines++;
		p = nl + 1;
	}
	/* every entry but the listing has its line */
	assert_int_equal(lines, img.paths.n - 1);
	image_free(&img);

	/* the same tree packs to the same bytes */
	cleanup_free char *out2 = ib_path_join(outdir, "t2.tar");
	o.output = out2;
	o.name = "t";
	char digest2[IB_SHA256_HEX_LEN + 1];
	if (ib_pack(&o, digest2, &err) < 0)
		fail_msg("%s", err->msg);
	assert_string_equal(digest, digest2);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

/* A tree of 150 folders (more than the walk's queue holds, so both walkers
 * take folders from it and also go down into folders themselves): every path
 * is in the image once, in sorted order, whichever thread found it. Then the
 * same walk as an ordinary user with one folder it cannot open fails with
 * that folder's name and leaves no output. */
static void test_pack_wide_tree(void **state)
{
	cleanup_free char *wide = ib_path_join(top, "wide");
	assert_int_equal(mkdir(wide, 0755), 0);
	assert_int_equal(chmod(wide, 0755), 0);
	for (int i = 0; i < 150; i++) {
		cleanup_free char *d = xasprintf("%s/d%03d", wide, i);
		cleanup_free char *sub = xasprintf("%s/s", d);
		cleanup_free char *f = xasprintf("%s/f", sub);
		assert_int_equal(mkdir(d, 0755), 0);
		assert_int_equal(mkdir(sub, 0755), 0);
		assert_int_equal(chmod(d, 0755) | chmod(sub, 0755), 0);
		ib_error_t err = NULL;
		if (ib_write_file_atomic(f, "x", 1, 0644, &err) < 0)
			fail_msg("%s", err->msg);
	}
	cleanup_free char *out = ib_path_join(outdir, "wide.tar");
	struct ib_pack_opts o = { .root = wide, .output = out, .epoch = EPOCH, .compression = IB_COMPRESS_NONE };
	char digest[IB_SHA256_HEX_LEN + 1];
	ib_error_t err = NULL;
	if (ib_pack(&o, digest, &err) < 0)
		fail_msg("%s", err->msg);
	struct image img;
	read_image(out, &img);
	size_t tree = 0;
	for (size_t i = 0; i < img.paths.n; i++) {
		if (i > 0 && strcmp(img.paths.v[i - 1], img.paths.v[i]) >= 0 && i + 1 < img.paths.n)
			fail_msg("'%s' before '%s'", img.paths.v[i - 1], img.paths.v[i]);
		if (strncmp(img.paths.v[i], "./d", 3) == 0)
			tree++;
	}
	assert_int_equal(tree, 150 * 3);
	for (int i = 0; i < 150; i += 37) {
		cleanup_free char *want = xasprintf("./d%03d/s/f", i);
		assert_true(has_path(&img, want));
	}
	image_free(&img);

	/* As nobody, with d077/s closed to everyone (and the top folder, made
	 * by mkdtemp, open). */
	cleanup_free char *shut = xasprintf("%s/d077/s", wide);
	assert_int_equal(chmod(shut, 0), 0);
	assert_int_equal(chmod(top, 0755), 0);
	cleanup_free char *uout_dir = ib_path_join(top, "uout");
	assert_int_equal(mkdir(uout_dir, 0777), 0);
	assert_int_equal(chmod(uout_dir, 0777), 0);
	cleanup_free char *uout = ib_path_join(uout_dir, "u.tar");
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
			_exit(10);
		struct ib_pack_opts uo = { .root = wide, .output = uout, .epoch = EPOCH };
		ib_error_t uerr = NULL;
		if (ib_pack(&uo, digest, &uerr) == 0)
			_exit(11);
		if (strstr(uerr->msg, "d077/s") && strstr(uerr->msg, "Permission denied"))
			_exit(0);
		fprintf(stderr, "# not the folder's error: %s\n", uerr->msg);
		_exit(12);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(count_entries(uout_dir), 0);
}

/* In the calling process from here on: listxattrat(2), and io_uring_setup
 * too when URING, fail with ENOSYS, as on a kernel without them (6.12 and
 * before; 5.0 and before) or under a seccomp profile that refuses io_uring
 * (Docker's default). */
static void refuse_new_calls(bool uring)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, uring ? __NR_io_uring_setup : 465, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 465 /* listxattrat */, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		_exit(20);
}

/* Packs MIX into OUT in a child process that cannot use listxattrat, nor
 * io_uring when URING; returns how many files that pack read through
 * io_uring (or -1). */
static int pack_without(const char *mix, const char *out, bool uring)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		refuse_new_calls(uring);
		struct ib_pack_stats st = { 0 };
		struct ib_pack_opts o = { .root = mix, .output = out, .epoch = EPOCH, .stats = &st };
		char digest[IB_SHA256_HEX_LEN + 1];
		ib_error_t e = NULL;
		if (ib_pack(&o, digest, &e) < 0) {
			fprintf(stderr, "# %s\n", e->msg);
			_exit(255);
		}
		_exit(st.files_batched > 250 ? 250 : (int)st.files_batched);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status) == 255 ? -1 : WEXITSTATUS(status);
}

static void expect_same_file(const char *a_path, const char *b_path)
{
	ib_error_t err = NULL;
	size_t la = 0, lb = 0;
	cleanup_free char *a = ib_read_file(a_path, &la, &err), *b = ib_read_file(b_path, &lb, &err);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	/* the xattr made it, as a pax record */
	assert_non_null(memmem(a, la, "SCHILY.xattr.user.note=kept", 27));
}

/* Small files go through io_uring when the kernel has it; where it does
 * not, the plain reads must give the very same image, and so must a
 * kernel with io_uring but without listxattrat. The tree mixes what
 * decides the path: files up to 64 KiB and just past it, an empty one, one
 * with an xattr, a hard link. */
static void test_pack_same_without_io_uring(void **state)
{
	cleanup_free char *mix = ib_path_join(top, "mix");
	assert_int_equal(mkdir(mix, 0755), 0);
	assert_int_equal(chmod(mix, 0755), 0);
	size_t cap = 65537 + 140;
	cleanup_free uint8_t *data = xmalloc(cap);
	for (size_t j = 0; j < cap; j++)
		data[j] = (uint8_t)(j * 13 + j / 509);
	ib_error_t err = NULL;
	for (int i = 0; i < 140; i++) {
		cleanup_free char *f = xasprintf("%s/f%03d", mix, i);
		size_t len = i == 0 ? 65536 : i == 1 ? 65537 : i == 2 ? 0 : (size_t)(i * 463) % 65536;
		if (ib_write_file_atomic(f, data + i, len, 0644, &err) < 0)
			fail_msg("%s", err->msg);
	}
	cleanup_free char *x = xasprintf("%s/f010", mix);
	assert_int_equal(setxattr(x, "user.note", "kept", 4, 0), 0);
	cleanup_free char *hl = xasprintf("%s/hl", mix);
	cleanup_free char *f20 = xasprintf("%s/f020", mix);
	assert_int_equal(link(f20, hl), 0);

	cleanup_free char *dir_a = ib_path_join(top, "with"), *dir_b = ib_path_join(top, "without"),
			  *dir_c = ib_path_join(top, "no-listxattrat");
	assert_int_equal(mkdir(dir_a, 0755) | mkdir(dir_b, 0755) | mkdir(dir_c, 0755), 0);
	cleanup_free char *out_a = ib_path_join(dir_a, "m.tar"), *out_b = ib_path_join(dir_b, "m.tar"),
			  *out_c = ib_path_join(dir_c, "m.tar");
	struct ib_pack_stats stats = { 0 };
	struct ib_pack_opts o = { .root = mix, .output = out_a, .epoch = EPOCH, .stats = &stats };
	char digest[IB_SHA256_HEX_LEN + 1];
	if (ib_pack(&o, digest, &err) < 0)
		fail_msg("%s", err->msg);
	/* every file with content but the one past 64 KiB */
	size_t batched = 140 - 2;
	if (stats.files_batched == 0) {
		print_message("# this kernel refuses io_uring: every pack reads the plain way\n");
		batched = 0;
	}
	assert_int_equal(stats.files_batched, batched);
	assert_int_equal(pack_without(mix, out_b, true), 0);
	expect_same_file(out_a, out_b);
	assert_int_equal(pack_without(mix, out_c, false), (int)batched);
	expect_same_file(out_a, out_c);
}

/* A reserved or repeated fact fails the pack; nothing is written. */
static void test_pack_refuses_reserved_fact(void **state)
{
	cleanup_free char *out = ib_path_join(outdir, "bad.tar");
	int before = count_entries(outdir);
	const struct ib_kv bad[][2] = {
		{ { .key = "builder", .value = "evil 1.0" }, { .key = "x", .value = "1" } },
		{ { .key = "x", .value = "1" }, { .key = "x", .value = "2" } },
		{ { .key = "a.b", .value = "1" }, { .key = "y", .value = "1" } },
	};
	for (size_t i = 0; i < 3; i++) {
		struct ib_pack_opts o = { .root = root, .output = out, .epoch = EPOCH, .facts = bad[i], .n_facts = 2 };
		char digest[IB_SHA256_HEX_LEN + 1];
		ib_error_t err = NULL;
		assert_true(ib_pack(&o, digest, &err) < 0);
		assert_non_null(strstr(err->msg, "fact '"));
		ib_error_free(&err);
		assert_int_equal(access(out, F_OK), -1);
		assert_int_equal(count_entries(outdir), before);	/* no temporary file left */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pack_tree),
		cmocka_unit_test(test_pack_refuses_reserved_fact),
		cmocka_unit_test(test_pack_wide_tree),
		cmocka_unit_test(test_pack_same_without_io_uring),
	};
	if (geteuid() != 0) {
		printf("1..0 # SKIP needs root (owners, device nodes)\n");
		return 0;
	}
	return cmocka_run_group_tests_name("pack", tests, setup, teardown);
}
