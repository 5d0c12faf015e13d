/* imgbuild export IMAGE -o OUT.tar|DIR/: the image as an OCI image archive or
 * layout, for podman, docker, skopeo and Apptainer. The work is in oci.c. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "log.h"
#include "oci.h"
#include "util.h"

enum { OPT_COMPRESSION = IB_OPT_LONG, OPT_REF, OPT_KEY, OPT_ALLOW_UNSIGNED };

static const struct ib_opt options[] = {
	{ 'o', "output", "OUT",
	  "OUT.tar: an OCI archive (must not exist); DIR/ or an empty folder:\n"
	  "the OCI image layout" },
	{ OPT_COMPRESSION, "compression", "C", "the layer: gzip (default; parallel, deterministic), none or zstd" },
	{ OPT_REF, "ref", "NAME[:TAG]",
	  "index.json's org.opencontainers.image.ref.name\n"
	  "(default: the image's name and the first 12 digits of its sha256)" },
	{ OPT_KEY, "key", "PUB", "trust only this public key" },
	{ OPT_ALLOW_UNSIGNED, "allow-unsigned", NULL, "export an image that has no signature (every other check runs)" },
	{ 0 },
};

struct args {
	struct ib_oci_opts o;
	struct ib_verify_opts vo;
};

static int parse(int key, const char *arg, void *data, ib_error_t *err)
{
	struct args *a = data;
	switch (key) {
	case 'o': a->o.output = arg; break;
	case OPT_COMPRESSION:
		if (strcmp(arg, "gzip") == 0)
			a->o.compression = IB_OCI_GZIP;
		else if (strcmp(arg, "none") == 0)
			a->o.compression = IB_OCI_NONE;
		else if (strcmp(arg, "zstd") == 0)
			a->o.compression = IB_OCI_ZSTD;
		else
			return ib_error_usage(err, "export: --compression '%s': expected gzip, none or zstd", arg);
		break;
	case OPT_REF: a->o.ref = arg; break;
	case OPT_KEY: a->vo.key = arg; break;
	case OPT_ALLOW_UNSIGNED: a->vo.allow_unsigned = true; break;
	case IB_OPT_OPERAND: a->o.image = arg; break;
	}
	return 0;
}

static int cmd_export(const struct ib_cmd *cmd, int argc, char **argv, ib_error_t *err)
{
	struct args a;
	memset(&a, 0, sizeof(a));
	a.vo.quiet = true;
	a.o.verify = &a.vo;
	int r = ib_cmd_parse(cmd, argc, argv, parse, &a, NULL, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	if (a.o.output == NULL)
		return ib_error_usage(err, "export: no output given (-o OUT.tar or -o DIR/)");
	struct ib_oci_result res;
	if (ib_oci_export(&a.o, &res, err) < 0)
		return -1;
	static const char *const kinds[] = { [IB_OCI_GZIP] = "gzip", [IB_OCI_NONE] = "tar", [IB_OCI_ZSTD] = "zstd" };
	ib_log_info("exported %s to %s: manifest sha256:%s, ref %s, layer %s %.1f MB (image %.1f MB), verify %.2f s, "
		    "layer %.2f s",
		    a.o.image, a.o.output, res.manifest_digest, res.ref, kinds[a.o.compression], (double)res.layer_size / 1e6,
		    (double)res.image_size / 1e6, res.seconds_verify, res.seconds_layer);
	printf("sha256:%s\n", res.manifest_digest);
	ib_oci_result_free(&res);
	return 0;
}

const struct ib_cmd ib_cmd_export = {
	.name = "export",
	.args_doc = "IMAGE -o OUT.tar|DIR/",
	.summary = "verify an image and write it as an OCI archive or layout",
	.doc = "Verify IMAGE with the same trust rules as run, then write it as an OCI image archive\n"
	       "(podman load -i OUT.tar, skopeo oci-archive:OUT.tar, apptainer build x.sif\n"
	       "oci-archive:OUT.tar) or, when OUT ends in '/' or is an empty folder, as an OCI image\n"
	       "layout. One layer, the image's tree; the config carries Env (as run sets it), Cmd\n"
	       "[\"/bin/sh\"], created = the image's SOURCE_DATE_EPOCH and the image's facts as labels.\n"
	       "The same image always gives the same bytes. Prints the manifest digest. See docs/oci.md.",
	.options = options,
	.min_operands = 1,
	.max_operands = 1,
	.main = cmd_export,
};
