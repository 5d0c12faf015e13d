/* imgbuild pull URL [-o FILE]: parses, then calls pull.h. */
#include "commands.h"
#include "pull.h"
#include "util.h"

#include <string.h>

static const struct ib_cmd_help help = {
	.usage = "imgbuild pull URL [-o FILE] [--mirror URL]... [--key PUB] [--allow-unsigned]",
	.summary = "Download an image with its URL.sha256 and URL.sig (http, https or file), resuming a cut\n"
		   "transfer, and check it as verify does (digest, trusted signer, every entry) before it\n"
		   "appears as FILE: a failure never leaves a partial or unverified image there. A cut\n"
		   "transfer is kept in DIR/.NAME.pull/ and the same pull resumes it.",
	.options = "  -o FILE            where to put the image (default: the URL's file name here; a folder:\n"
		   "                     that name in it)\n"
		   "  --mirror URL       another URL of the same image, tried in order when one fails (a URL\n"
		   "                     ending in '/' is a folder holding it); repeatable\n"
		   "  --key PUB          trust this public key only (default: the trusted keys, see imgbuild trust)\n"
		   "  --allow-unsigned   accept an image without URL.sig (every other check still runs)\n",
};

int ib_cmd_pull(int argc, char **argv, ib_error_t *err)
{
	if (ib_cmd_wants_help(argc, argv, &help))
		return 0;
	struct ib_pull_opts o = { 0 };
	struct ib_strv mirrors = { 0 };
	const char *url = NULL;
	int rc = -1;
	for (int i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc) {
			o.out = argv[++i];
		} else if (strcmp(argv[i], "--mirror") == 0 && i + 1 < argc) {
			ib_strv_push(&mirrors, argv[++i]);
		} else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
			o.key = argv[++i];
		} else if (strcmp(argv[i], "--allow-unsigned") == 0) {
			o.allow_unsigned = true;
		} else if (argv[i][0] == '-') {
			ib_error_usage(err, "pull: unknown option '%s' (see imgbuild pull --help)", argv[i]);
			goto out;
		} else if (url) {
			ib_error_usage(err, "pull: one URL at a time (--mirror gives other URLs of the same image)");
			goto out;
		} else {
			url = argv[i];
		}
	}
	if (url == NULL) {
		ib_error_usage(err, "usage: %s", help.usage);
		goto out;
	}
	o.mirrors = (const char *const *)mirrors.v;
	rc = ib_pull(url, &o, NULL, err) < 0 ? -1 : 0;
out:
	ib_strv_free(&mirrors);
	return rc;
}
