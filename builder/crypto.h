#pragma once
/* The only wrapper of OpenSSL: SHA-256 and Ed25519. Callers never see an
 * OpenSSL type. (After apk-tools' apk_crypto.h.) */
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define IB_SHA256_LEN 32
#define IB_SHA256_HEX_LEN 64
#define IB_SHA512_LEN 64
#define IB_ED25519_PUBLIC_LEN 32
#define IB_ED25519_SECRET_LEN 64 /* seed || public key, as signify stores it */
#define IB_ED25519_SIG_LEN 64

struct ib_sha256; /* opaque streaming context */
struct ib_sha256 *ib_sha256_new(void);
void ib_sha256_update(struct ib_sha256 *ctx, const void *data, size_t len);
void ib_sha256_final(struct ib_sha256 *ctx, uint8_t out[IB_SHA256_LEN]);
void ib_sha256_free(struct ib_sha256 *ctx);
void ib_sha256_cleanup(struct ib_sha256 **ctx);
#define cleanup_sha256 __attribute__((cleanup(ib_sha256_cleanup)))

void ib_sha256_buf(const void *data, size_t len, uint8_t out[IB_SHA256_LEN]);
/* For signify's secret key checksum (first 8 bytes of SHA-512 of the key). */
void ib_sha512_buf(const void *data, size_t len, uint8_t out[IB_SHA512_LEN]);
/* Hashes a file; hex receives 64 hex digits and a NUL. */
int ib_sha256_file(const char *path, char hex[IB_SHA256_HEX_LEN + 1], ib_error_t *err);
/* Hashes an open fd from its current offset to EOF. */
int ib_sha256_fd(int fd, char hex[IB_SHA256_HEX_LEN + 1], ib_error_t *err);

int ib_ed25519_keygen(uint8_t secret[IB_ED25519_SECRET_LEN], uint8_t public_key[IB_ED25519_PUBLIC_LEN], ib_error_t *err);
int ib_ed25519_sign(const uint8_t secret[IB_ED25519_SECRET_LEN], const void *msg, size_t len, uint8_t sig[IB_ED25519_SIG_LEN],
		    ib_error_t *err);
/* Returns 0 when valid, -1 with *err set otherwise. */
int ib_ed25519_verify(const uint8_t public_key[IB_ED25519_PUBLIC_LEN], const void *msg, size_t len,
		      const uint8_t sig[IB_ED25519_SIG_LEN], ib_error_t *err);
int ib_random_bytes(void *buf, size_t len, ib_error_t *err);
