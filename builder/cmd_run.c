/* imgbuild run IMAGE|DIR [--gpu] [--bind SRC:DST[:ro]]... [--user-ns] [--no-net] -- CMD...
 * Runs a command in an image. The tree is never modified: the sandbox puts a
 * throw-away tmpfs layer over it (or, where overlayfs is refused in a user
 * namespace, shows it read-only). */
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "compat.h"
#include "driver.h"
#include "gpus.h"
#include "log.h"
#include "sandbox.h"
#include "toml.h"
#include "unpack.h"
#include "util.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define CWD_IN_SANDBOX "/imgbuild/cwd"

struct run_opts {
	const char *image;
	bool gpu, user_ns, no_net, allow_unsigned, cwd_rw;
	const char *key;
	struct ib_bind *binds;
	size_t n_binds;
	struct ib_strv bind_strings;	/* owns the src/dst strings */
	char **cmd;	/* not owned: points into argv */
	int n_cmd;
};

static void run_opts_free(struct run_opts *o)
{
	free(o->binds);
	ib_strv_free(&o->bind_strings);
}

static bool has_dotdot(const char *p)
{
	for (const char *s = p; (s = strstr(s, "..")) != NULL; s += 2)
		if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
			return true;
	return false;
}

static int add_bind(struct run_opts *o, const char *arg, ib_error_t *err)
{
	cleanup_free char *copy = xstrdup(arg);
	char *colon = strchr(copy, ':');
	if (colon == NULL || colon == copy || colon[1] != '/')
		return ib_error_usage(err, "run: --bind '%s': expected SRC:DST[:ro] with an absolute DST", arg);
	*colon = '\0';
	char *dst = colon + 1;
	unsigned flags = 0;
	char *opt = strchr(dst, ':');
	if (opt) {
		*opt++ = '\0';
		if (strcmp(opt, "ro") == 0)
			flags |= IB_BIND_RO;
		else if (strcmp(opt, "rw") != 0)
			return ib_error_usage(err, "run: --bind '%s': unknown option '%s' (ro or rw)", arg, opt);
	}
	char real[PATH_MAX];
	if (realpath(copy, real) == NULL)
		return ib_error_errno(err, errno, "run: --bind source '%s'", copy);
	if (strcmp(dst, "/") == 0 || has_dotdot(dst))
		return ib_error_usage(err, "run: --bind '%s': bad destination '%s'", arg, dst);
	ib_strv_push(&o->bind_strings, real);
	ib_strv_push(&o->bind_strings, dst);
	o->binds = xrealloc(o->binds, (o->n_binds + 1) * sizeof(*o->binds));
	o->binds[o->n_binds++] = (struct ib_bind){ NULL, NULL, flags };
	return 0;
}

static int parse_args(int argc, char **argv, struct run_opts *o, ib_error_t *err)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			o->cmd = argv + i + 1;
			o->n_cmd = argc - i - 1;
			break;
		}
		if (strcmp(a, "--gpu") == 0)
			o->gpu = true;
		else if (strcmp(a, "--user-ns") == 0)
			o->user_ns = true;
		else if (strcmp(a, "--no-net") == 0)
			o->no_net = true;
		else if (strcmp(a, "--allow-unsigned") == 0)
			o->allow_unsigned = true;
		else if (strcmp(a, "--cwd-rw") == 0)
			o->cwd_rw = true;
		else if (strcmp(a, "--key") == 0 || strncmp(a, "--key=", 6) == 0) {
			o->key = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
			if (o->key == NULL)
				return ib_error_usage(err, "run: --key needs a public key file");
		}
		else if (strcmp(a, "--bind") == 0 || strncmp(a, "--bind=", 7) == 0) {
			const char *v = a[6] == '=' ? a + 7 : (i + 1 < argc ? argv[++i] : NULL);
			if (v == NULL)
				return ib_error_usage(err, "run: --bind needs SRC:DST");
			if (add_bind(o, v, err) < 0)
				return -1;
		} else if (a[0] == '-' && a[1] != '\0')
			return ib_error_usage(err, "run: unknown option '%s' (see imgbuild run --help)", a);
		else if (o->image == NULL)
			o->image = a;
		else {
			/* "run DIR cmd args" without "--": the command starts here. */
			o->cmd = argv + i;
			o->n_cmd = argc - i;
			break;
		}
	}
	if (o->image == NULL)
		return ib_error_usage(err, "run: no IMAGE or DIR given (see imgbuild run --help)");
	/* The strings were pushed in pairs; the array may have moved while growing. */
	for (size_t k = 0; k < o->n_binds; k++) {
		o->binds[k].src = o->bind_strings.v[2 * k];
		o->binds[k].dst = o->bind_strings.v[2 * k + 1];
	}
	return 0;
}

