/* imgbuild mirror debian|ubuntu: the host's apt mirror for a distribution.
 * Tests and scripts use it so that no mirror host name is ever written down. */
#include <stdio.h>
#include <string.h>

#include "aptsource.h"
#include "commands.h"
#include "util.h"

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	if (strcmp(arg, "debian") != 0 && strcmp(arg, "ubuntu") != 0)
		return ib_cmd_usage_error(&ib_cmd_mirror, err);
	*(const char **)data = arg;
	return 0;
}

static int cmd_mirror(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	const char *distro = NULL;
	int r = ib_cmd_parse(cmd, argc, argv, parse, &distro, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : IB_EXIT_OK;
	cleanup_free char *mirror = ib_host_apt_mirror(distro, err);
	if (mirror == NULL)
		return -1;
	printf("%s\n", mirror);
	return IB_EXIT_OK;
}

const struct ib_cmd ib_cmd_mirror = {
	.name = "mirror",
	.args_doc = "debian|ubuntu",
	.summary = "print the host's apt mirror for a distribution",
	.doc = "print the host's apt mirror for a distribution (from /etc/apt/sources.list,\n"
	       "sources.list.d/*.list and *.sources; security mirrors are skipped)",
	.min_operands = 1,
	.max_operands = 1,
	.flags = IB_CMD_HIDDEN,
	.main = cmd_mirror,
};
