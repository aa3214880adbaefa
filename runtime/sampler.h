/* Token sampling: greedy, or temperature with top-k, top-p and a repetition
 * penalty, from a seeded generator. All buffers are made at create time. */
#ifndef BN_RT_SAMPLER_H
#define BN_RT_SAMPLER_H

#include <stdint.h>

#include "../ir/status.h"

typedef struct {
  float temperature;  /* <= 0: greedy */
  int top_k;          /* <= 0: off */
  float top_p;        /* >= 1: off */
  float repeat_penalty; /* 1: off */
  int repeat_last_n;
  uint64_t seed;
} bn_sampler_params;

typedef struct bn_sampler bn_sampler;

bn_sampler_params bn_sampler_defaults(void);
bn_status bn_sampler_create(const bn_sampler_params *p, int n_vocab, bn_sampler **out, bn_error *err);
/* Picks the next token from logits (which may be modified); history is the
 * tokens so far (for the repetition penalty). */
int32_t bn_sampler_sample(bn_sampler *s, float *logits, const int32_t *history, int n_history);
void bn_sampler_free(bn_sampler *s);

#endif
