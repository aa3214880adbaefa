/* Synthetic models. Weights are random ternary codes (about a third zeros)
 * with one scale per tensor, scaled so activations stay near unit size;
 * norms are 1 plus noise; the embedding is normal noise. Deterministic in
 * the seed: the same parameters give a byte-identical file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/quant.h"
#include "../ir/rng.h"
#include "synth.h"

static const bn_synth_shape SHAPES[] = {
    {"tiny", "bitnet", 256, 2, 4, 4, 512, 512, 256, 10000.0f},
    {"large", "bitnet", 1536, 24, 16, 16, 4096, 32002, 2048, 10000.0f},
    {"3b", "bitnet", 3200, 26, 32, 32, 8640, 32002, 2048, 10000.0f},
    {"2b4t", "bitnet-b1.58", 2560, 30, 20, 5, 6912, 128256, 4096, 500000.0f},
};

const bn_synth_shape *bn_synth_find_shape(const char *name) {
  for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
    if (!strcmp(SHAPES[i].name, name)) return &SHAPES[i];
  return NULL;
}

const char *bn_synth_shape_names(void) { return "tiny, large, 3b, 2b4t"; }

typedef struct {
  bn_gguf_writer *w;
  void **bufs;
  int n_bufs, cap_bufs;
  uint64_t rng;
  int8_t *trit;
} synth;

static void *keep(synth *s, size_t n) {
  if (s->n_bufs == s->cap_bufs) {
    s->cap_bufs = s->cap_bufs ? s->cap_bufs * 2 : 256;
    void **b = realloc(s->bufs, (size_t)s->cap_bufs * sizeof *b);
    if (!b) return NULL;
    s->bufs = b;
  }
  void *p = malloc(n ? n : 1);
  if (p) s->bufs[s->n_bufs++] = p;
  return p;
}

static double normal(uint64_t *r) {
  double u = bn_rng_unit(r) + 1e-12, v = bn_rng_unit(r);
  return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* A float tensor of type t from n values; returns 0 on OOM. */
static int float_tensor(synth *s, const char *name, bn_dtype t, int nd, const uint64_t *dims, const float *v,
                        uint64_t n) {
  uint64_t nb = bn_dtype_nbytes(t, n);
  uint8_t *o = keep(s, nb);
  if (!o) return 0;
  if (t == BN_DT_F32) memcpy(o, v, n * 4);
  else if (t == BN_DT_F16)
    for (uint64_t i = 0; i < n; i++) {
      uint16_t h = bn_float_to_half(v[i]);
      memcpy(o + 2 * i, &h, 2);
    }
  else /* Q8_0 */
    for (uint64_t b = 0; b < n / 32; b++) {
      float m = 0;
      for (int k = 0; k < 32; k++) m = fmaxf(m, fabsf(v[b * 32 + k]));
      float d = m / 127;
      uint16_t h = bn_float_to_half(d);
      memcpy(o + b * 34, &h, 2);
      for (int k = 0; k < 32; k++) o[b * 34 + 2 + k] = (uint8_t)(int8_t)(d ? lrintf(v[b * 32 + k] / d) : 0);
    }
  bn_gguf_w_tensor(s->w, name, (uint32_t)bn_dtype_table[t].ggml_id, nd, dims, o, nb);
  return 1;
}

static int norm(synth *s, const char *name, int64_t n) {
  float *v = keep(s, (size_t)n * 4);
  if (!v) return 0;
  for (int64_t i = 0; i < n; i++) v[i] = (float)(1 + 0.1 * normal(&s->rng));
  uint64_t d = (uint64_t)n;
  return float_tensor(s, name, BN_DT_F32, 1, &d, v, d);
}

static int ternary(synth *s, const char *name, bn_dtype t, int64_t k, int64_t n) {
  uint64_t cnt = (uint64_t)(k * n);
  for (uint64_t i = 0; i < cnt; i++) s->trit[i] = (int8_t)(bn_rng_next(&s->rng) % 3) - 1;
  uint8_t *o = keep(s, bn_dtype_nbytes(t, cnt));
  if (!o) return 0;
  /* |y| ~ sqrt(2k/3) * rms(x) before the scale: bring it back to ~rms(x). */
  float scale = (float)(1.0 / sqrt(2.0 * k / 3.0) * (0.8 + 0.4 * bn_rng_unit(&s->rng)));
  bn_ternary_encode(t, s->trit, cnt, scale, o);
  uint64_t dims[2] = {(uint64_t)k, (uint64_t)n};
  bn_gguf_w_tensor(s->w, name, (uint32_t)bn_dtype_table[t].ggml_id, 2, dims, o, bn_dtype_nbytes(t, cnt));
  return 1;
}

