/* Who may run code: the user's signing key, the keys they trust, and secrets.
 *
 * Object code in a plan (bnc compile --aot) is machine code that bnc would
 * execute; it is used only when the plan is signed (Ed25519, libsodium) by a
 * key in the user's trusted-keys file. A user's key is made on first use and
 * trusted by them. Files live in a private directory (bn_private_dir): the
 * caller names it (tools/ reads the environment, libraries do not).
 *
 *   DIR/signing.key   64 bytes, the secret key (mode 0600)
 *   DIR/signing.pub   "bnc-ed25519 <64 hex digits> <comment>"
 *   DIR/trusted-keys  lines as in signing.pub; '#' starts a comment */
#ifndef BN_RT_TRUST_H
#define BN_RT_TRUST_H

#include <stddef.h>
#include <stdint.h>

#include "../ir/status.h"

enum { BN_PK_BYTES = 32, BN_SK_BYTES = 64, BN_SIG_BYTES = 64, BN_SECRET_BYTES = 32 };

typedef struct {
  uint8_t (*pk)[BN_PK_BYTES];
  int n;
} bn_trust;

/* The user's signing key in dir, made (with signing.pub, and added to trusted-keys) if absent; *made says so. */
bn_status bn_key_signing(const char *dir, uint8_t sk[BN_SK_BYTES], uint8_t pk[BN_PK_BYTES], int *made, bn_error *err);
/* A public key from a file written like signing.pub (its first key line). */
bn_status bn_key_read_public(const char *path, uint8_t pk[BN_PK_BYTES], bn_error *err);
/* The trusted keys in path (a missing file: none). The file and its directory must be the user's
 * and closed to others' writes: anyone who can add a key can make bnc run code. */
bn_status bn_trust_read(const char *path, bn_trust *t, bn_error *err);
/* Appends pk (with a comment) to path unless it is there; *added says whether it was new. */
bn_status bn_trust_add(const char *path, const uint8_t pk[BN_PK_BYTES], const char *comment, int *added, bn_error *err);
int bn_trust_has(const bn_trust *t, const uint8_t pk[BN_PK_BYTES]);
void bn_trust_free(bn_trust *t);
/* 64 hex digits and a NUL. */
void bn_key_hex(const uint8_t pk[BN_PK_BYTES], char out[2 * BN_PK_BYTES + 1]);

#endif
