/* imgbuild keygen NAME: an Ed25519 key pair in signify's format, trusted by its maker. */
#include "commands.h"
#include "sign.h"
#include "trust.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const struct ib_cmd_help help = {
	.usage = "imgbuild keygen NAME [-d DIR] [--no-trust]",
	.summary = "Make an Ed25519 signing key pair (OpenBSD signify format, no passphrase):\n"
		   "DIR/NAME.sec (mode 0600) and DIR/NAME.pub, and trust the public key for this user\n"
		   "(as 'imgbuild trust add DIR/NAME.pub' would), so images signed with it verify and run.\n"
		   "Prints the key's keynum.",
	.options = "  -d DIR       where to write the pair (default: ~/.config/imgbuild/keys)\n"
		   "  --no-trust   do not add the public key to this user's trusted keys\n",
};

int ib_cmd_keygen(int argc, char **argv, ib_error_t *err)
{
	if (ib_cmd_wants_help(argc, argv, &help))
		return 0;
	const char *name = NULL, *dir = NULL;
	bool trust = true;
	for (int i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--dir") == 0) && i + 1 < argc)
			dir = argv[++i];
		else if (strcmp(argv[i], "--no-trust") == 0)
			trust = false;
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
	cleanup_free char *pub = xasprintf("%s/%s.pub", dir, name);
	cleanup_free char *sec = xasprintf("%s/%s.sec", dir, name);
	/* Before making anything (an existing pair is ib_sign_keygen's error to
	 * give): a pair that cannot be trusted under its name helps no one. */
	if (trust && !ib_path_exists(pub) && !ib_path_exists(sec) && ib_trust_name_free(name, NULL, err) < 0) {
		cleanup_free char *why = xstrdup((*err)->msg);
		return ib_error_usage(err, "keygen: %s (or pass --no-trust)", why);
	}
	if (ib_sign_keygen(dir, name, err) < 0)
		return -1;
	printf("wrote %s/%s.sec (secret, mode 0600: keep it private) and %s\n", dir, name, pub);
	struct ib_trusted_key k = { 0 };
	if (trust) {
		if (ib_trust_add(pub, name, &k, NULL, err) < 0)
			return ib_error_wrap(err, "keygen: the pair is made, but trusting it failed");
		printf("keynum %s, trusted for this user as '%s' (%s)\n", k.keynum, k.name, k.path);
	} else {
		struct ib_pubkey key;
		if (ib_sign_read_pubkey(pub, &key, err) < 0)
			return -1;
		ib_hex(key.keynum, IB_SIGN_KEYNUM_LEN, k.keynum);
		free(key.path);
		printf("keynum %s (not trusted: imgbuild trust add %s)\n", k.keynum, pub);
	}
	ib_trusted_key_free(&k);
	printf("sign images with:    imgbuild pack ROOT -o IMAGE --sign %s/%s.sec\n", dir, name);
	printf("publish the key:     cp %s keys/   (in the project; commit it)\n", pub);
	printf("others trust it with: imgbuild trust add %s.pub\n", name);
	printf("anyone can then check an image with: signify-openbsd -C -p %s.pub -x IMAGE.sig\n", name);
	return 0;
}
