/* A Hugging Face model directory -> bn_model: config.json, model.safetensors
 * (or the shards model.safetensors.index.json names), tokenizer.json and
 * tokenizer_config.json. Float tensors are mapped as they are (1-D norm
 * weights copied to f32 for the fused kernels); ternary linears are re-laid
 * once as I2_S (one scale per tensor), which the packer then reads like a
 * GGUF's: transformers' packed BitLinear weights (2-bit codes, four rows to a
 * byte, divided by weight_scale) or master weights ternarized with absmean
 * (docs/import.md). Every name, dtype and shape is checked against the config. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../ir/quant.h"
#include "hf.h"
#include "import.h"
#include "safetensors.h"

enum { Q_PACKED, Q_AUTO_OFFLINE, Q_MASTER }; /* how the linears are stored */
enum { MAX_SHARDS = 4096, MAX_JSON = 256 << 20 };

typedef struct {
  char name[64]; /* the GGUF name the graph builder asks for */
  bn_tensor_ref ref;
} entry;

struct bn_hf {
  char dir[512];
  cJSON *config;
  bn_st_file *shard;
  int n_shards;
  entry *e;
  int n_e;
  bn_strmap index; /* GGUF name -> entry */
  void **owned;
  int n_owned;
  int quant;
  bn_hparams hp;
};

char *bn_hf_read_text(const char *dir, const char *file, size_t *len, bn_error *err, bn_status *st) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  *st = BN_OK;
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    if (errno != ENOENT) *st = bn_fail(err, BN_E_IO, "%s: %s", path, strerror(errno));
    return NULL;
  }
  char *buf = NULL;
  long n = fseek(fp, 0, SEEK_END) ? -1 : ftell(fp);
  if (n < 0 || n > MAX_JSON) *st = bn_fail(err, BN_E_FORMAT, "%s: not a file of at most %d bytes", path, MAX_JSON);
  else if (!(buf = malloc((size_t)n + 1))) *st = bn_fail(err, BN_E_NOMEM, "out of memory");
  else if (fseek(fp, 0, SEEK_SET) || fread(buf, 1, (size_t)n, fp) != (size_t)n)
    *st = bn_fail(err, BN_E_IO, "%s: read failed", path);
  fclose(fp);
  if (*st) return free(buf), NULL;
  buf[n] = 0;
  if (len) *len = (size_t)n;
  return buf;
}

cJSON *bn_hf_read_json(const char *dir, const char *file, int required, bn_error *err, bn_status *st) {
  size_t n;
  char *text = bn_hf_read_text(dir, file, &n, err, st);
  if (!text) {
    if (!*st && required) *st = bn_fail(err, BN_E_FORMAT, "%s: no %s (a Hugging Face model directory needs one)", dir, file);
    return NULL;
  }
  cJSON *j = cJSON_ParseWithLength(text, n);
  free(text);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    *st = bn_fail(err, BN_E_FORMAT, "%s/%s: not a JSON object", dir, file);
    return NULL;
  }
  return j;
}

static void *own(bn_hf *h, void *p) {
  void **o = p ? realloc(h->owned, ((size_t)h->n_owned + 1) * sizeof *o) : NULL;
  if (!o) return free(p), NULL;
  h->owned = o;
  return o[h->n_owned++] = p;
}

/* ---- config.json ---- */

static const cJSON *item(const cJSON *j, const char *k) { return cJSON_GetObjectItemCaseSensitive(j, k); }

static bn_status cfg_int(bn_hf *h, const char *key, int *out, int fallback, long max, bn_error *err) {
  const cJSON *v = item(h->config, key);
  if (!v || cJSON_IsNull(v)) {
    if (fallback < 0) return bn_fail(err, BN_E_FORMAT, "%s/config.json: missing '%s'", h->dir, key);
    *out = fallback;
    return BN_OK;
  }
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= 1 && v->valuedouble <= (double)max) || v->valuedouble != (int)v->valuedouble)
    return bn_fail(err, BN_E_FORMAT, "%s/config.json: '%s' must be a whole number in 1..%ld", h->dir, key, max);
  *out = (int)v->valuedouble;
  return BN_OK;
}

