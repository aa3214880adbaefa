/* The BitNet b1.58 importers: "bitnet" (bitnet_b1_58-large/-3B: SiLU gate)
 * and "bitnet-b1.58"/"bitnet-25" (2B-4T: relu² gate, GQA). Both use NeoX
 * RoPE and sub-norms before attn_output and ffn_down. The forward pass is
 * spelled out in docs/ and ../shared/spec/bitnet-gguf.md §3. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../ir/quant.h"
#include "import.h"

typedef struct {
  const bn_gguf *f;
  bn_model *m;
  bn_error *err;
  bn_status st;
} importer;

static int act_is_relu2(const char *arch) { return !strcmp(arch, "bitnet-b1.58") || !strcmp(arch, "bitnet-25"); }

static bn_status get_int(const bn_gguf *f, const char *arch, const char *key, int *out, int required, long max,
                         bn_error *err) {
  char k[128];
  snprintf(k, sizeof k, "%s.%s", arch, key);
  if (!required && !bn_gguf_find(f, k)) return BN_OK;
  uint64_t v;
  bn_status st = bn_gguf_get_u64(f, k, &v, err);
  if (st) return st;
  if (v == 0 || v > (uint64_t)max)
    return bn_fail(err, BN_E_FORMAT, "%s: %s = %llu is out of range (1..%ld)", f->path, k, (unsigned long long)v, max);
  *out = (int)v;
  return BN_OK;
}

static bn_status get_float(const bn_gguf *f, const char *arch, const char *key, float *out, bn_error *err) {
  char k[128];
  snprintf(k, sizeof k, "%s.%s", arch, key);
  bn_status st = bn_gguf_get_f32(f, k, out, err);
  if (st) return st;
  if (!(*out > 0) || !isfinite(*out)) return bn_fail(err, BN_E_FORMAT, "%s: %s = %g must be positive", f->path, k, *out);
  return BN_OK;
}

bn_status bn_import_hparams(const bn_gguf *f, bn_hparams *hp, bn_error *err) {
  memset(hp, 0, sizeof *hp);
  bn_status st = bn_gguf_get_str(f, "general.architecture", hp->arch, sizeof hp->arch, err);
  if (st) return st;
  const char *a = hp->arch;
  if (strcmp(a, "bitnet") && !act_is_relu2(a))
    return bn_fail(err, BN_E_UNSUPPORTED, "%s: general.architecture '%s' is not supported (bitnet, bitnet-b1.58, bitnet-25)",
                   f->path, a);
  if ((st = get_int(f, a, "context_length", &hp->n_ctx, 1, 1 << 20, err)) ||
      (st = get_int(f, a, "embedding_length", &hp->n_embd, 1, 1 << 16, err)) ||
      (st = get_int(f, a, "block_count", &hp->n_layer, 1, 1024, err)) ||
      (st = get_int(f, a, "feed_forward_length", &hp->n_ff, 1, 1 << 18, err)) ||
      (st = get_int(f, a, "attention.head_count", &hp->n_head, 1, 4096, err)))
    return st;
  hp->n_head_kv = hp->n_head;
  if ((st = get_int(f, a, "attention.head_count_kv", &hp->n_head_kv, 0, 4096, err)) ||
      (st = get_float(f, a, "rope.freq_base", &hp->rope_base, err)) ||
      (st = get_float(f, a, "attention.layer_norm_rms_epsilon", &hp->eps, err)))
    return st;
  if (hp->n_embd % hp->n_head || hp->n_head % hp->n_head_kv)
    return bn_fail(err, BN_E_FORMAT, "%s: embedding_length %d, head_count %d, head_count_kv %d do not divide", f->path,
                   hp->n_embd, hp->n_head, hp->n_head_kv);
  hp->head_dim = hp->n_embd / hp->n_head;
  hp->n_rot = hp->head_dim;
  if ((st = get_int(f, a, "rope.dimension_count", &hp->n_rot, 0, 1 << 16, err))) return st;
  if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
    return bn_fail(err, BN_E_FORMAT, "%s: %s.rope.dimension_count = %d (head dim %d)", f->path, a, hp->n_rot, hp->head_dim);
  const bn_gguf_tensor *emb = bn_gguf_tensor_find(f, "token_embd.weight");
  if (!emb) return bn_fail(err, BN_E_FORMAT, "%s: missing tensor 'token_embd.weight'", f->path);
  hp->n_vocab = (int)(emb->n_dims == 2 && emb->dims[1] < (1u << 24) ? emb->dims[1] : 0);
  int nv = hp->n_vocab;
  if ((st = get_int(f, a, "vocab_size", &nv, 0, 1 << 24, err))) return st;
  if (nv != hp->n_vocab)
    return bn_fail(err, BN_E_FORMAT, "%s: %s.vocab_size = %d but token_embd.weight has %d rows", f->path, a, nv, hp->n_vocab);
  return BN_OK;
}

/* Adds weight `name` after checking it is [rows, cols] (cols innermost; rows 0 = 1-D) and of an allowed kind. */
enum { W_FLOAT, W_TERNARY, W_ANY_NONTERNARY };

