/* Model importers: a validated GGUF file -> bn_model (graph, hparams, vocab).
 * Weights in the graph point into the file's mapping: keep it open. */
#ifndef BN_IMPORT_H
#define BN_IMPORT_H

#include "../ir/model.h"
#include "gguf.h"

/* Where the graph builder finds tensors (a GGUF file, or shapes alone). */
typedef struct {
  bn_dtype dtype;
  uint32_t n_dims;
  uint64_t dims[4]; /* innermost first, as GGUF stores them */
  const void *data; /* NULL: shape only */
  uint64_t nbytes;
} bn_tensor_ref;

typedef struct {
  const char *name; /* for messages: the file */
  void *ctx;
  int (*find)(void *ctx, const char *tensor, bn_tensor_ref *out); /* 0 if absent */
  int gguf_order; /* llama's q/k rows as llama.cpp's converter writes them (bn_arch_info) */
} bn_tensor_src;

bn_status bn_import_graph(const bn_hparams *hp, const bn_tensor_src *src, bn_graph *g, bn_error *err);
/* The tensors of an open GGUF file as a source. */
bn_tensor_src bn_gguf_tensor_src(const bn_gguf *f);
int bn_gguf_src_find(void *gguf, const char *name, bn_tensor_ref *out);

/* What the graph builder needs to know of an architecture: "bitnet" (SiLU FFN), "bitnet-b1.58" /
 * "bitnet-25" (relu²), both with sub-norms; "llama" (q/k rows interleaved for rotation, as
 * llama.cpp's converter stores them) and "qwen3" (per-head q/k RMSNorm). */
typedef struct {
  const char *name;
  int relu2, sub_norms, qk_norm, interleaved_qk; /* interleaved_qk: in GGUF files */
} bn_arch_info;
const bn_arch_info *bn_arch_find(const char *arch); /* NULL if unsupported */
int bn_arch_is_relu2(const char *arch);

bn_status bn_import_gguf(const bn_gguf *f, bn_model *m, bn_error *err);
bn_status bn_import_hparams(const bn_gguf *f, bn_hparams *hp, bn_error *err);
bn_status bn_import_vocab(const bn_gguf *f, bn_vocab *v, bn_error *err);
int bn_vocab_pre_from_name(const char *name); /* a bn_vocab_pre, or -1 */

/* A model's file (GGUF) or Hugging Face directory, open while its model is used. */
typedef struct {
  bn_gguf gguf;
  struct bn_hf *hf;
} bn_source;
bn_status bn_source_import(const char *path, bn_source *s, bn_model *m, bn_error *err);
void bn_source_close(bn_source *s); /* also on a zeroed source */

#endif
