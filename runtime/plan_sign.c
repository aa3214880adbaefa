/* Plan signatures: Ed25519 over a BLAKE2b-512 digest of the file but for its
 * content hash (header bytes 24..32, written last), the signature block itself
 * (signer key + signature, at the start of the objects section) and the weight
 * bytes. Everything that decides what the object code does and how it is
 * called is signed: header, target, hyperparameters, vocabulary, IR, memory
 * plan, the weight index (names, offsets, sizes) and the code. The weight
 * bytes are data that every kernel reads within the bounds the signed index
 * sets, whatever their values; leaving them out keeps a check at milliseconds
 * instead of a pass over the whole file (BLAKE2b: 0.7 s for large here). */
#include <sodium.h>
#include <string.h>

#include "plan.h"
#include "plan_format.h"

static const char DOMAIN[] = "bnc plan signature v1";

void bn_plan_digest_init(bn_plan_digest *d, uint64_t sig_off, uint64_t w_off, uint64_t w_bytes) {
  crypto_generichash_init(&d->st, NULL, 0, BN_PLAN_DIGEST);
  crypto_generichash_update(&d->st, (const uint8_t *)DOMAIN, sizeof DOMAIN);
  d->pos = 0;
  uint64_t skip[3][2] = {{24, 32}, {sig_off, sig_off + BN_PLAN_SIGBLOCK}, {w_off, w_off + w_bytes}};
  memcpy(d->skip, skip, sizeof skip);
}

/* Feeds bytes [pos, pos + n) of the file, leaving out the excluded ranges. */
void bn_plan_digest_update(bn_plan_digest *d, const uint8_t *p, size_t n) {
  while (n) {
    uint64_t at = d->pos, take = n;
    int skipping = 0;
    for (int r = 0; r < 3; r++) {
      const uint64_t *k = d->skip[r];
      if (at >= k[0] && at < k[1]) skipping = 1, take = k[1] - at < take ? k[1] - at : take;
      else if (at < k[0] && k[0] - at < take) take = k[0] - at;
    }
    if (!skipping) crypto_generichash_update(&d->st, p, take);
    p += take, n -= take, d->pos += take;
  }
}

void bn_plan_digest_final(bn_plan_digest *d, uint8_t out[BN_PLAN_DIGEST]) {
  crypto_generichash_final(&d->st, out, BN_PLAN_DIGEST);
}

int bn_plan_code_trusted(const bn_plan *p, const bn_trust *t, char *why, size_t cap) {
  char hex[2 * BN_PK_BYTES + 1];
  if (!p->has_objects) return snprintf(why, cap, "the plan has no object code"), 0;
  if (p->version < 3)
    return snprintf(why, cap, "its object code is unsigned (a version %u plan: recompile with --aot to sign it)",
                    p->version), 0;
  bn_key_hex(p->signer, hex);
  if (!t || !bn_trust_has(t, p->signer))
    return snprintf(why, cap, "its object code is signed by key %.16s..., which you do not trust", hex), 0;
  bn_plan_digest d;
  uint8_t digest[BN_PLAN_DIGEST];
  if (sodium_init() < 0) return snprintf(why, cap, "libsodium failed to start"), 0;
  bn_plan_digest_init(&d, p->sig_off, p->weights_off, p->weights_bytes);
  bn_plan_digest_update(&d, p->base, p->size);
  bn_plan_digest_final(&d, digest);
  if (crypto_sign_verify_detached(p->signature, digest, sizeof digest, p->signer))
    return snprintf(why, cap, "its signature by key %.16s... does not match its contents", hex), 0;
  return 1;
}
