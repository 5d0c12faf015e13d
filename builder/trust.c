/* `imgbuild trust` and keygen's trust step: the user's trust folder. */
#include "trust.h"
#include "log.h"
#include "paths.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

void ib_trusted_key_free(struct ib_trusted_key *k)
{
	if (k == NULL)
		return;
	free(k->name);
	free(k->path);
	k->name = k->path = NULL;
}

void ib_trusted_keys_free(struct ib_trusted_key *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ib_trusted_key_free(&keys[i]);
	free(keys);
}

int ib_trust_check_name(const char *name, ib_error_t *err)
{
	size_t len = strlen(name);
	/* The name becomes NAME.pub in the trust folder: no path, no hidden file. */
	if (len == 0 || len > 100 || name[0] == '.' ||
	    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			 "0123456789._-") != len)
		return ib_error_usage(err,
				      "bad key name '%s': use 1 to 100 letters, digits, '.', '_' or '-', "
				      "not starting with '.' (pick one with --name NAME)",
				      name);
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct ib_trusted_key *)a)->name, ((const struct ib_trusted_key *)b)->name);
}

/* The *.pub files of DIR, sorted, with their keys (PUBS, parallel to KEYS; a
 * file that is not a valid key has keynum "" and a zeroed pubkey). */
struct scan {
	struct ib_trusted_key *keys;
	struct ib_pubkey *pubs;
	size_t n;
};

static void scan_free(struct scan *s)
{
	ib_trusted_keys_free(s->keys, s->n);
	for (size_t i = 0; i < s->n; i++)
		free(s->pubs[i].path);
	free(s->pubs);
	s->keys = NULL;
	s->pubs = NULL;
	s->n = 0;
}
#define cleanup_scan __attribute__((cleanup(scan_free)))

static void scan_dir(const char *dir, bool installation, struct scan *s)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return; /* no folder: no keys */
	size_t first = s->n;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l <= 4 || strcmp(de->d_name + l - 4, ".pub") != 0 || de->d_name[0] == '.')
			continue;
		s->keys = xrealloc(s->keys, (s->n + 1) * sizeof(*s->keys));
		s->pubs = xrealloc(s->pubs, (s->n + 1) * sizeof(*s->pubs));
		struct ib_trusted_key *k = &s->keys[s->n];
		memset(k, 0, sizeof(*k));
		memset(&s->pubs[s->n], 0, sizeof(s->pubs[s->n]));
		k->name = xstrndup(de->d_name, l - 4);
		k->path = ib_path_join(dir, de->d_name);
		k->installation = installation;
		s->n++;
	}
	closedir(d);
	/* Sort the names first, then read: pubs stays parallel to keys. */
	qsort(s->keys + first, s->n - first, sizeof(*s->keys), by_name);
	for (size_t i = first; i < s->n; i++) {
		ib_error_t e = NULL;
		if (ib_sign_read_pubkey(s->keys[i].path, &s->pubs[i], &e) < 0) {
			ib_log_warn("'%s' is not a valid key: %s", s->keys[i].path, e->msg);
			ib_error_free(&e);
			continue;
		}
		ib_hex(s->pubs[i].keynum, IB_SIGN_KEYNUM_LEN, s->keys[i].keynum);
	}
}

static void copy_key(struct ib_trusted_key *dst, const struct ib_trusted_key *src)
{
	*dst = *src;
	dst->name = xstrdup(src->name);
	dst->path = xstrdup(src->path);
}

int ib_trust_name_free(const char *name, const struct ib_pubkey *key, ib_error_t *err)
{
	if (ib_trust_check_name(name, err) < 0)
		return -1;
	cleanup_free char *dir = ib_user_trust_dir();
	cleanup_scan struct scan s = { 0 };
	scan_dir(dir, false, &s);
	for (size_t i = 0; i < s.n; i++) {
		if (strcmp(s.keys[i].name, name) != 0)
			continue;
		if (key && s.keys[i].keynum[0] && memcmp(s.pubs[i].keynum, key->keynum, IB_SIGN_KEYNUM_LEN) == 0 &&
		    memcmp(s.pubs[i].key, key->key, IB_ED25519_PUBLIC_LEN) == 0)
			return 0;
		return ib_error_usage(err,
				      "another key is already trusted as '%s' (%s): pick another name, or first run "
				      "'imgbuild trust remove %s'",
				      name, s.keys[i].path, name);
	}
	return 0;
}

/* Why PUB is not a key, as one line that says what to give instead. */
static int bad_key(const char *pub, const char *why, ib_error_t *err)
{
	if (!ib_path_exists(pub))
		return ib_error_usage(err,
				      "trust add: '%s' does not exist: give the path of the signer's public key "
				      "(a .pub file)",
				      pub);
	size_t l = strlen(pub);
	cleanup_free char *text = ib_read_file(pub, NULL, NULL);
	if ((l > 4 && strcmp(pub + l - 4, ".sec") == 0) || (text && strstr(text, "secret key")))
		return ib_error_usage(err,
				      "trust add: '%s' is a secret key: trust its public half, the .pub file made "
				      "with it (and never hand out the .sec)",
				      pub);
	return ib_error_usage(err,
			      "trust add: '%s' is not a signify Ed25519 public key (%s): give a .pub file made by "
			      "'imgbuild keygen' or 'signify-openbsd -G'",
			      pub, why);
}

