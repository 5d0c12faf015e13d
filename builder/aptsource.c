/* Reads the host's apt sources (one-line *.list and deb822 *.sources) to find
 * the mirror it uses for a distribution. */
#include "aptsource.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Code names, oldest first; plus the archive's aliases. A suite is the code name
 * with an optional pocket ("-updates", "-security", "/updates"). */
static const char *const debian_suites[] = {
	"buzz",	   "rex",	   "bo",     "hamm",	"slink",    "potato",	 "woody",	 "sarge",    "etch",  "lenny",
	"squeeze", "wheezy",	   "jessie", "stretch", "buster",   "bullseye",	 "bookworm",	 "trixie",   "forky", "duke",
	"sid",	   "experimental", "stable", "testing", "unstable", "oldstable", "oldoldstable", "rc-buggy", NULL,
};
static const char *const ubuntu_suites[] = {
	"warty",   "hoary",  "breezy", "dapper",   "edgy",     "feisty",  "gutsy",    "hardy",	  "intrepid",
	"jaunty",  "karmic", "lucid",  "maverick", "natty",    "oneiric", "precise",  "quantal",  "raring",
	"saucy",   "trusty", "utopic", "vivid",	   "wily",     "xenial",  "yakkety",  "zesty",	  "artful",
	"bionic",  "cosmic", "disco",  "eoan",	   "focal",    "groovy",  "hirsute",  "impish",	  "jammy",
	"kinetic", "lunar",  "mantic", "noble",	   "oracular", "plucky",  "questing", "resolute", NULL,
};

bool ib_apt_suite_is(const char *distro, const char *suite)
{
	const char *const *names = strcmp(distro, "debian") == 0   ? debian_suites
				   : strcmp(distro, "ubuntu") == 0 ? ubuntu_suites
								   : NULL;
	if (names == NULL || suite == NULL)
		return false;
	/* "rc-buggy" contains a '-', so try the whole suite before cutting a pocket off. */
	for (const char *const *n = names; *n; n++)
		if (strcmp(*n, suite) == 0)
			return true;
	size_t len = strcspn(suite, "-/");
	for (const char *const *n = names; *n; n++)
		if (strlen(*n) == len && strncmp(*n, suite, len) == 0)
			return true;
	return false;
}

static bool is_security(const char *uri, const char *suite)
{
	size_t n = strlen(suite);
	if (n > 9 && strcmp(suite + n - 9, "-security") == 0)
		return true;
	if (n > 8 && strcmp(suite + n - 8, "/updates") == 0) /* Debian <= 10 security pocket */
		return true;
	return strstr(uri, "security") != NULL;
}

static bool uri_usable(const char *uri)
{
	return strncmp(uri, "http://", 7) == 0 || strncmp(uri, "https://", 8) == 0 || strncmp(uri, "file:", 5) == 0;
}

/* The entry's first suite decides; a line lists one suite, a stanza may list several. */
static char *pick(const char *distro, const struct ib_strv *types, const struct ib_strv *uris, const struct ib_strv *suites)
{
	bool deb = false;
	for (size_t i = 0; i < types->n; i++)
		deb = deb || strcmp(types->v[i], "deb") == 0;
	if (!deb)
		return NULL;
	for (size_t u = 0; u < uris->n; u++) {
		if (!uri_usable(uris->v[u]))
			continue;
		for (size_t s = 0; s < suites->n; s++) {
			if (!ib_apt_suite_is(distro, suites->v[s]))
				continue;
			/* Security mirrors carry only the security pocket: useless as a base mirror. */
			if (is_security(uris->v[u], suites->v[s]))
				continue;
			size_t len = strlen(uris->v[u]);
			while (len > 0 && uris->v[u][len - 1] == '/')
				len--;
			return xstrndup(uris->v[u], len);
		}
	}
	return NULL;
}

static void split_words(const char *s, struct ib_strv *out)
{
	while (*s) {
		s += strspn(s, " \t\r\n");
		size_t n = strcspn(s, " \t\r\n");
		if (n == 0)
			break;
		ib_strv_push_owned(out, xstrndup(s, n));
		s += n;
	}
}

