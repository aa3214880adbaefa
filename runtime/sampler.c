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

static int32_t argmax(const float *l, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; i++)
    if (l[i] > l[best]) best = i;
  return best;
}

/* Max-heap of token ids by logit (ties: lower id first), in place: no allocation. */
static int above(const float *l, int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); }

static void sift_down(int32_t *h, int n, int i, const float *l) {
  for (;;) {
    int c = 2 * i + 1;
    if (c >= n) return;
    if (c + 1 < n && above(l, h[c + 1], h[c])) c++;
    if (!above(l, h[c], h[i])) return;
    int32_t t = h[c];
    h[c] = h[i], h[i] = t, i = c;
  }
}

/* Moves the largest logit of the heap h[0..n) to h[n-1] (heapsort's step); returns it. */
static int32_t pop_max(int32_t *h, int n, const float *l) {
  int32_t top = h[0];
  h[0] = h[n - 1], h[n - 1] = top;
  sift_down(h, n - 1, 0, l);
  return top;
}

/* Pops the next candidate (into idx[V - 1 - i]) and returns its unnormalized probability. */
static float weight(bn_sampler *s, const float *logits, int heap_n, double mx) {
  return (float)exp((logits[pop_max(s->idx, heap_n, logits)] - mx) / s->p.temperature);
}

int32_t bn_sampler_sample(bn_sampler *s, float *logits, const int32_t *hist, int n_hist) {
  const bn_sampler_params *p = &s->p;
  if (p->repeat_penalty != 1.0f && p->repeat_last_n > 0) {
    int from = n_hist - p->repeat_last_n < 0 ? 0 : n_hist - p->repeat_last_n;
    for (int i = from; i < n_hist; i++) {
      int seen_later = 0; /* penalize each distinct token once, at its last occurrence */
      for (int j = i + 1; j < n_hist && !seen_later; j++) seen_later = hist[j] == hist[i];
      if (seen_later) continue;
      float *l = &logits[hist[i]];
      *l = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
    }
  }
  int V = s->n_vocab;
  if (p->temperature <= 0) return argmax(logits, V);
  double mx = logits[argmax(logits, V)], total = 0;
  for (int i = 0; i < V; i++) total += exp((logits[i] - mx) / p->temperature);
  for (int i = 0; i < V; i++) s->idx[i] = i;
  for (int i = V / 2 - 1; i >= 0; i--) sift_down(s->idx, V, i, logits);
  /* Candidates in descending order: top-k first, then the top-p nucleus of
   * what remains (renormalized over the top k, as llama.cpp does). */
  int k = p->top_k > 0 && p->top_k < V ? p->top_k : V, n = 0;
  double kept = total;
  if (k < V) {
    kept = 0;
    for (; n < k; n++) kept += s->prob[n] = weight(s, logits, V - n, mx);
  }
  double cum = 0;
  int cut = 0;
  while (cut < k) {
    if (cut == n) s->prob[n] = weight(s, logits, V - n, mx), n++;
    cum += s->prob[cut++];
    if (cum >= p->top_p * kept) break;
  }
  /* the i-th candidate sits at idx[V - 1 - i] */
  double r = bn_rng_unit(&s->state) * cum;
  for (int i = 0; i < cut; i++)
    if ((r -= s->prob[i]) < 0) return s->idx[V - 1 - i];
  return s->idx[V - cut];
}
