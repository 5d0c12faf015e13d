/* imgbuild run IMAGE|DIR [OPTION...] [-- CMD...]: parses the command line; run.c runs it. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "run.h"
#include "sandbox.h"
#include "util.h"

enum { OPT_GPU = IB_OPT_LONG, OPT_BIND, OPT_CWD_RW, OPT_USER_NS, OPT_NO_NET, OPT_KEY, OPT_ALLOW_UNSIGNED, OPT_MPI, OPT_NO_MPI };

static const struct ib_opt options[] = {
	{ OPT_GPU, "gpu", NULL,
	  "check the host NVIDIA driver against the image (driver version,\n"
	  "/dev/nvidia-uvm, GPU architectures), then bind it read-only under\n"
	  "/imgbuild/driver (see imgbuild driver)" },
	{ OPT_BIND, "bind", "SRC:DST",
	  "bind a host path into the sandbox (add :ro for read-only); DST is\n"
	  "looked up inside the image, its links never lead out of it" },
	{ OPT_CWD_RW, "cwd-rw", NULL, "let the command write to the current directory" },
	{ OPT_USER_NS, "user-ns", NULL, "use a user namespace even as root" },
	{ OPT_NO_NET, "no-net", NULL, "a new network namespace with only lo (default: the host's network)" },
	{ OPT_MPI, "mpi", NULL, "the hybrid model (docs/cluster.md) even when no launcher started the run" },
	{ OPT_NO_MPI, "no-mpi", NULL,
	  "never the hybrid model, even under mpirun or srun (default: on when\n"
	  "OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK, PMI_SIZE or SLURM_STEP_ID is set)" },
	{ OPT_KEY, "key", "PUB", "trust only this public key for an image file" },
	{ OPT_ALLOW_UNSIGNED, "allow-unsigned", NULL, "run an image file that has no signature" },
	{ 0 },
};

struct args {
	struct ib_run_opts run;
	struct ib_bind *binds;
	size_t n_binds;
	struct ib_strv bind_strings; /* owns the src/dst strings */
};

static bool has_dotdot(const char *p)
{
	for (const char *s = p; (s = strstr(s, "..")) != NULL; s += 2)
		if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
			return true;
	return false;
}

static int add_bind(struct args *o, const char *arg, ib_error_t *err)
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

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	switch (key) {
	case OPT_GPU: a->run.gpu = true; break;
	case OPT_USER_NS: a->run.user_ns = true; break;
	case OPT_NO_NET: a->run.no_net = true; break;
	case OPT_CWD_RW: a->run.cwd_rw = true; break;
	case OPT_MPI: a->run.mpi = 1; break;
	case OPT_NO_MPI: a->run.mpi = 0; break;
	case OPT_KEY: a->run.key = arg; break;
	case OPT_ALLOW_UNSIGNED: a->run.allow_unsigned = true; break;
	case OPT_BIND: return add_bind(a, arg, err);
	case IB_OPT_OPERAND: a->run.image = arg; break;
	}
	return 0;
}

static int cmd_run(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	a.run.mpi = -1;
	struct ib_cmd_rest rest;
	int rc = ib_cmd_parse(cmd, argc, argv, parse, &a, &rest, err);
	if (rc == 0) {
		/* The strings were pushed in pairs; the array may have moved while growing. */
		for (size_t k = 0; k < a.n_binds; k++) {
			a.binds[k].src = a.bind_strings.v[2 * k];
			a.binds[k].dst = a.bind_strings.v[2 * k + 1];
		}
		a.run.binds = a.binds;
		a.run.n_binds = a.n_binds;
		a.run.cmd = rest.argv;
		a.run.n_cmd = rest.argc;
		int status = 0;
		rc = ib_run(&a.run, &status, err) < 0 ? -1 : status;
	} else if (rc > 0) {
		rc = 0;
	}
	free(a.binds);
	ib_strv_free(&a.bind_strings);
	return rc;
}

const struct ib_cmd ib_cmd_run = {
	.name = "run",
	.args_doc = "IMAGE|DIR [-- CMD [ARGS...]]",
	.summary = "run a command inside an image",
	.doc = "Runs CMD (default /bin/sh) inside an image (.tar, .tar.zst) or an unpacked root folder, in new\n"
	       "mount, PID, IPC and UTS namespaces. Nothing of the image is modified: writes land in a\n"
	       "throw-away layer. The current directory is bound read-only at " IB_RUN_CWD " (not the\n"
	       "mounts below it; not at all when it is your home folder or /) and is the command's\n"
	       "working directory. The image's /etc/profile.d/*.sh are sourced first (when it has /bin/sh);\n"
	       "HOME=/root. The exit status is CMD's (128+N when killed by signal N).\n"
	       "As an ordinary user (or with --user-ns) the sandbox runs in a user namespace, as root there\n"
	       "(with the user's /etc/subuid range mapped above it when there is one). As real root the\n"
	       "command keeps no dangerous capability, sees /proc/sys read-only and runs under the build's\n"
	       "seccomp filter, with ptrace allowed so that gdb and py-spy work.\n"
	       "The launcher's variables (OMPI_*, PMIX_*, PMI_*, SLURM_*, CUDA_VISIBLE_DEVICES) pass through.\n"
	       "A rank started by mpirun or srun (hybrid model, docs/cluster.md) keeps the host's PID, IPC\n"
	       "and UTS namespaces and sees the host's /dev/shm and /tmp, so ranks on a node share memory;\n"
	       "in a user namespace it stays its own uid (PMIx checks it), not root.",
	.options = options,
	.min_operands = 1,
	.max_operands = 1,
	.flags = IB_CMD_TRAILING | IB_CMD_TRAILING_BARE,
	.main = cmd_run,
};
