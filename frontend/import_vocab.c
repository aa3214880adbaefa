/* Reads tokenizer.ggml.* into a bn_vocab (copies; the file may close). */
#include <stdlib.h>
#include <string.h>

#include "import.h"

static char *dup_str(bn_gguf_str s) {
  char *c = malloc(s.len + 1);
  if (c) {
    memcpy(c, s.ptr, s.len);
    c[s.len] = 0;
  }
  return c;
}

static const bn_gguf_kv *find_array(const bn_gguf *f, const char *key, uint32_t et, uint64_t n, int required,
                                    bn_status *st, bn_error *err) {
  const bn_gguf_kv *kv = bn_gguf_find(f, key);
  *st = BN_OK;
  if (!kv) {
    if (required) *st = bn_fail(err, BN_E_FORMAT, "%s: missing key '%s'", f->path, key);
    return NULL;
  }
  if (kv->type != BN_GGUF_ARRAY || kv->arr_type != et || (n && kv->arr_count != n)) {
    *st = bn_fail(err, BN_E_FORMAT, "%s: key '%s' must be an array of %llu %s", f->path, key,
                  (unsigned long long)n, bn_gguf_type_name(et));
    return NULL;
  }
  return kv;
}

static int opt_id(const bn_gguf *f, const char *key, int n_tokens, bn_status *st, bn_error *err) {
  uint64_t id;
  if (!bn_gguf_find(f, key)) return -1;
  if ((*st = bn_gguf_get_u64(f, key, &id, err))) return -1;
  if (id >= (uint64_t)n_tokens) {
    *st = bn_fail(err, BN_E_FORMAT, "%s: %s = %llu is not a token id (vocab %d)", f->path, key,
                  (unsigned long long)id, n_tokens);
    return -1;
  }
  return (int)id;
}

/* tokenizer.ggml.pre, llama.cpp's names for the pre-tokenizer regexes bnc has (absent: llama3's). */
int bn_vocab_pre_from_name(const char *name) {
  static const char *llama3[] = {"llama-bpe", "llama3", "llama-v3", "default", "smaug-bpe", "falcon3"},
                    *qwen2[] = {"qwen2", "qwen3", "deepseek-r1-qwen"};
  for (size_t i = 0; i < sizeof llama3 / sizeof *llama3; i++)
    if (!strcmp(name, llama3[i])) return BN_PRE_LLAMA3;
  for (size_t i = 0; i < sizeof qwen2 / sizeof *qwen2; i++)
    if (!strcmp(name, qwen2[i])) return BN_PRE_QWEN2;
  return -1;
}

