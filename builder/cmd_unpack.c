/* imgbuild unpack IMAGE DIR: verify, then extract beside DIR and rename. */
#include "commands.h"
#include "unpack.h"
#include "util.h"

#include <string.h>

static const struct ib_cmd_help help = {
	.usage = "imgbuild unpack IMAGE DIR [--no-verify] [--key PUB] [--allow-unsigned]",
	.summary = "Verify IMAGE, then extract it into DIR (which must not exist or be empty). Owners and\n"
		   "file capabilities are kept when run as root.",
	.options = "  --no-verify        extract without checking digest, signature or listing (path safety\n"
		   "                     is still enforced)\n"
		   "  --key PUB          trust this public key only\n"
		   "  --allow-unsigned   accept an image without IMAGE.sig\n",
};

int ib_cmd_unpack(int argc, char **argv, ib_error_t *err)
{
	if (ib_cmd_wants_help(argc, argv, &help))
		return 0;
	struct ib_verify_opts o = { 0 };
	bool no_verify = false;
	const char *pos[2] = { NULL, NULL };
	int npos = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
			o.key = argv[++i];
		else if (strcmp(argv[i], "--allow-unsigned") == 0)
			o.allow_unsigned = true;
		else if (strcmp(argv[i], "--no-verify") == 0)
			no_verify = true;
		else if (argv[i][0] == '-')
			return ib_error_usage(err, "unpack: unknown option '%s' (see imgbuild unpack --help)", argv[i]);
		else if (npos < 2)
			pos[npos++] = argv[i];
		else
			return ib_error_usage(err, "usage: %s", help.usage);
	}
	if (npos != 2)
		return ib_error_usage(err, "usage: %s", help.usage);
	if (ib_unpack(pos[0], pos[1], &o, no_verify, err) < 0)
		return -1;
	printf("unpacked %s into %s\n", pos[0], pos[1]);
	return 0;
}