static int weight(importer *im, const char *name, int64_t rows, int64_t cols, int kind) {
  if (im->st) return -1;
  const bn_gguf_tensor *t = bn_gguf_tensor_find(im->f, name);
  if (!t) {
    im->st = bn_fail(im->err, BN_E_FORMAT, "%s: missing tensor '%s'", im->f->path, name);
    return -1;
  }
  int want_dims = rows ? 2 : 1;
  if ((int)t->n_dims != want_dims || t->dims[0] != (uint64_t)cols || (rows && t->dims[1] != (uint64_t)rows)) {
    char got[96], want[64];
    snprintf(got, sizeof got, "[%llu, %llu, %llu, %llu] (%u dims)", (unsigned long long)t->dims[0],
             (unsigned long long)t->dims[1], (unsigned long long)t->dims[2], (unsigned long long)t->dims[3], t->n_dims);
    if (rows) snprintf(want, sizeof want, "[%lld, %lld]", (long long)cols, (long long)rows);
    else snprintf(want, sizeof want, "[%lld]", (long long)cols);
    im->st = bn_fail(im->err, BN_E_FORMAT, "%s: tensor '%s' has shape %s, expected %s", im->f->path, name, got, want);
    return -1;
  }
  const bn_dtype_info *di = &bn_dtype_table[t->dtype];
  int ok = kind == W_TERNARY ? di->ternary
           : kind == W_FLOAT ? (t->dtype == BN_DT_F32 || t->dtype == BN_DT_F16 || t->dtype == BN_DT_BF16)
                             : !di->ternary;
  if (ok && kind == W_TERNARY && cols % bn_ternary_group(t->dtype, cols)) ok = 0;
  if (!ok) {
    im->st = bn_fail(im->err, BN_E_FORMAT, "%s: tensor '%s' has type %s, which is not allowed here%s", im->f->path, name,
                     di->name, kind == W_TERNARY ? " (need a ternary type with whole blocks per row)" : "");
    return -1;
  }
  if (t->dtype == BN_DT_I2_S) {
    float s = bn_i2s_scale(t->data, t->nelems);
    if (!isnormal(s) || s <= 0) {
      im->st = bn_fail(im->err, BN_E_FORMAT,
                       "%s: tensor '%s': I2_S scale %g is not a positive normal float (a file from bitnet.cpp's "
                       "multi-threaded quantizer? re-quantize with one thread)", im->f->path, name, s);
      return -1;
    }
  }
  int64_t d[2] = {rows ? rows : cols, cols};
  bn_shape s = bn_shape_make(rows ? 2 : 1, d);
  int id = bn_graph_add_weight(&im->m->graph, name, t->dtype, s, t->data, t->nbytes);
  if (id < 0) im->st = bn_fail(im->err, BN_E_NOMEM, "out of memory");
  return id;
}

static int node(importer *im, bn_op op, const char *name, int a, int b, int c, const double *attr) {
  if (im->st) return -1;
  int in[3] = {a, b, c};
  int n = c >= 0 ? 3 : b >= 0 ? 2 : 1;
  int id = bn_graph_add_node(&im->m->graph, op, name, in, n, attr, im->err);
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
  if (bn_gguf_tensor_find(im->f, sn)) sid = weight(im, sn, 0, 1, W_FLOAT);
  return node(im, BN_OP_BITLINEAR, out, x, wid, sid, NULL);
}

