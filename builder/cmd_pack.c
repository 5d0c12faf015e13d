/* imgbuild pack DIR -o IMAGE: the same packing the build engine uses, for any root folder. */
#include "commands.h"
#include "log.h"
#include "pack.h"
#include "util.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum {
	OPT_SIGN = IB_OPT_LONG,
	OPT_ZSTD,
	OPT_LEVEL,
	OPT_EPOCH,
	OPT_NAME,
	OPT_FACT,
	OPT_ARCH,
	OPT_META,
	OPT_META_DIR,
	OPT_THREADS
};

static const struct ib_opt options[] = {
	{ 'o', "output", "IMAGE", "the image (.tar or .tar.zst); IMAGE.sha256 and IMAGE.sig go beside it" },
	{ OPT_SIGN, "sign", "KEY", "signify secret key (.sec) to sign with" },
	{ OPT_ZSTD, "zstd", NULL, "compress with zstd (multi-threaded)" },
	{ OPT_LEVEL, "level", "N", "zstd level (default 3)" },
	{ OPT_EPOCH, "epoch", "N", "SOURCE_DATE_EPOCH: mtimes are clamped to it (default: $SOURCE_DATE_EPOCH)" },
	{ OPT_NAME, "name", "NAME", "the image's name in facts.toml (default: IMAGE's basename)" },
	{ OPT_FACT, "fact", "KEY=VALUE", "add a key to .imgbuild/facts.toml (repeatable)" },
	{ OPT_ARCH, "arch", "ARCH", "add to the facts' archs array (repeatable)" },
	{ OPT_META, "meta", "NAME=FILE", "store FILE as .imgbuild/NAME (repeatable; e.g. manifest.toml=m.toml)" },
	{ OPT_META_DIR, "meta-dir", "DIR", "store every file of DIR under .imgbuild/" },
	{ OPT_THREADS, "threads", "N", "hashing and compression threads (default: one per CPU)" },
	{ 0 },
};

struct args {
	struct ib_pack_opts o;
	struct ib_kv *facts; /* argc entries: at most one per word */
	struct ib_pack_meta *meta;
	const char **archs;
	size_t narchs;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	long long n;
	const char *eq = arg ? strchr(arg, '=') : NULL;
	switch (key) {
	case 'o': a->o.output = arg; break;
	case OPT_SIGN: a->o.sign_key = arg; break;
	case OPT_NAME: a->o.name = arg; break;
	case OPT_META_DIR: a->o.meta_dir = arg; break;
	case OPT_ZSTD: a->o.compression = IB_COMPRESS_ZSTD; break;
	case OPT_ARCH: a->archs[a->narchs++] = arg; break;
	case IB_OPT_OPERAND: a->o.root = arg; break;
	case OPT_EPOCH:
		if (ib_cmd_parse_int(&ib_cmd_pack, "--epoch", arg, 0, LLONG_MAX, &n, err) < 0)
			return -1;
		a->o.epoch = n;
		break;
	case OPT_THREADS:
	case OPT_LEVEL:
		if (ib_cmd_parse_int(&ib_cmd_pack, key == OPT_THREADS ? "--threads" : "--level", arg, 1, 64, &n, err) < 0)
			return -1;
		*(key == OPT_THREADS ? &a->o.threads : &a->o.zstd_level) = (int)n;
		break;
	case OPT_FACT:
		if (eq == NULL || eq == arg)
			return ib_error_usage(err, "pack: --fact wants KEY=VALUE, not '%s'", arg);
		a->facts[a->o.n_facts].key = xstrndup(arg, (size_t)(eq - arg));
		a->facts[a->o.n_facts++].value = xstrdup(eq + 1);
		break;
	case OPT_META: {
		if (eq == NULL || eq == arg)
			return ib_error_usage(err, "pack: --meta wants NAME=FILE, not '%s'", arg);
		size_t len;
		char *file = ib_read_file(eq + 1, &len, err);
		if (file == NULL)
			return -1;
		a->meta[a->o.n_meta].name = xstrndup(arg, (size_t)(eq - arg));
		a->meta[a->o.n_meta].data = file;
		a->meta[a->o.n_meta++].len = len;
		break;
	}
	}
	return 0;
}

static int cmd_pack(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a = { .o = { .compression = IB_COMPRESS_NONE, .epoch = -1 } };
	a.facts = xcalloc((size_t)argc, sizeof(*a.facts));
	a.archs = xcalloc((size_t)argc + 1, sizeof(char *));
	a.meta = xcalloc((size_t)argc, sizeof(*a.meta));
	struct ib_pack_opts o;
	int rc = -1;
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	o = a.o;
	if (r != 0) {
		rc = r < 0 ? -1 : 0;
		goto out;
	}
	if (o.output == NULL) {
		ib_error_usage(err, "pack: where to? (-o IMAGE)");
		goto out;
	}
	if (o.epoch < 0) {
		const char *env = getenv("SOURCE_DATE_EPOCH");
		long long n;
		ib_error_t ignored = NULL;
		if (env == NULL || ib_cmd_parse_int(cmd, "SOURCE_DATE_EPOCH", env, 0, LLONG_MAX, &n, &ignored) < 0) {
			ib_error_free(&ignored);
			ib_error_usage(err, "pack: give --epoch N or set SOURCE_DATE_EPOCH (mtimes are clamped to it)");
			goto out;
		}
		o.epoch = n;
	}
	o.facts = a.facts;
	o.meta = a.meta;
	if (a.narchs)
		o.fact_archs = a.archs;
	struct ib_pack_stats stats = { 0 };
	o.stats = &stats;
	char hex[IB_SHA256_HEX_LEN + 1];
	if (ib_pack(&o, hex, err) < 0)
		goto out;
	double secs = stats.seconds_walk + stats.seconds_hash + stats.seconds_write;
	ib_log_info("packed %llu entries (%llu files, %.1f MiB) in %.2fs (%.0f MB/s): walk %.2fs, hash %.2fs, write %.2fs "
		    "(%llu small files read through io_uring); left out %llu devices, %llu fifos/sockets, %llu run-time files",
		    (unsigned long long)stats.entries, (unsigned long long)stats.files, (double)stats.bytes_in / 1048576.0, secs,
		    secs > 0 ? (double)stats.bytes_in / 1e6 / secs : 0.0, stats.seconds_walk, stats.seconds_hash,
		    stats.seconds_write, (unsigned long long)stats.files_batched, (unsigned long long)stats.skipped_devices,
		    (unsigned long long)stats.skipped_special, (unsigned long long)stats.skipped_excluded);
	printf("%s  %s\n", hex, o.output);
	rc = 0;
out:
	for (size_t i = 0; i < a.o.n_facts; i++) {
		free(a.facts[i].key);
		free(a.facts[i].value);
	}
	for (size_t i = 0; i < a.o.n_meta; i++) {
		free((char *)a.meta[i].name);
		free((void *)a.meta[i].data);
	}
	free(a.facts);
	free(a.archs);
	free(a.meta);
	return rc;
}

const struct ib_cmd ib_cmd_pack = {
	.name = "pack",
	.args_doc = "DIR -o IMAGE",
	.summary = "pack a root file system folder into a checked image",
	.doc = "Pack a root file system folder into a reproducible, checksummed (and signed) image.",
	.options = options,
	.min_operands = 1,
	.max_operands = 1,
	.main = cmd_pack,
};
