/* Synthetic models. Weights are random ternary codes (about a third zeros)
 * with one scale per tensor (or per 256-block), scaled so activations stay near unit size;
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
    {"tiny", "bitnet", 256, 2, 4, 2, 512, 512, 256, 10000.0f}, /* GQA, to exercise it */
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
  int group_scales;
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

static int norm(synth *s, const char *name, const bn_tensor_ref *t) {
  uint64_t n = t->dims[0];
  float *v = keep(s, (size_t)n * 4);
  if (!v) return 0;
  for (uint64_t i = 0; i < n; i++) v[i] = (float)(1 + 0.1 * normal(&s->rng));
  return float_tensor(s, name, BN_DT_F32, 1, t->dims, v, n);
}

static int ternary(synth *s, const char *name, const bn_tensor_ref *t) {
  uint64_t k = t->dims[0], cnt = t->dims[0] * t->dims[1];
  for (uint64_t i = 0; i < cnt; i++) s->trit[i] = (int8_t)(bn_rng_next(&s->rng) % 3) - 1;
  uint8_t *o = keep(s, bn_dtype_nbytes(t->dtype, cnt));
  if (!o) return 0;
  /* |y| ~ sqrt(2k/3) * rms(x) before the scale: bring it back to ~rms(x). */
  float scale = (float)(1.0 / sqrt(2.0 * (double)k / 3.0) * (0.8 + 0.4 * bn_rng_unit(&s->rng)));
  bn_ternary_encode(t->dtype, s->trit, cnt, scale, o);
  if (s->group_scales) { /* each block's f16 d (Q2_0's first, TQ's last two bytes) times 0.75..1.25 */
    uint64_t bb = (uint64_t)bn_dtype_table[t->dtype].block_bytes, be = (uint64_t)bn_dtype_table[t->dtype].block_elems;
    uint64_t at = t->dtype == BN_DT_Q2_0 || t->dtype == BN_DT_PQ2_0 ? 0 : bb - 2;
    for (uint64_t b = 0; b < cnt / be; b++) {
      uint16_t h = bn_float_to_half(scale * (float)(0.75 + 0.5 * bn_rng_unit(&s->rng)));
      memcpy(o + b * bb + at, &h, 2);
    }
  }
  bn_gguf_w_tensor(s->w, name, (uint32_t)bn_dtype_table[t->dtype].ggml_id, 2, t->dims, o,
                   bn_dtype_nbytes(t->dtype, cnt));
  return 1;
}

/* Per-layer tensors: name suffix, then dims[0] (K) and dims[1] (N) as
 * E, F, Ekv (kv width) or 0 (1-D), and whether it is ternary. */
enum { D_NONE, D_E, D_F, D_KV, D_HEAD };
static const struct {
  const char *suffix;
  int k, n, ternary;
} LAYER_TENSORS[] = {
    {"attn_norm.weight", D_E, D_NONE, 0},   {"attn_sub_norm.weight", D_E, D_NONE, 0},
    {"ffn_norm.weight", D_E, D_NONE, 0},    {"ffn_sub_norm.weight", D_F, D_NONE, 0},
    {"attn_q.weight", D_E, D_E, 1},         {"attn_k.weight", D_E, D_KV, 1},
    {"attn_v.weight", D_E, D_KV, 1},        {"attn_output.weight", D_E, D_E, 1},
    {"ffn_gate.weight", D_E, D_F, 1},       {"ffn_up.weight", D_E, D_F, 1},
    {"ffn_down.weight", D_F, D_E, 1},       {"attn_q_norm.weight", D_HEAD, D_NONE, 0},
    {"attn_k_norm.weight", D_HEAD, D_NONE, 0},
};
enum { N_LAYER_TENSORS = sizeof LAYER_TENSORS / sizeof LAYER_TENSORS[0] };

static uint64_t dim_of(const bn_synth_shape *sh, int d) {
  return d == D_E ? (uint64_t)sh->n_embd : d == D_F ? (uint64_t)sh->n_ff
         : d == D_KV ? (uint64_t)(sh->n_embd / sh->n_head * sh->n_head_kv) : d == D_HEAD ? (uint64_t)(sh->n_embd / sh->n_head) : 1;
}

/* Whether the arch has layer tensor i: sub-norms (BitNet), per-head q/k norms (qwen3). */
static int has_tensor(const char *arch, int i) {
  const bn_arch_info *a = bn_arch_find(arch);
  const char *s = LAYER_TENSORS[i].suffix;
  if (strstr(s, "sub_norm")) return a->sub_norms;
  if (strstr(s, "_q_norm") || strstr(s, "_k_norm")) return a->qk_norm;
  return 1;
}

