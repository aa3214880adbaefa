/* GPT-2 / llama3 byte-level BPE ("gpt2" vocab): the text is split by the
 * llama3 or qwen2 pre-tokenizer regex (PCRE2, Unicode classes), each piece's bytes are
 * mapped through GPT-2's byte-to-unicode table, then adjacent symbols merge
 * by lowest merge rank. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

static const char LLAMA3_PRE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_PRE[] = /* llama3's, but one digit a piece */
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

int bn_bpe_cp_to_byte(uint32_t cp) {
  static int table[324];
  static int ready;
  if (!ready) { /* idempotent, so a race only repeats the same writes */
    for (int i = 0; i < 324; i++) table[i] = -1;
    for (int b = 0; b < 256; b++) table[bn_bpe_byte_to_cp((unsigned char)b)] = b;
    ready = 1;
  }
  return cp < 324 ? table[cp] : -1;
}

bn_status bn_tok_merges_init(bn_tokenizer *t, bn_error *err) {
  if (bn_strmap_init(&t->merge, (size_t)t->v->n_merges))
    return bn_fail(err, BN_E_NOMEM, "tokenizer: out of memory");
  for (int i = 0; i < t->v->n_merges; i++) bn_strmap_add(&t->merge, t->v->merges[i], strlen(t->v->merges[i]), i);
  return BN_OK;
}

bn_status bn_tok_bpe_init(bn_tokenizer *t, bn_error *err) {
  bn_status st = bn_tok_merges_init(t, err);
  if (st) return st;
  int code;
  PCRE2_SIZE off;
  t->re = pcre2_compile((PCRE2_SPTR)(t->v->pre == BN_PRE_QWEN2 ? QWEN2_PRE : LLAMA3_PRE), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
  if (!t->re) return bn_fail(err, BN_E_INVALID, "tokenizer: pre-tokenizer regex failed at %zu (code %d)", (size_t)off, code);
  pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* where PCRE2 has a JIT; matching works either way */
  t->md = pcre2_match_data_create_from_pattern(t->re, NULL);
  if (!t->md) return bn_fail(err, BN_E_NOMEM, "tokenizer: out of memory");
  return BN_OK;
}

void bn_tok_bpe_fini(bn_tokenizer *t) {
  if (t->md) pcre2_match_data_free(t->md);
  if (t->re) pcre2_code_free(t->re);
  bn_strmap_free(&t->merge);
}

double bn_bpe_prio(const bn_tokenizer *t, const char *s, size_t la, size_t lb) {
  char key[256];
  if (la + lb + 2 > sizeof key) return -INFINITY;
  memcpy(key, s, la);
  key[la] = ' ';
  memcpy(key + la + 1, s + la, lb);
  int r = bn_strmap_get(&t->merge, key, la + lb + 1);
  return r < 0 ? -INFINITY : -(double)r;
}

static bn_status bpe_emit(const bn_tokenizer *t, const char *s, size_t len, bn_idbuf *out) {
  int id = bn_strmap_get(&t->tok, s, len);
  if (id >= 0) return bn_idbuf_push(out, id);
  /* No token for the merged symbol: emit its characters one by one. */
  for (size_t i = 0; i < len;) {
    int l = bn_utf8_len((unsigned char)s[i]);
    if ((size_t)l > len - i) l = (int)(len - i);
    int c = bn_strmap_get(&t->tok, s + i, (size_t)l);
    bn_status st = bn_idbuf_push(out, c >= 0 ? c : t->v->unk >= 0 ? t->v->unk : 0);
    if (st) return st;
    i += (size_t)l;
  }
  return BN_OK;
}

static bn_status encode_piece(const bn_tokenizer *t, const char *p, size_t n, bn_idbuf *out) {
  char *buf = malloc(n * 2 + 1), *q = buf;
  if (!buf) return BN_E_NOMEM;
  for (size_t i = 0; i < n; i++) q += bn_utf8_encode(bn_bpe_byte_to_cp((unsigned char)p[i]), q);
  bn_status st = bn_symbols_merge(t, buf, (size_t)(q - buf), bn_bpe_prio, bpe_emit, out);
  free(buf);
  return st;
}

bn_status bn_tok_bpe_encode(const bn_tokenizer *t, const char *text, size_t len, bn_idbuf *out, bn_error *err) {
  size_t pos = 0;
  bn_status st = BN_OK;
  while (pos < len && !st) {
    /* the text was validated as UTF-8 once: checking it again on every call would make this quadratic */
    int rc = pcre2_match(t->re, (PCRE2_SPTR)text, len, pos, PCRE2_NO_UTF_CHECK, t->md, NULL);
    size_t s = pos, e = len;
    if (rc > 0) {
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
      s = ov[0], e = ov[1];
    }
    if (s > pos) st = encode_piece(t, text + pos, s - pos, out); /* unmatched gap: its own piece */
    if (!st && e > s) st = encode_piece(t, text + s, e - s, out);
    pos = e > pos ? e : pos + 1;
  }
  if (st == BN_E_RANGE) return bn_fail(err, st, "prompt: more than %d tokens", out->cap);
  if (st) return bn_fail(err, st, "tokenizer: out of memory");
  return BN_OK;
}
