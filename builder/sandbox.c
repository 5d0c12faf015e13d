/* The sandbox: one child in new mount, PID, IPC, UTS (and network, and user)
 * namespaces. The child assembles the root inside its private mount namespace,
 * enters it with pivot_root, and becomes PID 1 of its PID namespace: a tiny
 * reaper that forks the command (which drops capabilities, loads the seccomp
 * filter and execs) and exits with the command's status. When PID 1 exits the
 * kernel kills everything left in the namespace, and with the last process the
 * mount namespace and every mount in it go away, even after kill -9 of imgbuild. */
#include "sandbox.h"
#include "driver.h"
#include "log.h"
#include "mounts.h"
#include "proc.h"
#include "ib_seccomp.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Capabilities a build keeps: Docker's default set (apt and dpkg chown, setuid
 * to _apt) less MKNOD. Docker keeps MKNOD because its device cgroup stops the
 * node from being opened; we have no device cgroup, so a node made by real
 * root (in a bound host folder, or one a later run binds) would reach the
 * host's disks: no MKNOD, and the seccomp filter refuses block and character
 * nodes as well. Everything else, SYS_ADMIN, SYS_MODULE, SYS_TIME, SYS_PTRACE,
 * NET_ADMIN, SYS_RAWIO, SYS_BOOT..., is dropped from the bounding set, so not
 * even a setuid binary gets it back. */
static const int kept_caps[] = {
	CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_FOWNER,	    CAP_FSETID,	    CAP_KILL,	     CAP_SETGID,
	CAP_SETUID, CAP_SETPCAP,      CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_AUDIT_WRITE, CAP_SETFCAP,
};

struct child {
	const struct ib_sandbox_spec *spec;
	const struct ib_seccomp_prog *prog; /* NULL: no filter */
	char *const *envp;
	const char *mount_point;
	int sync_fd; /* parent writes one byte when the uid maps are written */
	int err_fd;  /* the child writes why it failed; CLOEXEC, so exec closes it */
	bool userns;
};

/* ---- the child: async-signal-safe enough (the parent is single-threaded, so
 * malloc in the forked copy is fine), and never returns ---- */

__attribute__((noreturn)) static void child_die(struct child *c, int code, ib_error_t *err)
{
	const char *msg = err && *err ? (*err)->msg : "sandbox setup failed";
	ib_write_all(c->err_fd, msg, strlen(msg));
	_exit(code);
}

/* Overlay options separate layers with ':' and options with ','. */
static bool overlay_safe(const char *p)
{
	return strpbrk(p, ":,") == NULL;
}

static int mount_overlay(struct child *c, const char *scratch, const char *root, ib_error_t *err)
{
	const struct ib_sandbox_spec *s = c->spec;
	cleanup_free char *skel = ib_path_join(scratch, "skel");
	cleanup_free char *upper = s->upper_dir ? xstrdup(s->upper_dir) : ib_path_join(scratch, "upper");
	cleanup_free char *work = s->work_dir ? xstrdup(s->work_dir) : ib_path_join(scratch, "work");
	if (s->upper_dir && !s->work_dir)
		return ib_error_usage(err, "sandbox: upper_dir '%s' needs a work_dir", s->upper_dir);
	if (ib_mkdir_p(upper, 0755, err) < 0 || ib_mkdir_p(work, 0700, err) < 0)
		return -1;

	/* lowerdir is top-first; the skeleton (mount points the image may lack) is
	 * the bottom layer, so it never hides the image and never lands in the upper layer. */
	size_t len = 0;
	for (const char *const *l = s->lower_dirs; *l; l++) {
		if (!overlay_safe(*l))
			return ib_error_usage(err, "overlay layer '%s': ':' and ',' are not allowed in layer paths", *l);
		len += strlen(*l) + 1;
	}
	if (!overlay_safe(upper) || !overlay_safe(work))
		return ib_error_usage(err, "overlay upper '%s': ':' and ',' are not allowed", upper);
	cleanup_free char *lower = xmalloc(len + strlen(skel) + 1);
	lower[0] = '\0';
	for (const char *const *l = s->lower_dirs; *l; l++) {
		strcat(lower, *l);
		strcat(lower, ":");
	}
	strcat(lower, skel);

	/* index=off,xino=off: the layers move between hosts and file systems, so no
	 * inode index or xino bits tying them to this one. Kernels older than 4.17
	 * do not know the options; an unprivileged mount (>= 5.11) needs userxattr. */
	const char *variants[] = { ",index=off,xino=off", "" };
	int last = 0;
	for (size_t i = 0; i < 2; i++) {
		cleanup_free char *opts = xasprintf("lowerdir=%s,upperdir=%s,workdir=%s%s%s", lower, upper, work, variants[i],
						    c->userns ? ",userxattr" : "");
		if (mount("overlay", root, "overlay", 0, opts) == 0) {
			return 0;
		}
		last = errno;
		if (last != EINVAL)
			break;
	}
	return ib_error_errno(err, last, "mount overlay on '%s' (lower '%s', upper '%s')", root, lower, upper);
}

/* Overlay refused in a user namespace (kernel < 5.11): a read-only view of the
 * tree, built as a tmpfs whose top-level entries are read-only binds, so the
 * sandbox's own mount points live on the tmpfs and never in the tree. */
