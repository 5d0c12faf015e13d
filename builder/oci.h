#pragma once
/* Exports a verified image as an OCI image layout (image-spec v1.0): a
 * folder, or an OCI image archive (a tar of that folder, what podman load,
 * skopeo's oci-archive: and apptainer build read).
 *
 * The one layer is the image file itself: an imgbuild image is already a
 * sorted, numeric-owner pax tar of the whole tree, so the layer's
 * uncompressed digest (the config's rootfs.diff_ids) is the image's own
 * sha256, the one its .sha256 and signature name. Nothing is re-tarred; with
 * gzip the image's bytes go through deflate.h, with none they are copied.
 *
 * Everything in the output is a function of the image's bytes and the
 * options: blobs, config (created = the image's SOURCE_DATE_EPOCH), the
 * archive's headers (mtime the same epoch, owner 0, fixed order). */
#include <stdint.h>

#include "crypto.h"
#include "error.h"
#include "util.h"
#include "verify.h"

enum ib_oci_compression { IB_OCI_GZIP, IB_OCI_NONE, IB_OCI_ZSTD };

struct ib_oci_opts {
	const char *image;
	const char *output; /* OUT.tar: an archive; DIR/ or an existing folder: the layout */
	enum ib_oci_compression compression;
	const char *ref;		     /* index.json's org.opencontainers.image.ref.name; NULL: NAME:SHA12 */
	const struct ib_verify_opts *verify; /* trust rules, as for run (want/take are export's own) */
	int threads;			     /* compressing threads; 0: one per CPU */
};

struct ib_oci_result {
	char manifest_digest[IB_SHA256_HEX_LEN + 1];
	char layer_digest[IB_SHA256_HEX_LEN + 1];
	char diff_id[IB_SHA256_HEX_LEN + 1];
	uint64_t layer_size, image_size;
	char *ref; /* owned */
	double seconds_verify, seconds_layer;
};
void ib_oci_result_free(struct ib_oci_result *r);

/* Verifies IMAGE (nothing is written when that fails), then writes the
 * layout to a temporary name beside OUTPUT and renames it into place: a
 * failed export leaves nothing at OUTPUT. OUTPUT must not exist (a folder
 * may exist if empty). */
int ib_oci_export(const struct ib_oci_opts *o, struct ib_oci_result *res, ib_error_t *err);

/* For tests: the config's Env from the text of /etc/profile.d scripts, in
 * the order given, over PATH and HOME as imgbuild run sets them. Lines that
 * are not NAME=VALUE / export NAME=VALUE with literal values are skipped and
 * counted in *SKIPPED. */
void ib_oci_env_from_profile(const char *const *texts, size_t n, struct ib_strv *env, size_t *skipped);
