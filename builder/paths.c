#include "paths.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *ib_cache_dir(ib_error_t *err)
{
	const char *env = getenv("IMGBUILD_CACHE");
	char *dir;
	if (env && *env)
		dir = xstrdup(env);
	else if ((env = getenv("XDG_CACHE_HOME")) && *env)
		dir = ib_path_join(env, "imgbuild");
	else if (geteuid() == 0)
		dir = xstrdup("/var/cache/imgbuild");
	else {
		const char *home = getenv("HOME");
		dir = xasprintf("%s/.cache/imgbuild", home && *home ? home : "/tmp");
	}
	if (ib_mkdir_p(dir, 0755, err) < 0) {
		free(dir);
		return NULL;
	}
	return dir;
}

char *ib_cache_subdir(const char *name, ib_error_t *err)
{
	cleanup_free char *base = ib_cache_dir(err);
	if (base == NULL)
		return NULL;
	char *dir = ib_path_join(base, name);
	if (ib_mkdir_p(dir, 0755, err) < 0) {
		free(dir);
		return NULL;
	}
	return dir;
}

char *ib_cache_private_subdir(const char *name, ib_error_t *err)
{
	cleanup_free char *base = ib_cache_dir(err);
	if (base == NULL)
		return NULL;
	cleanup_free char *dir = ib_path_join(base, name);
	if (ib_mkdir_p(dir, 0700, err) < 0)
		return NULL;
	/* A cache made by an older imgbuild has it 0755: close it now. */
	struct stat st;
	if (lstat(dir, &st) < 0)
		return ib_error_errno(err, errno, "stat '%s'", dir), NULL;
	if (!S_ISDIR(st.st_mode))
		return ib_error_set(err, 0, "'%s' is not a folder", dir), NULL;
	if ((st.st_mode & 0077) != 0 && chmod(dir, st.st_mode & 0700) < 0)
		return ib_error_errno(err, errno, "chmod 0700 '%s'", dir), NULL;
	return steal_pointer(&dir);
}

const char *ib_data_dir(void)
{
	static char found[PATH_MAX];
	if (found[0])
		return found;
	const char *env = getenv("IMGBUILD_DATADIR");
	if (env && *env) {
		snprintf(found, sizeof(found), "%s", env);
		return found;
	}
	/* Running from a source tree: build/imgbuild sits beside stages/. */
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			cleanup_free char *probe = xasprintf("%s/../stages", self);
			cleanup_free char *compat = xasprintf("%s/../builder/compat.toml", self);
			if (access(probe, F_OK) == 0 && access(compat, F_OK) == 0) {
				char resolved[PATH_MAX];
				cleanup_free char *up = xasprintf("%s/..", self);
				if (realpath(up, resolved)) {
					snprintf(found, sizeof(found), "%s", resolved);
					return found;
				}
			}
		}
	}
	snprintf(found, sizeof(found), "%s", IB_DATADIR);
	return found;
}

static char *user_config_dir(const char *sub)
{
	const char *env = getenv("XDG_CONFIG_HOME");
	if (env && *env)
		return xasprintf("%s/imgbuild/%s", env, sub);
	const char *home = getenv("HOME");
	return xasprintf("%s/.config/imgbuild/%s", home && *home ? home : "/root", sub);
}

char *ib_user_trust_dir(void)
{
	return user_config_dir("trusted");
}

char *ib_user_keys_dir(void)
{
	return user_config_dir("keys");
}
