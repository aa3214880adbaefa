#include "sampler.h"

#include <math.h>
#include <stdlib.h>

#include "../ir/rng.h"

struct bn_sampler {
  bn_sampler_params p;
  int n_vocab;
  uint64_t state;
  int32_t *idx;
  float *prob;
};

bn_sampler_params bn_sampler_defaults(void) {
  return (bn_sampler_params){.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .repeat_penalty = 1.1f,
                             .repeat_last_n = 64, .seed = 42};
}

bn_status bn_sampler_create(const bn_sampler_params *p, int n_vocab, bn_sampler **out, bn_error *err) {
  bn_sampler *s = calloc(1, sizeof *s);
  if (s) {
    s->idx = malloc((size_t)n_vocab * sizeof *s->idx);
    s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
  }
  if (!s || !s->idx || !s->prob) {
    bn_sampler_free(s);
    return bn_fail(err, BN_E_NOMEM, "sampler: out of memory");
  }
  s->p = *p;
  s->n_vocab = n_vocab;
  s->state = p->seed ? p->seed : 0x9e3779b97f4a7c15ull;
  *out = s;
  return BN_OK;
}

void bn_sampler_free(bn_sampler *s) {
  if (!s) return;
  free(s->idx);
  free(s->prob);
  free(s);
}

static const float *g_logits; /* qsort has no context argument */
static int by_logit_desc(const void *a, const void *b) {
  float x = g_logits[*(const int32_t *)a], y = g_logits[*(const int32_t *)b];
  return x < y ? 1 : x > y ? -1 : (*(const int32_t *)a > *(const int32_t *)b) - (*(const int32_t *)a < *(const int32_t *)b);
}

static int32_t argmax(const float *l, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; i++)
    if (l[i] > l[best]) best = i;
  return best;
}

int32_t bn_sampler_sample(bn_sampler *s, float *logits, const int32_t *hist, int n_hist) {
  const bn_sampler_params *p = &s->p;
  if (p->repeat_penalty != 1.0f && p->repeat_last_n > 0)
    for (int i = n_hist - p->repeat_last_n < 0 ? 0 : n_hist - p->repeat_last_n; i < n_hist; i++) {
      float *l = &logits[hist[i]];
      *l = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
    }
  if (p->temperature <= 0) return argmax(logits, s->n_vocab);
  int n = s->n_vocab;
  for (int i = 0; i < n; i++) s->idx[i] = i;
  g_logits = logits;
  qsort(s->idx, (size_t)n, sizeof *s->idx, by_logit_desc);
  if (p->top_k > 0 && p->top_k < n) n = p->top_k;
  double sum = 0, mx = logits[s->idx[0]];
  for (int i = 0; i < n; i++) sum += s->prob[i] = (float)exp((logits[s->idx[i]] - mx) / p->temperature);
  if (p->top_p < 1.0f) {
    double c = 0;
    for (int i = 0; i < n; i++)
      if ((c += s->prob[i] / sum) >= p->top_p) {
        n = i + 1;
        break;
      }
    sum = 0;
    for (int i = 0; i < n; i++) sum += s->prob[i];
  }
  double r = bn_rng_unit(&s->state) * sum;
  for (int i = 0; i < n; i++)
    if ((r -= s->prob[i]) < 0) return s->idx[i];
  return s->idx[n - 1];
}
