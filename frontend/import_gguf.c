/* GGUF -> bn_model: hyperparameters, vocabulary and the graph, whose
 * weights point into the file's mapping. */
#include <string.h>

#include "import.h"

int bn_gguf_src_find(void *ctx, const char *name, bn_tensor_ref *out) {
  const bn_gguf_tensor *t = bn_gguf_tensor_find(ctx, name);
  if (!t) return 0;
  out->dtype = t->dtype;
  out->n_dims = t->n_dims;
  memcpy(out->dims, t->dims, sizeof out->dims);
  out->data = t->data;
  out->nbytes = t->nbytes;
  return 1;
}

bn_tensor_src bn_gguf_tensor_src(const bn_gguf *f) { return (bn_tensor_src){f->path, (void *)f, bn_gguf_src_find}; }

bn_status bn_import_gguf(const bn_gguf *f, bn_model *m, bn_error *err) {
  memset(m, 0, sizeof *m);
  bn_status st = bn_import_hparams(f, &m->hp, err);
  if (st) return st;
  if ((st = bn_import_vocab(f, &m->vocab, err))) return st;
  if (m->vocab.n_tokens != m->hp.n_vocab) {
    bn_model_free(m);
    return bn_fail(err, BN_E_FORMAT, "%s: tokenizer.ggml.tokens has %d entries but the model has %d", f->path,
                   m->vocab.n_tokens, m->hp.n_vocab);
  }
  bn_tensor_src src = bn_gguf_tensor_src(f);
  if ((st = bn_import_graph(&m->hp, &src, &m->graph, err))) bn_model_free(m);
  return st;
}
