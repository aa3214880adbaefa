/* SentencePiece-style BPE ("llama" vocab): spaces become U+2581, one is
 * prefixed (bn_vocab_pre says when), adjacent pieces merge by highest token score
 * (or, where the vocabulary has merges, as tokenizer.json's byte-fallback BPE:
 * the pair of lowest merge rank), and any piece without a token falls back to
 * its bytes as <0xXX> tokens. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

static double spm_prio(const bn_tokenizer *t, const char *s, size_t la, size_t lb) {
  int id = bn_strmap_get(&t->tok, s, la + lb);
  return id < 0 ? -INFINITY : t->v->scores[id];
}

static bn_status spm_emit(const bn_tokenizer *t, const char *s, size_t len, bn_idbuf *out) {
  int id = bn_strmap_get(&t->tok, s, len);
  if (id >= 0) return bn_idbuf_push(out, id);
  for (size_t i = 0; i < len; i++) {
    int b = t->byte_tok[(unsigned char)s[i]];
    bn_status st = bn_idbuf_push(out, b >= 0 ? b : t->v->unk >= 0 ? t->v->unk : 0);
    if (st) return st;
  }
  return BN_OK;
}

bn_status bn_tok_spm_encode(const bn_tokenizer *t, const char *text, size_t len, int first, bn_idbuf *out,
                            bn_error *err) {
  if (!len) return BN_OK;
  size_t spaces = 1;
  for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
  char *buf = malloc(len + 2 * spaces + 1), *p = buf;
  if (!buf) return bn_fail(err, BN_E_NOMEM, "tokenizer: out of memory");
  if (t->v->pre != BN_PRE_SPM_FIRST || (first && text[0] != ' ')) memcpy(p, "\xe2\x96\x81", 3), p += 3;
  for (size_t i = 0; i < len; i++) {
    if (text[i] == ' ') memcpy(p, "\xe2\x96\x81", 3), p += 3;
    else *p++ = text[i];
  }
  bn_status st = bn_symbols_merge(t, buf, (size_t)(p - buf), t->v->n_merges ? bn_bpe_prio : spm_prio, spm_emit, out);
  free(buf);
  if (st == BN_E_RANGE) return bn_fail(err, st, "prompt: more than %d tokens", out->cap);
  if (st) return bn_fail(err, st, "tokenizer: out of memory");
  return BN_OK;
}