static bn_status cfg_float(bn_hf *h, const cJSON *obj, const char *key, float *out, float fallback, bn_error *err) {
  const cJSON *v = obj ? item(obj, key) : NULL;
  if (!v) return *out = fallback, BN_OK;
  if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite((float)v->valuedouble) || (float)v->valuedouble <= 0)
    return bn_fail(err, BN_E_FORMAT, "%s/config.json: '%s' must be a positive number", h->dir, key);
  *out = (float)v->valuedouble;
  return BN_OK;
}

static int is_str(const cJSON *v, const char *s) { return cJSON_IsString(v) && !strcmp(v->valuestring, s); }

static bn_status read_config(bn_hf *h, bn_error *err) {
  bn_hparams *hp = &h->hp;
  const cJSON *mt = item(h->config, "model_type"), *act = item(h->config, "hidden_act");
  const char *arch = is_str(mt, "llama") ? "llama" : is_str(mt, "qwen3") ? "qwen3"
                     : is_str(mt, "bitnet") ? (is_str(act, "silu") ? "bitnet" : "bitnet-b1.58") : NULL;
  if (!arch)
    return bn_fail(err, BN_E_UNSUPPORTED, "%s/config.json: model_type '%.40s' is not supported (bitnet, llama, qwen3)", h->dir,
                   cJSON_IsString(mt) ? mt->valuestring : "?");
  snprintf(hp->arch, sizeof hp->arch, "%s", arch);
  const char *want_act = !strcmp(arch, "bitnet-b1.58") ? "relu2" : "silu";
  if (act && !is_str(act, want_act))
    return bn_fail(err, BN_E_UNSUPPORTED, "%s/config.json: hidden_act '%.40s' (this architecture needs %s)", h->dir,
                   cJSON_IsString(act) ? act->valuestring : "?", want_act);
  const char *biases[] = {"attention_bias", "mlp_bias"};
  for (int i = 0; i < 2; i++)
    if (cJSON_IsTrue(item(h->config, biases[i])))
      return bn_fail(err, BN_E_UNSUPPORTED, "%s/config.json: %s is true (linears with biases are not supported)", h->dir,
                     biases[i]);
  bn_status st;
  if ((st = cfg_int(h, "hidden_size", &hp->n_embd, -1, 1 << 16, err)) ||
      (st = cfg_int(h, "num_hidden_layers", &hp->n_layer, -1, 1024, err)) ||
      (st = cfg_int(h, "intermediate_size", &hp->n_ff, -1, 1 << 18, err)) ||
      (st = cfg_int(h, "num_attention_heads", &hp->n_head, -1, 4096, err)) ||
      (st = cfg_int(h, "vocab_size", &hp->n_vocab, -1, 1 << 24, err)) ||
      (st = cfg_int(h, "max_position_embeddings", &hp->n_ctx, 4096, 1 << 20, err)) ||
      (st = cfg_int(h, "num_key_value_heads", &hp->n_head_kv, hp->n_head, 4096, err)))
    return st;
  if (hp->n_embd % hp->n_head && !item(h->config, "head_dim"))
    return bn_fail(err, BN_E_FORMAT, "%s/config.json: hidden_size %d is not a multiple of num_attention_heads %d", h->dir,
                   hp->n_embd, hp->n_head);
  if ((st = cfg_int(h, "head_dim", &hp->head_dim, hp->n_embd / hp->n_head, 1 << 12, err))) return st;
  if (hp->n_head % hp->n_head_kv || hp->head_dim % 2 || (int64_t)hp->head_dim * hp->n_head > 1 << 18)
    return bn_fail(err, BN_E_FORMAT, "%s/config.json: %d heads of %d with %d key/value heads do not fit", h->dir, hp->n_head,
                   hp->head_dim, hp->n_head_kv);
  hp->n_rot = hp->head_dim;
  const cJSON *rp = item(h->config, "rope_parameters"), *rs = item(h->config, "rope_scaling");
  const cJSON *rt = rp ? item(rp, "rope_type") : rs && !cJSON_IsNull(rs) ? item(rs, "rope_type") : NULL;
  if ((rs && !cJSON_IsNull(rs) && !rp) || (rt && !is_str(rt, "default")))
    return bn_fail(err, BN_E_UNSUPPORTED, "%s/config.json: RoPE scaling ('%.40s') is not supported", h->dir,
                   cJSON_IsString(rt) ? rt->valuestring : "rope_scaling");
  if ((st = cfg_float(h, rp ? rp : h->config, "rope_theta", &hp->rope_base, 10000.0f, err)) ||
      (st = cfg_float(h, h->config, "rms_norm_eps", &hp->eps, 1e-6f, err)))
    return st;
  if (cJSON_IsTrue(item(h->config, "use_sliding_window")))
    return bn_fail(err, BN_E_UNSUPPORTED, "%s/config.json: sliding-window attention is not supported", h->dir);

  const cJSON *q = item(h->config, "quantization_config");
  h->quant = Q_MASTER;
  if (q && !cJSON_IsNull(q)) {
    const cJSON *m = item(q, "quant_method"), *lc = item(q, "linear_class"), *mode = item(q, "quantization_mode"),
                *nc = item(q, "modules_to_not_convert");
    if (!is_str(m, "bitnet"))
      return bn_fail(err, BN_E_UNSUPPORTED, "%s/config.json: quant_method '%.40s' (bnc reads bitnet)", h->dir,
                     cJSON_IsString(m) ? m->valuestring : "?");
    if (cJSON_IsTrue(item(q, "use_rms_norm")))
      return bn_fail(err, BN_E_UNSUPPORTED, "%s/config.json: quantization_config.use_rms_norm is not supported", h->dir);
    if (nc && !cJSON_IsNull(nc) &&
        !(cJSON_IsArray(nc) && (cJSON_GetArraySize(nc) == 0 ||
                                (cJSON_GetArraySize(nc) == 1 && is_str(cJSON_GetArrayItem(nc, 0), "lm_head")))))
      return bn_fail(err, BN_E_UNSUPPORTED, "%s/config.json: modules_to_not_convert other than lm_head is not supported", h->dir);
    int online = is_str(mode, "online"), autob = is_str(lc, "autobitlinear");
    if ((mode && !online && !is_str(mode, "offline")) || (lc && !autob && !is_str(lc, "bitlinear")))
      return bn_fail(err, BN_E_UNSUPPORTED, "%s/config.json: bitnet quantization_config with an unknown mode or class", h->dir);
    h->quant = online ? Q_MASTER : autob ? Q_AUTO_OFFLINE : Q_PACKED;
  }
  return BN_OK;
}

