/* imgbuild keygen NAME: an Ed25519 key pair in signify's format. */
#include "commands.h"
#include "sign.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const struct ib_cmd_help help = {
	.usage = "imgbuild keygen NAME [-d DIR]",
	.summary = "Make an Ed25519 signing key pair (OpenBSD signify format, no passphrase):\n"
		   "DIR/NAME.sec (mode 0600) and DIR/NAME.pub. DIR defaults to ~/.config/imgbuild/keys.",
	.options = "  -d DIR   where to write the pair\n",
};

int ib_cmd_keygen(int argc, char **argv, ib_error_t *err)
{
	if (ib_cmd_wants_help(argc, argv, &help))
		return 0;
	const char *name = NULL, *dir = NULL;
	for (int i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--dir") == 0) && i + 1 < argc)
			dir = argv[++i];
		else if (argv[i][0] == '-')
			return ib_error_usage(err, "keygen: unknown option '%s'", argv[i]);
		else if (name)
			return ib_error_usage(err, "usage: %s", help.usage);
		else
			name = argv[i];
	}
	if (name == NULL)
		return ib_error_usage(err, "usage: %s", help.usage);
	cleanup_free char *def = NULL;
	if (dir == NULL) {
		const char *xdg = getenv("XDG_CONFIG_HOME");
		const char *home = getenv("HOME");
		def = xdg && *xdg ? xasprintf("%s/imgbuild/keys", xdg) : xasprintf("%s/.config/imgbuild/keys", home && *home ? home : "/root");
		dir = def;
	}
	if (ib_sign_keygen(dir, name, err) < 0)
		return -1;
	printf("wrote %s/%s.sec (secret, mode 0600: keep it private) and %s/%s.pub\n", dir, name, dir, name);
	printf("sign images with:    imgbuild pack ROOT -o IMAGE --sign %s/%s.sec\n", dir, name);
	printf("publish the key:     cp %s/%s.pub keys/   (in the project; commit it)\n", dir, name);
	printf("or trust it locally: mkdir -p ~/.config/imgbuild/trusted && cp %s/%s.pub ~/.config/imgbuild/trusted/\n", dir, name);
	printf("anyone can then check an image with: signify-openbsd -C -p %s.pub -x IMAGE.sig\n", name);
	return 0;
}
