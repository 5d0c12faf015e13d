/* imgbuild pack DIR -o IMAGE: the same packing the build engine uses, for any root folder. */
#include "commands.h"
#include "log.h"
#include "pack.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct ib_cmd_help help = {
	.usage = "imgbuild pack DIR -o IMAGE [--sign KEY] [--zstd] [--epoch N] [--name NAME] [options]",
	.summary = "Pack a root file system folder into a reproducible, checksummed (and signed) image.",
	.options = "  -o, --output IMAGE  the image (.tar or .tar.zst); IMAGE.sha256 and IMAGE.sig go beside it\n"
		   "  --sign KEY          signify secret key (.sec) to sign with\n"
		   "  --zstd              compress with zstd (multi-threaded)\n"
		   "  --level N           zstd level (default 3)\n"
		   "  --epoch N           SOURCE_DATE_EPOCH: mtimes are clamped to it (default: $SOURCE_DATE_EPOCH)\n"
		   "  --name NAME         the image's name in facts.toml (default: IMAGE's basename)\n"
		   "  --fact KEY=VALUE    add a key to .imgbuild/facts.toml (repeatable)\n"
		   "  --arch ARCH         add to the facts' archs array (repeatable)\n"
		   "  --meta NAME=FILE    store FILE as .imgbuild/NAME (repeatable; e.g. manifest.toml=m.toml)\n"
		   "  --meta-dir DIR      store every file of DIR under .imgbuild/\n"
		   "  --threads N         hashing and compression threads (default: one per CPU)\n",
};

static bool parse_int(const char *s, long long min, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *s == '\0' || *end || v < min)
		return false;
	*out = v;
	return true;
}

int ib_cmd_pack(int argc, char **argv, ib_error_t *err)
{
	if (ib_cmd_wants_help(argc, argv, &help))
		return 0;
	struct ib_pack_opts o = { .compression = IB_COMPRESS_NONE, .epoch = -1 };
	struct ib_kv *facts = xcalloc((size_t)argc, sizeof(*facts));
	const char **archs = xcalloc((size_t)argc + 1, sizeof(char *));
	struct ib_pack_meta *meta = xcalloc((size_t)argc, sizeof(*meta));
	size_t narchs = 0;
	int rc = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = true;
		long long n;
		if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
			o.output = v;
		} else if (strcmp(a, "--sign") == 0) {
			o.sign_key = v;
		} else if (strcmp(a, "--name") == 0) {
			o.name = v;
		} else if (strcmp(a, "--meta-dir") == 0) {
			o.meta_dir = v;
		} else if (strcmp(a, "--zstd") == 0) {
			o.compression = IB_COMPRESS_ZSTD;
			takes = false;
		} else if (strcmp(a, "--epoch") == 0) {
			if (!v || !parse_int(v, 0, &n)) {
				ib_error_usage(err, "pack: --epoch wants a number of seconds >= 0");
				goto out;
			}
			o.epoch = n;
		} else if (strcmp(a, "--threads") == 0 || strcmp(a, "--level") == 0) {
			if (!v || !parse_int(v, 1, &n) || n > 64) {
				ib_error_usage(err, "pack: %s wants a number from 1 to 64", a);
				goto out;
			}
			if (a[2] == 't')
				o.threads = (int)n;
			else
				o.zstd_level = (int)n;
		} else if (strcmp(a, "--fact") == 0 || strcmp(a, "--meta") == 0) {
			const char *eq = v ? strchr(v, '=') : NULL;
			if (!eq || eq == v) {
				ib_error_usage(err, "pack: %s wants NAME=VALUE", a);
				goto out;
			}
			if (a[2] == 'f') {
				facts[o.n_facts].key = xstrndup(v, (size_t)(eq - v));
				facts[o.n_facts++].value = xstrdup(eq + 1);
			} else {
				size_t len;
				char *data = ib_read_file(eq + 1, &len, err);
				if (data == NULL)
					goto out;
				meta[o.n_meta].name = xstrndup(v, (size_t)(eq - v));
				meta[o.n_meta].data = data;
				meta[o.n_meta++].len = len;
			}
		} else if (strcmp(a, "--arch") == 0) {
			if (v)
				archs[narchs++] = v;
		} else if (a[0] == '-' && a[1] != '\0') {
			ib_error_usage(err, "pack: unknown option '%s' (see imgbuild pack --help)", a);
			goto out;
		} else {
			takes = false;
			if (o.root) {
				ib_error_usage(err, "pack: one folder only ('%s' and '%s')", o.root, a);
				goto out;
			}
			o.root = a;
		}
		if (takes) {
			if (v == NULL) {
				ib_error_usage(err, "pack: %s needs a value", a);
				goto out;
			}
			i++;
		}
	}
	if (o.root == NULL || o.output == NULL) {
		ib_error_usage(err, "usage: %s", help.usage);
		goto out;
	}
	if (o.epoch < 0) {
		const char *env = getenv("SOURCE_DATE_EPOCH");
		long long n;
		if (env == NULL || !parse_int(env, 0, &n)) {
			ib_error_usage(err, "pack: give --epoch N or set SOURCE_DATE_EPOCH (mtimes are clamped to it)");
			goto out;
		}
		o.epoch = n;
	}
	o.facts = facts;
	o.meta = meta;
	if (narchs)
		o.fact_archs = archs;
	struct ib_pack_stats stats = { 0 };
	o.stats = &stats;
	char hex[IB_SHA256_HEX_LEN + 1];
	if (ib_pack(&o, hex, err) < 0)
		goto out;
	double secs = stats.seconds_walk + stats.seconds_hash + stats.seconds_write;
	ib_log_info("packed %llu entries (%llu files, %.1f MiB) in %.2fs (%.0f MB/s): walk %.2fs, hash %.2fs, write %.2fs; left out %llu "
		    "devices, %llu fifos/sockets, %llu run-time files",
		    (unsigned long long)stats.entries, (unsigned long long)stats.files, (double)stats.bytes_in / 1048576.0, secs,
		    secs > 0 ? (double)stats.bytes_in / 1e6 / secs : 0.0, stats.seconds_walk, stats.seconds_hash, stats.seconds_write,
		    (unsigned long long)stats.skipped_devices, (unsigned long long)stats.skipped_special,
		    (unsigned long long)stats.skipped_excluded);
	printf("%s  %s\n", hex, o.output);
	rc = 0;
out:
	for (size_t i = 0; i < o.n_facts; i++) {
		free(facts[i].key);
		free(facts[i].value);
	}
	for (size_t i = 0; i < o.n_meta; i++) {
		free((char *)meta[i].name);
		free((void *)meta[i].data);
	}
	free(facts);
	free(archs);
	free(meta);
	return rc;
}
