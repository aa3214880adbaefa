/* The graph builder of the ternary decoders (bn_arch_info): "bitnet"
 * (bitnet_b1_58-large/-3B: SiLU gate) and "bitnet-b1.58"/"bitnet-25" (2B-4T:
 * relu² gate, GQA), with sub-norms before attn_output and ffn_down (the forward
 * pass of Hugging Face transformers' BitNet); "llama" and "qwen3" without them,
 * qwen3 with an RMSNorm per q/k head. All rotate NeoX-style (docs/import.md);
 * llama's interleaved q/k rows are put back in that order here. Tensors come from a
 * bn_tensor_src (a GGUF file, a Hugging Face directory, or shapes alone for `bnc ir --shape`). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/quant.h"
#include "import.h"

typedef struct {
  const bn_tensor_src *src;
  const bn_hparams *hp;
  const bn_arch_info *arch;
  bn_graph *g;
  bn_error *err;
  bn_status st;
} importer;

/* llama.cpp stores llama's q/k rows of a head as pairs (2j, 2j+1) rotating together; this copy
 * puts them back as (j, j + d/2), the NeoX order the rope op rotates. */
static bn_tensor_ref *uninterleave(importer *im, const char *name, bn_tensor_ref *t, bn_tensor_ref *out) {
  uint64_t rows = t->dims[1], d = (uint64_t)im->hp->head_dim, tail = t->dtype == BN_DT_I2_S ? 32 : 0;
  if (d % 2 || rows % d || t->nbytes < tail || (t->nbytes - tail) % rows) {
    im->st = bn_fail(im->err, BN_E_FORMAT, "%s: tensor '%s': %llu rows are not whole heads of %llu", im->src->name, name,
                     (unsigned long long)rows, (unsigned long long)d);
    return NULL;
  }
  uint64_t rb = (t->nbytes - tail) / rows;
  uint8_t *p = bn_graph_own(im->g, malloc(t->nbytes));
  if (!p) {
    im->st = bn_fail(im->err, BN_E_NOMEM, "out of memory");
    return NULL;
  }
  const uint8_t *src = t->data;
  for (uint64_t r = 0; r < rows; r++) { /* row h*d + a*d/2 + j comes from h*d + 2j + a */
    uint64_t h = r / d, a = r % d / (d / 2), j = r % (d / 2);
    memcpy(p + r * rb, src + (h * d + 2 * j + a) * rb, rb);
  }
  memcpy(p + rows * rb, src + rows * rb, tail); /* I2_S's scale */
  *out = *t;
  out->data = p;
  return out;
}

/* Adds weight `name` after checking it is [rows, cols] (cols innermost; rows 0 = 1-D) and of an allowed kind. */
enum { W_FLOAT, W_TERNARY, W_ANY_NONTERNARY };