/* ---- facts (.imgbuild/facts.toml, written by pack) ---- */

struct facts {
	bool have_file;
	char *min_driver;	/* NULL when absent */
	struct ib_strv archs;
	bool have_archs, ptx_jit;
};

static void facts_free(struct facts *f)
{
	free(f->min_driver);
	ib_strv_free(&f->archs);
}

static const struct ib_toml_value *fact(const struct ib_toml_value *root, const char *key)
{
	const struct ib_toml_value *v = ib_toml_get(root, key);
	if (v == NULL)
		v = ib_toml_get(ib_toml_get(root, "stack"), key);
	return v;
}

static void split_archs(const char *s, struct ib_strv *out)
{
	/* TORCH_CUDA_ARCH_LIST style: "5.0;6.1+PTX" or "5.0 6.1" */
	cleanup_free char *copy = xstrdup(s);
	for (char *save = NULL, *t = strtok_r(copy, "; ,", &save); t; t = strtok_r(NULL, "; ,", &save))
		ib_strv_push(out, t);
}

static int read_facts(const char *tree, struct facts *f, ib_error_t *err)
{
	memset(f, 0, sizeof(*f));
	cleanup_free char *path = ib_path_join(tree, ".imgbuild/facts.toml");
	if (!ib_path_exists(path))
		return 0;
	size_t len = 0;
	cleanup_free char *text = ib_read_file(path, &len, err);
	if (text == NULL)
		return -1;
	struct ib_toml_value *root = ib_toml_parse(text, len, path, err);
	if (root == NULL)
		return -1;
	f->have_file = true;
	const struct ib_toml_value *v = fact(root, "min_driver");
	if (v && v->type == IB_TOML_STRING && v->u.str[0])
		f->min_driver = xstrdup(v->u.str);
	v = fact(root, "archs");
	if (v && v->type == IB_TOML_STRING) {
		split_archs(v->u.str, &f->archs);
		f->have_archs = true;
	} else if (v && v->type == IB_TOML_ARRAY) {
		for (size_t i = 0; i < v->len; i++)
			if (v->items[i]->type == IB_TOML_STRING)
				split_archs(v->items[i]->u.str, &f->archs);
		f->have_archs = true;
	}
	v = fact(root, "ptx_jit");
	if (v && v->type == IB_TOML_BOOL)
		f->ptx_jit = v->u.boolean;
	else if (v && v->type == IB_TOML_STRING)
		f->ptx_jit = !strcmp(v->u.str, "true") || !strcmp(v->u.str, "1") || !strcmp(v->u.str, "yes");
	ib_toml_free(root);
	return 0;
}

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

/* Checks (a) driver present and new enough, (b) /dev/nvidia-uvm, (c) every
 * GPU's compute capability covered by the image's archs, before anything starts. */