static bn_status check(const bn_synth_params *p, const bn_synth_shape *sh, const char *arch, bn_error *err) {
  if (!bn_dtype_table[p->ternary].ternary)
    return bn_fail(err, BN_E_INVALID, "synth: --type %s is not ternary (tq1_0, tq2_0, i2_s)", bn_dtype_table[p->ternary].name);
  if (p->embd != BN_DT_F32 && p->embd != BN_DT_F16 && p->embd != BN_DT_Q8_0)
    return bn_fail(err, BN_E_UNSUPPORTED, "synth: embedding type %s (f32, f16, q8_0)", bn_dtype_table[p->embd].name);
  if (strcmp(arch, "bitnet") && strcmp(arch, "bitnet-b1.58") && strcmp(arch, "bitnet-25"))
    return bn_fail(err, BN_E_UNSUPPORTED, "synth: arch '%s' (bitnet, bitnet-b1.58, bitnet-25)", arch);
  int64_t g = bn_dtype_table[p->ternary].block_elems;
  if (p->ternary != BN_DT_I2_S && (sh->n_embd % g || sh->n_ff % g))
    return bn_fail(err, BN_E_UNSUPPORTED, "synth: shape %s has rows of %d and %d, not whole %s blocks of %lld (use i2_s)",
                   sh->name, sh->n_embd, sh->n_ff, bn_dtype_table[p->ternary].name, (long long)g);
  return BN_OK;
}

bn_status bn_synth_write(const bn_synth_params *p, const char *path, bn_error *err) {
  const bn_synth_shape *sh = p->shape;
  const char *arch = p->arch ? p->arch : sh->arch;
  bn_status st = check(p, sh, arch, err);
  if (st) return st;
  synth s = {bn_gguf_writer_new(), NULL, 0, 0, p->seed ? p->seed : 1, NULL};
  int64_t E = sh->n_embd, F = sh->n_ff, hd = E / sh->n_head, Ekv = hd * sh->n_head_kv;
  s.trit = malloc((size_t)(E * (F > E ? F : E)));
  if (!s.w || !s.trit) {
    st = bn_fail(err, BN_E_NOMEM, "synth: out of memory");
    goto done;
  }
  char k[128];
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", arch, suffix), k)
  bn_gguf_w_str(s.w, "general.architecture", arch);
  snprintf(k, sizeof k, "bnc-synth-%s-%s", sh->name, bn_dtype_table[p->ternary].name);
  bn_gguf_w_str(s.w, "general.name", k);
  bn_gguf_w_u32(s.w, KEY("context_length"), (uint32_t)sh->n_ctx);
  bn_gguf_w_u32(s.w, KEY("embedding_length"), (uint32_t)E);
  bn_gguf_w_u32(s.w, KEY("block_count"), (uint32_t)sh->n_layer);
  bn_gguf_w_u32(s.w, KEY("feed_forward_length"), (uint32_t)F);
  bn_gguf_w_u32(s.w, KEY("attention.head_count"), (uint32_t)sh->n_head);
  bn_gguf_w_u32(s.w, KEY("attention.head_count_kv"), (uint32_t)sh->n_head_kv);
  bn_gguf_w_f32(s.w, KEY("rope.freq_base"), sh->rope_base);
  bn_gguf_w_f32(s.w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
  bn_gguf_w_u32(s.w, KEY("rope.dimension_count"), (uint32_t)hd);
  bn_gguf_w_u32(s.w, KEY("vocab_size"), (uint32_t)sh->n_vocab);
#undef KEY
  if ((st = bn_synth_vocab(s.w, strcmp(arch, "bitnet") != 0, sh->n_vocab, err))) goto done;
  {
    uint64_t n = (uint64_t)E * (uint64_t)sh->n_vocab, dims[2] = {(uint64_t)E, (uint64_t)sh->n_vocab};
    float *v = malloc(n * sizeof *v);
    if (!v) {
      st = bn_fail(err, BN_E_NOMEM, "synth: out of memory");
      goto done;
    }
    for (uint64_t i = 0; i < n; i++) v[i] = (float)(normal(&s.rng) * 2 / sqrt((double)E)); /* logits of std ~2 */
    int ok = float_tensor(&s, "token_embd.weight", p->embd, 2, dims, v, n) && norm(&s, "output_norm.weight", E);
    free(v);
    if (!ok) goto oom;
  }
  for (int L = 0; L < sh->n_layer; L++) {
    char nm[96];
#define T(fmt) (snprintf(nm, sizeof nm, "blk.%d." fmt, L), nm)
    if (!norm(&s, T("attn_norm.weight"), E) || !norm(&s, T("attn_sub_norm.weight"), E) ||
        !norm(&s, T("ffn_norm.weight"), E) || !norm(&s, T("ffn_sub_norm.weight"), F) ||
        !ternary(&s, T("attn_q.weight"), p->ternary, E, E) || !ternary(&s, T("attn_k.weight"), p->ternary, E, Ekv) ||
        !ternary(&s, T("attn_v.weight"), p->ternary, E, Ekv) ||
        !ternary(&s, T("attn_output.weight"), p->ternary, E, E) ||
        !ternary(&s, T("ffn_gate.weight"), p->ternary, E, F) || !ternary(&s, T("ffn_up.weight"), p->ternary, E, F) ||
        !ternary(&s, T("ffn_down.weight"), p->ternary, F, E))
      goto oom;
#undef T
    if (p->progress) fprintf(stderr, "\rsynth %s: layer %d/%d", sh->name, L + 1, sh->n_layer);
  }
  if (p->progress) fprintf(stderr, "\rsynth %s: writing %s\n", sh->name, path);
  st = bn_gguf_writer_write(s.w, path, err);
  goto done;
oom:
  st = bn_fail(err, BN_E_NOMEM, "synth: out of memory");
done:
  for (int i = 0; i < s.n_bufs; i++) free(s.bufs[i]);
  free(s.bufs);
  free(s.trit);
  bn_gguf_writer_free(s.w);
  return st;
}