static int weight(importer *im, const char *name, int64_t rows, int64_t cols, int kind) {
  if (im->st) return -1;
  bn_tensor_ref tr, *t = &tr;
  if (!im->src->find(im->src->ctx, name, t)) {
    im->st = bn_fail(im->err, BN_E_FORMAT, "%s: missing tensor '%s'", im->src->name, name);
    return -1;
  }
  int want_dims = rows ? 2 : 1;
  if ((int)t->n_dims != want_dims || t->dims[0] != (uint64_t)cols || (rows && t->dims[1] != (uint64_t)rows)) {
    char got[96], want[64];
    snprintf(got, sizeof got, "[%llu, %llu, %llu, %llu] (%u dims)", (unsigned long long)t->dims[0],
             (unsigned long long)t->dims[1], (unsigned long long)t->dims[2], (unsigned long long)t->dims[3], t->n_dims);
    if (rows) snprintf(want, sizeof want, "[%lld, %lld]", (long long)cols, (long long)rows);
    else snprintf(want, sizeof want, "[%lld]", (long long)cols);
    im->st = bn_fail(im->err, BN_E_FORMAT, "%s: tensor '%s' has shape %s, expected %s", im->src->name, name, got, want);
    return -1;
  }
  const bn_dtype_info *di = &bn_dtype_table[t->dtype];
  int ok = kind == W_TERNARY ? di->ternary
           : kind == W_FLOAT ? (t->dtype == BN_DT_F32 || t->dtype == BN_DT_F16 || t->dtype == BN_DT_BF16)
                             : !di->ternary;
  if (ok && kind == W_TERNARY && cols % bn_ternary_group(t->dtype, cols)) ok = 0;
  if (!ok) {
    im->st = bn_fail(im->err, BN_E_FORMAT, "%s: tensor '%s' has type %s, which is not allowed here%s", im->src->name, name,
                     di->name, kind == W_TERNARY ? " (need a ternary type with whole blocks per row)" : "");
    return -1;
  }
  if (t->dtype == BN_DT_I2_S && t->data) {
    float s = bn_i2s_scale(t->data, (t->nbytes - 32) * 4);
    if (!isnormal(s) || s <= 0) {
      im->st = bn_fail(im->err, BN_E_FORMAT,
                       "%s: tensor '%s': I2_S scale %g is not a positive normal float (a file from bitnet.cpp's "
                       "multi-threaded quantizer? re-quantize with one thread)", im->src->name, name, s);
      return -1;
    }
  }
  if ((t->dtype == BN_DT_Q2_0 || t->dtype == BN_DT_PQ2_0) && t->data) { /* code 3 is +2: not a trit */
    int64_t at = bn_q2_first_code3(t->dtype, t->data, (uint64_t)rows * (uint64_t)cols);
    if (at >= 0) {
      im->st = bn_fail(im->err, BN_E_UNSUPPORTED, "%s: tensor '%s': element %lld has code 3 (+2): not ternary", im->src->name,
                       name, (long long)at);
      return -1;
    }
  }
  if (rows && im->arch->interleaved_qk && im->src->gguf_order && t->data && (strstr(name, ".attn_q.") || strstr(name, ".attn_k.")))
    if (!(t = uninterleave(im, name, t, &tr))) return -1;
  int64_t d[2] = {rows ? rows : cols, cols};
  bn_shape s = bn_shape_make(rows ? 2 : 1, d);
  int id = bn_graph_add_weight(im->g, name, t->dtype, s, t->data, t->nbytes);
  if (id < 0) im->st = bn_fail(im->err, BN_E_NOMEM, "out of memory");
  return id;
}

static int node(importer *im, bn_op op, const char *name, int a, int b, int c, const double *attr) {
  if (im->st) return -1;
  int in[3] = {a, b, c};
  int n = c >= 0 ? 3 : b >= 0 ? 2 : 1;
  int id = bn_graph_add_node(im->g, op, name, in, n, attr, im->err);
  if (id < 0) im->st = im->err->code ? im->err->code : BN_E_INVALID;
  return id;
}

/* bitlinear over blk.L.<w>.weight, with the optional per-tensor blk.L.<w>.scale */
static int bitlinear(importer *im, int layer, const char *w, int x, int64_t n_out, int64_t n_in, const char *out) {
  char wn[96], sn[96];
  snprintf(wn, sizeof wn, "blk.%d.%s.weight", layer, w);
  snprintf(sn, sizeof sn, "blk.%d.%s.scale", layer, w);
  int wid = weight(im, wn, n_out, n_in, W_TERNARY);
  int sid = -1;
  bn_tensor_ref probe;
  if (im->src->find(im->src->ctx, sn, &probe)) sid = weight(im, sn, 0, 1, W_FLOAT);
  return node(im, BN_OP_BITLINEAR, out, x, wid, sid, NULL);
}

