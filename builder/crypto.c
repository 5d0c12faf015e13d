#include "crypto.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>
#include <unistd.h>

struct ib_sha256 {
	EVP_MD_CTX *md;
};

static void cleanup_pkey_fn(EVP_PKEY **k)
{
	EVP_PKEY_free(*k);
}
static void cleanup_md_ctx_fn(EVP_MD_CTX **c)
{
	EVP_MD_CTX_free(*c);
}
#define cleanup_pkey __attribute__((cleanup(cleanup_pkey_fn)))
#define cleanup_md_ctx __attribute__((cleanup(cleanup_md_ctx_fn)))

static int openssl_error(ib_error_t *err, const char *what)
{
	char buf[256];
	unsigned long code = ERR_get_error();
	ERR_error_string_n(code, buf, sizeof(buf));
	ERR_clear_error();
	return ib_error_set(err, 0, "%s: %s", what, code ? buf : "unknown OpenSSL error");
}

struct ib_sha256 *ib_sha256_new(void)
{
	struct ib_sha256 *ctx = xmalloc(sizeof(*ctx));
	ctx->md = EVP_MD_CTX_new();
	if (ctx->md == NULL || EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1)
		ib_die_oom();
	return ctx;
}

void ib_sha256_update(struct ib_sha256 *ctx, const void *data, size_t len)
{
	EVP_DigestUpdate(ctx->md, data, len);
}

void ib_sha256_final(struct ib_sha256 *ctx, uint8_t out[IB_SHA256_LEN])
{
	unsigned int n = IB_SHA256_LEN;
	EVP_DigestFinal_ex(ctx->md, out, &n);
}

void ib_sha256_free(struct ib_sha256 *ctx)
{
	if (ctx == NULL)
		return;
	EVP_MD_CTX_free(ctx->md);
	free(ctx);
}

void ib_sha256_cleanup(struct ib_sha256 **ctx)
{
	ib_sha256_free(*ctx);
}

void ib_sha256_buf(const void *data, size_t len, uint8_t out[IB_SHA256_LEN])
{
	unsigned int n = IB_SHA256_LEN;
	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

void ib_sha512_buf(const void *data, size_t len, uint8_t out[IB_SHA512_LEN])
{
	unsigned int n = IB_SHA512_LEN;
	EVP_Digest(data, len, out, &n, EVP_sha512(), NULL);
}

int ib_sha256_fd(int fd, char hex[IB_SHA256_HEX_LEN + 1], ib_error_t *err)
{
	cleanup_sha256 struct ib_sha256 *ctx = ib_sha256_new();
	/* 1 MiB reads: few syscalls, still well inside L2-friendly chunks for SHA-NI. */
	size_t cap = 1 << 20;
	cleanup_free uint8_t *buf = xmalloc(cap);
	for (;;) {
		ssize_t r = read(fd, buf, cap);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return ib_error_errno(err, errno, "read");
		}
		if (r == 0)
			break;
		ib_sha256_update(ctx, buf, (size_t)r);
	}
	uint8_t digest[IB_SHA256_LEN];
	ib_sha256_final(ctx, digest);
	ib_hex(digest, sizeof(digest), hex);
	return 0;
}

int ib_sha256_file(const char *path, char hex[IB_SHA256_HEX_LEN + 1], ib_error_t *err)
{
	cleanup_fd int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ib_error_errno(err, errno, "open '%s'", path);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (ib_sha256_fd(fd, hex, err) < 0)
		return ib_error_wrap(err, "hash '%s'", path);
	return 0;
}

int ib_ed25519_keygen(uint8_t secret[IB_ED25519_SECRET_LEN], uint8_t public_key[IB_ED25519_PUBLIC_LEN], ib_error_t *err)
{
	uint8_t seed[32];
	if (ib_random_bytes(seed, sizeof(seed), err) < 0)
		return -1;
	cleanup_pkey EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
	explicit_bzero(seed, sizeof(seed));
	if (key == NULL)
		return openssl_error(err, "make Ed25519 key");
	size_t len = 32;
	if (EVP_PKEY_get_raw_private_key(key, secret, &len) != 1 || len != 32)
		return openssl_error(err, "read Ed25519 secret key");
	len = IB_ED25519_PUBLIC_LEN;
	if (EVP_PKEY_get_raw_public_key(key, public_key, &len) != 1 || len != IB_ED25519_PUBLIC_LEN)
		return openssl_error(err, "read Ed25519 public key");
	memcpy(secret + 32, public_key, IB_ED25519_PUBLIC_LEN);
	return 0;
}

int ib_ed25519_sign(const uint8_t secret[IB_ED25519_SECRET_LEN], const void *msg, size_t len, uint8_t sig[IB_ED25519_SIG_LEN],
		    ib_error_t *err)
{
	cleanup_pkey EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, secret, 32);
	if (key == NULL)
		return openssl_error(err, "load Ed25519 secret key");
	cleanup_md_ctx EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (md == NULL)
		ib_die_oom();
	size_t siglen = IB_ED25519_SIG_LEN;
	if (EVP_DigestSignInit(md, NULL, NULL, NULL, key) != 1 || EVP_DigestSign(md, sig, &siglen, msg, len) != 1)
		return openssl_error(err, "Ed25519 sign");
	return 0;
}

int ib_ed25519_verify(const uint8_t public_key[IB_ED25519_PUBLIC_LEN], const void *msg, size_t len,
		      const uint8_t sig[IB_ED25519_SIG_LEN], ib_error_t *err)
{
	cleanup_pkey EVP_PKEY *key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, public_key, IB_ED25519_PUBLIC_LEN);
	if (key == NULL)
		return openssl_error(err, "load Ed25519 public key");
	cleanup_md_ctx EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (md == NULL)
		ib_die_oom();
	if (EVP_DigestVerifyInit(md, NULL, NULL, NULL, key) != 1)
		return openssl_error(err, "Ed25519 verify");
	int ok = EVP_DigestVerify(md, sig, IB_ED25519_SIG_LEN, msg, len);
	ERR_clear_error();
	if (ok != 1)
		return ib_error_set(err, 0, "signature does not match");
	return 0;
}

int ib_random_bytes(void *buf, size_t len, ib_error_t *err)
{
	if (RAND_bytes(buf, (int)len) != 1)
		return openssl_error(err, "random bytes");
	return 0;
}
