#include "model.h"

#include <stdlib.h>
#include <string.h>

void bn_vocab_free(bn_vocab *v) {
  for (int i = 0; i < v->n_tokens && v->tokens; i++) free(v->tokens[i]);
  for (int i = 0; i < v->n_merges && v->merges; i++) free(v->merges[i]);
  free(v->tokens);
  free(v->merges);
  free(v->scores);
  free(v->types);
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