static int mount_readonly_tree(struct ib_mount_journal *j, const char *tree, const char *root, ib_error_t *err)
{
	if (ib_xmount(j, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", err) < 0)
		return -1;
	DIR *d = opendir(tree);
	if (d == NULL)
		return ib_error_errno(err, errno, "open '%s'", tree);
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		const char *n = e->d_name;
		if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "proc") || !strcmp(n, "sys") || !strcmp(n, "dev") ||
		    !strcmp(n, "tmp") || !strcmp(n, "imgbuild"))
			continue;
		cleanup_free char *src = ib_path_join(tree, n);
		cleanup_free char *dst = ib_path_join(root, n);
		struct stat st;
		if (lstat(src, &st) < 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			char target[4096];
			ssize_t tl = readlink(src, target, sizeof(target) - 1);
			if (tl < 0)
				continue;
			target[tl] = '\0';
			if (symlink(target, dst) < 0)
				rc = ib_error_errno(err, errno, "symlink '%s'", dst);
			continue;
		}
		if (ib_make_mount_point(dst, S_ISDIR(st.st_mode), err) < 0 || ib_bind_mount(j, src, dst, MS_RDONLY, err) < 0)
			rc = -1;
	}
	closedir(d);
	if (rc < 0)
		return -1;
	for (const char *const *p = (const char *const[]){ "proc", "sys", "dev", "tmp", "imgbuild", NULL }; *p; p++) {
		cleanup_free char *dst = ib_path_join(root, *p);
		if (mkdir(dst, 0755) < 0 && errno != EEXIST)
			return ib_error_errno(err, errno, "mkdir '%s'", dst);
	}
	return 0;
}

static int make_skeleton(const struct ib_sandbox_spec *s, const char *skel, ib_error_t *err)
{
	static const char *const dirs[] = { "imgbuild", "proc", "sys", "dev", "tmp" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		cleanup_free char *p = ib_path_join(skel, dirs[i]);
		if (ib_mkdir_p(p, 0755, err) < 0)
			return -1;
	}
	for (size_t i = 0; i < s->n_binds; i++) {
		const char *dst = s->binds[i].dst;
		if (!strncmp(dst, "/imgbuild/", 10) || !strncmp(dst, "/dev/", 5) || !strcmp(dst, "/tmp"))
			continue; /* on the sandbox's own tmpfs mounts */
		struct stat st;
		bool dir = stat(s->binds[i].src, &st) < 0 || S_ISDIR(st.st_mode);
		cleanup_free char *p = ib_path_join(skel, dst);
		if (ib_make_mount_point(p, dir, err) < 0)
			return -1;
	}
	return 0;
}

static int mount_dev(struct ib_mount_journal *j, const char *dev, bool userns, ib_error_t *err)
{
	if (ib_xmount(j, "tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755", err) < 0)
		return -1;
	/* Bound from the host rather than made with mknod: device nodes on a tmpfs
	 * mounted in a user namespace do not work (the kernel forces nodev). */
	static const char *const nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };
	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		cleanup_free char *src = xasprintf("/dev/%s", nodes[i]);
		cleanup_free char *dst = ib_path_join(dev, nodes[i]);
		if (ib_make_mount_point(dst, false, err) < 0 || ib_bind_mount(j, src, dst, MS_NOSUID | MS_NOEXEC, err) < 0)
			return -1;
	}
	cleanup_free char *pts = ib_path_join(dev, "pts");
	cleanup_free char *shm = ib_path_join(dev, "shm");
	if (mkdir(pts, 0755) < 0 || mkdir(shm, 01777) < 0)
		return ib_error_errno(err, errno, "mkdir in '%s'", dev);
	/* gid=5 (tty) only where that group exists: in a user namespace only root is mapped. */
	if (ib_xmount(j, "devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC,
		      userns ? "newinstance,ptmxmode=0666,mode=0620" : "newinstance,ptmxmode=0666,mode=0620,gid=5", err) < 0)
		return -1;
	if (ib_xmount(j, "shm", shm, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", err) < 0)
		return -1;
	static const char *const links[][2] = {
		{ "ptmx", "pts/ptmx" },		 { "fd", "/proc/self/fd" },	  { "stdin", "/proc/self/fd/0" },
		{ "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" }, { "core", "/proc/kcore" },
	};
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		cleanup_free char *p = ib_path_join(dev, links[i][0]);
		if (symlink(links[i][1], p) < 0)
			return ib_error_errno(err, errno, "symlink '%s'", p);
	}
	return 0;
}

/* The masks and read-only paths crun, runc and Podman apply by default (the
 * MaskedPaths and ReadonlyPaths of `docker inspect`). A fresh proc instance
 * is the host kernel's: as real root, /proc/sys/kernel/core_pattern would run
 * a program of the image as host root ("|/proc/%P/root/x"), and
 * /proc/sysrq-trigger reboots the host. Without CAP_SYS_ADMIN and with mount
 * refused by seccomp the command cannot take these mounts away. */
static const char *const readonly_paths[] = {
	"bus", "fs", "irq", "sys", "sysrq-trigger",
};
static const char *const masked_proc[] = {
	"acpi", "asound", "kcore", "keys", "latency_stats", "timer_list", "timer_stats", "sched_debug", "scsi",
};
static const char *const masked_sys[] = {
	"firmware",
	"devices/virtual/powercap",
};

static int mask_one(struct ib_mount_journal *j, const char *path, ib_error_t *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return 0; /* not in this kernel */
	if (S_ISDIR(st.st_mode))
		return ib_xmount(j, "tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=0555", err);
	return ib_bind_mount(j, "/dev/null", path, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, err);
}