/* ---- tensors ---- */

static const char *dtype_of(bn_st_dtype t, bn_dtype *out) {
  *out = t == BN_ST_F32 ? BN_DT_F32 : t == BN_ST_F16 ? BN_DT_F16 : t == BN_ST_BF16 ? BN_DT_BF16 : (bn_dtype)-1;
  return (int)*out >= 0 ? NULL : bn_st_dtype_name(t);
}

static float elem(const bn_st_tensor *t, uint64_t i) {
  const uint8_t *p = t->data;
  uint16_t h;
  float f;
  switch (t->dtype) {
  case BN_ST_F32: memcpy(&f, p + 4 * i, 4); return f;
  case BN_ST_F16: memcpy(&h, p + 2 * i, 2); return bn_half_to_float(h);
  case BN_ST_BF16: memcpy(&h, p + 2 * i, 2); return bn_bf16_to_float(h);
  default: return NAN;
  }
}

typedef struct {
  const char *hf; /* the name's tail in the file */
  const char *gguf;
  int ternary;
} name_map;

static const name_map LAYER[] = {
    {"self_attn.q_proj.weight", "attn_q", 1},         {"self_attn.k_proj.weight", "attn_k", 1},
    {"self_attn.v_proj.weight", "attn_v", 1},         {"self_attn.o_proj.weight", "attn_output", 1},
    {"mlp.gate_proj.weight", "ffn_gate", 1},          {"mlp.up_proj.weight", "ffn_up", 1},
    {"mlp.down_proj.weight", "ffn_down", 1},          {"input_layernorm.weight", "attn_norm", 0},
    {"post_attention_layernorm.weight", "ffn_norm", 0}, {"self_attn.attn_sub_norm.weight", "attn_sub_norm", 0},
    {"mlp.ffn_sub_norm.weight", "ffn_sub_norm", 0},   {"self_attn.q_norm.weight", "attn_q_norm", 0},
    {"self_attn.k_norm.weight", "attn_k_norm", 0},
};

