/* imgbuild verify IMAGE: digest, signature, listing and entry safety. */
#include "commands.h"
#include "util.h"
#include "verify.h"

#include <string.h>

static const struct ib_cmd_help help = {
	.usage = "imgbuild verify IMAGE [--key PUB] [--allow-unsigned] [--host]",
	.summary = "Check an image: IMAGE.sha256, IMAGE.sig against the trusted keys, every entry against\n"
		   "the listing, and that no entry is unsafe. Exits 0 only when everything holds.",
	.options = "  --key PUB          trust this public key only (default: the project's keys/ and\n"
		   "                     ~/.config/imgbuild/trusted/)\n"
		   "  --allow-unsigned   accept an image without IMAGE.sig (every other check still runs)\n"
		   "  --host             also check this host's driver against the image\n",
};

int ib_cmd_verify(int argc, char **argv, ib_error_t *err)
{
	if (ib_cmd_wants_help(argc, argv, &help))
		return 0;
	struct ib_verify_opts o = { 0 };
	const char *image = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
			o.key = argv[++i];
		else if (strcmp(argv[i], "--allow-unsigned") == 0)
			o.allow_unsigned = true;
		else if (strcmp(argv[i], "--host") == 0)
			o.host = true;
		else if (argv[i][0] == '-')
			return ib_error_usage(err, "verify: unknown option '%s' (see imgbuild verify --help)", argv[i]);
		else if (image)
			return ib_error_usage(err, "verify: one image at a time");
		else
			image = argv[i];
	}
	if (image == NULL)
		return ib_error_usage(err, "usage: %s", help.usage);
	struct ib_verify_report rep;
	int rc = ib_verify(image, &o, &rep, err);
	ib_verify_report_free(&rep);
	return rc < 0 ? -1 : 0;
}
