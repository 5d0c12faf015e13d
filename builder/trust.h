#pragma once
/* The keys a user trusts: one signify public key file per key, NAME.pub, in
 * ib_user_trust_dir() (~/.config/imgbuild/trusted), the folder verify, unpack,
 * run and pull read besides the installation's keys/ (sign.h,
 * ib_sign_trusted_keys). `imgbuild trust` and `imgbuild keygen` manage it, so
 * nobody has to copy key files by hand. */
#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "sign.h"

struct ib_trusted_key {
	char keynum[2 * IB_SIGN_KEYNUM_LEN + 1]; /* hex; "" when the file is not a valid key */
	char *name;				 /* the file name without .pub */
	char *path;
	bool installation; /* from the installation's keys/: trusted by every user, not ours to remove */
};
void ib_trusted_key_free(struct ib_trusted_key *k);
void ib_trusted_keys_free(struct ib_trusted_key *keys, size_t n);

/* Checks that NAME can name a trusted key: 1-100 of [A-Za-z0-9._-], no leading dot. */
int ib_trust_check_name(const char *name, ib_error_t *err);

/* Fails when a key other than KEY (NULL: any key) is trusted as NAME, saying how to
 * free the name. For keygen, which checks before it makes a pair. */
int ib_trust_name_free(const char *name, const struct ib_pubkey *key, ib_error_t *err);

/* Copies the public key at PUB to the user's trust folder as NAME.pub (NAME NULL:
 * PUB's file name without .pub). Refuses a file that is not a signify Ed25519
 * public key, a name another key holds, and a keynum another trusted key holds.
 * A key already trusted (same keynum and key) is not copied again: *ALREADY is
 * set and OUT describes the existing entry. */
int ib_trust_add(const char *pub, const char *name, struct ib_trusted_key *out, bool *already, ib_error_t *err);

/* Every trusted key: the user's, then the installation's, each sorted by name. */
int ib_trust_list(struct ib_trusted_key **keys, size_t *n, ib_error_t *err);

/* Removes the user's trusted key named WHAT, or with keynum WHAT (16 hex digits).
 * OUT (when not NULL) describes what was removed. */
int ib_trust_remove(const char *what, struct ib_trusted_key *out, ib_error_t *err);