/* The tensor's expected [rows, cols] (rows 0: 1-D), from the config. */
static void expected(const bn_hparams *hp, const char *gguf, int64_t *rows, int64_t *cols) {
  int64_t E = hp->n_embd, F = hp->n_ff, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
  static const char *nm[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "attn_norm",
                             "ffn_norm", "attn_sub_norm", "ffn_sub_norm", "attn_q_norm", "attn_k_norm"};
  int64_t r[] = {Q, KV, KV, E, F, F, E, 0, 0, 0, 0, 0, 0}, c[] = {E, E, E, Q, E, E, F, E, E, Q, F, hp->head_dim, hp->head_dim};
  *rows = *cols = -1;
  for (size_t i = 0; i < sizeof nm / sizeof *nm; i++)
    if (!strcmp(gguf, nm[i])) *rows = r[i], *cols = c[i];
}

static const bn_st_tensor *lookup(bn_hf *h, const char *name, int *shard) {
  for (int s = 0; s < h->n_shards; s++) {
    const bn_st_tensor *t = bn_st_find(&h->shard[s], name);
    if (t) return *shard = s, t;
  }
  return NULL;
}

static bn_status shape_error(bn_hf *h, const bn_st_tensor *t, int64_t rows, int64_t cols, int packed, bn_error *err) {
  char got[96] = "[";
  for (uint32_t i = 0; i < t->n_dims; i++)
    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
  if (rows) return bn_fail(err, BN_E_FORMAT, "%s: tensor '%s' has shape %s], config.json says [%lld, %lld]%s", h->dir,
                           t->name, got, (long long)rows, (long long)cols, packed ? " (packed: four rows a byte)" : "");
  return bn_fail(err, BN_E_FORMAT, "%s: tensor '%s' has shape %s], config.json says [%lld]", h->dir, t->name, got, (long long)cols);
}

static bn_status add_entry(bn_hf *h, const char *gguf, bn_tensor_ref ref, bn_error *err) {
  entry *e = &h->e[h->n_e];
  snprintf(e->name, sizeof e->name, "%s", gguf);
  e->ref = ref;
  int had = bn_strmap_add(&h->index, e->name, strlen(e->name), h->n_e);
  if (had == -2) return bn_fail(err, BN_E_NOMEM, "out of memory");
  if (had >= 0) return bn_fail(err, BN_E_FORMAT, "%s: two tensors for %s", h->dir, gguf);
  h->n_e++;
  return BN_OK;
}

/* A float tensor mapped as it is; 1-D ones copied to f32. */
static bn_status float_tensor(bn_hf *h, const bn_st_tensor *t, const char *gguf, int64_t rows, int64_t cols, bn_error *err) {
  bn_dtype dt;
  const char *bad = dtype_of(t->dtype, &dt);
  if (bad) return bn_fail(err, BN_E_FORMAT, "%s: tensor '%s' has dtype %s (need F32, F16 or BF16)", h->dir, t->name, bad);
  if (t->n_dims != (rows ? 2u : 1u) || (rows && t->shape[0] != (uint64_t)rows) || t->shape[t->n_dims - 1] != (uint64_t)cols)
    return shape_error(h, t, rows, cols, 0, err);
  bn_tensor_ref r = {.dtype = dt, .n_dims = rows ? 2 : 1, .dims = {(uint64_t)cols, (uint64_t)rows}, .data = t->data,
                     .nbytes = t->nbytes};
  if (!rows && dt != BN_DT_F32) {
    float *f = own(h, malloc((size_t)cols * sizeof *f));
    if (!f) return bn_fail(err, BN_E_NOMEM, "out of memory");
    for (int64_t i = 0; i < cols; i++) f[i] = elem(t, (uint64_t)i);
    r.dtype = BN_DT_F32, r.data = f, r.nbytes = (uint64_t)cols * 4;
  }
  return add_entry(h, gguf, r, err);
}

