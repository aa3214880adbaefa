/* libFuzzer target: the executor's invariants. The input is two bytes (the
 * vocabulary size and the context length) and the text of a graph. A graph
 * that parses and verifies gets zero weights, a memory plan, a vocabulary of
 * that size and a reference-kernel session; whatever bn_exec_check lets
 * through must then evaluate tokens inside its buffers (ASan checks), and
 * whatever it refuses must be refused with a message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ir/irparse.h"
#include "../../passes/pass.h"
#include "../../runtime/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  bn_model m = {0};
  m.hp = (bn_hparams){.n_ctx = 1 + data[1] % 32, .n_vocab = 4 * (1 + data[0]), .rope_base = 10000, .eps = 1e-5f};
  bn_error err;
  if (bn_ir_parse((const char *)data + 2, size - 2, "fuzz", &m.graph, &err)) return 0;
  bn_graph *g = &m.graph;
  uint64_t total = 0;
  int ok = !bn_graph_verify(g, &err);
  for (int i = 0; ok && i < g->n_values; i++) {
    bn_value *v = &g->values[i];
    if (v->kind != BN_VAL_WEIGHT) continue;
    uint64_t bytes = bn_value_bytes(v->dtype, &v->shape, 0);
    if (!bytes || (total += bytes) > (16u << 20)) ok = 0;
    else if ((v->data = bn_graph_own(g, calloc(1, bytes)))) v->nbytes = bytes;
    else ok = 0;
  }
  bn_memplan mp = {0};
  int planned = ok && !bn_plan_memory(g, 4, &mp, &err);
  if (planned) {
    bn_vocab *vb = &m.vocab;
    vb->n_tokens = m.hp.n_vocab;
    vb->tokens = calloc((size_t)vb->n_tokens, sizeof *vb->tokens);
    vb->scores = calloc((size_t)vb->n_tokens, sizeof *vb->scores);
    vb->types = calloc((size_t)vb->n_tokens, sizeof *vb->types);
    vb->bos = vb->eos = vb->unk = -1;
    for (int i = 0; i < vb->n_tokens; i++) {
      char t[16];
      snprintf(t, sizeof t, "t%d", i);
      vb->tokens[i] = strdup(t), vb->types[i] = BN_TOK_NORMAL;
    }
    bn_session_params sp = {.exec = {.threads = 1}, .sampler = bn_sampler_defaults()};
    bn_session *s;
    if (!bn_session_create(&m, &mp, &sp, &s, &err)) {
      int32_t tok[3] = {0, (int32_t)(m.hp.n_vocab - 1), 1 % m.hp.n_vocab};
      const float *last;
      bn_session_append(s, tok, m.hp.n_ctx < 3 ? m.hp.n_ctx : 3, &last, &err);
      bn_session_free(s);
    } else if (!err.msg[0]) abort(); /* refused without a word */
    bn_memplan_free(&mp);
  }
  bn_model_free(&m);
  return 0;
}
