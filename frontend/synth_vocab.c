/* Synthetic tokenizers of the right kind and size.
 *
 * llama (SentencePiece): <unk>, <s>, </s>, the 256 byte tokens, single
 * characters, then pieces grown one letter at a time ("▁t", "▁th", "▁the"…)
 * in breadth-first order with falling scores, so every piece is reachable by
 * merging a shorter one.
 *
 * gpt2 (llama3-style BPE): the 256 byte symbols of GPT-2's table, then merges
 * grown the same way ("Ġ t", "Ġt h"…), then control tokens at the end
 * (llama3's: <|begin_of_text|>, <|end_of_text|>, <|start_header_id|>, <|end_header_id|>, <|eot_id|> in
 * their places among the reserved ones). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/model.h"
#include "synth.h"

static const char LETTERS[] = "etaoinshrdlcumwfgypbvkjxqz";

typedef struct {
  char **tok;
  int n, cap;
  char **merge;
  int n_merge;
} vocab_build;

static int add(vocab_build *b, const char *s) {
  if (b->n >= b->cap) return 0;
  return (b->tok[b->n++] = strdup(s)) != NULL;
}

/* Grows tokens breadth-first from tokens [from, n): each + one letter. */
static int grow(vocab_build *b, int from, int limit, int gpt2) {
  for (int i = from; i < b->n && b->n < limit; i++)
    for (const char *c = LETTERS; *c && b->n < limit; c++) {
      char t[256];
      if (strlen(b->tok[i]) > 200) return 1;
      snprintf(t, sizeof t, "%s%c", b->tok[i], *c);
      if (gpt2) {
        char m[256];
        snprintf(m, sizeof m, "%s %c", b->tok[i], *c);
        if (!(b->merge[b->n_merge++] = strdup(m))) return 0;
      }
      if (!add(b, t)) return 0;
    }
  return 1;
}

static void free_build(vocab_build *b) {
  for (int i = 0; i < b->n; i++) free(b->tok[i]);
  for (int i = 0; i < b->n_merge; i++) free(b->merge[i]);
  free(b->tok);
  free(b->merge);
}

bn_status bn_synth_vocab(bn_gguf_writer *w, const char *pre, int n_vocab, bn_error *err) {
  int gpt2 = pre != NULL;
  if (n_vocab < 300) return bn_fail(err, BN_E_INVALID, "synth: vocab of %d is too small (>= 300)", n_vocab);
  vocab_build b = {calloc((size_t)n_vocab, sizeof(char *)), 0, n_vocab, calloc((size_t)n_vocab, sizeof(char *)), 0};
  float *scores = calloc((size_t)n_vocab, sizeof *scores);
  int32_t *types = calloc((size_t)n_vocab, sizeof *types);
  bn_status st = BN_OK;
  if (!b.tok || !b.merge || !scores || !types) goto oom;
  if (!gpt2) {
    if (!add(&b, "<unk>") || !add(&b, "<s>") || !add(&b, "</s>")) goto oom;
    types[0] = BN_TOK_UNKNOWN, types[1] = types[2] = BN_TOK_CONTROL;
    for (int i = 0; i < 256; i++) {
      char t[8];
      snprintf(t, sizeof t, "<0x%02X>", i);
      types[b.n] = BN_TOK_BYTE;
      if (!add(&b, t)) goto oom;
    }
    int first = b.n;
    if (!add(&b, "\xe2\x96\x81")) goto oom; /* ▁ */
    for (int c = '!'; c <= '~'; c++) {
      char t[2] = {(char)c, 0};
      if (!add(&b, t)) goto oom;
    }
    if (!grow(&b, first, n_vocab, 0)) goto oom;
    for (int i = first; i < b.n; i++) types[i] = BN_TOK_NORMAL, scores[i] = (float)-(i - first);
    bn_gguf_w_str(w, "tokenizer.ggml.model", "llama");
    bn_gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)b.tok, (uint64_t)b.n);
    bn_gguf_w_arr_f32(w, "tokenizer.ggml.scores", scores, (uint64_t)b.n);
    bn_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)b.n);
    bn_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 1);
    bn_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 2);
    bn_gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    bn_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 1);
  } else {
    int n_special = n_vocab >= 100000 ? 256 : 10; /* llama3's: the chat template's markers among them */
    /* the 256 byte symbols, in byte order, as GPT-2's table maps them */
    for (int by = 0; by < 256; by++) {
      unsigned cp = bn_bpe_byte_to_cp((unsigned char)by);
      char t[4] = {0};
      if (cp < 0x80) t[0] = (char)cp;
      else t[0] = (char)(0xc0 | cp >> 6), t[1] = (char)(0x80 | (cp & 63));
      if (!add(&b, t)) goto oom;
    }
    /* grow from "Ġ" (space, U+0120) and the lowercase letters */
    int seeds[27], ns = 0;
    for (int i = 0; i < 256; i++)
      if (!strcmp(b.tok[i], "\xc4\xa0") || (strlen(b.tok[i]) == 1 && b.tok[i][0] >= 'a' && b.tok[i][0] <= 'z'))
        seeds[ns++] = i;
    int base = b.n;
    for (int k = 0; k < ns; k++)
      for (const char *c = LETTERS; *c && b.n < n_vocab - n_special; c++) {
        char t[8], m[8];
        snprintf(t, sizeof t, "%s%c", b.tok[seeds[k]], *c);
        snprintf(m, sizeof m, "%s %c", b.tok[seeds[k]], *c);
        if (!(b.merge[b.n_merge++] = strdup(m)) || !add(&b, t)) goto oom;
      }
    if (!grow(&b, base, n_vocab - n_special, 1)) goto oom;
    for (int i = 0; i < b.n; i++) types[i] = BN_TOK_NORMAL;
    int bos = b.n;
    for (int i = 0; b.n < n_vocab; i++) {
      char t[64];
      static const char *const named[10] = {"<|begin_of_text|>", "<|end_of_text|>", NULL, NULL, NULL, NULL,
                                            "<|start_header_id|>", "<|end_header_id|>", NULL, "<|eot_id|>"};
      if (i < 10 && named[i]) snprintf(t, sizeof t, "%s", named[i]);
      else snprintf(t, sizeof t, "<|reserved_special_token_%d|>", i < 8 ? i - 2 : i < 10 ? 4 : i - 5);
      types[b.n] = BN_TOK_CONTROL;
      if (!add(&b, t)) goto oom;
    }
    bn_gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
    bn_gguf_w_str(w, "tokenizer.ggml.pre", pre);
    bn_gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)b.tok, (uint64_t)b.n);
    bn_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)b.n);
    bn_gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)b.merge, (uint64_t)b.n_merge);
    bn_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    bn_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)bos + 1);
    bn_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 1);
  }
  if (b.n != n_vocab) st = bn_fail(err, BN_E_INVALID, "synth: built %d tokens, wanted %d", b.n, n_vocab);
  goto done;
oom:
  st = bn_fail(err, BN_E_NOMEM, "synth: out of memory building the vocabulary");
done:
  free_build(&b);
  free(scores);
  free(types);
  return st;
}
