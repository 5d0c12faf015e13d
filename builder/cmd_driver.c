/* imgbuild driver: what the host's NVIDIA driver is and what a sandbox would bind. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "driver.h"

int ib_cmd_driver(int argc, char **argv, ib_error_t *err)
{
	static const struct ib_cmd_help help = {
		.usage = "imgbuild driver",
		.summary = "Shows the host's NVIDIA driver: its version (/proc/driver/nvidia/version), the libraries\n"
			   "of that version found through /etc/ld.so.cache, the tools, device nodes and the\n"
			   "persistenced socket, and where each would be bound in a sandbox (read-only, under\n"
			   "/imgbuild/driver; never copied into an image). With no driver it says so and exits 0.\n"
			   "$IMGBUILD_HOST_ROOT reads every host path under another root (for tests).",
		.options = NULL,
	};
	if (ib_cmd_wants_help(argc, argv, &help))
		return 0;
	if (argc > 1)
		return ib_error_usage(err, "driver: unexpected argument '%s' (see imgbuild driver --help)", argv[1]);
	struct ib_driver d;
	if (ib_driver_discover(&d, err) < 0) {
		ib_driver_free(&d);
		return ib_error_wrap(err, "discover the NVIDIA driver");
	}
	ib_driver_print(&d, stdout);
	ib_driver_free(&d);
	return 0;
}
