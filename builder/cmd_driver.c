/* imgbuild driver: what the host's NVIDIA driver is and what a sandbox would bind. */
#include <stdio.h>

#include "commands.h"
#include "driver.h"

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	return 0;
}

static int cmd_driver(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	int r = ib_cmd_parse(cmd, argc, argv, parse, NULL, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	struct ib_driver d;
	if (ib_driver_discover(&d, err) < 0) {
		ib_driver_free(&d);
		return ib_error_wrap(err, "discover the NVIDIA driver");
	}
	ib_driver_print(&d, stdout);
	ib_driver_free(&d);
	return 0;
}

const struct ib_cmd ib_cmd_driver = {
	.name = "driver",
	.summary = "show the host NVIDIA driver and what would be bound",
	.doc = "Shows the host's NVIDIA driver: its version (/proc/driver/nvidia/version), the libraries\n"
	       "of that version found through /etc/ld.so.cache, the tools, device nodes and the\n"
	       "persistenced socket, and where each would be bound in a sandbox (read-only, under\n"
	       "/imgbuild/driver; never copied into an image). With no driver it says so and exits 0.\n"
	       "$IMGBUILD_HOST_ROOT reads every host path under another root (for tests).",
	.main = cmd_driver,
};
