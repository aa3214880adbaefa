/* libFuzzer target: the GGUF reader and the model importer on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../frontend/import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *copy = malloc(size ? size : 1); /* exact size: overreads are caught */
  memcpy(copy, data, size);
  bn_gguf f;
  bn_model m;
  bn_error err;
  if (bn_gguf_parse(&f, copy, size, "fuzz", &err) == BN_OK) {
    if (bn_import_gguf(&f, &m, &err) == BN_OK) bn_model_free(&m);
    bn_gguf_close(&f);
  }
  free(copy);
  return 0;
}
