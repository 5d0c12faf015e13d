/* imgbuild mirror debian|ubuntu: the host's apt mirror for a distribution.
 * Tests and scripts use it so that no mirror host name is ever written down. */
#include <stdio.h>
#include <string.h>

#include "aptsource.h"
#include "commands.h"
#include "util.h"

int ib_cmd_mirror(int argc, char **argv, ib_error_t *err)
{
	static const struct ib_cmd_help help = {
		.usage = "imgbuild mirror debian|ubuntu",
		.summary = "print the host's apt mirror for a distribution (from /etc/apt/sources.list,\n"
			   "sources.list.d/*.list and *.sources; security mirrors are skipped)",
		.options = NULL,
	};
	if (ib_cmd_wants_help(argc, argv, &help))
		return IB_EXIT_OK;
	if (argc != 2 || (strcmp(argv[1], "debian") != 0 && strcmp(argv[1], "ubuntu") != 0))
		return ib_error_usage(err, "usage: %s", help.usage);
	cleanup_free char *mirror = ib_host_apt_mirror(argv[1], err);
	if (mirror == NULL)
		return -1;
	printf("%s\n", mirror);
	return IB_EXIT_OK;
}
