/* Model importers: a validated GGUF file -> bn_model (graph, hparams, vocab).
 * Weights in the graph point into the file's mapping: keep it open. */
#ifndef BN_IMPORT_H
#define BN_IMPORT_H

#include "../ir/model.h"
#include "gguf.h"

/* Architectures: "bitnet" (SiLU FFN) and "bitnet-b1.58" / "bitnet-25" (relu²). */
bn_status bn_import_gguf(const bn_gguf *f, bn_model *m, bn_error *err);
bn_status bn_import_hparams(const bn_gguf *f, bn_hparams *hp, bn_error *err);
bn_status bn_import_vocab(const bn_gguf *f, bn_vocab *v, bn_error *err);

#endif
