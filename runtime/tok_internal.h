/* Shared by the tokenizer files: the tokenizer state. */
#ifndef BN_RT_TOK_INTERNAL_H
#define BN_RT_TOK_INTERNAL_H

#include "../ir/strmap.h"
#include "tokenizer.h"

struct bn_tokenizer {
  const bn_vocab *v;
  bn_strmap tok;    /* token text -> id */
  bn_strmap merge;  /* BPE: "left right" -> rank */
  int byte_tok[256];/* id of the token for each raw byte, -1 if none */
  char **piece;     /* decoded bytes of each token */
  size_t *piece_len;
  int special_len[32];  /* byte lengths of the added tokens, longest first (bn_tok_encode_special) */
  int n_special_len;
  uint8_t special_first[256]; /* whether an added token starts with this byte */
  void *re;         /* BPE: compiled pcre2 pre-tokenizer */
  void *md;         /* BPE: pcre2 match data */
};

/* Appends the ids of one merged symbol list; returns BN_E_RANGE when full. */
typedef struct {
  int32_t *ids;
  int cap, n;
} bn_idbuf;

bn_status bn_idbuf_push(bn_idbuf *b, int32_t id);

/* first: the text starts the prompt (BN_PRE_SPM_FIRST prefixes only such a text). */
bn_status bn_tok_spm_encode(const bn_tokenizer *t, const char *text, size_t len, int first, bn_idbuf *out,
                            bn_error *err);
bn_status bn_tok_bpe_encode(const bn_tokenizer *t, const char *text, size_t len, bn_idbuf *out, bn_error *err);
bn_status bn_tok_bpe_init(bn_tokenizer *t, bn_error *err);
bn_status bn_tok_merges_init(bn_tokenizer *t, bn_error *err); /* the merge ranks alone (bn_bpe_prio) */
void bn_tok_bpe_fini(bn_tokenizer *t);
/* Inverse of GPT-2's byte table (bn_bpe_byte_to_cp in ir/model.h). */
int bn_bpe_cp_to_byte(uint32_t cp); /* -1 if not a mapped code point */

/* Greedy pair merging shared by SPM (best = highest score) and BPE (best = lowest rank):
 * symbols are byte ranges [start[i], start[i]+len[i]) of buf, linked by next/prev. */
typedef struct {
  int *start, *len, *next;
  int n;
} bn_symbols;

typedef double (*bn_pair_prio)(const bn_tokenizer *t, const char *s, size_t len_a, size_t len_b);
/* Priority of merging "a" and "b": minus the rank of the merge "a b" (-inf: none). */
double bn_bpe_prio(const bn_tokenizer *t, const char *s, size_t len_a, size_t len_b);
/* Splits buf into UTF-8 characters, then repeatedly merges the adjacent pair
 * of highest priority (leftmost on ties) until none is mergeable, in O(n log n). Calls
 * emit(t, piece, len, out) for each final symbol in order. */
bn_status bn_symbols_merge(const bn_tokenizer *t, const char *buf, size_t len, bn_pair_prio prio,
                           bn_status (*emit)(const bn_tokenizer *, const char *, size_t, bn_idbuf *), bn_idbuf *out);

#endif
