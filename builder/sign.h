#pragma once
/* OpenBSD signify's key and signature files, on top of crypto.h, so that
 * `signify -C -p KEY.pub -x IMAGE.sig` checks an image without imgbuild.
 * Formats (signify.c): each file is "untrusted comment: ...\n" then one line of
 * base64 of a packed struct, big-endian fields:
 *   public key  "Ed" keynum[8] pubkey[32]
 *   secret key  "Ed" "BK" kdfrounds[4] salt[16] checksum[8] keynum[8] seckey[64]
 *               (imgbuild writes and reads kdfrounds = 0: not passphrase-encrypted;
 *               checksum = first 8 bytes of SHA-512(seckey))
 *   signature   "Ed" keynum[8] sig[64]
 * An image's .sig is signify's embedded form (-S -e): the signature lines, then
 * the signed message "SHA256 (BASENAME) = HEX\n". */
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "error.h"

#define IB_SIGN_KEYNUM_LEN 8

struct ib_pubkey {
	uint8_t keynum[IB_SIGN_KEYNUM_LEN];
	uint8_t key[IB_ED25519_PUBLIC_LEN];
	char *path; /* where it was read from */
};

/* Key material: caller-owned, explicit_bzero it after use. */
struct ib_seckey {
	uint8_t keynum[IB_SIGN_KEYNUM_LEN];
	uint8_t key[IB_ED25519_SECRET_LEN];
};

int ib_sign_read_pubkey(const char *path, struct ib_pubkey *out, ib_error_t *err);
int ib_sign_read_seckey(const char *path, struct ib_seckey *out, ib_error_t *err);
void ib_pubkey_list_free(struct ib_pubkey *keys, size_t n);

/* Makes DIR/NAME.pub (0644) and DIR/NAME.sec (0600); refuses to overwrite. */
int ib_sign_keygen(const char *dir, const char *name, ib_error_t *err);

/* Writes SIG_PATH (atomically): signify's embedded signature over
 * "SHA256 (BASENAME) = HEX\n", made with the secret key at SECKEY_PATH. */
int ib_sign_image(const char *seckey_path, const char *basename, const char *hex, const char *sig_path, ib_error_t *err);

/* Checks SIG_PATH: its keynum must name one of KEYS, the signature must hold
 * for that key, and the signed message must carry "SHA256 (...) = HEX".
 * *SIGNER (when not NULL) points into KEYS. */
int ib_sign_verify_image(const char *sig_path, const char *hex, const struct ib_pubkey *keys, size_t n,
			 const struct ib_pubkey **signer, ib_error_t *err);

/* The trusted keys: ONE alone when not NULL, else ib_data_dir()/keys/\*.pub and
 * ib_user_trust_dir()/\*.pub (unreadable files are skipped with a warning). */
int ib_sign_trusted_keys(const char *one, struct ib_pubkey **keys, size_t *n, ib_error_t *err);

/* Plain base64 (RFC 4648 with padding), as signify's b64_ntop/b64_pton. */
size_t ib_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap);
/* Returns the decoded length, or -1 on bad input or when it exceeds CAP. */
long ib_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap);
