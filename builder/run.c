/* imgbuild run's engine (see run.h). The tree is never modified: the sandbox
 * puts a throw-away tmpfs layer over it (or, where overlayfs is refused in a user
 * namespace, shows it read-only). */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compat.h"
#include "driver.h"
#include "gpus.h"
#include "imgmeta.h"
#include "log.h"
#include "run.h"
#include "sandbox.h"
#include "unpack.h"
#include "util.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* A driver from a branch after a GPU's last one does not drive it at all, and then
 * libcuda never reports the GPU, so the arch check below cannot explain why: say so
 * from the PCI ids (sysfs), which the kernel lists whatever the driver. A warning,
 * not a refusal: the chip table may be wrong, and the image may be for another GPU. */
static void warn_driver_branches(const struct ib_driver *d)
{
	ib_error_t e = NULL;
	const struct ib_compat *c = ib_compat_default(&e);
	struct ib_host_gpus g;
	if (c == NULL || ib_gpus_scan(d->host_root, &g, &e) < 0) {
		ib_log_debug("--gpu: driver branch check skipped: %s", e ? e->msg : "?");
		ib_error_free(&e);
		return;
	}
	for (size_t i = 0; i < g.n; i++) {
		struct ib_chip_match *ms = NULL;
		size_t n = g.v[i].pci ? ib_compat_find_chips(c, g.v[i].pci, &ms) : 0;
		const char *cc = n ? ms[0].cc : NULL, *name = n ? ms[0].name : g.v[i].pciids_name;
		cleanup_free char *chip = NULL;
		if (cc == NULL && g.v[i].pciids_name) {
			chip = xstrndup(g.v[i].pciids_name, strcspn(g.v[i].pciids_name, " ["));
			cc = ib_compat_chip_cc(c, chip, NULL);
		}
		cleanup_free char *msg = cc ? ib_compat_driver_warning(c, d->version, cc) : NULL;
		if (msg)
			ib_log_warn("--gpu: GPU %s (%s%s%s): %s", g.v[i].bus, name ? name : "", name ? ", " : "",
				    g.v[i].pci ? g.v[i].pci : "?", msg);
		free(ms);
	}
	ib_gpus_free(&g);
}

/* Checks the host driver against the image's facts before anything starts;
 * D is discovered here and bound later. */
static int gpu_preflight(const char *tree, struct ib_driver *d, ib_error_t *err)
{
	struct ib_facts f;
	bool found = false;
	if (ib_facts_read_tree(tree, &f, &found, err) < 0)
		return ib_error_wrap(err, "--gpu: read the image's facts");
	if (!found)
		ib_log_warn("--gpu: the image has no " IB_META_FACTS " (not made by imgbuild pack): "
			    "min_driver, archs and ptx_jit are unknown; only the driver itself is checked");
	else {
		if (f.min_driver == NULL)
			ib_log_warn("--gpu: the image's facts have no min_driver: the driver version is not checked");
		if (!f.have_archs)
			ib_log_warn("--gpu: the image's facts have no archs: GPU architectures are not checked");
	}
	int rc = ib_driver_discover(d, err);
	if (rc < 0) {
		ib_error_wrap(err, "--gpu: discover the NVIDIA driver");
	} else {
		if (d->found)
			warn_driver_branches(d);
		rc = ib_driver_preflight(d, &f, err);
	}
	ib_facts_free(&f);
	return rc;
}

