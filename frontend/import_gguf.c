/* GGUF -> bn_model: hyperparameters, vocabulary and the graph, whose
 * weights point into the file's mapping. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "../ir/quant.h"
#include "hf.h"
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

bn_tensor_src bn_gguf_tensor_src(const bn_gguf *f) { return (bn_tensor_src){f->path, (void *)f, bn_gguf_src_find, 1}; }

/* The index of the first element of w that is NaN or infinite, or -1. Float types by their
 * exponent bits (a pass at memory speed), the rest dequantized in chunks. */
static int64_t first_nonfinite(const bn_value *w) {
  uint64_t n = (uint64_t)bn_shape_numel(&w->shape, 0);
  const uint8_t *d = w->data;
  if (w->dtype == BN_DT_F32 || w->dtype == BN_DT_F16 || w->dtype == BN_DT_BF16) {
    for (uint64_t i = 0; i < n; i++) {
      uint32_t b = 0;
      if (w->dtype == BN_DT_F32) memcpy(&b, d + 4 * i, 4), b = (b & 0x7f800000u) == 0x7f800000u;
      else {
        uint16_t h;
        memcpy(&h, d + 2 * i, 2);
        b = w->dtype == BN_DT_F16 ? (h & 0x7c00u) == 0x7c00u : (h & 0x7f80u) == 0x7f80u;
      }
      if (b) return (int64_t)i;
    }
    return -1;
  }
  float buf[4096];
  int64_t block = bn_dtype_table[w->dtype].block_elems > 0 ? bn_dtype_table[w->dtype].block_elems : 1;
  uint64_t chunk = 4096 / (uint64_t)block * (uint64_t)block;
  for (uint64_t at = 0; at < n; at += chunk) {
    uint64_t k = n - at < chunk ? n - at : chunk;
    bn_dequant(w->dtype, w->data, n, at, k, buf);
    for (uint64_t i = 0; i < k; i++)
      if (!isfinite(buf[i])) return (int64_t)(at + i);
  }
  return -1;
}

/* Norm, embedding and output weights are used as floats: NaN or infinity there would make
 * every logit NaN, so it is reported at import, naming the tensor and the element. */
static bn_status check_float_weights(const bn_graph *g, const char *path, bn_error *err) {
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *n = &g->nodes[i];
    if (n->op != BN_OP_RMSNORM && n->op != BN_OP_EMBED && n->op != BN_OP_OUTPUT_PROJ) continue;
    const bn_value *w = &g->values[n->in[1]];
    if (w->kind != BN_VAL_WEIGHT || !w->data || bn_dtype_table[w->dtype].ternary) continue;
    int64_t at = first_nonfinite(w);
    if (at >= 0)
      return bn_fail(err, BN_E_FORMAT, "%s: tensor %s: element %lld is NaN or infinite", path, w->name, (long long)at);
  }
  return BN_OK;
}

bn_status bn_source_import(const char *path, bn_source *s, bn_model *m, bn_error *err) {
  memset(s, 0, sizeof *s);
  struct stat sb;
  bn_status st;
  if (!stat(path, &sb) && S_ISDIR(sb.st_mode)) {
    if ((st = bn_hf_open(&s->hf, path, err))) return st;
    if ((st = bn_import_hf(s->hf, m, err))) bn_source_close(s);
    return st;
  }
  if ((st = bn_gguf_open(&s->gguf, path, err))) return st;
  if ((st = bn_import_gguf(&s->gguf, m, err))) bn_source_close(s);
  return st;
}

void bn_source_close(bn_source *s) {
  if (s->gguf.base) bn_gguf_close(&s->gguf);
  bn_hf_close(s->hf);
  memset(s, 0, sizeof *s);
}

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
  if ((st = bn_import_graph(&m->hp, &src, &m->graph, err)) || (st = check_float_weights(&m->graph, f->path, err)))
    bn_model_free(m);
  return st;
}