static int mask_kernel_files(struct ib_mount_journal *j, const char *proc, const char *sys, ib_error_t *err)
{
	for (size_t i = 0; i < sizeof(readonly_paths) / sizeof(readonly_paths[0]); i++) {
		cleanup_free char *p = ib_path_join(proc, readonly_paths[i]);
		struct stat st;
		if (lstat(p, &st) < 0)
			continue;
		if (ib_bind_mount(j, p, p, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, err) < 0)
			return -1;
	}
	for (size_t i = 0; i < sizeof(masked_proc) / sizeof(masked_proc[0]); i++) {
		cleanup_free char *p = ib_path_join(proc, masked_proc[i]);
		if (mask_one(j, p, err) < 0)
			return -1;
	}
	for (size_t i = 0; i < sizeof(masked_sys) / sizeof(masked_sys[0]); i++) {
		cleanup_free char *p = ib_path_join(sys, masked_sys[i]);
		if (mask_one(j, p, err) < 0)
			return -1;
	}
	return 0;
}

static int populate_root(struct child *c, struct ib_mount_journal *j, const char *root, bool ro_tree, ib_error_t *err)
{
	const struct ib_sandbox_spec *s = c->spec;
	/* Every mount point is looked up inside the image (a link there is the
	 * image's, never the host's): see ib_resolve_in_root. */
	cleanup_free char *imgbuild = ib_resolve_in_root(root, "/imgbuild", IB_IN_ROOT_DIR, err);
	if (imgbuild == NULL)
		return -1;
	cleanup_free char *proc = ib_resolve_in_root(root, "/proc", IB_IN_ROOT_DIR, err);
	if (proc == NULL)
		return -1;
	cleanup_free char *sys = ib_resolve_in_root(root, "/sys", IB_IN_ROOT_DIR, err);
	if (sys == NULL)
		return -1;
	cleanup_free char *tmp = ib_resolve_in_root(root, "/tmp", IB_IN_ROOT_DIR, err);
	if (tmp == NULL)
		return -1;
	cleanup_free char *dev = ib_resolve_in_root(root, "/dev", IB_IN_ROOT_DIR, err);
	if (dev == NULL)
		return -1;
	if (ib_xmount(j, "tmpfs", imgbuild, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", err) < 0)
		return ib_error_wrap(err, "sandbox-only /imgbuild");
	/* proc can only be mounted by the owner of the PID namespace; in the host's
	 * (as an ordinary user) bind the host's instead. */
	if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		if (!s->host_pid)
			return ib_error_errno(err, errno, "mount proc on '%s'", proc);
		if (ib_bind_mount(j, "/proc", proc, MS_NOSUID | MS_NODEV | MS_NOEXEC, err) < 0)
			return -1;
	}
	/* sysfs can only be mounted by the owner of the network namespace; with the
	 * host's network inside a user namespace bind the host's read-only instead. */
	if (mount("sysfs", sys, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 &&
	    ib_bind_mount(j, "/sys", sys, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, err) < 0)
		return -1;
	if (mask_kernel_files(j, proc, sys, err) < 0)
		return ib_error_wrap(err, "mask /proc and /sys");
	if (mount_dev(j, dev, c->userns, err) < 0)
		return -1;
	if (ib_xmount(j, "tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", err) < 0)
		return -1;

	if (s->driver && ib_driver_bind(s->driver, root, j, err) < 0)
		return ib_error_wrap(err, "bind the host NVIDIA driver");

	for (size_t i = 0; i < s->n_binds; i++) {
		const struct ib_bind *b = &s->binds[i];
		struct stat st;
		if (b->dst[0] != '/')
			return ib_error_usage(err, "bind '%s': destination '%s' is not absolute", b->src, b->dst);
		if (stat(b->src, &st) < 0) {
			if ((b->flags & IB_BIND_OPTIONAL) && errno == ENOENT)
				continue;
			return ib_error_errno(err, errno, "bind '%s'", b->src);
		}
		/* Missing mount points outside /imgbuild, /dev and /tmp came from the
		 * overlay skeleton or were made by the parent (plain root folder);
		 * resolving inside the root keeps a link in the image (/mnt -> /etc)
		 * from turning `--bind x:/mnt/nologin` into a host /etc/nologin. */
		cleanup_free char *dst =
			ib_resolve_in_root(root, b->dst, S_ISDIR(st.st_mode) ? IB_IN_ROOT_DIR : IB_IN_ROOT_FILE, err);
		if (dst == NULL)
			return ib_error_wrap(err, "bind '%s' on '%s'", b->src, b->dst);
		/* No host folder carries setuid files or device nodes into the
		 * sandbox, nor out of it: a node or setuid-root file the sandbox
		 * leaves in the work folder, the ccache or the caller's folder is
		 * inert there too. Only a device bind keeps dev. */
		unsigned long flags = MS_NOSUID | MS_NODEV;
		if (b->flags & IB_BIND_RO)
			flags |= MS_RDONLY;
		if (b->flags & IB_BIND_DEVICE)
			flags = (flags & ~(unsigned long)MS_NODEV) | MS_NOEXEC;
		if (b->flags & IB_BIND_NONRECURSIVE) {
			if (ib_bind_mount_flat(j, b->src, dst, flags, err) < 0)
				return -1;
		} else if (ib_bind_mount(j, b->src, dst, flags, err) < 0)
			return -1;
	}

	/* The host's resolver only over a file the image already has: creating one
	 * would leave it in a layer that gets packed. */
	if (s->network) {
		ib_error_t none = NULL;
		cleanup_free char *rc = ib_resolve_in_root(root, "/etc/resolv.conf", IB_IN_ROOT_NONE, &none);
		ib_error_free(&none);
		struct stat st;
		if (rc && lstat(rc, &st) == 0 && S_ISREG(st.st_mode) && access("/etc/resolv.conf", R_OK) == 0 &&
		    ib_bind_mount(j, "/etc/resolv.conf", rc, MS_RDONLY | MS_NOSUID | MS_NODEV, err) < 0)
			return -1;
	}

	/* Nothing writes into /imgbuild itself; the binds below it are their own mounts. */
	if (ib_xmount(NULL, NULL, imgbuild, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL, err) < 0)
		return -1;
	if (ro_tree || s->read_only_root) {
		/* A bind remount changes only the top mount: the ones on top keep their flags. */
		unsigned long extra = ro_tree ? MS_NOSUID | MS_NODEV : 0;
		if (ib_xmount(NULL, NULL, root, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | extra, NULL, err) < 0)
			return -1;
	}
	return 0;
}

/* A new network namespace starts with lo down; MPI launchers (PMIx, Open MPI's
 * out-of-band channel) and test servers need 127.0.0.1 even with no network. */
static int loopback_up(ib_error_t *err)
{
	cleanup_fd int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ib_error_errno(err, errno, "socket for the loopback interface");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return ib_error_errno(err, errno, "read the flags of lo");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		return ib_error_errno(err, errno, "bring lo up");
	return 0;
}

static int setup_root(struct child *c, ib_error_t *err)
{
	const struct ib_sandbox_spec *s = c->spec;
	struct ib_mount_journal j;
	ib_mount_journal_init(&j);
	cleanup_free char *root = NULL;
	bool ro_tree = false;

	/* apk-tools' unshare_mount_namespace: nothing we mount may propagate back. */
	if (ib_xmount(NULL, NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, err) < 0)
		goto fail;

	if (s->lower_dirs && s->lower_dirs[0]) {
		const char *scratch = c->mount_point;
		/* Unbindable: a recursive bind of a folder above the mount point (the
		 * current directory bound by run) must not drag the root in with it. */
		if (ib_xmount(&j, "tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", err) < 0 ||
		    ib_xmount(NULL, NULL, scratch, NULL, MS_UNBINDABLE, NULL, err) < 0)
			goto fail;
		/* The overlay's own layers sit on a second tmpfs: overlayfs refuses
		 * layers on an unbindable mount (clone_private_mount). */
		root = ib_path_join(scratch, "root");
		cleanup_free char *layers = ib_path_join(scratch, "layers");
		cleanup_free char *skel = ib_path_join(layers, "skel");
		if (ib_mkdir_p(root, 0755, err) < 0 || ib_mkdir_p(layers, 0755, err) < 0 ||
		    ib_xmount(&j, "tmpfs", layers, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", err) < 0 ||
		    ib_mkdir_p(skel, 0755, err) < 0 || make_skeleton(s, skel, err) < 0)
			goto fail;
		if (mount_overlay(c, layers, root, err) < 0) {
			/* Only a throw-away root may fall back: a build's upper layer must get its writes. */
			if (!c->userns || s->upper_dir || s->lower_dirs[1])
				goto fail;
			ib_log_debug("overlay refused in the user namespace (%s); using a read-only root", (*err)->msg);
			ib_error_free(err);
			if (mount_readonly_tree(&j, s->lower_dirs[0], root, err) < 0)
				goto fail;
			ro_tree = true;
		}
	} else {
		const char *target = c->mount_point ? c->mount_point : s->root_dir;
		if (ib_xmount(&j, s->root_dir, target, NULL, MS_BIND | MS_REC, NULL, err) < 0 ||
		    ib_xmount(NULL, NULL, target, NULL, MS_UNBINDABLE, NULL, err) < 0)
			goto fail;
		root = xstrdup(target);
	}

	if (populate_root(c, &j, root, ro_tree, err) < 0)
		goto fail;

	/* Enter the root the way crun and bubblewrap do: pivot_root(".", ".") stacks
	 * the old root on top of the new one; make it private so the detach cannot
	 * propagate anywhere, then detach it. No temporary folder in the root needed. */
	if (chdir(root) < 0) {
		ib_error_errno(err, errno, "chdir '%s'", root);
		goto fail;
	}
	if (syscall(SYS_pivot_root, ".", ".") < 0) {
		ib_error_errno(err, errno, "pivot_root '%s'", root);
		goto fail;
	}
	if (ib_xmount(NULL, NULL, ".", NULL, MS_REC | MS_PRIVATE, NULL, err) < 0 || ib_xumount(".", MNT_DETACH, err) < 0)
		goto fail;
	ib_mount_journal_free(&j);
	if (chdir("/") < 0)
		return ib_error_errno(err, errno, "chdir '/'");

	const char *host = s->hostname ? s->hostname : "imgbuild";
	if (!s->host_uts && sethostname(host, strlen(host)) < 0)
		return ib_error_errno(err, errno, "sethostname '%s'", host);
	const char *cwd = s->cwd ? s->cwd : "/";
	if (chdir(cwd) < 0)
		return ib_error_errno(err, errno, "chdir '%s' inside the sandbox", cwd);
	return 0;
fail:
	ib_mount_journal_undo(&j);
	return -1;
}

static int drop_capabilities(void)
{
	int last = CAP_LAST_CAP;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = CAP_LAST_CAP;
		fclose(f);
	}
	uint64_t keep = 0;
	for (size_t i = 0; i < sizeof(kept_caps) / sizeof(kept_caps[0]); i++)
		keep |= 1ULL << kept_caps[i];
	for (int cap = 0; cap <= last && cap < 64; cap++)
		if (!(keep & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			return -errno;
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	return 0;
}

static int set_capabilities(void)
{
	uint64_t keep = 0;
	for (size_t i = 0; i < sizeof(kept_caps) / sizeof(kept_caps[0]); i++)
		keep |= 1ULL << kept_caps[i];
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	for (int i = 0; i < 2; i++) {
		data[i].effective = data[i].permitted = (uint32_t)(keep >> (32 * i));
		data[i].inheritable = 0;
	}
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -errno;
	return 0;
}

static const char *env_get(char *const *envp, const char *name)
{
	size_t n = strlen(name);
	for (; envp && *envp; envp++)
		if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

/* execvpe() searches the caller's PATH; the command's PATH is the one in envp. */
static int exec_search(char *const *argv, char *const *envp)
{
	const char *file = argv[0];
	if (strchr(file, '/')) {
		execve(file, argv, envp);
		return -errno;
	}
	const char *path = env_get(envp, "PATH");
	if (path == NULL)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	int saved = ENOENT;
	while (*path) {
		const char *colon = strchr(path, ':');
		size_t len = colon ? (size_t)(colon - path) : strlen(path);
		char buf[4096];
		if (len + strlen(file) + 2 < sizeof(buf)) {
			if (len == 0)
				snprintf(buf, sizeof(buf), "%s", file);
			else
				snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, path, file);
			execve(buf, argv, envp);
			if (errno == EACCES)
				saved = EACCES;
			else if (errno != ENOENT && errno != ENOTDIR)
				return -errno;
		}
		path += len;
		if (*path == ':')
			path++;
	}
	return -saved;
}

__attribute__((noreturn)) static void run_command(struct child *c)
{
	ib_error_t err = NULL;
	struct rlimit core = { 0, 0 };
	setrlimit(RLIMIT_CORE, &core);
	int rc = drop_capabilities();
	if (rc < 0) {
		ib_error_errno(&err, -rc, "drop capabilities");
		child_die(c, 1, &err);
	}
	/* Loaded while CAP_SYS_ADMIN is still effective, so no NO_NEW_PRIVS is
	 * needed (which would disarm setuid programs that package scripts use);
	 * the capset that follows is not a filtered call. */
	if (c->prog && (rc = ib_seccomp_apply(c->prog)) < 0) {
		ib_error_errno(&err, -rc, "load the seccomp filter");
		child_die(c, 1, &err);
	}
	if ((rc = set_capabilities()) < 0) {
		ib_error_errno(&err, -rc, "set capabilities");
		child_die(c, 1, &err);
	}
	rc = exec_search(c->spec->argv, c->envp);
	ib_error_errno(&err, -rc, "exec '%s'", c->spec->argv[0]);
	child_die(c, rc == -ENOENT ? 127 : 126, &err);
}

static void reset_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* PID 1 of a namespace gets from outside only the signals it has a handler
 * for; this one hands SIGINT and SIGTERM to the command, so that imgbuild's
 * stop (proc.h: SIGTERM, SIGKILL after a grace period) reaches it. */
static volatile pid_t init_child = -1;

static void forward_signal(int sig)
{
	if (init_child > 0)
		kill(init_child, sig);
}

__attribute__((noreturn)) static void child_main(struct child *c)
{
	ib_error_t err = NULL;
	/* ib_proc_clone set PR_SET_PDEATHSIG (bubblewrap's --die-with-parent: a
	 * killed imgbuild takes PID 1, and with it the namespace); imgbuild's own
	 * signal handlers must not reach the command. */
	reset_signals();
	char go;
	if (read(c->sync_fd, &go, 1) != 1)
		_exit(1); /* the parent died before we were set up */
	close(c->sync_fd);

	const struct ib_sandbox_spec *s = c->spec;
	if (!s->network && loopback_up(&err) < 0)
		child_die(c, 1, &err);
	if (setup_root(c, &err) < 0)
		child_die(c, 1, &err);
	if ((s->stdin_fd >= 0 && dup2(s->stdin_fd, 0) < 0) || (s->stdout_fd >= 0 && dup2(s->stdout_fd, 1) < 0) ||
	    (s->stderr_fd >= 0 && dup2(s->stderr_fd, 2) < 0)) {
		ib_error_errno(&err, errno, "redirect the standard streams");
		child_die(c, 1, &err);
	}

	/* PID 1 of the namespace: fork the command, reap everything, exit with the
	 * command's status. A daemon the command leaves behind dies with us.
	 * The command dies with us by PR_SET_PDEATHSIG too, which matters in the
	 * host's PID namespace, where nothing else would kill it. Same group: a
	 * shell's terminal stays its foreground. */
	pid_t cmd = ib_proc_clone(0, IB_PROC_SAME_GROUP | IB_PROC_FROM_CHILD, NULL);
	if (cmd < 0) {
		ib_error_errno(&err, errno, "fork");
		child_die(c, 1, &err);
	}
	if (cmd == 0)
		run_command(c);
	init_child = cmd;
	struct sigaction fwd;
	memset(&fwd, 0, sizeof(fwd));
	fwd.sa_handler = forward_signal;
	sigaction(SIGINT, &fwd, NULL);
	sigaction(SIGTERM, &fwd, NULL);
	close(c->err_fd);
	prctl(PR_SET_NAME, "imgbuild-init", 0, 0, 0);
	int status = 0;
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, 0);
		if (p < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (p == cmd) {
			status = ib_proc_exit_code(st);
			break;
		}
	}
	_exit(status);
}

/* ---- the parent ---- */

static int write_proc_file(pid_t pid, const char *name, const char *text, ib_error_t *err)
{
	cleanup_free char *path = xasprintf("/proc/%d/%s", (int)pid, name);
	cleanup_fd int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return ib_error_errno(err, errno, "open '%s'", path);
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		return ib_error_errno(err, errno, "write '%s' to '%s'", text, path);
	return 0;
}

/* The caller's first range in /etc/subuid or /etc/subgid ("name:start:count"
 * or "id:start:count"), as shadow's newuidmap reads it. */
static bool subid_range(const char *file, const char *name, unsigned id, unsigned long *start, unsigned long *count)
{
	FILE *f = fopen(file, "re");
	if (f == NULL)
		return false;
	char line[512];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f)) {
		char who[256];
		unsigned long s0, c0;
		if (sscanf(line, "%255[^:]:%lu:%lu", who, &s0, &c0) != 3 || c0 == 0)
			continue;
		char idtext[16];
		snprintf(idtext, sizeof(idtext), "%u", id);
		if ((name && !strcmp(who, name)) || !strcmp(who, idtext)) {
			*start = s0;
			*count = c0;
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* newuidmap/newgidmap PID 0 ID 1 1 START COUNT: the setuid helpers of the
 * uidmap package write a map an unprivileged process may not. */
static int run_idmap_helper(const char *helper, pid_t pid, unsigned id, unsigned long start, unsigned long count)
{
	char a_pid[16], a_id[16], a_start[24], a_count[24];
	snprintf(a_pid, sizeof(a_pid), "%d", (int)pid);
	snprintf(a_id, sizeof(a_id), "%u", id);
	snprintf(a_start, sizeof(a_start), "%lu", start);
	snprintf(a_count, sizeof(a_count), "%lu", count);
	char *const argv[] = { (char *)helper, a_pid, "0", a_id, "1", "1", a_start, a_count, NULL };
	struct ib_proc_cmd cmd = { .argv = argv };
	cleanup_proc_output struct ib_proc_output o = { 0 };
	ib_error_t err = NULL;
	if (ib_proc_capture(&cmd, &o, &err) < 0) {
		ib_error_free(&err);
		return -1;
	}
	return o.status == 0 ? 0 : -1;
}

static bool find_helper(const char *name, char *path, size_t size)
{
	static const char *const dirs[] = { "/usr/bin", "/bin", "/usr/sbin", "/sbin" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, size, "%s/%s", dirs[i], name);
		if (access(path, X_OK) == 0)
			return true;
	}
	return false;
}

static int write_id_maps(pid_t pid, bool keep_uid, ib_error_t *err)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();
	bool uid_done = false, gid_done = false;
	/* An ordinary user with a subordinate range gets it mapped above root, as
	 * rootless Podman does, so apt (_apt), chown and useradd work inside; on
	 * the host those ids are the range's, owned by nobody real. */
	if (uid != 0 && !keep_uid) {
		struct passwd *pw = getpwuid(uid);
		unsigned long us, uc, gs, gc;
		char nuid[64], ngid[64];
		if (find_helper("newuidmap", nuid, sizeof(nuid)) && find_helper("newgidmap", ngid, sizeof(ngid)) &&
		    subid_range("/etc/subuid", pw ? pw->pw_name : NULL, (unsigned)uid, &us, &uc) &&
		    subid_range("/etc/subgid", pw ? pw->pw_name : NULL, (unsigned)uid, &gs, &gc)) {
			uid_done = run_idmap_helper(nuid, pid, (unsigned)uid, us, uc) == 0;
			if (uid_done)
				gid_done = run_idmap_helper(ngid, pid, (unsigned)gid, gs, gc) == 0;
			if (!uid_done || !gid_done)
				ib_log_debug("newuidmap/newgidmap refused the ranges of /etc/subuid, /etc/subgid: "
					     "only the caller is mapped");
		}
	}
	if (!gid_done) {
		/* setgroups must be denied before an unprivileged process may write gid_map. */
		if (write_proc_file(pid, "setgroups", "deny", err) < 0 && (*err)->status != ENOENT)
			return -1;
		ib_error_free(err);
	}
	/* keep_uid: the caller is itself inside, so the command's execve drops
	 * every capability (the namespace's setup before it still has them). */
	cleanup_free char *umap = xasprintf("%u %u 1\n", keep_uid ? (unsigned)uid : 0u, (unsigned)uid);
	cleanup_free char *gmap = xasprintf("%u %u 1\n", keep_uid ? (unsigned)gid : 0u, (unsigned)gid);
	if ((!uid_done && write_proc_file(pid, "uid_map", umap, err) < 0) ||
	    (!gid_done && write_proc_file(pid, "gid_map", gmap, err) < 0))
		return ib_error_wrap(err, "map the caller to %s in the user namespace", keep_uid ? "itself" : "root");
	return 0;
}

/* Mount points a plain root folder lacks are made here and removed after the
 * child is gone (they are plain empty entries by then: the mounts died with the
 * namespace), so none stays in a layer that gets packed. */
static int make_root_dir_points(const struct ib_sandbox_spec *s, struct ib_strv *made, ib_error_t *err)
{
	static const char *const dirs[] = { "/imgbuild", "/proc", "/sys", "/dev", "/tmp" };
	size_t n = sizeof(dirs) / sizeof(dirs[0]) + s->n_binds;
	for (size_t i = 0; i < n; i++) {
		const char *want;
		bool dir = true;
		if (i < sizeof(dirs) / sizeof(dirs[0]))
			want = dirs[i];
		else {
			const struct ib_bind *b = &s->binds[i - sizeof(dirs) / sizeof(dirs[0])];
			want = b->dst;
			if (!strncmp(want, "/imgbuild/", 10) || !strncmp(want, "/dev/", 5) || !strcmp(want, "/tmp"))
				continue; /* on the sandbox's own tmpfs mounts */
			struct stat sst;
			dir = stat(b->src, &sst) < 0 || S_ISDIR(sst.st_mode);
		}
		/* Each missing component, outermost first, is recorded so it can be removed. */
		cleanup_free char *rel = xstrdup(want);
		for (char *p = rel + 1;; p++) {
			if (*p != '/' && *p != '\0')
				continue;
			char save = *p;
			*p = '\0';
			cleanup_free char *path = ib_path_join(s->root_dir, rel);
			struct stat st;
			/* Made here, on the host, before any namespace: a link in the
			 * tree would lead the mkdir out of it, so none is followed. */
			if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
				return ib_error_set(err, ELOOP,
						    "mount point '%s' in '%s': '%s' is a symbolic link; the sandbox "
						    "does not follow links in a root folder",
						    want, s->root_dir, rel);
			if (lstat(path, &st) < 0) {
				if (ib_make_mount_point(path, save == '\0' ? dir : true, err) < 0)
					return -1;
				ib_strv_push(made, path);
			}
			if (save == '\0')
				break;
			*p = save;
		}
	}
	return 0;
}

static void remove_made_points(struct ib_strv *made)
{
	for (size_t i = made->n; i-- > 0;) {
		struct stat st;
		if (lstat(made->v[i], &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			rmdir(made->v[i]); /* only when still empty */
		else if (S_ISREG(st.st_mode) && st.st_size == 0)
			unlink(made->v[i]);
	}
	ib_strv_free(made);
}

static void restore_mask(sigset_t *old)
{
	sigprocmask(SIG_SETMASK, old, NULL);
}

static unsigned long namespace_flags(const struct ib_sandbox_spec *spec)
{
	unsigned long flags = CLONE_NEWNS;
	if (!spec->host_pid)
		flags |= CLONE_NEWPID;
	if (!spec->host_ipc)
		flags |= CLONE_NEWIPC;
	if (!spec->host_uts)
		flags |= CLONE_NEWUTS;
	if (!spec->network)
		flags |= CLONE_NEWNET;
	if (spec->user_namespace)
		flags |= CLONE_NEWUSER;
	return flags;
}

/* Clones C's process into its namespaces, writes its id maps and lets it go
 * on: its pid, or -1 with nothing left running. The pipes' ends used here
 * are closed and set to -1. */
static pid_t start_child(struct child *c, int sync_pipe[2], int err_pipe[2], ib_error_t *err)
{
	/* In imgbuild's process group, as a command run by hand would be: a shell
	 * in the sandbox reads the terminal. */
	pid_t pid = ib_proc_clone(namespace_flags(c->spec), IB_PROC_SAME_GROUP, err);
	if (pid < 0) {
		int e = errno;
		if (e == EPERM || e == EINVAL || e == ENOSPC) {
			ib_error_free(err);
			ib_error_errno(err, e, "create the sandbox namespaces%s",
				       c->userns ? " (are user namespaces allowed? "
						   "see /proc/sys/kernel/unprivileged_userns_clone "
						   "and user.max_user_namespaces)"
						 : "");
		}
		return -1;
	}
	if (pid == 0) {
		close(sync_pipe[1]);
		close(err_pipe[0]);
		c->sync_fd = sync_pipe[0];
		c->err_fd = err_pipe[1];
		child_main(c);
	}
	close(sync_pipe[0]);
	sync_pipe[0] = -1;
	close(err_pipe[1]);
	err_pipe[1] = -1;
	if (c->userns && write_id_maps(pid, c->spec->keep_uid, err) < 0) {
		ib_proc_kill(pid);
		return -1;
	}
	if (write(sync_pipe[1], "g", 1) != 1) {
		ib_error_errno(err, errno, "start the sandbox");
		ib_proc_kill(pid);
		return -1;
	}
	close(sync_pipe[1]);
	sync_pipe[1] = -1;
	return pid;
}

/* What the child wrote on FD before it failed to exec, as the error (exit
 * code 126/127 kept, as a shell gives); 0 when it wrote nothing. */
static int setup_failure(int fd, int code, ib_error_t *err)
{
	char msg[4096];
	ssize_t n = 0, r;
	while (n < (ssize_t)sizeof(msg) - 1 && (r = read(fd, msg + n, sizeof(msg) - 1 - (size_t)n)) > 0)
		n += r;
	msg[n] = '\0';
	if (n == 0)
		return 0;
	ib_error_set(err, 0, "sandbox: %s", msg);
	return ib_error_exit_code(err, (code == 126 || code == 127) ? code : IB_EXIT_FAIL);
}

int ib_sandbox_run(const struct ib_sandbox_spec *spec, int *status, ib_error_t *err)
{
	if (spec->argv == NULL || spec->argv[0] == NULL)
		return ib_error_usage(err, "sandbox: no command");
	bool overlay = spec->lower_dirs && spec->lower_dirs[0];
	if (!overlay && spec->root_dir == NULL)
		return ib_error_usage(err, "sandbox: neither root_dir nor lower_dirs set");

	struct ib_seccomp_prog prog = { 0 };
	if (spec->seccomp && ib_seccomp_compile(&prog, spec->allow_ptrace ? IB_SECCOMP_ALLOW_PTRACE : 0, err) < 0)
		return -1;
	cleanup_strv struct ib_strv env = { 0 };
	char *const *envp = spec->envp;
	static char *const empty_env[] = { NULL };
	if (envp == NULL)
		envp = empty_env;
	if (spec->driver) {
		ib_driver_env(spec->driver, envp, &env);
		envp = env.v;
	}

	int rc = -1;
	cleanup_free char *tmp_mp = NULL;
	const char *mount_point = spec->mount_point;
	struct ib_strv made = { 0 };
	int sync_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
	pid_t pid = -1;
	sigset_t mask, old;
	bool masked = false;

	if (overlay && mount_point == NULL) {
		const char *t = getenv("TMPDIR");
		tmp_mp = xasprintf("%s/imgbuild-root.XXXXXX", t && *t ? t : "/tmp");
		if (mkdtemp(tmp_mp) == NULL) {
			ib_error_errno(err, errno, "mkdtemp '%s'", tmp_mp);
			goto out;
		}
		mount_point = tmp_mp;
	}
	if (!overlay && make_root_dir_points(spec, &made, err) < 0)
		goto out;

	/* Block before clone so that no SIGCHLD/SIGINT/SIGTERM is lost; the parent
	 * reads them from ib_proc_wait's signalfd, the child resets and unblocks
	 * (crun, bubblewrap). */
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &mask, &old) < 0) {
		ib_error_errno(err, errno, "block signals");
		goto out;
	}
	masked = true;
	if (pipe2(sync_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
		ib_error_errno(err, errno, "pipe");
		goto out;
	}

	struct child c = {
		.spec = spec,
		.prog = spec->seccomp ? &prog : NULL,
		.envp = envp,
		.mount_point = mount_point,
		.userns = spec->user_namespace,
	};
	pid = start_child(&c, sync_pipe, err_pipe, err);
	if (pid < 0)
		goto out;

	/* The one wait (proc.h): on SIGINT/SIGTERM, SIGTERM to PID 1 (which hands it
	 * to the command), SIGKILL after the grace period; when PID 1 dies the
	 * kernel kills the rest of the namespace. */
	int code = 0;
	int wrc = ib_proc_wait(pid, &code, err);
	pid = -1;
	if (wrc < 0)
		goto out;

	if (setup_failure(err_pipe[0], code, err) < 0)
		goto out;
	*status = code;
	rc = 0;
out:
	ib_proc_kill(pid);
	for (int i = 0; i < 2; i++) {
		if (sync_pipe[i] >= 0)
			close(sync_pipe[i]);
		if (err_pipe[i] >= 0)
			close(err_pipe[i]);
	}
	if (masked)
		restore_mask(&old);
	remove_made_points(&made);
	if (tmp_mp && tmp_mp[strlen(tmp_mp) - 1] != 'X')
		rmdir(tmp_mp);
	ib_seccomp_prog_free(&prog);
	return rc;
}

/* ---- ib_remove_tree ---- */

static char *unescape_mountinfo(const char *s, size_t len)
{
	char *out = xmalloc(len + 1);
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\\' && i + 3 < len && s[i + 1] >= '0' && s[i + 1] <= '3') {
			out[o++] = (char)(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0'));
			i += 3;
		} else
			out[o++] = s[i];
	}
	out[o] = '\0';
	return out;
}

/* Is anything mounted at or below PATH (a canonical path) in our namespace? */
static int find_mount_below(const char *path, char **found, ib_error_t *err)
{
	cleanup_free char *text = ib_read_file("/proc/self/mountinfo", NULL, err);
	if (text == NULL)
		return -1;
	size_t plen = strlen(path);
	for (char *line = text; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		/* field 5 is the mount point */
		char *p = line;
		for (int f = 0; f < 4 && p; f++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (p) {
			char *end = strchr(p, ' ');
			size_t len = end ? (size_t)(end - p) : strlen(p);
			cleanup_free char *mp = unescape_mountinfo(p, len);
			if (!strncmp(mp, path, plen) && (mp[plen] == '\0' || mp[plen] == '/' || plen == 1)) {
				*found = steal_pointer(&mp);
				return 1;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	return 0;
}

static int remove_at(int parent, const char *name, dev_t dev, const char *path, ib_error_t *err)
{
	struct stat st;
	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0;
		return ib_error_errno(err, errno, "stat '%s'", path);
	}
	if (!S_ISDIR(st.st_mode)) {
		if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
			return ib_error_errno(err, errno, "remove '%s'", path);
		return 0;
	}
	if (st.st_dev != dev)
		return ib_error_set(err, EXDEV, "remove '%s': another file system is mounted there; not crossing into it", path);
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return ib_error_errno(err, errno, "open '%s'", path);
	/* Folders a build left read-only (0555) must be writable to be emptied. */
	if ((st.st_mode & 0700) != 0700)
		fchmod(fd, (st.st_mode & 07777) | 0700);
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return ib_error_errno(err, errno, "open '%s'", path);
	}
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		cleanup_free char *child = ib_path_join(path, e->d_name);
		rc = remove_at(dirfd(d), e->d_name, dev, child, err);
	}
	closedir(d);
	if (rc < 0)
		return -1;
	if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return ib_error_errno(err, errno, "remove '%s'", path);
	return 0;
}

int ib_remove_tree(const char *path, ib_error_t *err)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return ib_error_errno(err, errno, "stat '%s'", path);
	}
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0)
			return ib_error_errno(err, errno, "remove '%s'", path);
		return 0;
	}
	char real[4096];
	if (realpath(path, real) == NULL)
		return ib_error_errno(err, errno, "resolve '%s'", path);
	if (!strcmp(real, "/"))
		return ib_error_set(err, EINVAL, "refusing to remove '/'");
	cleanup_free char *mp = NULL;
	int found = find_mount_below(real, &mp, err);
	if (found < 0)
		return -1;
	if (found)
		return ib_error_set(err, EBUSY, "remove '%s': '%s' is still mounted; refusing to delete through it", path, mp);
	cleanup_free char *parent_path = xasprintf("%s/..", real);
	cleanup_fd int parent = open(parent_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (parent < 0)
		return ib_error_errno(err, errno, "open '%s'", parent_path);
	const char *base = strrchr(real, '/') + 1;
	return remove_at(parent, base, st.st_dev, path, err);
}