static bool same_folder(const char *a, const char *b)
{
	struct stat sa, sb;
	return b && *b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static bool is_home_or_root(const char *dir)
{
	if (same_folder(dir, "/"))
		return true;
	struct passwd *pw = getpwuid(getuid());
	return same_folder(dir, getenv("HOME")) || (pw && same_folder(dir, pw->pw_dir));
}

/* ---- MPI's hybrid model: the host's launcher (mpirun's orted, slurmd) starts
 * one `imgbuild run` per rank; docs/cluster.md says what is shared and why ---- */

/* Variables a launcher hands each rank: how it finds its daemon (PMIx), its rank
 * and size, and which GPUs the scheduler bound to it. */
static const char *const launcher_prefixes[] = { "OMPI_", "PMIX_", "PMI_", "OPAL_", "PRTE_", "SLURM_", NULL };
static const char *const launcher_names[] = { "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "NVIDIA_VISIBLE_DEVICES", NULL };

static bool launcher_var(const char *kv)
{
	for (const char *const *p = launcher_prefixes; *p; p++)
		if (!strncmp(kv, *p, strlen(*p)))
			return true;
	for (const char *const *n = launcher_names; *n; n++) {
		size_t l = strlen(*n);
		if (!strncmp(kv, *n, l) && kv[l] == '=')
			return true;
	}
	return false;
}

/* A rank of an MPI job or a Slurm step: the variables every launcher sets. */
static bool started_by_launcher(void)
{
	static const char *const vars[] = { "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "SLURM_STEP_ID", NULL };
	for (const char *const *v = vars; *v; v++)
		if (getenv(*v))
			return true;
	return false;
}

static bool has_dotdot(const char *p)
{
	for (const char *s = p; (s = strstr(s, "..")) != NULL; s += 2)
		if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
			return true;
	return false;
}

static bool is_image_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The tree to run: an image file is verified and unpacked once into
 * $cache/images/<sha256>/tree, which no run modifies (the sandbox puts a
 * throw-away layer over it); a folder is used as it is. */
static char *open_tree(const struct ib_run_opts *o, ib_error_t *err)
{
	char *tree = NULL;
	if (is_image_file(o->image)) {
		struct ib_verify_opts vo;
		memset(&vo, 0, sizeof(vo));
		vo.key = o->key;
		vo.allow_unsigned = o->allow_unsigned;
		vo.quiet = true;
		if (ib_unpack_cached(o->image, &vo, &tree, err) < 0) {
			ib_error_wrap(err, "run '%s'", o->image);
			return NULL;
		}
		return tree;
	}
	char real[PATH_MAX];
	struct stat st;
	if (realpath(o->image, real) == NULL) {
		ib_error_errno(err, errno, "run: '%s'", o->image);
		return NULL;
	}
	if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
		ib_error_usage(err, "run: '%s' is neither an image file nor a folder", o->image);
		return NULL;
	}
	return xstrdup(real);
}

/* The caller's folder CWD (unless it is $HOME or /), the host's shared-memory
 * and rendezvous folders for an MPI rank, then --bind's. Returns the array
 * (the strings are borrowed), its length in *N. */
static struct ib_bind *make_binds(const struct ib_run_opts *o, const char *cwd, bool mpi, bool *bind_cwd, size_t *n)
{
	/* The rank's shared-memory segments and the launcher's rendezvous (Open MPI's
	 * session folder in /tmp, PMIx's in PMIX_*_TMPDIR) are the host's: every rank
	 * on the node must see the same files. */
	const char *shared[] = { "/dev/shm", "/tmp", getenv("PMIX_SERVER_TMPDIR"), getenv("PMIX_SYSTEM_TMPDIR") };
	size_t n_shared = sizeof(shared) / sizeof(shared[0]);
	struct ib_bind *binds = xcalloc(o->n_binds + 1 + n_shared, sizeof(*binds));
	size_t n_binds = 0;
	/* The image may be a stranger's and its profile.d runs first: the caller's
	 * folder is shown read-only (--cwd-rw to let the command write there), and
	 * without the mounts below it. Run from $HOME or /, nothing is bound: a
	 * read-only view would still hand ~/.ssh to the image. */
	*bind_cwd = !is_home_or_root(cwd);
	if (*bind_cwd)
		binds[n_binds++] = (struct ib_bind){ cwd, IB_RUN_CWD, IB_BIND_NONRECURSIVE | (o->cwd_rw ? 0 : IB_BIND_RO) };
	else
		ib_log_warn("run: '%s' is your home folder or '/': not bound at " IB_RUN_CWD
			    " (cd into a project folder, or --bind DIR:/somewhere)",
			    cwd);
	for (size_t i = 0; mpi && i < n_shared; i++) {
		if (shared[i] == NULL || shared[i][0] != '/' || has_dotdot(shared[i]) || strcmp(shared[i], "/") == 0)
			continue;
		bool dup = false;
		for (size_t k = 0; k < n_binds; k++)
			dup |= strcmp(binds[k].dst, shared[i]) == 0;
		if (!dup)
			binds[n_binds++] = (struct ib_bind){ shared[i], shared[i], IB_BIND_OPTIONAL };
	}
	for (size_t i = 0; i < o->n_binds; i++)
		binds[n_binds++] = o->binds[i];
	*n = n_binds;
	return binds;
}

/* A clean environment: PATH, HOME, TERM and the MPI launcher's variables. */
static void make_env(struct ib_strv *env)
{
	ib_strv_push(env, "PATH=" DEFAULT_PATH);
	ib_strv_push(env, "HOME=/root");
	const char *t = getenv("TERM");
	if (t && *t)
		ib_strv_push_owned(env, xasprintf("TERM=%s", t));
	extern char **environ;
	for (char **e = environ; e && *e; e++)
		if (launcher_var(*e))
			ib_strv_push(env, *e);
}

/* The command, behind a /bin/sh that sources /etc/profile.d first when the
 * image has one. */
static void make_args(const struct ib_run_opts *o, const char *tree, bool driver_found, struct ib_strv *args)
{
	cleanup_free char *sh = ib_path_join(tree, "bin/sh");
	if (ib_path_exists(sh)) {
		/* profile.d may set PATH afresh; the driver's folders go first again after it. */
		ib_strv_push(args, "/bin/sh");
		ib_strv_push(args, "-c");
		ib_strv_push_owned(
			args, xasprintf("for f in /etc/profile.d/*.sh; do if [ -r \"$f\" ]; then . \"$f\"; fi; done; unset f; %s"
					"exec \"$@\"",
					o->gpu && driver_found ? "export PATH=\"" IB_DRIVER_BIN_DIR
								 ":$PATH\" LD_LIBRARY_PATH=\"" IB_DRIVER_LIB_DIR
								 "${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\"; "
							       : ""));
		ib_strv_push(args, "sh");
	}
	if (o->n_cmd == 0)
		ib_strv_push(args, "/bin/sh");
	for (int i = 0; i < o->n_cmd; i++)
		ib_strv_push(args, o->cmd[i]);
}

int ib_run(const struct ib_run_opts *o, int *status, ib_error_t *err)
{
	int rc = -1;
	struct ib_driver driver;
	memset(&driver, 0, sizeof(driver));
	cleanup_free char *tree = NULL, *mount_point = NULL, *cwd = NULL;
	cleanup_strv struct ib_strv env = { 0 }, args = { 0 };
	cleanup_free struct ib_bind *binds = NULL;

	tree = open_tree(o, err);
	if (tree == NULL)
		goto out;
	if (o->gpu && gpu_preflight(tree, &driver, err) < 0)
		goto out;

	char here[PATH_MAX];
	if (getcwd(here, sizeof(here)) == NULL) {
		ib_error_errno(err, errno, "run: getcwd");
		goto out;
	}
	cwd = xstrdup(here);
	bool mpi = o->mpi == 1 || (o->mpi == -1 && started_by_launcher());
	bool bind_cwd;
	size_t n_binds;
	binds = make_binds(o, cwd, mpi, &bind_cwd, &n_binds);
	make_env(&env);
	if (mpi)
		ib_log_debug("run: an MPI rank (hybrid model): the host's PID, IPC and UTS namespaces, /dev/shm and /tmp");
	make_args(o, tree, driver.found, &args);

	const char *tmpdir = getenv("TMPDIR");
	mount_point = xasprintf("%s/imgbuild-run.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	if (mkdtemp(mount_point) == NULL) {
		ib_error_errno(err, errno, "run: mkdtemp '%s'", mount_point);
		free(mount_point);
		mount_point = NULL;
		goto out;
	}

	const char *lowers[] = { tree, NULL };
	struct ib_sandbox_spec spec;
	memset(&spec, 0, sizeof(spec));
	spec.lower_dirs = lowers;
	spec.mount_point = mount_point;
	spec.binds = binds;
	spec.n_binds = n_binds;
	spec.driver = o->gpu && driver.found ? &driver : NULL;
	spec.argv = args.v;
	spec.envp = env.v;
	spec.cwd = bind_cwd ? IB_RUN_CWD : "/";
	spec.hostname = "imgbuild";
	spec.network = !o->no_net;
	spec.host_pid = spec.host_ipc = spec.host_uts = mpi;
	spec.user_namespace = o->user_ns || geteuid() != 0;
	/* A rank stays its user inside: PMIx (slurmd's, mpirun's) takes a rank's
	 * TCP connection only from the uid the rank reports, the job's user, and
	 * root inside would report 0 (docs/cluster.md). */
	spec.keep_uid = mpi;
	/* The build filter, with ptrace allowed so that gdb and py-spy work on the
	 * sandbox's own processes: CAP_SYS_PTRACE stays dropped and the PID
	 * namespace holds nothing else to trace (docs/reliability.md). */
	spec.seccomp = true;
	spec.allow_ptrace = true;
	spec.stdin_fd = spec.stdout_fd = spec.stderr_fd = -1;
	if (ib_sandbox_run(&spec, status, err) < 0)
		goto out;
	rc = 0;
out:
	if (mount_point)
		rmdir(mount_point);
	ib_driver_free(&driver);
	return rc;
}
