/* Plan signatures: Ed25519 over a BLAKE2b-512 digest of the whole file but
 * its content hash (header bytes 24..32, written last) and the signature
 * block itself (signer key + signature, at the start of the objects section). */
#include <sodium.h>
#include <string.h>

#include "plan.h"
#include "plan_format.h"

static const char DOMAIN[] = "bnc plan signature v1";

void bn_plan_digest_init(bn_plan_digest *d, uint64_t sig_off) {
  crypto_generichash_init(&d->st, NULL, 0, BN_PLAN_DIGEST);
  crypto_generichash_update(&d->st, (const uint8_t *)DOMAIN, sizeof DOMAIN);
  d->pos = 0, d->sig_off = sig_off;
}

/* Feeds bytes [pos, pos + n) of the file, leaving out the two excluded ranges. */
void bn_plan_digest_update(bn_plan_digest *d, const uint8_t *p, size_t n) {
  const uint64_t skip[2][2] = {{24, 32}, {d->sig_off, d->sig_off + BN_PLAN_SIGBLOCK}};
  while (n) {
    uint64_t at = d->pos, take = n;
    int skipping = 0;
    for (int r = 0; r < 2; r++) {
      if (at >= skip[r][0] && at < skip[r][1]) skipping = 1, take = skip[r][1] - at < take ? skip[r][1] - at : take;
      else if (at < skip[r][0] && skip[r][0] - at < take) take = skip[r][0] - at;
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
  if (p->version < 3) return snprintf(why, cap, "its object code is unsigned (a version %u plan)", p->version), 0;
  bn_key_hex(p->signer, hex);
  if (!t || !bn_trust_has(t, p->signer))
    return snprintf(why, cap, "its object code is signed by key %.16s..., which you do not trust", hex), 0;
  bn_plan_digest d;
  uint8_t digest[BN_PLAN_DIGEST];
  if (sodium_init() < 0) return snprintf(why, cap, "libsodium failed to start"), 0;
  bn_plan_digest_init(&d, p->sig_off);
  bn_plan_digest_update(&d, p->base, p->size);
  bn_plan_digest_final(&d, digest);
  if (crypto_sign_verify_detached(p->signature, digest, sizeof digest, p->signer))
    return snprintf(why, cap, "its signature by key %.16s... does not match its contents", hex), 0;
  return 1;
}
