/* splitmix64: the seeded generator behind synth weights and sampling. */
#ifndef BN_RNG_H
#define BN_RNG_H

#include <stdint.h>

static inline uint64_t bn_rng_next(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double bn_rng_unit(uint64_t *x) { return (double)(bn_rng_next(x) >> 11) * 0x1.0p-53; }

#endif
