/* libFuzzer target: the textual IR parser (and the verifier behind it). */
#include <stdint.h>
#include <stdlib.h>

#include "../../ir/irparse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bn_graph g;
  bn_error err;
  if (bn_ir_parse((const char *)data, size, "fuzz", &g, &err) == BN_OK) {
    char *text = bn_graph_print(&g);
    free(text);
    bn_graph_free(&g);
  }
  return 0;
}