static int layer(importer *im, int L, int x) {
  const bn_hparams *hp = &im->m->hp;
  int64_t E = hp->n_embd, F = hp->n_ff, Ekv = (int64_t)hp->head_dim * hp->n_head_kv;
  double eps[4] = {hp->eps};
  char nm[16][64], wn[4][64];
  const char *names[] = {"attn_in", "q", "k", "v", "q_rope", "k_rope", "attn", "attn_sub", "o", "x_attn",
                         "ffn_in", "gate", "up", "act", "gu", "ffn_sub"};
  for (int i = 0; i < 16; i++) snprintf(nm[i], sizeof nm[i], "l%d.%s", L, names[i]);
  const char *norms[] = {"attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm"};
  for (int i = 0; i < 4; i++) snprintf(wn[i], sizeof wn[i], "blk.%d.%s.weight", L, norms[i]);
  char out[64], down[64];
  snprintf(out, sizeof out, "l%d.out", L);
  snprintf(down, sizeof down, "l%d.down", L);

  int h = node(im, BN_OP_RMSNORM, nm[0], x, weight(im, wn[0], 0, E, W_FLOAT), -1, eps);
  int q = bitlinear(im, L, "attn_q", h, E, E, nm[1]);
  int k = bitlinear(im, L, "attn_k", h, Ekv, E, nm[2]);
  int v = bitlinear(im, L, "attn_v", h, Ekv, E, nm[3]);
  double rq[4] = {hp->n_head, hp->head_dim, hp->n_rot, hp->rope_base};
  double rk[4] = {hp->n_head_kv, hp->head_dim, hp->n_rot, hp->rope_base};
  q = node(im, BN_OP_ROPE, nm[4], q, -1, -1, rq);
  k = node(im, BN_OP_ROPE, nm[5], k, -1, -1, rk);
  double at[4] = {L, hp->n_head, hp->n_head_kv, hp->head_dim};
  int a = node(im, BN_OP_ATTENTION, nm[6], q, k, v, at);
  a = node(im, BN_OP_RMSNORM, nm[7], a, weight(im, wn[1], 0, E, W_FLOAT), -1, eps);
  int o = bitlinear(im, L, "attn_output", a, E, E, nm[8]);
  x = node(im, BN_OP_ADD, nm[9], x, o, -1, NULL);
  h = node(im, BN_OP_RMSNORM, nm[10], x, weight(im, wn[2], 0, E, W_FLOAT), -1, eps);
  int g = bitlinear(im, L, "ffn_gate", h, F, E, nm[11]);
  int u = bitlinear(im, L, "ffn_up", h, F, E, nm[12]);
  g = node(im, act_is_relu2(hp->arch) ? BN_OP_RELU2 : BN_OP_SILU, nm[13], g, -1, -1, NULL);
  int m = node(im, BN_OP_MUL, nm[14], g, u, -1, NULL);
  m = node(im, BN_OP_RMSNORM, nm[15], m, weight(im, wn[3], 0, F, W_FLOAT), -1, eps);
  int d = bitlinear(im, L, "ffn_down", m, E, F, down);
  return node(im, BN_OP_ADD, out, x, d, -1, NULL);
}

bn_status bn_import_gguf(const bn_gguf *f, bn_model *m, bn_error *err) {
  memset(m, 0, sizeof *m);
  bn_status st = bn_import_hparams(f, &m->hp, err);
  if (st) return st;
  if ((st = bn_import_vocab(f, &m->vocab, err))) return st;
  const bn_hparams *hp = &m->hp;
  if (m->vocab.n_tokens != hp->n_vocab) {
    bn_model_free(m);
    return bn_fail(err, BN_E_FORMAT, "%s: tokenizer.ggml.tokens has %d entries but the model has %d", f->path,
                   m->vocab.n_tokens, hp->n_vocab);
  }
  bn_graph_init(&m->graph, hp->arch);
  importer im = {f, m, err, BN_OK};
  int64_t T = BN_DIM_T;
  int tokens = bn_graph_add_input(&m->graph, "tokens", BN_DT_I32, bn_shape_make(1, &T));
  int emb = weight(&im, "token_embd.weight", hp->n_vocab, hp->n_embd, W_ANY_NONTERNARY);
  int x = node(&im, BN_OP_EMBED, "x0", tokens, emb, -1, NULL);
  for (int L = 0; L < hp->n_layer; L++) x = layer(&im, L, x);
  double eps[4] = {hp->eps};
  x = node(&im, BN_OP_RMSNORM, "out_norm", x, weight(&im, "output_norm.weight", 0, hp->n_embd, W_FLOAT), -1, eps);
  int wout = bn_gguf_tensor_find(f, "output.weight")
                 ? weight(&im, "output.weight", hp->n_vocab, hp->n_embd, W_ANY_NONTERNARY)
                 : emb;
  int logits = node(&im, BN_OP_OUTPUT_PROJ, "logits", x, wout, -1, NULL);
  if (!im.st && bn_graph_mark_output(&m->graph, logits)) im.st = bn_fail(err, BN_E_NOMEM, "out of memory");
  if (!im.st) im.st = bn_graph_verify(&m->graph, err);
  if (im.st) bn_model_free(m);
  return im.st;
}
