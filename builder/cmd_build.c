/* imgbuild [build] MANIFEST [-o OUT] [--sign KEY] [--zstd] [--offline] [--build-dir DIR] [--override FILE] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "commands.h"
#include "manifest.h"
#include "overlay.h"
#include "util.h"

/* "--name VALUE" or "--name=VALUE": true when A is NAME; *value gets its value. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **value, ib_error_t *err)
{
	const char *a = argv[*i];
	size_t n = strlen(name);
	if (strncmp(a, name, n) != 0)
		return 0;
	if (a[n] == '=') {
		*value = a + n + 1;
		return 1;
	}
	if (a[n] != '\0')
		return 0;
	if (*i + 1 >= argc)
		return ib_error_usage(err, "%s: option '%s' needs a value", argv[0], name);
	*value = argv[++*i];
	return 1;
}

int ib_cmd_build(int argc, char **argv, ib_error_t *err)
{
	static const struct ib_cmd_help help = {
		.usage = "imgbuild [build] MANIFEST [-o OUT] [--sign KEY] [--zstd] [--offline] [--build-dir DIR] "
			 "[--override FILE]",
		.summary = "Builds the image: bootstraps the base, runs each stage in the sandbox and packs the\n"
			   "result. Every stage is cached as a layer: an unchanged stage is reused, a changed\n"
			   "one runs again with every stage after it, and a failed build resumes where it failed.",
		.options = "  -o, --output OUT   where to write the image (default: the manifest's image.output)\n"
			   "  --sign KEY         sign with this secret key (signify format)\n"
			   "  --zstd             compress with zstd\n"
			   "  --offline          use no network to fetch (everything must be cached)\n"
			   "  --build-dir DIR    logs and stage work folders (default: $cache/builds/NAME)\n"
			   "  --override FILE    a TOML file merged over the manifest (same schema)\n",
	};
	if (ib_cmd_wants_help(argc, argv, &help))
		return 0;
	struct ib_build_opts opts = { 0 };
	const char *manifest = NULL, *override = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = NULL;
		int r;
		if ((r = opt_value(argc, argv, &i, "-o", &v, err)) != 0 ||
		    (r = opt_value(argc, argv, &i, "--output", &v, err)) != 0) {
			if (r < 0)
				return -1;
			opts.output = v;
		} else if ((r = opt_value(argc, argv, &i, "--sign", &v, err)) != 0) {
			if (r < 0)
				return -1;
			opts.sign_key = v;
		} else if ((r = opt_value(argc, argv, &i, "--build-dir", &v, err)) != 0) {
			if (r < 0)
				return -1;
			opts.build_dir = v;
		} else if ((r = opt_value(argc, argv, &i, "--override", &v, err)) != 0) {
			if (r < 0)
				return -1;
			override = v;
		} else if (strcmp(a, "--zstd") == 0) {
			opts.zstd = true;
		} else if (strcmp(a, "--offline") == 0) {
			opts.offline = true;
		} else if (a[0] == '-' && a[1] != '\0') {
			return ib_error_usage(err, "build: unknown option '%s' (see imgbuild build --help)", a);
		} else if (manifest == NULL) {
			manifest = a;
		} else {
			return ib_error_usage(err, "build: unexpected argument '%s' (one MANIFEST only)", a);
		}
	}
	if (manifest == NULL)
		return ib_error_usage(err, "build: no MANIFEST given (see imgbuild build --help)");
	/* The pack step runs in a child that changes directory: a relative key
	 * path must be made absolute here, and a missing key caught before hours of build. */
	cleanup_free char *sign_key = NULL;
	if (opts.sign_key) {
		sign_key = realpath(opts.sign_key, NULL);
		if (sign_key == NULL)
			return ib_error_usage(err, "build: secret key '%s' not found (make one with imgbuild keygen NAME)",
					      opts.sign_key);
		opts.sign_key = sign_key;
	}

	struct ib_manifest *m = ib_overlay_load(manifest, override, err);
	if (m == NULL)
		return -1;
	int rc = ib_build_run(m, &opts, err);
	ib_manifest_free(m);
	return rc < 0 ? -1 : 0;
}
