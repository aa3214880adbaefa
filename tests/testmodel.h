/* A model for a test: a synthesized (or existing) GGUF opened, imported and through the pass pipeline. */
#ifndef BN_TESTMODEL_H
#define BN_TESTMODEL_H

#include "../frontend/import.h"
#include "../frontend/synth.h"
#include "../passes/pass.h"

/* Writes path from p first when p is not NULL. The weights point into f's mapping: close f after m. */
static inline bn_status tu_model(const char *path, const bn_synth_params *p, const bn_pass_opts *po, bn_gguf *f,
                                 bn_model *m, bn_memplan *mp, bn_error *err) {
  if (p && bn_synth_write(p, path, err)) return err->code;
  if (bn_gguf_open(f, path, err)) return err->code;
  if (bn_import_gguf(f, m, err)) return bn_gguf_close(f), err->code;
  if (bn_pass_run_pipeline(&m->graph, po, mp, NULL, NULL, err)) return bn_model_free(m), bn_gguf_close(f), err->code;
  return BN_OK;
}

#endif