/* One scale from a 1-element weight_scale tensor. */
static bn_status one_scale(bn_hf *h, const char *wname, float *out, bn_error *err) {
  char sn[320];
  size_t n = strlen(wname) - strlen("weight");
  snprintf(sn, sizeof sn, "%.*sweight_scale", (int)n, wname);
  int sh;
  const bn_st_tensor *s = lookup(h, sn, &sh);
  bn_dtype dt;
  if (!s) return bn_fail(err, BN_E_FORMAT, "%s: missing tensor '%s' (packed weights need their scale)", h->dir, sn);
  if (s->nelems != 1 || dtype_of(s->dtype, &dt))
    return bn_fail(err, BN_E_FORMAT, "%s: tensor '%s' must be one F32, F16 or BF16 number", h->dir, sn);
  *out = elem(s, 0);
  if (!isnormal(*out) || *out <= 0)
    return bn_fail(err, BN_E_FORMAT, "%s: tensor '%s' = %g is not a positive normal number", h->dir, sn, *out);
  return BN_OK;
}

/* A linear as I2_S: trits from packed codes (four rows to a byte: row r in bits 2 (r / (N/4)) of
 * packed row r mod N/4, code t + 1) or by absmean from master weights. */
static bn_status ternary_tensor(bn_hf *h, const bn_st_tensor *t, const char *gguf, int64_t N, int64_t K, bn_error *err) {
  uint64_t n = (uint64_t)N * (uint64_t)K;
  if (n % 128) return bn_fail(err, BN_E_UNSUPPORTED, "%s: tensor '%s': %lld x %lld is not whole 128-blocks", h->dir, t->name,
                              (long long)N, (long long)K);
  int packed = t->dtype == BN_ST_U8;
  bn_dtype dt;
  if (!packed && dtype_of(t->dtype, &dt))
    return bn_fail(err, BN_E_FORMAT, "%s: tensor '%s' has dtype %s (need U8 codes or F32/F16/BF16)", h->dir, t->name,
                   bn_st_dtype_name(t->dtype));
  if (packed ? (h->quant == Q_MASTER || N % 4 || t->n_dims != 2 || t->shape[0] != (uint64_t)N / 4 || t->shape[1] != (uint64_t)K)
             : (t->n_dims != 2 || t->shape[0] != (uint64_t)N || t->shape[1] != (uint64_t)K)) {
    if (packed && h->quant == Q_MASTER)
      return bn_fail(err, BN_E_FORMAT, "%s: tensor '%s' is packed (U8) but config.json has no bitnet quantization_config", h->dir,
                     t->name);
    return shape_error(h, t, packed ? N / 4 : N, K, packed, err);
  }
  if (!packed && h->quant == Q_PACKED)
    return bn_fail(err, BN_E_FORMAT, "%s: tensor '%s' is %s, but bitlinear weights are packed U8", h->dir, t->name,
                   bn_st_dtype_name(t->dtype));
  int8_t *trit = malloc(n);
  uint8_t *out = own(h, malloc(n / 4 + 32));
  if (!trit || !out) return free(trit), bn_fail(err, BN_E_NOMEM, "out of memory");
  float scale = 1;
  bn_status st = BN_OK;
  if (packed) {
    uint64_t P = (uint64_t)N / 4;
    for (uint64_t r = 0; r < (uint64_t)N && !st; r++)
      for (uint64_t k = 0; k < (uint64_t)K; k++) {
        int c = t->data[(r % P) * (uint64_t)K + k] >> (2 * (r / P)) & 3;
        if (c == 3) {
          st = bn_fail(err, BN_E_FORMAT, "%s: tensor '%s': code 3 at row %llu, column %llu (codes are 0, 1, 2)", h->dir,
                       t->name, (unsigned long long)r, (unsigned long long)k);
          break;
        }
        trit[r * (uint64_t)K + k] = (int8_t)(c - 1);
      }
    if (!st) st = one_scale(h, t->name, &scale, err);
    if (!st && h->quant == Q_PACKED) scale = 1.0f / scale; /* BitLinear divides by it */
  } else if (h->quant == Q_AUTO_OFFLINE) { /* already ternary values, times weight_scale */
    for (uint64_t i = 0; i < n && !st; i++) {
      float v = elem(t, i);
      if (v != 0 && v != 1 && v != -1)
        st = bn_fail(err, BN_E_UNSUPPORTED, "%s: tensor '%s': element %llu = %g is not -1, 0 or 1", h->dir, t->name,
                     (unsigned long long)i, v);
      trit[i] = (int8_t)v;
    }
    if (!st) st = one_scale(h, t->name, &scale, err);
  } else { /* absmean, as BitNet b1.58 (and transformers' WeightQuant) define it, in float */
    double sum = 0;
    for (uint64_t i = 0; i < n; i++) sum += fabsf(elem(t, i));
    float mean = (float)(sum / (double)n), s = 1.0f / (mean > 1e-5f ? mean : 1e-5f);
    for (uint64_t i = 0; i < n && !st; i++) {
      float v = rintf(elem(t, i) * s);
      if (v != v) st = bn_fail(err, BN_E_FORMAT, "%s: tensor '%s': element %llu is NaN", h->dir, t->name, (unsigned long long)i);
      trit[i] = (int8_t)(v > 1 ? 1 : v < -1 ? -1 : v);
    }
    scale = 1.0f / s;
  }
  if (!st) {
    bn_ternary_encode(BN_DT_I2_S, trit, n, scale, out);
    bn_tensor_ref r = {.dtype = BN_DT_I2_S, .n_dims = 2, .dims = {(uint64_t)K, (uint64_t)N}, .data = out, .nbytes = n / 4 + 32};
    st = add_entry(h, gguf, r, err);
  }
  free(trit);
  return st;
}

