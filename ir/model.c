#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

void bn_vocab_free(bn_vocab *v) {
  for (int i = 0; i < v->n_tokens && v->tokens; i++) free(v->tokens[i]);
  for (int i = 0; i < v->n_merges && v->merges; i++) free(v->merges[i]);
  free(v->tokens);
  free(v->merges);
  free(v->scores);
  free(v->types);
  free(v->chat_template);
  memset(v, 0, sizeof *v);
}

void bn_model_free(bn_model *m) {
  bn_vocab_free(&m->vocab);
  bn_graph_free(&m->graph);
}

static int printable(int b) { return (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae; }

uint32_t bn_bpe_byte_to_cp(unsigned char b) {
  if (printable(b)) return b;
  uint32_t n = 0;
  for (int c = 0; c < b; c++) n += !printable(c);
  return 256u + n;
}

/* One string of the vocabulary: at most BN_VOCAB_MAX_BYTES, well-formed UTF-8 (the
 * tokenizers decode it by code points), no NUL (the readers refuse those). */
static bn_status check_str(const char *s, const char *file, const char *what, int i, bn_error *err) {
  size_t len = strlen(s);
  if (len > BN_VOCAB_MAX_BYTES)
    return bn_fail(err, BN_E_FORMAT, "%s: %s %d has %zu bytes (at most %d)", file, what, i, len, BN_VOCAB_MAX_BYTES);
  long bad = bn_utf8_invalid_at(s, len);
  if (bad >= 0)
    return bn_fail(err, BN_E_FORMAT, "%s: %s %d is not UTF-8 at byte %ld (0x%02x)", file, what, i, bad,
                   (unsigned char)s[bad]);
  return BN_OK;
}

bn_status bn_vocab_check(const bn_vocab *v, const char *file, bn_error *err) {
  bn_status st;
  for (int i = 0; i < v->n_tokens; i++) {
    if ((st = check_str(v->tokens[i], file, "token", i, err))) return st;
    if (v->types[i] < 0 || v->types[i] > BN_TOK_BYTE)
      return bn_fail(err, BN_E_FORMAT, "%s: token %d has type %d (0..%d)", file, i, (int)v->types[i], BN_TOK_BYTE);
    if (!isfinite(v->scores[i])) return bn_fail(err, BN_E_FORMAT, "%s: token %d has score %g", file, i, v->scores[i]);
  }
  for (int i = 0; i < v->n_merges; i++) {
    if ((st = check_str(v->merges[i], file, "merge", i, err))) return st;
    const char *sp = strchr(v->merges[i], ' ');
    if (!sp || sp == v->merges[i] || !sp[1])
      return bn_fail(err, BN_E_FORMAT, "%s: merge %d '%s' is not two symbols joined by a space", file, i, v->merges[i]);
  }
  return BN_OK;
}
