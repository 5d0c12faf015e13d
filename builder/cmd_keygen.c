/* imgbuild keygen NAME: an Ed25519 key pair in signify's format, trusted by its maker. */
#include "commands.h"
#include "paths.h"
#include "sign.h"
#include "trust.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

enum { OPT_NO_TRUST = IB_OPT_LONG };

static const struct ib_opt options[] = {
	{ 'd', "dir", "DIR", "where to write the pair (default: ~/.config/imgbuild/keys)" },
	{ OPT_NO_TRUST, "no-trust", NULL, "do not add the public key to this user's trusted keys" },
	{ 0 },
};

struct args {
	const char *name, *dir;
	bool no_trust;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	if (key == 'd')
		a->dir = arg;
	else if (key == OPT_NO_TRUST)
		a->no_trust = true;
	else if (key == IB_OPT_OPERAND)
		a->name = arg;
	return 0;
}

static int cmd_keygen(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	const char *name = a.name, *dir = a.dir;
	bool trust = !a.no_trust;
	cleanup_free char *def = NULL;
	if (dir == NULL)
		dir = def = ib_user_keys_dir();
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

const struct ib_cmd ib_cmd_keygen = {
	.name = "keygen",
	.args_doc = "NAME",
	.summary = "make an Ed25519 signing key pair",
	.doc = "Make an Ed25519 signing key pair (OpenBSD signify format, no passphrase):\n"
	       "DIR/NAME.sec (mode 0600) and DIR/NAME.pub, and trust the public key for this user\n"
	       "(as 'imgbuild trust add DIR/NAME.pub' would), so images signed with it verify and run.\n"
	       "Prints the key's keynum.",
	.options = options,
	.min_operands = 1,
	.max_operands = 1,
	.main = cmd_keygen,
};