static int layer(importer *im, int L, int x) {
  const bn_hparams *hp = im->hp;
  const bn_arch_info *ar = im->arch;
  int64_t E = hp->n_embd, F = hp->n_ff, Eq = (int64_t)hp->head_dim * hp->n_head, Ekv = (int64_t)hp->head_dim * hp->n_head_kv;
  double eps[4] = {hp->eps}, head_eps[4] = {hp->eps, hp->head_dim};
  char nm[18][64], wn[6][64];
  const char *names[] = {"attn_in", "q", "k", "v", "q_rope", "k_rope", "attn", "attn_sub", "o", "x_attn",
                         "ffn_in", "gate", "up", "act", "gu", "ffn_sub", "q_norm", "k_norm"};
  for (int i = 0; i < 18; i++) snprintf(nm[i], sizeof nm[i], "l%d.%s", L, names[i]);
  const char *norms[] = {"attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm", "attn_q_norm", "attn_k_norm"};
  for (int i = 0; i < 6; i++) snprintf(wn[i], sizeof wn[i], "blk.%d.%s.weight", L, norms[i]);
  char out[64], down[64];
  snprintf(out, sizeof out, "l%d.out", L);
  snprintf(down, sizeof down, "l%d.down", L);

  int h = node(im, BN_OP_RMSNORM, nm[0], x, weight(im, wn[0], 0, E, W_FLOAT), -1, eps);
  int q = bitlinear(im, L, "attn_q", h, Eq, E, nm[1]);
  int k = bitlinear(im, L, "attn_k", h, Ekv, E, nm[2]);
  int v = bitlinear(im, L, "attn_v", h, Ekv, E, nm[3]);
  if (ar->qk_norm) { /* one RMSNorm per head, before the rotation */
    q = node(im, BN_OP_RMSNORM, nm[16], q, weight(im, wn[4], 0, hp->head_dim, W_FLOAT), -1, head_eps);
    k = node(im, BN_OP_RMSNORM, nm[17], k, weight(im, wn[5], 0, hp->head_dim, W_FLOAT), -1, head_eps);
  }
  double rq[4] = {hp->n_head, hp->head_dim, hp->n_rot, hp->rope_base};
  double rk[4] = {hp->n_head_kv, hp->head_dim, hp->n_rot, hp->rope_base};
  q = node(im, BN_OP_ROPE, nm[4], q, -1, -1, rq);
  k = node(im, BN_OP_ROPE, nm[5], k, -1, -1, rk);
  double at[4] = {L, hp->n_head, hp->n_head_kv, hp->head_dim};
  int a = node(im, BN_OP_ATTENTION, nm[6], q, k, v, at);
  if (ar->sub_norms) a = node(im, BN_OP_RMSNORM, nm[7], a, weight(im, wn[1], 0, Eq, W_FLOAT), -1, eps);
  int o = bitlinear(im, L, "attn_output", a, E, Eq, nm[8]);
  x = node(im, BN_OP_ADD, nm[9], x, o, -1, NULL);
  h = node(im, BN_OP_RMSNORM, nm[10], x, weight(im, wn[2], 0, E, W_FLOAT), -1, eps);
  int g = bitlinear(im, L, "ffn_gate", h, F, E, nm[11]);
  int u = bitlinear(im, L, "ffn_up", h, F, E, nm[12]);
  g = node(im, ar->relu2 ? BN_OP_RELU2 : BN_OP_SILU, nm[13], g, -1, -1, NULL);
  int m = node(im, BN_OP_MUL, nm[14], g, u, -1, NULL);
  if (ar->sub_norms) m = node(im, BN_OP_RMSNORM, nm[15], m, weight(im, wn[3], 0, F, W_FLOAT), -1, eps);
  int d = bitlinear(im, L, "ffn_down", m, E, F, down);
  return node(im, BN_OP_ADD, out, x, d, -1, NULL);
}

bn_status bn_import_graph(const bn_hparams *hp, const bn_tensor_src *src, bn_graph *g, bn_error *err) {
  const bn_arch_info *arch = bn_arch_find(hp->arch);
  if (!arch) return bn_fail(err, BN_E_UNSUPPORTED, "%s: architecture '%s' is not supported", src->name, hp->arch);
  bn_graph_init(g, hp->arch);
  importer im = {src, hp, arch, g, err, BN_OK};
  int64_t T = BN_DIM_T;
  int tokens = bn_graph_add_input(g, "tokens", BN_DT_I32, bn_shape_make(1, &T));
  int emb = weight(&im, "token_embd.weight", hp->n_vocab, hp->n_embd, W_ANY_NONTERNARY);
  int x = node(&im, BN_OP_EMBED, "x0", tokens, emb, -1, NULL);
  for (int L = 0; L < hp->n_layer; L++) x = layer(&im, L, x);
  double eps[4] = {hp->eps};
  x = node(&im, BN_OP_RMSNORM, "out_norm", x, weight(&im, "output_norm.weight", 0, hp->n_embd, W_FLOAT), -1, eps);
  bn_tensor_ref probe;
  int wout = src->find(src->ctx, "output.weight", &probe)
                 ? weight(&im, "output.weight", hp->n_vocab, hp->n_embd, W_ANY_NONTERNARY)
                 : emb;
  int logits = node(&im, BN_OP_OUTPUT_PROJ, "logits", x, wout, -1, NULL);
  if (!im.st && bn_graph_mark_output(g, logits)) im.st = bn_fail(err, BN_E_NOMEM, "out of memory");
  if (!im.st) im.st = bn_graph_verify(g, err);
  if (im.st) bn_graph_free(g);
  return im.st;
}
