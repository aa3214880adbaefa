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
