/* libFuzzer target for the manifest checker: TOML, then the schema, paths and
 * min_driver derivation. The input is parsed as if it were
 * tests/cases/fuzz.toml, so relative stage scripts ("../../stages/check.sh")
 * resolve inside the project and the containment check runs for real. Each
 * accepted manifest is also run through the compatibility rules. A rejected
 * input must leave nothing allocated but the error, and its message must be
 * one line. */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat.h"
#include "error.h"
#include "manifest.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[PATH_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* build/fuzz/manifest_fuzz -> the source tree two folders up. */
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		abort();
	self[n] = '\0';
	for (int i = 0; i < 3; i++) {
		char *slash = strrchr(self, '/');
		if (slash == NULL)
			abort();
		*slash = '\0';
	}
	if (getenv("IMGBUILD_DATADIR") == NULL)
		setenv("IMGBUILD_DATADIR", self, 1);
	snprintf(path, sizeof(path), "%s/tests/cases/fuzz.toml", self);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ib_error_t err = NULL;
	struct ib_manifest *m = ib_manifest_parse(path, (const char *)data, size, &err);
	if (m == NULL) {
		if (err == NULL || strchr(err->msg, '\n') != NULL)
			abort();
		ib_error_free(&err);
		return 0;
	}
	const struct ib_compat *c = ib_compat_default(&err);
	if (c) {
		struct ib_verdicts v = { 0 };
		(void)ib_compat_check(c, m, &v, &err);
		ib_verdicts_free(&v);
	}
	ib_error_free(&err);
	ib_manifest_free(m);
	return 0;
}