/* One-line format: "deb [ options ] uri suite [component ...]". */
static char *scan_list(const char *distro, char *text)
{
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		cleanup_strv struct ib_strv w = { 0 };
		/* Options may contain spaces inside the brackets: drop them first. */
		char *open = strchr(line, '[');
		if (open) {
			char *close = strchr(open, ']');
			if (close == NULL)
				continue;
			memset(open, ' ', (size_t)(close - open + 1));
		}
		split_words(line, &w);
		char *found = NULL;
		if (w.n >= 3) {
			struct ib_strv types = { .v = &w.v[0], .n = 1 };
			struct ib_strv uris = { .v = &w.v[1], .n = 1 };
			struct ib_strv suites = { .v = &w.v[2], .n = 1 };
			found = pick(distro, &types, &uris, &suites);
		}
		if (found)
			return found;
	}
	return NULL;
}

/* deb822: stanzas separated by blank lines, "Field: value" with continuation
 * lines starting with a blank (sources.list(5)). */
static char *scan_sources(const char *distro, const char *text)
{
	cleanup_strv struct ib_strv types = { 0 }, uris = { 0 }, suites = { 0 };
	struct ib_strv *cur = NULL;
	bool enabled = true;
	char *found = NULL;
	const char *p = text;
	while (found == NULL) {
		const char *end = strchr(p, '\n');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		cleanup_free char *line = xstrndup(p, len);
		bool blank = line[strspn(line, " \t\r")] == '\0';
		if (blank || line[0] == '#') {
			/* nothing: a comment, or the blank line that ends a stanza */
		} else if (line[0] == ' ' || line[0] == '\t') {
			if (cur)
				split_words(line, cur);
		} else {
			char *colon = strchr(line, ':');
			cur = NULL;
			if (colon) {
				*colon = '\0';
				const char *val = colon + 1;
				if (strcasecmp(line, "Types") == 0)
					cur = &types;
				else if (strcasecmp(line, "URIs") == 0)
					cur = &uris;
				else if (strcasecmp(line, "Suites") == 0)
					cur = &suites;
				else if (strcasecmp(line, "Enabled") == 0)
					enabled = strncasecmp(val + strspn(val, " \t"), "no", 2) != 0;
				if (cur)
					split_words(val, cur);
			}
		}
		if (blank || end == NULL) {
			if (enabled)
				found = pick(distro, &types, &uris, &suites);
			ib_strv_free(&types);
			ib_strv_free(&uris);
			ib_strv_free(&suites);
			memset(&types, 0, sizeof(types));
			memset(&uris, 0, sizeof(uris));
			memset(&suites, 0, sizeof(suites));
			cur = NULL;
			enabled = true;
			if (end == NULL)
				break;
		}
		p = end + 1;
	}
	return found;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static char *scan_file(const char *distro, const char *path, bool deb822)
{
	ib_error_t err = NULL;
	cleanup_free char *text = ib_read_file(path, NULL, &err);
	if (text == NULL) {
		/* An unreadable or absent file is apt's business; look at the others. */
		ib_error_free(&err);
		return NULL;
	}
	return deb822 ? scan_sources(distro, text) : scan_list(distro, text);
}

char *ib_host_apt_mirror(const char *distro, ib_error_t *err)
{
	if (strcmp(distro, "debian") != 0 && strcmp(distro, "ubuntu") != 0) {
		ib_error_usage(err, "unknown distribution '%s' (want debian or ubuntu)", distro);
		return NULL;
	}
	const char *dir = getenv("IMGBUILD_APT_DIR");
	if (dir == NULL || *dir == '\0')
		dir = "/etc/apt";
	cleanup_free char *main_list = ib_path_join(dir, "sources.list");
	char *found = scan_file(distro, main_list, false);
	if (found)
		return found;

	cleanup_free char *d = ib_path_join(dir, "sources.list.d");
	struct dirent **names = NULL;
	int n = scandir(d, &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		if (found == NULL && name[0] != '.' && (ends_with(name, ".list") || ends_with(name, ".sources"))) {
			cleanup_free char *path = ib_path_join(d, name);
			found = scan_file(distro, path, ends_with(name, ".sources"));
		}
		free(names[i]);
	}
	free(names);
	if (found)
		return found;
	ib_error_set(err, 0, "no %s mirror in %s/sources.list or %s (hint: add a `deb` line for a %s suite)", distro, dir, d,
		     distro);
	return NULL;
}
