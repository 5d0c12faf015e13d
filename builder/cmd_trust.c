/* imgbuild trust add|list|remove: parses, then calls trust.h. */
#include "commands.h"
#include "trust.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

static const struct ib_cmd_help help = {
	.usage = "imgbuild trust add KEY.pub [--name NAME] | trust list | trust remove KEYNUM|NAME",
	.summary = "Manage the keys whose signatures verify, unpack, run and pull accept, kept as NAME.pub in\n"
		   "~/.config/imgbuild/trusted/ (with the installation's keys/, which list shows too).\n"
		   "  add KEY.pub      trust a signify public key (as NAME; default: the file's name)\n"
		   "  list             keynum, name and file of every trusted key\n"
		   "  remove WHAT      stop trusting the key with that name or keynum",
	.options = "  --name NAME   (add) the name to keep the key under\n",
};

static int trust_add(int argc, char **argv, ib_error_t *err)
{
	const char *pub = NULL, *name = NULL;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
			name = argv[++i];
		else if (argv[i][0] == '-')
			return ib_error_usage(err, "trust add: unknown option '%s' (see imgbuild trust --help)", argv[i]);
		else if (pub)
			return ib_error_usage(err, "trust add: one key at a time");
		else
			pub = argv[i];
	}
	if (pub == NULL)
		return ib_error_usage(err, "usage: imgbuild trust add KEY.pub [--name NAME]");
	struct ib_trusted_key k = { 0 };
	bool already = false;
	if (ib_trust_add(pub, name, &k, &already, err) < 0)
		return -1;
	if (already)
		printf("keynum %s is already trusted as '%s' (%s)\n", k.keynum, k.name, k.path);
	else
		printf("trusted keynum %s as '%s' (%s)\n", k.keynum, k.name, k.path);
	ib_trusted_key_free(&k);
	return 0;
}

static int trust_list(int argc, char **argv, ib_error_t *err)
{
	if (argc > 2)
		return ib_error_usage(err, "usage: imgbuild trust list");
	struct ib_trusted_key *keys;
	size_t n;
	if (ib_trust_list(&keys, &n, err) < 0)
		return -1;
	if (n == 0)
		fprintf(stderr, "no trusted keys (imgbuild trust add KEY.pub adds one)\n");
	else
		printf("%-16s  %-20s  %s\n", "KEYNUM", "NAME", "FILE");
	for (size_t i = 0; i < n; i++)
		printf("%-16s  %-20s  %s%s\n", keys[i].keynum[0] ? keys[i].keynum : "(invalid)", keys[i].name, keys[i].path,
		       keys[i].installation ? "  (installation)" : "");
	ib_trusted_keys_free(keys, n);
	return 0;
}

static int trust_remove(int argc, char **argv, ib_error_t *err)
{
	if (argc != 3 || argv[2][0] == '-')
		return ib_error_usage(err, "usage: imgbuild trust remove KEYNUM|NAME");
	struct ib_trusted_key k = { 0 };
	if (ib_trust_remove(argv[2], &k, err) < 0)
		return -1;
	printf("removed '%s' (keynum %s, %s)\n", k.name, k.keynum[0] ? k.keynum : "invalid", k.path);
	ib_trusted_key_free(&k);
	return 0;
}

int ib_cmd_trust(int argc, char **argv, ib_error_t *err)
{
	if (ib_cmd_wants_help(argc, argv, &help))
		return 0;
	if (argc < 2)
		return ib_error_usage(err, "usage: %s", help.usage);
	if (strcmp(argv[1], "add") == 0)
		return trust_add(argc, argv, err);
	if (strcmp(argv[1], "list") == 0)
		return trust_list(argc, argv, err);
	if (strcmp(argv[1], "remove") == 0)
		return trust_remove(argc, argv, err);
	return ib_error_usage(err, "trust: unknown action '%s' (want add, list or remove)", argv[1]);
}
