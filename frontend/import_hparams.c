/* Hyperparameters of the supported architectures (bn_arch_find) from GGUF keys
 * ({arch}.embedding_length etc.), each range-checked. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "import.h"


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
  if (!bn_arch_find(a))
    return bn_fail(err, BN_E_UNSUPPORTED,
                   "%s: general.architecture '%s' is not supported (bitnet, bitnet-b1.58, bitnet-25, llama, qwen3)", f->path, a);
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
  int key_len = 0, value_len = 0; /* qwen3: a head width of its own */
  if ((st = get_int(f, a, "attention.key_length", &key_len, 0, 1 << 12, err)) ||
      (st = get_int(f, a, "attention.value_length", &value_len, 0, 1 << 12, err)))
    return st;
  if (value_len && value_len != (key_len ? key_len : hp->n_embd / hp->n_head))
    return bn_fail(err, BN_E_UNSUPPORTED, "%s: %s.attention.value_length %d differs from the key length", f->path, a, value_len);
  if ((!key_len && hp->n_embd % hp->n_head) || hp->n_head % hp->n_head_kv)
    return bn_fail(err, BN_E_FORMAT, "%s: embedding_length %d, head_count %d, head_count_kv %d do not divide", f->path,
                   hp->n_embd, hp->n_head, hp->n_head_kv);
  hp->head_dim = key_len ? key_len : hp->n_embd / hp->n_head;
  if ((int64_t)hp->head_dim * hp->n_head > 1 << 18)
    return bn_fail(err, BN_E_FORMAT, "%s: %d heads of %d are too wide", f->path, hp->n_head, hp->head_dim);
  if (bn_gguf_tensor_find(f, "rope_freqs.weight"))
    return bn_fail(err, BN_E_UNSUPPORTED, "%s: rope_freqs.weight (llama 3.1-style RoPE scaling) is not supported", f->path);
  char key[128];
  snprintf(key, sizeof key, "%s.rope.scaling.type", a);
  if (bn_gguf_find(f, key)) {
    char ty[32];
    if ((st = bn_gguf_get_str(f, key, ty, sizeof ty, err))) return st;
    if (strcmp(ty, "none"))
      return bn_fail(err, BN_E_UNSUPPORTED, "%s: %s = '%s': RoPE scaling is not supported", f->path, key, ty);
  }
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

const bn_arch_info *bn_arch_find(const char *arch) {
  static const bn_arch_info archs[] = {
      {.name = "bitnet", .sub_norms = 1},
      {.name = "bitnet-b1.58", .relu2 = 1, .sub_norms = 1},
      {.name = "bitnet-25", .relu2 = 1, .sub_norms = 1},
      {.name = "llama", .interleaved_qk = 1},
      {.name = "qwen3", .qk_norm = 1},
  };
  for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
    if (!strcmp(arch, archs[i].name)) return &archs[i];
  return NULL;
}

int bn_arch_is_relu2(const char *arch) {
  const bn_arch_info *a = bn_arch_find(arch);
  return a && a->relu2;
}
