/* libFuzzer target: the .bnplan reader. The harness writes the input's true
 * size and content hash into its header first, so mutations reach the
 * structural checks behind them (sections, vocabulary, IR, memory plan,
 * weight index) instead of stopping at the hash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "../../runtime/plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *copy = malloc(size ? size : 1);
  memcpy(copy, data, size);
  if (size >= 64) {
    uint64_t n = size, h = XXH3_64bits(copy + 64, size - 64);
    memcpy(copy + 16, &n, 8);
    memcpy(copy + 24, &h, 8);
  }
  bn_plan p;
  bn_error err;
  if (bn_plan_parse(&p, copy, size, "fuzz", &err) == BN_OK) bn_plan_close(&p);
  free(copy);
  return 0;
}
