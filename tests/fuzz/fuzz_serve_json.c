/* libFuzzer target: bnc serve's request parser (tools/serve_req.c); the first byte picks completions or chat
 * (bit 0) and the chat template (bit 1). */
#include <stdint.h>

#include "../../tools/serve_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!size) return 0;
  bn_serve_req r;
  char why[600];
  const char *param;
  bn_serve_parse((const char *)data + 1, size - 1, data[0] & 1, (bn_chat_template)(data[0] >> 1 & 3), &r, why,
                 sizeof why, &param);
  bn_serve_req_free(&r);
  return 0;
}
