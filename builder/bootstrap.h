#pragma once
/* The base root file system: mmdebstrap when present (faster, reproducible
 * with SOURCE_DATE_EPOCH), debootstrap otherwise. Both run in a forked child
 * that first unshares a private mount namespace, so the /proc, /sys and /dev
 * mounts they make never reach the host and die with the child even after
 * kill -9. The .deb files they download go into the content-addressed store
 * ($cache/downloads/sha256/<hex>) with an index of file name -> sha256 per
 * suite ($cache/debs/<distro>-<suite>.index); the next bootstrap of the suite
 * is handed those files first and downloads nothing it already has. */
#include <stdbool.h>

#include "error.h"

struct ib_manifest;

enum ib_bootstrap_tool { IB_BOOTSTRAP_MMDEBSTRAP, IB_BOOTSTRAP_DEBOOTSTRAP };

/* The keyring the bootstrap trusts: the manifest's, else keys/ubuntu-archive-keyring.gpg
 * (from the data dir) for Ubuntu, else the host's distribution keyring; NULL
 * leaves the tool's default. Caller frees. */
char *ib_bootstrap_keyring(const struct ib_manifest *m);

/* mmdebstrap unless it is missing or IMGBUILD_BOOTSTRAP=debootstrap. */
enum ib_bootstrap_tool ib_bootstrap_pick_tool(void);

struct ib_bootstrap_stats {
	unsigned packages;   /* .deb files the tool used */
	unsigned downloaded; /* of which were not in the cache */
};

/* Builds the base root of M into ROOT_DIR (which must not exist), writing the
 * tool's output to LOG_FD. Fails at once when OFFLINE. */
int ib_bootstrap_run(const struct ib_manifest *m, const char *root_dir, int log_fd, bool offline,
		     struct ib_bootstrap_stats *stats, ib_error_t *err);