static bn_status add_tensor(bn_hf *h, const bn_st_tensor *t, bn_error *err) {
  const bn_hparams *hp = &h->hp;
  const char *nm = t->name;
  int64_t E = hp->n_embd, V = hp->n_vocab;
  if (!strcmp(nm, "model.embed_tokens.weight")) return float_tensor(h, t, "token_embd.weight", V, E, err);
  if (!strcmp(nm, "model.norm.weight")) return float_tensor(h, t, "output_norm.weight", 0, E, err);
  if (!strcmp(nm, "lm_head.weight")) {
    if (cJSON_IsTrue(item(h->config, "tie_word_embeddings"))) return BN_OK; /* transformers ties it to the embedding */
    return float_tensor(h, t, "output.weight", V, E, err);
  }
  unsigned L;
  int at = 0;
  if (sscanf(nm, "model.layers.%u.%n", &L, &at) == 1 && at > 0 && L < (unsigned)hp->n_layer) {
    const char *tail = nm + at;
    if (strstr(tail, "weight_scale")) return BN_OK; /* read with its weight */
    for (size_t i = 0; i < sizeof LAYER / sizeof *LAYER; i++) {
      if (strcmp(tail, LAYER[i].hf)) continue;
      char g[64];
      snprintf(g, sizeof g, "blk.%u.%s.weight", L, LAYER[i].gguf);
      int64_t rows, cols;
      expected(hp, LAYER[i].gguf, &rows, &cols);
      return LAYER[i].ternary ? ternary_tensor(h, t, g, rows, cols, err) : float_tensor(h, t, g, 0, cols, err);
    }
  }
  if (strstr(nm, "rotary_emb.inv_freq")) return BN_OK; /* recomputed from rope_theta */
  return bn_fail(err, BN_E_UNSUPPORTED, "%s: tensor '%s' is not one bnc knows for %s", h->dir, nm, hp->arch);
}

