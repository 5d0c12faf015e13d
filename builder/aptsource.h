#pragma once
/* The host's apt configuration: which mirror it uses for a distribution.
 * imgbuild never writes a mirror's host name into a file; Debian manifests name
 * none and take the host's at build time (fetch, bootstrap, `imgbuild mirror`). */
#include <stdbool.h>

#include "error.h"

/* The first `deb` URI in $IMGBUILD_APT_DIR (default /etc/apt): sources.list,
 * then sources.list.d/ *.list and *.sources (deb822) in name order, whose suites
 * look like DISTRO's ("debian" or "ubuntu"). For debian, security mirrors are
 * skipped. Returns the URI without a trailing '/', caller frees; NULL with
 * *err set when there is none. */
char *ib_host_apt_mirror(const char *distro, ib_error_t *err);

/* True when SUITE (e.g. "bookworm-updates", "bionic") names a release of DISTRO. */
bool ib_apt_suite_is(const char *distro, const char *suite);
