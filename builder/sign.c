#include "sign.h"
#include "log.h"
#include "paths.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COMMENT_HDR "untrusted comment: "
#define COMMENT_MAX 1024
#define PUB_LEN (2 + IB_SIGN_KEYNUM_LEN + IB_ED25519_PUBLIC_LEN)
#define SIG_LEN (2 + IB_SIGN_KEYNUM_LEN + IB_ED25519_SIG_LEN)
#define SEC_LEN (2 + 2 + 4 + 16 + 8 + IB_SIGN_KEYNUM_LEN + IB_ED25519_SECRET_LEN)
/* Offsets inside the secret key blob (struct enckey). */
enum { SEC_KDFALG = 2, SEC_ROUNDS = 4, SEC_SALT = 8, SEC_CHECKSUM = 24, SEC_KEYNUM = 32, SEC_KEY = 40 };

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ib_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		if (o + 4 >= cap)
			return 0;
		out[o++] = b64chars[(v >> 18) & 63];
		out[o++] = b64chars[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64chars[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

static int b64val(char c)
{
	const char *p = c ? strchr(b64chars, c) : NULL;
	return p ? (int)(p - b64chars) : -1;
}

long ib_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
	if (len % 4 != 0)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;
		for (int k = 0; k < 4; k++) {
			if (in[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else {
				if (pad)
					return -1;
				v[k] = b64val(in[i + k]);
				if (v[k] < 0)
					return -1;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		uint8_t bytes[3] = { (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w };
		for (int k = 0; k < 3 - pad; k++) {
			if (o >= cap)
				return -1;
			out[o++] = bytes[k];
		}
	}
	return (long)o;
}

/* Parses "untrusted comment: ...\nBASE64\n" at TEXT into exactly LEN bytes;
 * *REST (when not NULL) points past the base64 line (signify's parseb64file). */
static int parse_b64_text(const char *what, const char *text, size_t text_len, uint8_t *out, size_t len, const char **rest,
			  ib_error_t *err)
{
	const char *end = text + text_len;
	const char *nl = memchr(text, '\n', text_len);
	if (nl == NULL || (size_t)(nl - text) <= strlen(COMMENT_HDR) || memcmp(text, COMMENT_HDR, strlen(COMMENT_HDR)) != 0)
		return ib_error_set(err, 0, "invalid comment in '%s': must start with '%s'", what, COMMENT_HDR);
	if (nl - text > COMMENT_MAX)
		return ib_error_set(err, 0, "comment too long in '%s'", what);
	const char *b = nl + 1;
	const char *nl2 = memchr(b, '\n', (size_t)(end - b));
	if (nl2 == NULL)
		return ib_error_set(err, 0, "missing new line after base64 in '%s'", what);
	uint8_t buf[256];
	long n = ib_base64_decode(b, (size_t)(nl2 - b), buf, sizeof(buf));
	if (n != (long)len) {
		explicit_bzero(buf, sizeof(buf));
		return ib_error_set(err, 0, "invalid base64 encoding in '%s'", what);
	}
	if (memcmp(buf, "Ed", 2) != 0) {
		explicit_bzero(buf, sizeof(buf));
		return ib_error_set(err, 0, "unsupported file '%s' (not an Ed25519 signify file)", what);
	}
	memcpy(out, buf, len);
	explicit_bzero(buf, sizeof(buf));
	if (rest)
		*rest = nl2 + 1;
	return 0;
}

static int read_b64_file(const char *path, uint8_t *out, size_t len, ib_error_t *err)
{
	size_t n;
	cleanup_free char *text = ib_read_file_max(path, 4096, &n, err);
	if (text == NULL)
		return -1;
	if (n > 4096) {
		explicit_bzero(text, n);
		return ib_error_set(err, 0, "'%s' is too large for a signify key", path);
	}
	int rc = parse_b64_text(path, text, n, out, len, NULL, err);
	explicit_bzero(text, n);
	return rc;
}

int ib_sign_read_pubkey(const char *path, struct ib_pubkey *out, ib_error_t *err)
{
	uint8_t blob[PUB_LEN];
	if (read_b64_file(path, blob, sizeof(blob), err) < 0)
		return -1;
	memcpy(out->keynum, blob + 2, IB_SIGN_KEYNUM_LEN);
	memcpy(out->key, blob + 2 + IB_SIGN_KEYNUM_LEN, IB_ED25519_PUBLIC_LEN);
	out->path = xstrdup(path);
	return 0;
}

int ib_sign_read_seckey(const char *path, struct ib_seckey *out, ib_error_t *err)
{
	uint8_t blob[SEC_LEN];
	if (read_b64_file(path, blob, sizeof(blob), err) < 0)
		return -1;
	int rc = 0;
	uint32_t rounds = (uint32_t)blob[SEC_ROUNDS] << 24 | (uint32_t)blob[SEC_ROUNDS + 1] << 16 |
			  (uint32_t)blob[SEC_ROUNDS + 2] << 8 | blob[SEC_ROUNDS + 3];
	uint8_t digest[IB_SHA512_LEN];
	if (memcmp(blob + SEC_KDFALG, "BK", 2) != 0) {
		rc = ib_error_set(err, 0, "'%s': unsupported key derivation", path);
	} else if (rounds != 0) {
		rc = ib_error_set(err, 0,
				  "'%s' is protected by a passphrase: imgbuild signs unattended, "
				  "make a key with 'imgbuild keygen' or 'signify -G -n'",
				  path);
	} else {
		ib_sha512_buf(blob + SEC_KEY, IB_ED25519_SECRET_LEN, digest);
		if (memcmp(digest, blob + SEC_CHECKSUM, 8) != 0) {
			rc = ib_error_set(err, 0, "'%s': secret key checksum does not match (corrupt key)", path);
		} else {
			memcpy(out->keynum, blob + SEC_KEYNUM, IB_SIGN_KEYNUM_LEN);
			memcpy(out->key, blob + SEC_KEY, IB_ED25519_SECRET_LEN);
		}
	}
	explicit_bzero(digest, sizeof(digest));
	explicit_bzero(blob, sizeof(blob));
	return rc;
}

void ib_pubkey_list_free(struct ib_pubkey *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(keys[i].path);
	free(keys);
}

/* "untrusted comment: COMMENT\nBASE64\n" followed by MSG. */
static char *b64_file_text(const char *comment, const uint8_t *blob, size_t len, const char *msg, size_t *out_len)
{
	char b64[512];
	ib_base64_encode(blob, len, b64, sizeof(b64));
	char *text = xasprintf("%s%s\n%s\n%s", COMMENT_HDR, comment, b64, msg ? msg : "");
	explicit_bzero(b64, sizeof(b64));
	*out_len = strlen(text);
	return text;
}

static int write_new_file(const char *path, const char *text, size_t len, mode_t mode, ib_error_t *err)
{
	cleanup_fd int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return ib_error_errno(err, errno, "create '%s'", path);
	if (!ib_write_all(fd, text, len)) {
		int e = errno;
		unlink(path);
		return ib_error_errno(err, e, "write '%s'", path);
	}
	if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
		int e = errno;
		unlink(path);
		return ib_error_errno(err, e, "sync '%s'", path);
	}
	return 0;
}

int ib_sign_keygen(const char *dir, const char *name, ib_error_t *err)
{
	if (name[0] == '\0' || strchr(name, '/') || strlen(name) > 200)
		return ib_error_usage(err, "bad key name '%s'", name);
	if (ib_mkdir_p(dir, 0700, err) < 0)
		return -1;
	cleanup_free char *pub_path = xasprintf("%s/%s.pub", dir, name);
	cleanup_free char *sec_path = xasprintf("%s/%s.sec", dir, name);
	if (ib_path_exists(pub_path) || ib_path_exists(sec_path))
		return ib_error_set(err, EEXIST, "'%s' or '%s' already exists: not overwriting a key", pub_path, sec_path);

	uint8_t sec[SEC_LEN] = { 0 }, pub[PUB_LEN], keynum[IB_SIGN_KEYNUM_LEN], secret[IB_ED25519_SECRET_LEN],
		public_key[IB_ED25519_PUBLIC_LEN], digest[IB_SHA512_LEN];
	cleanup_free char *comment = NULL;
	int rc = -1;
	if (ib_ed25519_keygen(secret, public_key, err) < 0 || ib_random_bytes(keynum, sizeof(keynum), err) < 0)
		goto out;
	memcpy(sec, "Ed", 2);
	memcpy(sec + SEC_KDFALG, "BK", 2); /* kdfrounds stays 0: no passphrase */
	if (ib_random_bytes(sec + SEC_SALT, 16, err) < 0)
		goto out;
	ib_sha512_buf(secret, sizeof(secret), digest);
	memcpy(sec + SEC_CHECKSUM, digest, 8);
	memcpy(sec + SEC_KEYNUM, keynum, sizeof(keynum));
	memcpy(sec + SEC_KEY, secret, sizeof(secret));
	memcpy(pub, "Ed", 2);
	memcpy(pub + 2, keynum, sizeof(keynum));
	memcpy(pub + 2 + IB_SIGN_KEYNUM_LEN, public_key, sizeof(public_key));

	size_t len;
	comment = xasprintf("%s secret key", name);
	char *text = b64_file_text(comment, sec, sizeof(sec), NULL, &len);
	rc = write_new_file(sec_path, text, len, 0600, err);
	explicit_bzero(text, len);
	free(text);
	if (rc < 0)
		goto out;
	free(comment);
	comment = xasprintf("%s public key", name);
	text = b64_file_text(comment, pub, sizeof(pub), NULL, &len);
	rc = write_new_file(pub_path, text, len, 0644, err);
	free(text);
	if (rc < 0)
		unlink(sec_path);
out:
	explicit_bzero(sec, sizeof(sec));
	explicit_bzero(secret, sizeof(secret));
	explicit_bzero(digest, sizeof(digest));
	return rc;
}

int ib_sign_image(const char *seckey_path, const char *basename, const char *hex, const char *sig_path, ib_error_t *err)
{
	struct ib_seckey sk;
	if (ib_sign_read_seckey(seckey_path, &sk, err) < 0)
		return ib_error_wrap(err, "sign");
	cleanup_free char *msg = xasprintf("SHA256 (%s) = %s\n", basename, hex);
	uint8_t sig[SIG_LEN];
	memcpy(sig, "Ed", 2);
	memcpy(sig + 2, sk.keynum, IB_SIGN_KEYNUM_LEN);
	int rc = ib_ed25519_sign(sk.key, msg, strlen(msg), sig + 2 + IB_SIGN_KEYNUM_LEN, err);
	explicit_bzero(&sk, sizeof(sk));
	if (rc < 0)
		return ib_error_wrap(err, "sign");
	/* signify names the public key after the secret key's file name. */
	const char *base = strrchr(seckey_path, '/');
	base = base ? base + 1 : seckey_path;
	size_t bl = strlen(base);
	if (bl > 4 && strcmp(base + bl - 4, ".sec") == 0)
		bl -= 4;
	cleanup_free char *comment = xasprintf("verify with %.*s.pub", (int)bl, base);
	size_t len;
	cleanup_free char *text = b64_file_text(comment, sig, sizeof(sig), msg, &len);
	return ib_write_file_atomic(sig_path, text, len, 0644, err);
}

int ib_sign_verify_image(const char *sig_path, const char *hex, const struct ib_pubkey *keys, size_t n,
			 const struct ib_pubkey **signer, ib_error_t *err)
{
	size_t len;
	cleanup_free char *text = ib_read_file_max(sig_path, 64 * 1024, &len, err);
	if (text == NULL)
		return -1;
	if (len > 64 * 1024)
		return ib_error_set(err, 0, "'%s' is too large for a signature", sig_path);
	uint8_t sig[SIG_LEN];
	const char *msg;
	if (parse_b64_text(sig_path, text, len, sig, sizeof(sig), &msg, err) < 0)
		return -1;
	size_t msg_len = len - (size_t)(msg - text);
	const struct ib_pubkey *key = NULL;
	for (size_t i = 0; i < n && key == NULL; i++)
		if (memcmp(keys[i].keynum, sig + 2, IB_SIGN_KEYNUM_LEN) == 0)
			key = &keys[i];
	if (key == NULL) {
		char kn[2 * IB_SIGN_KEYNUM_LEN + 1];
		ib_hex(sig + 2, IB_SIGN_KEYNUM_LEN, kn);
		/* signify's comment names the signer's public key file ("verify with
		 * NAME.pub"); it is unauthenticated, so only a plain file name is echoed. */
		char pub[128] = "KEY.pub";
		const char *c = text + strlen(COMMENT_HDR), *nl = strchr(c, '\n');
		const char *vw = "verify with ";
		if (nl && strncmp(c, vw, strlen(vw)) == 0) {
			c += strlen(vw);
			size_t l = (size_t)(nl - c);
			if (l > 4 && l < sizeof(pub) && memcmp(c + l - 4, ".pub", 4) == 0 && c[0] != '.' &&
			    strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == l)
				snprintf(pub, sizeof(pub), "%.*s", (int)l, c);
		}
		return ib_error_set(err, 0,
				    "signed by an untrusted key (keynum %s; %zu trusted key%s): if you trust the signer, "
				    "get their public key and run 'imgbuild trust add %s'",
				    kn, n, n == 1 ? "" : "s", pub);
	}
	if (ib_ed25519_verify(key->key, msg, msg_len, sig + 2 + IB_SIGN_KEYNUM_LEN, err) < 0)
		return ib_error_wrap(err, "signature by '%s'", key->path);
	/* The signed message: lines "ALGO (NAME) = HEX" (signify -C's format). */
	bool found = false;
	const char *p = msg, *end = msg + msg_len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *eq = ll > 7 ? strstr(p, ") = ") : NULL;
		if (ll > 7 && memcmp(p, "SHA256 (", 8) == 0 && eq && eq < p + ll) {
			const char *h = eq + 4;
			if ((size_t)(p + ll - h) == strlen(hex) && memcmp(h, hex, strlen(hex)) == 0)
				found = true;
		}
		p += ll + 1;
	}
	if (!found)
		return ib_error_set(err, 0, "the signature by '%s' is for another image (its SHA256 differs)", key->path);
	if (signer)
		*signer = key;
	return 0;
}

static void add_keys_from(const char *dir, struct ib_pubkey **keys, size_t *n)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *de;
	cleanup_strv struct ib_strv names = { 0 };
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l > 4 && strcmp(de->d_name + l - 4, ".pub") == 0)
			ib_strv_push(&names, de->d_name);
	}
	closedir(d);
	for (size_t i = 0; i < names.n; i++) {
		cleanup_free char *path = ib_path_join(dir, names.v[i]);
		ib_error_t e = NULL;
		struct ib_pubkey k;
		if (ib_sign_read_pubkey(path, &k, &e) < 0) {
			ib_log_warn("skipping key '%s': %s", path, e->msg);
			ib_error_free(&e);
			continue;
		}
		*keys = xrealloc(*keys, (*n + 1) * sizeof(**keys));
		(*keys)[(*n)++] = k;
	}
}

int ib_sign_trusted_keys(const char *one, struct ib_pubkey **keys, size_t *n, ib_error_t *err)
{
	*keys = NULL;
	*n = 0;
	if (one) {
		struct ib_pubkey k;
		if (ib_sign_read_pubkey(one, &k, err) < 0)
			return -1;
		*keys = xmalloc(sizeof(k));
		(*keys)[0] = k;
		*n = 1;
		return 0;
	}
	cleanup_free char *project = ib_path_join(ib_data_dir(), "keys");
	add_keys_from(project, keys, n);
	cleanup_free char *user = ib_user_trust_dir();
	add_keys_from(user, keys, n);
	return 0;
}