/* The tensor `name` of a synth model: its type and dims (no data). */
static int synth_find(void *ctx, const char *name, bn_tensor_ref *out) {
  const bn_synth_params *p = ctx;
  const bn_synth_shape *sh = p->shape;
  memset(out, 0, sizeof *out);
  out->n_dims = 1;
  out->dims[0] = (uint64_t)sh->n_embd;
  out->dims[1] = out->dims[2] = out->dims[3] = 1;
  out->dtype = BN_DT_F32;
  if (!strcmp(name, "output_norm.weight")) return 1;
  if (!strcmp(name, "token_embd.weight")) {
    out->dtype = p->embd;
    out->n_dims = 2;
    out->dims[1] = (uint64_t)sh->n_vocab;
    return 1;
  }
  int layer, len = 0;
  if (sscanf(name, "blk.%d.%n", &layer, &len) != 1 || !len || layer < 0 || layer >= sh->n_layer) return 0;
  for (int i = 0; i < N_LAYER_TENSORS; i++)
    if (!strcmp(name + len, LAYER_TENSORS[i].suffix) && has_tensor(bn_synth_arch(p), i)) {
      out->dims[0] = dim_of(sh, LAYER_TENSORS[i].k);
      if (LAYER_TENSORS[i].ternary) {
        out->n_dims = 2;
        out->dims[1] = dim_of(sh, LAYER_TENSORS[i].n);
        out->dtype = p->ternary;
      }
      return 1;
    }
  return 0;
}

const char *bn_synth_arch(const bn_synth_params *p) { return p->arch ? p->arch : p->shape->arch; }

void bn_synth_hparams(const bn_synth_params *p, bn_hparams *hp) {
  const bn_synth_shape *sh = p->shape;
  memset(hp, 0, sizeof *hp);
  snprintf(hp->arch, sizeof hp->arch, "%s", bn_synth_arch(p));
  hp->n_ctx = sh->n_ctx;
  hp->n_embd = sh->n_embd;
  hp->n_layer = sh->n_layer;
  hp->n_ff = sh->n_ff;
  hp->n_head = sh->n_head;
  hp->n_head_kv = sh->n_head_kv;
  hp->head_dim = hp->n_rot = sh->n_embd / sh->n_head;
  hp->n_vocab = sh->n_vocab;
  hp->rope_base = sh->rope_base;
  hp->eps = 1e-5f;
}

bn_tensor_src bn_synth_tensor_src(const bn_synth_params *p) {
  return (bn_tensor_src){p->shape->name, (void *)p, synth_find, 0}; /* shapes only */
}

static bn_status check(const bn_synth_params *p, const bn_synth_shape *sh, const char *arch, bn_error *err) {
  if (!bn_dtype_table[p->ternary].ternary)
    return bn_fail(err, BN_E_INVALID, "synth: --type %s is not ternary (tq1_0, tq2_0, i2_s)", bn_dtype_table[p->ternary].name);
  if (p->embd != BN_DT_F32 && p->embd != BN_DT_F16 && p->embd != BN_DT_Q8_0)
    return bn_fail(err, BN_E_UNSUPPORTED, "synth: embedding type %s (f32, f16, q8_0)", bn_dtype_table[p->embd].name);
  if (!bn_arch_find(arch))
    return bn_fail(err, BN_E_UNSUPPORTED, "synth: arch '%s' (bitnet, bitnet-b1.58, bitnet-25, llama, qwen3)", arch);
  if (p->group_scales && p->ternary == BN_DT_I2_S)
    return bn_fail(err, BN_E_UNSUPPORTED, "synth: --group-scales needs a block type (tq1_0, tq2_0, pq2_0, q2_0): I2_S has one scale a tensor");
  int64_t g = bn_dtype_table[p->ternary].block_elems;
  if (p->ternary != BN_DT_I2_S && (sh->n_embd % g || sh->n_ff % g))
    return bn_fail(err, BN_E_UNSUPPORTED, "synth: shape %s has rows of %d and %d, not whole %s blocks of %lld (use i2_s)",
                   sh->name, sh->n_embd, sh->n_ff, bn_dtype_table[p->ternary].name, (long long)g);
  return BN_OK;
}