static int gpu_preflight(const char *tree, struct ib_driver *d, ib_error_t *err)
{
	struct facts f;
	if (read_facts(tree, &f, err) < 0)
		return ib_error_wrap(err, "--gpu: read the image's facts");
	int rc = -1;
	if (!f.have_file)
		ib_log_warn("--gpu: the image has no .imgbuild/facts.toml (not made by imgbuild pack): "
			    "min_driver, archs and ptx_jit are unknown; only the driver itself is checked");
	else {
		if (f.min_driver == NULL)
			ib_log_warn("--gpu: the image's facts have no min_driver: the driver version is not checked");
		if (!f.have_archs)
			ib_log_warn("--gpu: the image's facts have no archs: GPU architectures are not checked");
	}
	if (ib_driver_discover(d, err) < 0) {
		ib_error_wrap(err, "--gpu: discover the NVIDIA driver");
		goto out;
	}
	if (d->found)
		warn_driver_branches(d);
	if (ib_driver_check_present(d, f.min_driver, err) < 0 || ib_driver_check_uvm(d, err) < 0)
		goto out;
	if (f.have_archs || f.ptx_jit) {
		struct ib_gpu *gpus = NULL;
		size_t n = 0;
		if (ib_driver_query_gpus(d, &gpus, &n, err) < 0)
			goto out;
		for (size_t i = 0; i < n; i++)
			ib_log_debug("GPU %d: %s, compute capability %d.%d", gpus[i].index, gpus[i].name, gpus[i].major,
				     gpus[i].minor);
		int r = ib_driver_check_archs(gpus, n, (const char *const *)f.archs.v, f.archs.n, f.ptx_jit, err);
		free(gpus);
		if (r < 0)
			goto out;
	}
	rc = 0;
out:
	facts_free(&f);
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

static bool is_image_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int ib_cmd_run(int argc, char **argv, ib_error_t *err)
{
	static const struct ib_cmd_help help = {
		.usage = "imgbuild run IMAGE|DIR [--gpu] [--bind SRC:DST[:ro]]... [--cwd-rw] [--user-ns] [--no-net] [--key PUB] "
			 "[--allow-unsigned] -- CMD...",
		.summary =
			"Runs CMD (default /bin/sh) inside an image (.tar, .tar.zst) or an unpacked root folder, in new\n"
			"mount, PID, IPC and UTS namespaces. Nothing of the image is modified: writes land in a\n"
			"throw-away layer. The current directory is bound read-only at " CWD_IN_SANDBOX " (not the\n"
			"mounts below it; not at all when it is your home folder or /) and is the command's\n"
			"working directory. The image's /etc/profile.d/*.sh are sourced first (when it has /bin/sh);\n"
			"HOME=/root. The exit status is CMD's (128+N when killed by signal N).\n"
			"As an ordinary user (or with --user-ns) the sandbox runs in a user namespace, as root there\n"
			"(with the user's /etc/subuid range mapped above it when there is one). As real root the\n"
			"command keeps no dangerous capability, sees /proc/sys read-only and runs under the build's\n"
			"seccomp filter, with ptrace allowed so that gdb and py-spy work.",
		.options = "  --gpu              check the host NVIDIA driver against the image (driver version,\n"
			   "                     /dev/nvidia-uvm, GPU architectures), then bind it read-only under\n"
			   "                     /imgbuild/driver (see imgbuild driver)\n"
			   "  --bind SRC:DST     bind a host path into the sandbox (add :ro for read-only); DST is\n"
			   "                     looked up inside the image, its links never lead out of it\n"
			   "  --cwd-rw           let the command write to the current directory\n"
			   "  --user-ns          use a user namespace even as root\n"
			   "  --no-net           a new, empty network namespace (default: the host's network)\n"
			   "  --key PUB          trust only this public key for an image file\n"
			   "  --allow-unsigned   run an image file that has no signature\n",
	};
	if (ib_cmd_wants_help(argc, argv, &help))
		return 0;
	struct run_opts o;
	memset(&o, 0, sizeof(o));
	int rc = -1;
	struct ib_driver driver;
	memset(&driver, 0, sizeof(driver));
	cleanup_free char *tree = NULL, *mount_point = NULL, *cwd = NULL, *sh = NULL;
	struct ib_strv env = { 0 }, args = { 0 };
	struct ib_bind *binds = NULL;

	if (parse_args(argc, argv, &o, err) < 0)
		goto out;
	if (is_image_file(o.image)) {
		/* Verified and unpacked once into $cache/images/<sha256>/tree, which no
		 * run modifies: the sandbox puts a throw-away layer over it. */
		struct ib_verify_opts vo;
		memset(&vo, 0, sizeof(vo));
		vo.key = o.key;
		vo.allow_unsigned = o.allow_unsigned;
		vo.quiet = true;
		if (ib_unpack_cached(o.image, &vo, &tree, err) < 0) {
			ib_error_wrap(err, "run '%s'", o.image);
			goto out;
		}
	} else {
		char real[PATH_MAX];
		struct stat st;
		if (realpath(o.image, real) == NULL) {
			ib_error_errno(err, errno, "run: '%s'", o.image);
			goto out;
		}
		if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
			ib_error_usage(err, "run: '%s' is neither an image file nor a folder", o.image);
			goto out;
		}
		tree = xstrdup(real);
	}

	if (o.gpu && gpu_preflight(tree, &driver, err) < 0)
		goto out;

	char here[PATH_MAX];
	if (getcwd(here, sizeof(here)) == NULL) {
		ib_error_errno(err, errno, "run: getcwd");
		goto out;
	}
	cwd = xstrdup(here);
	binds = xcalloc(o.n_binds + 1, sizeof(*binds));
	size_t n_binds = 0;
	/* The image may be a stranger's and its profile.d runs first: the caller's
	 * folder is shown read-only (--cwd-rw to let the command write there), and
	 * without the mounts below it. Run from $HOME or /, nothing is bound: a
	 * read-only view would still hand ~/.ssh to the image. */
	bool bind_cwd = !is_home_or_root(here);
	if (bind_cwd)
		binds[n_binds++] = (struct ib_bind){ cwd, CWD_IN_SANDBOX,
						     IB_BIND_NONRECURSIVE | (o.cwd_rw ? 0 : IB_BIND_RO) };
	else
		ib_log_warn("run: '%s' is your home folder or '/': not bound at " CWD_IN_SANDBOX
			    " (cd into a project folder, or --bind DIR:/somewhere)",
			    here);
	for (size_t i = 0; i < o.n_binds; i++)
		binds[n_binds++] = o.binds[i];

	ib_strv_push(&env, "PATH=" DEFAULT_PATH);
	ib_strv_push(&env, "HOME=/root");
	const char *t = getenv("TERM");
	if (t && *t)
		ib_strv_push_owned(&env, xasprintf("TERM=%s", t));

	sh = ib_path_join(tree, "bin/sh");
	bool have_sh = ib_path_exists(sh);
	if (have_sh) {
		/* profile.d may set PATH afresh; the driver's folders go first again after it. */
		ib_strv_push(&args, "/bin/sh");
		ib_strv_push(&args, "-c");
		ib_strv_push_owned(
			&args,
			xasprintf("for f in /etc/profile.d/*.sh; do if [ -r \"$f\" ]; then . \"$f\"; fi; done; unset f; %s"
				  "exec \"$@\"",
				  o.gpu && driver.found ? "export PATH=\"" IB_DRIVER_BIN_DIR ":$PATH\" LD_LIBRARY_PATH=\"" IB_DRIVER_LIB_DIR
							  "${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\"; "
							: ""));
		ib_strv_push(&args, "sh");
	}
	if (o.n_cmd == 0)
		ib_strv_push(&args, "/bin/sh");
	for (int i = 0; i < o.n_cmd; i++)
		ib_strv_push(&args, o.cmd[i]);

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
	spec.driver = o.gpu && driver.found ? &driver : NULL;
	spec.argv = args.v;
	spec.envp = env.v;
	spec.cwd = bind_cwd ? CWD_IN_SANDBOX : "/";
	spec.hostname = "imgbuild";
	spec.network = !o.no_net;
	spec.user_namespace = o.user_ns || geteuid() != 0;
	/* The build filter, with ptrace allowed so that gdb and py-spy work on the
	 * sandbox's own processes: CAP_SYS_PTRACE stays dropped and the PID
	 * namespace holds nothing else to trace (docs/reliability.md). */
	spec.seccomp = true;
	spec.allow_ptrace = true;
	spec.stdin_fd = spec.stdout_fd = spec.stderr_fd = -1;
	int status = 0;
	if (ib_sandbox_run(&spec, &status, err) < 0)
		goto out;
	rc = status;
out:
	if (mount_point)
		rmdir(mount_point);
	free(binds);
	ib_strv_free(&env);
	ib_strv_free(&args);
	ib_driver_free(&driver);
	run_opts_free(&o);
	return rc;
}
