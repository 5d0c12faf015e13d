/* imgbuild trust add|list|remove: parses, then calls trust.h. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "trust.h"
#include "util.h"

enum { OPT_NAME = IB_OPT_LONG };

static const struct ib_opt options[] = {
	{ OPT_NAME, "name", "NAME", "(add) the name to keep the key under" },
	{ 0 },
};

struct args {
	const char *action, *what, *name;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	if (key == OPT_NAME)
		a->name = arg;
	else if (a->action == NULL)
		a->action = arg;
	else
		a->what = arg;
	return 0;
}

static int trust_add(const struct args *a, ib_error_t *err)
{
	if (a->what == NULL)
		return ib_error_usage(err, "usage: imgbuild trust add KEY.pub [--name NAME]");
	struct ib_trusted_key k = { 0 };
	bool already = false;
	if (ib_trust_add(a->what, a->name, &k, &already, err) < 0)
		return -1;
	if (already)
		printf("keynum %s is already trusted as '%s' (%s)\n", k.keynum, k.name, k.path);
	else
		printf("trusted keynum %s as '%s' (%s)\n", k.keynum, k.name, k.path);
	ib_trusted_key_free(&k);
	return 0;
}

static int trust_list(const struct args *a, ib_error_t *err)
{
	if (a->what || a->name)
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

static int trust_remove(const struct args *a, ib_error_t *err)
{
	if (a->what == NULL || a->name)
		return ib_error_usage(err, "usage: imgbuild trust remove KEYNUM|NAME");
	struct ib_trusted_key k = { 0 };
	if (ib_trust_remove(a->what, &k, err) < 0)
		return -1;
	printf("removed '%s' (keynum %s, %s)\n", k.name, k.keynum[0] ? k.keynum : "invalid", k.path);
	ib_trusted_key_free(&k);
	return 0;
}

static int cmd_trust(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { 0 };
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	if (strcmp(a.action, "add") == 0)
		return trust_add(&a, err);
	if (strcmp(a.action, "list") == 0)
		return trust_list(&a, err);
	if (strcmp(a.action, "remove") == 0)
		return trust_remove(&a, err);
	return ib_error_usage(err, "trust: unknown action '%s' (want add, list or remove)", a.action);
}

const struct ib_cmd ib_cmd_trust = {
	.name = "trust",
	.args_doc = "add KEY.pub | list | remove KEYNUM|NAME",
	.summary = "trust, list or forget the public keys images are checked against",
	.doc = "Manage the keys whose signatures verify, unpack, run and pull accept, kept as NAME.pub in\n"
	       "~/.config/imgbuild/trusted/ (with the installation's keys/, which list shows too).\n"
	       "  add KEY.pub      trust a signify public key (as NAME; default: the file's name)\n"
	       "  list             keynum, name and file of every trusted key\n"
	       "  remove WHAT      stop trusting the key with that name or keynum",
	.options = options,
	.min_operands = 1,
	.max_operands = 2,
	.main = cmd_trust,
};