int ib_trust_add(const char *pub, const char *name, struct ib_trusted_key *out, bool *already, ib_error_t *err)
{
	struct ib_pubkey key = { 0 };
	ib_error_t rerr = NULL;
	if (ib_sign_read_pubkey(pub, &key, &rerr) < 0) {
		bad_key(pub, rerr->msg, err);
		ib_error_free(&rerr);
		return -1;
	}
	cleanup_free char *key_path = key.path;
	cleanup_free char *derived = NULL;
	if (name == NULL) {
		const char *base = strrchr(pub, '/');
		base = base ? base + 1 : pub;
		size_t l = strlen(base);
		derived = l > 4 && strcmp(base + l - 4, ".pub") == 0 ? xstrndup(base, l - 4) : xstrdup(base);
		name = derived;
	}
	if (ib_trust_check_name(name, err) < 0)
		return ib_error_wrap(err, "trust add '%s'", pub);

	cleanup_free char *dir = ib_user_trust_dir();
	cleanup_scan struct scan s = { 0 };
	scan_dir(dir, false, &s);
	for (size_t i = 0; i < s.n; i++) {
		if (s.keys[i].keynum[0] == '\0' || memcmp(s.pubs[i].keynum, key.keynum, IB_SIGN_KEYNUM_LEN) != 0)
			continue;
		if (memcmp(s.pubs[i].key, key.key, IB_ED25519_PUBLIC_LEN) != 0)
			return ib_error_set(err, 0,
					    "trust add: '%s' has keynum %s, as the different key '%s' already "
					    "trusted: one of them is forged; check with the key's owner",
					    pub, s.keys[i].keynum, s.keys[i].path);
		if (already)
			*already = true;
		copy_key(out, &s.keys[i]);
		return 0;
	}
	if (ib_trust_name_free(name, NULL, err) < 0)
		return ib_error_wrap(err, "trust add '%s'", pub);

	size_t len;
	cleanup_free char *text = ib_read_file(pub, &len, err);
	if (text == NULL)
		return -1;
	if (ib_mkdir_p(dir, 0755, err) < 0)
		return -1;
	cleanup_free char *dest = xasprintf("%s/%s.pub", dir, name);
	if (ib_write_file_atomic(dest, text, len, 0644, err) < 0)
		return -1;
	if (already)
		*already = false;
	ib_hex(key.keynum, IB_SIGN_KEYNUM_LEN, out->keynum);
	out->name = xstrdup(name);
	out->path = steal_pointer(&dest);
	out->installation = false;
	return 0;
}

int ib_trust_list(struct ib_trusted_key **keys, size_t *n, ib_error_t *err)
{
	struct scan s = { 0 };
	cleanup_free char *user = ib_user_trust_dir();
	scan_dir(user, false, &s);
	cleanup_free char *project = ib_path_join(ib_data_dir(), "keys");
	scan_dir(project, true, &s);
	for (size_t i = 0; i < s.n; i++)
		free(s.pubs[i].path);
	free(s.pubs);
	*keys = s.keys;
	*n = s.n;
	return 0;
}

static bool is_keynum(const char *s)
{
	return strlen(s) == 2 * IB_SIGN_KEYNUM_LEN && strspn(s, "0123456789abcdef") == 2 * IB_SIGN_KEYNUM_LEN;
}

int ib_trust_remove(const char *what, struct ib_trusted_key *out, ib_error_t *err)
{
	cleanup_free char *dir = ib_user_trust_dir();
	cleanup_scan struct scan s = { 0 };
	scan_dir(dir, false, &s);
	size_t user_n = s.n;
	cleanup_free char *project = ib_path_join(ib_data_dir(), "keys");
	scan_dir(project, true, &s);
	bool by_num = is_keynum(what);
	for (size_t i = 0; i < s.n; i++) {
		const struct ib_trusted_key *k = &s.keys[i];
		if (strcmp(k->name, what) != 0 && !(by_num && strcmp(k->keynum, what) == 0))
			continue;
		if (i >= user_n)
			return ib_error_set(err, 0,
					    "trust remove: '%s' is the installation's key %s, trusted for every "
					    "user: remove that file to stop trusting it",
					    what, k->path);
		if (unlink(k->path) < 0)
			return ib_error_errno(err, errno, "trust remove: remove '%s'", k->path);
		if (out)
			copy_key(out, k);
		return 0;
	}
	return ib_error_usage(err,
			      "trust remove: no trusted key is named or numbered '%s' "
			      "('imgbuild trust list' shows them)",
			      what);
}
