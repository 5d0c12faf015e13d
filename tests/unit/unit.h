#ifndef IB_UNIT_H
#define IB_UNIT_H
/* What several unit tests need besides cmocka: a temporary folder for a group
 * of tests, and the source tree the test binary was built from (for
 * builder/compat.toml and the fixtures). Included after cmocka.h. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "sandbox.h"	/* ib_remove_tree */
#include "util.h"

/* DIR (at least 64 bytes) becomes a new folder /tmp/ib-NAME-unit.XXXXXX. */
static inline void unit_tmpdir_make(char *dir, const char *name)
{
	snprintf(dir, 64, "/tmp/ib-%s-unit.XXXXXX", name);
	assert_non_null(mkdtemp(dir));
}

static inline void unit_tmpdir_remove(const char *dir)
{
	ib_error_t err = NULL;
	if (ib_remove_tree(dir, &err) < 0)
		ib_error_free(&err);
}

/* The source tree: build/unit/X_test -> ../.. ; false when unknown. */
static inline bool unit_source_tree(char *out, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", out, size - 1);
	if (n <= 0)
		return false;
	out[n] = '\0';
	for (int up = 0; up < 3; up++) {
		char *slash = strrchr(out, '/');
		if (slash)
			*slash = '\0';
	}
	return true;
}

/* The compat data (builder/compat.toml) of the source tree, not an installed one. */
static inline void unit_use_source_datadir(void)
{
	char repo[4096];
	if (unit_source_tree(repo, sizeof(repo)))
		setenv("IMGBUILD_DATADIR", repo, 0);
}

#endif