bn_status bn_import_vocab(const bn_gguf *f, bn_vocab *v, bn_error *err) {
  memset(v, 0, sizeof *v);
  v->bos = v->eos = v->unk = -1;
  char model[32];
  bn_status st = bn_gguf_get_str(f, "tokenizer.ggml.model", model, sizeof model, err);
  if (st) return st;
  if (!strcmp(model, "llama")) v->kind = BN_VOCAB_SPM;
  else if (!strcmp(model, "gpt2")) v->kind = BN_VOCAB_BPE;
  else return bn_fail(err, BN_E_UNSUPPORTED, "%s: tokenizer.ggml.model '%s' unsupported (llama or gpt2)", f->path, model);
  if (v->kind == BN_VOCAB_BPE && bn_gguf_find(f, "tokenizer.ggml.pre")) {
    char pre[64];
    if ((st = bn_gguf_get_str(f, "tokenizer.ggml.pre", pre, sizeof pre, err))) return st;
    int p = bn_vocab_pre_from_name(pre);
    if (p < 0)
      return bn_fail(err, BN_E_UNSUPPORTED, "%s: tokenizer.ggml.pre '%s' is not a pre-tokenizer bnc knows (llama-bpe, qwen2)",
                     f->path, pre);
    v->pre = (bn_vocab_pre)p;
  }
  const bn_gguf_kv *tok = find_array(f, "tokenizer.ggml.tokens", BN_GGUF_STRING, 0, 1, &st, err);
  if (st) return st;
  if (tok->arr_count == 0 || tok->arr_count > (1u << 24))
    return bn_fail(err, BN_E_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries", f->path,
                   (unsigned long long)tok->arr_count);
  int n = (int)tok->arr_count;
  const bn_gguf_kv *sc = find_array(f, "tokenizer.ggml.scores", BN_GGUF_F32, (uint64_t)n, 0, &st, err);
  if (st) return st;
  const bn_gguf_kv *ty = find_array(f, "tokenizer.ggml.token_type", BN_GGUF_I32, (uint64_t)n, 0, &st, err);
  if (st) return st;
  const bn_gguf_kv *mg = find_array(f, "tokenizer.ggml.merges", BN_GGUF_STRING, 0, v->kind == BN_VOCAB_BPE, &st, err);
  if (st) return st;
  v->n_tokens = n;
  v->tokens = calloc((size_t)n, sizeof *v->tokens);
  v->scores = calloc((size_t)n, sizeof *v->scores);
  v->types = calloc((size_t)n, sizeof *v->types);
  if (!v->tokens || !v->scores || !v->types) goto oom;
  for (int i = 0; i < n; i++) {
    bn_gguf_str s = tok->arr_strs[i];
    if (memchr(s.ptr, 0, s.len)) {
      bn_vocab_free(v);
      return bn_fail(err, BN_E_FORMAT, "%s: token %d contains a NUL byte", f->path, i);
    }
    if (!(v->tokens[i] = dup_str(s))) goto oom;
    if (sc) memcpy(&v->scores[i], sc->arr_data + 4 * (size_t)i, 4);
    v->types[i] = BN_TOK_NORMAL;
    if (ty) memcpy(&v->types[i], ty->arr_data + 4 * (size_t)i, 4);
  }
  if (mg) {
    v->merges = calloc(mg->arr_count ? mg->arr_count : 1, sizeof *v->merges);
    if (!v->merges) goto oom;
    for (uint64_t i = 0; i < mg->arr_count; i++, v->n_merges++) {
      if (memchr(mg->arr_strs[i].ptr, 0, mg->arr_strs[i].len)) {
        bn_vocab_free(v);
        return bn_fail(err, BN_E_FORMAT, "%s: merge %llu contains a NUL byte", f->path, (unsigned long long)i);
      }
      if (!(v->merges[i] = dup_str(mg->arr_strs[i]))) goto oom;
    }
  }
  v->bos = opt_id(f, "tokenizer.ggml.bos_token_id", n, &st, err);
  if (!st) v->eos = opt_id(f, "tokenizer.ggml.eos_token_id", n, &st, err);
  if (!st) v->unk = opt_id(f, "tokenizer.ggml.unknown_token_id", n, &st, err);
  if (st) {
    bn_vocab_free(v);
    return st;
  }
  const bn_gguf_kv *ab = bn_gguf_find(f, "tokenizer.ggml.add_bos_token");
  v->add_bos = ab ? ab->type == BN_GGUF_BOOL && ab->num.u : v->bos >= 0;
  const bn_gguf_kv *ct = bn_gguf_find(f, "tokenizer.chat_template"); /* kept for bnc serve (serve_req.c) */
  if (ct && (ct->type != BN_GGUF_STRING || ct->str.len > BN_CHAT_TEMPLATE_MAX || memchr(ct->str.ptr, 0, ct->str.len))) {
    bn_vocab_free(v);
    return bn_fail(err, BN_E_FORMAT, "%s: tokenizer.chat_template is not a string of at most %d bytes without NUL", f->path,
                   BN_CHAT_TEMPLATE_MAX);
  }
  if (ct && !(v->chat_template = dup_str(ct->str))) goto oom;
  if ((st = bn_vocab_check(v, f->path, err))) bn_vocab_free(v);
  return st;
oom:
  bn_vocab_free(v);
  return bn_fail(err, BN_E_NOMEM, "%s: out of memory reading the vocabulary", f->path);
}
