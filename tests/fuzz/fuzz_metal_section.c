/* libFuzzer target: a plan's Metal section (metal/plan.c), read against the graph and memory plan
 * of the shipped synth model compiled as bnc compile compiles it (the corpus's seed is that plan's
 * section), for each K/V cache type. Run from the repository root. */
#include <stdint.h>
#include <stdlib.h>

#include "../../frontend/import.h"
#include "../../metal/emit.h"
#include "../../passes/pass.h"

static bn_gguf f;
static bn_model m;
static bn_memplan mp;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  bn_error err;
  bn_pass_opts po = {.max_tokens = 128}; /* bnc compile's default batch */
  if (bn_gguf_open(&f, "examples/tiny-bitnet-i2_s.gguf", &err) || bn_import_gguf(&f, &m, &err) ||
      bn_pass_run_pipeline(&m.graph, &po, &mp, NULL, NULL, &err))
    abort(); /* run from the repository root */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (int c = 0; c < 2; c++) {
    bn_mtl_lib lib;
    bn_error err;
    if (bn_metal_section_read(data, size, &m.graph, &mp, c ? BN_DT_F16 : BN_DT_F32, &lib, &err) == BN_OK)
      bn_metal_lib_free(&lib);
  }
  return 0;
}