/* Shard file names from the index: plain names in the directory, each opened once. */
static bn_status open_shards(bn_hf *h, bn_error *err) {
  bn_status st;
  cJSON *idx = bn_hf_read_json(h->dir, "model.safetensors.index.json", 0, err, &st);
  if (st) return st;
  const char *names[MAX_SHARDS];
  int n = 0;
  if (!idx) names[n++] = "model.safetensors";
  else {
    const cJSON *wm = item(idx, "weight_map");
    if (!cJSON_IsObject(wm)) st = bn_fail(err, BN_E_FORMAT, "%s/model.safetensors.index.json: no weight_map object", h->dir);
    for (const cJSON *e = wm ? wm->child : NULL; e && !st; e = e->next) {
      if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || !strcmp(e->valuestring, "..") || !*e->valuestring) {
        st = bn_fail(err, BN_E_FORMAT, "%s/model.safetensors.index.json: '%.200s' must map to a file name in the directory",
                     h->dir, e->string);
        break;
      }
      int seen = 0;
      for (int i = 0; i < n && !seen; i++) seen = !strcmp(names[i], e->valuestring);
      if (seen) continue;
      if (n == MAX_SHARDS) st = bn_fail(err, BN_E_FORMAT, "%s: more than %d shards", h->dir, MAX_SHARDS);
      else names[n++] = e->valuestring;
    }
  }
  if (!st && !(h->shard = calloc((size_t)n + 1, sizeof *h->shard))) st = bn_fail(err, BN_E_NOMEM, "out of memory");
  for (int i = 0; i < n && !st; i++, h->n_shards++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", h->dir, names[i]);
    if ((st = bn_st_open(&h->shard[i], path, err)) && idx) {
      char why[sizeof err->msg];
      snprintf(why, sizeof why, "%s", err->msg);
      st = bn_fail(err, st, "%s (a shard model.safetensors.index.json names)", why);
    }
  }
  if (!st && idx) /* every tensor the index names is in its shard */
    for (const cJSON *e = item(idx, "weight_map")->child; e && !st; e = e->next) {
      int s = -1;
      for (int i = 0; i < h->n_shards; i++)
        if (!strcmp(strrchr(h->shard[i].path, '/') + 1, e->valuestring)) s = i;
      if (s < 0 || !bn_st_find(&h->shard[s], e->string))
        st = bn_fail(err, BN_E_FORMAT, "%s: tensor '%.200s' is not in %s, as model.safetensors.index.json says", h->dir,
                     e->string, e->valuestring);
    }
  cJSON_Delete(idx);
  return st;
}

bn_status bn_hf_open(bn_hf **out, const char *dir, bn_error *err) {
  bn_hf *h = calloc(1, sizeof *h);
  if (!h) return bn_fail(err, BN_E_NOMEM, "out of memory");
  snprintf(h->dir, sizeof h->dir, "%s", dir);
  bn_status st;
  if (!(h->config = bn_hf_read_json(dir, "config.json", 1, err, &st)) || (st = read_config(h, err)) || (st = open_shards(h, err)))
    goto fail;
  int total = 0;
  for (int s = 0; s < h->n_shards; s++) total += h->shard[s].n;
  if (!(h->e = calloc((size_t)total + 1, sizeof *h->e)) || bn_strmap_init(&h->index, (size_t)total)) {
    st = bn_fail(err, BN_E_NOMEM, "out of memory");
    goto fail;
  }
  for (int s = 0; s < h->n_shards && !st; s++)
    for (int i = 0; i < h->shard[s].n && !st; i++) st = add_tensor(h, &h->shard[s].t[i], err);
  if (st) goto fail;
  *out = h;
  return BN_OK;
fail:
  bn_hf_close(h);
  return st;
}

void bn_hf_close(bn_hf *h) {
  if (!h) return;
  cJSON_Delete(h->config);
  for (int s = 0; s < h->n_shards; s++) bn_st_close(&h->shard[s]);
  free(h->shard);
  free(h->e);
  bn_strmap_free(&h->index);
  for (int i = 0; i < h->n_owned; i++) free(h->owned[i]);
  free(h->owned);
  free(h);
}

static int hf_find(void *ctx, const char *name, bn_tensor_ref *out) {
  bn_hf *h = ctx;
  int i = bn_strmap_get(&h->index, name, strlen(name));
  if (i < 0) return 0;
  *out = h->e[i].ref;
  return 1;
}

bn_status bn_import_hf(bn_hf *h, bn_model *m, bn_error *err) {
  memset(m, 0, sizeof *m);
  m->hp = h->hp;
  bn_status st = bn_hf_vocab(h->dir, h->config, m->hp.n_vocab, &m->vocab, err);
  if (st) return st;
  bn_tensor_src src = {h->dir, h, hf_find, 0};
  if ((st = bn_import_graph(&m->hp, &src, &m->graph, err))) bn_model_free(m);
  return st;
}
