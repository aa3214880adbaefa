/* libFuzzer target: the tokenizers on any vocabulary and any text. The input
 * is a vocabulary (byte 0: the kind; then token lines "TYPE SCORE TEXT" up to
 * a blank line; then merge lines up to a blank line) and the text after it.
 * The tokenizer is built even when bn_vocab_check refuses the vocabulary:
 * it must stay inside its buffers on any bytes. Encoded ids must decode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/tokenizer.h"

static char *line(const uint8_t **p, const uint8_t *end, size_t *len) {
  const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
  size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
  char *s = malloc(n + 1);
  memcpy(s, *p, n);
  s[n] = 0;
  *len = n;
  *p += n + (nl != NULL);
  return s;
}

static void add(char ***arr, int *n, char *s) {
  *arr = realloc(*arr, (size_t)(*n + 1) * sizeof **arr);
  (*arr)[(*n)++] = s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const uint8_t *p = data + 1, *end = data + size;
  bn_vocab v = {.kind = data[0] & 1 ? BN_VOCAB_BPE : BN_VOCAB_SPM, .bos = -1, .eos = -1, .unk = -1};
  for (int part = 0; part < 2 && p < end; part++)
    for (size_t len; p < end;) {
      char *s = line(&p, end, &len);
      if (!len || strlen(s) != len || v.n_tokens >= 4096 || v.n_merges >= 4096) { /* a blank line (or NUL) ends it */
        free(s);
        break;
      }
      if (part == 1) {
        add(&v.merges, &v.n_merges, s);
        continue;
      }
      int i = v.n_tokens;
      add(&v.tokens, &v.n_tokens, strdup(len > 2 ? s + 2 : s));
      v.types = realloc(v.types, (size_t)v.n_tokens * sizeof *v.types);
      v.scores = realloc(v.scores, (size_t)v.n_tokens * sizeof *v.scores);
      v.types[i] = (unsigned char)s[0] % 8, v.scores[i] = len > 1 ? (float)((signed char)s[1]) : 0;
      free(s);
    }
  if (v.n_tokens) {
    v.unk = 0, v.bos = v.n_tokens > 1 ? 1 : 0;
    bn_error err;
    (void)bn_vocab_check(&v, "fuzz", &err);
    bn_tokenizer *t;
    if (!bn_tok_create(&v, &t, &err)) {
      size_t n = (size_t)(end - p);
      int32_t *ids = malloc((2 * n + 8) * sizeof *ids);
      int got;
      if (!bn_tok_encode(t, (const char *)p, n, 1, ids, (int)(2 * n + 8), &got, &err)) {
        char out[4096];
        bn_tok_decode(t, ids, got, out, sizeof out);
        for (int i = 0; i < got; i++) {
          size_t len;
          if (ids[i] < 0 || ids[i] >= v.n_tokens) abort(); /* an id outside the vocabulary */
          bn_tok_piece(t, ids[i], &len);
        }
      }
      free(ids);
      bn_tok_free(t);
    }
  }
  bn_vocab_free(&v);
  return 0;
}