bn_status bn_synth_write(const bn_synth_params *p, const char *path, bn_error *err) {
  const bn_synth_shape *sh = p->shape;
  const char *arch = bn_synth_arch(p);
  bn_status st = check(p, sh, arch, err);
  if (st) return st;
  synth s = {bn_gguf_writer_new(), NULL, 0, 0, p->seed ? p->seed : 1, NULL, p->group_scales};
  bn_hparams hp;
  bn_synth_hparams(p, &hp);
  int64_t E = hp.n_embd, F = hp.n_ff;
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
  bn_gguf_w_u32(s.w, KEY("context_length"), (uint32_t)hp.n_ctx);
  bn_gguf_w_u32(s.w, KEY("embedding_length"), (uint32_t)hp.n_embd);
  bn_gguf_w_u32(s.w, KEY("block_count"), (uint32_t)hp.n_layer);
  bn_gguf_w_u32(s.w, KEY("feed_forward_length"), (uint32_t)hp.n_ff);
  bn_gguf_w_u32(s.w, KEY("attention.head_count"), (uint32_t)hp.n_head);
  bn_gguf_w_u32(s.w, KEY("attention.head_count_kv"), (uint32_t)hp.n_head_kv);
  bn_gguf_w_f32(s.w, KEY("rope.freq_base"), hp.rope_base);
  bn_gguf_w_f32(s.w, KEY("attention.layer_norm_rms_epsilon"), hp.eps);
  bn_gguf_w_u32(s.w, KEY("rope.dimension_count"), (uint32_t)hp.n_rot);
  bn_gguf_w_u32(s.w, KEY("vocab_size"), (uint32_t)hp.n_vocab);
  int qwen3 = !strcmp(arch, "qwen3"), llama = !strcmp(arch, "llama");
  if (qwen3) bn_gguf_w_u32(s.w, KEY("attention.key_length"), (uint32_t)hp.head_dim);
#undef KEY
  const char *pre = qwen3 ? "qwen2" : llama || bn_arch_is_relu2(arch) ? "llama-bpe" : NULL;
  if ((st = bn_synth_vocab(s.w, pre, hp.n_vocab, err))) goto done;
  const char *own = bn_arch_is_relu2(arch) ? "bitnet" : llama ? "llama3" : qwen3 ? "chatml" : "none";
  const char *tmpl = bn_synth_chat_template(p->chat_template ? p->chat_template : own);
  if (tmpl) bn_gguf_w_str(s.w, "tokenizer.chat_template", tmpl);
  {
    uint64_t n = (uint64_t)E * (uint64_t)sh->n_vocab, dims[2] = {(uint64_t)E, (uint64_t)sh->n_vocab};
    float *v = malloc(n * sizeof *v);
    if (!v) {
      st = bn_fail(err, BN_E_NOMEM, "synth: out of memory");
      goto done;
    }
    for (uint64_t i = 0; i < n; i++) v[i] = (float)(normal(&s.rng) * 2 / sqrt((double)E)); /* logits of std ~2 */
    bn_tensor_ref on;
    synth_find((void *)p, "output_norm.weight", &on);
    int ok = float_tensor(&s, "token_embd.weight", p->embd, 2, dims, v, n) && norm(&s, "output_norm.weight", &on);
    free(v);
    if (!ok) goto oom;
  }
  for (int L = 0; L < sh->n_layer; L++) {
    for (int i = 0; i < N_LAYER_TENSORS; i++) {
      char nm[96];
      bn_tensor_ref t;
      snprintf(nm, sizeof nm, "blk.%d.%s", L, LAYER_TENSORS[i].suffix);
      if (!synth_find((void *)p, nm, &t)) continue; /* not in this arch */
      if (!(LAYER_TENSORS[i].ternary ? ternary(&s, nm, &t) : norm(&s, nm, &t))) goto oom;
    }
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

/* Templates in the Jinja of Hugging Face's tokenizer configs, written for bnc's tests; BitNet 2B-4T's is
 * "Role: content<|eot_id|>" per message, then "Assistant: ". */
const char *bn_synth_chat_template(const char *name) {
  static const char *const t[][2] = {
      {"llama3", "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                 "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"},
      {"bitnet", "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ 'System: ' }}"
                 "{% elif message['role'] == 'user' %}{{ 'User: ' }}{% else %}{{ 'Assistant: ' }}{% endif %}"
                 "{{ message['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}"
                 "{% endif %}"},
      {"chatml", "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"},
  };
  for (size_t i = 0; name && i < sizeof t / sizeof *t; i++)
    if (!strcmp(name, t[i][0])) return t[i][1];
  return NULL;
}
