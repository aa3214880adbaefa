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
  *out = NULL;
  if (!isfinite(p->temperature) || !isfinite(p->top_p) || !isfinite(p->repeat_penalty) || !(p->repeat_penalty > 0) ||
      p->repeat_last_n < 0)
    return bn_fail(err, BN_E_INVALID, "sampler: temperature %g, top_p %g, repeat_penalty %g, repeat_last_n %d "
                   "(finite numbers, the penalty positive)", p->temperature, p->top_p, p->repeat_penalty,
                   p->repeat_last_n);
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

/* The largest logit, in 8 independent maxima: one chain of compares would wait
 * on each (bench/README.md has the timing). */
static float max_logit(const float *l, int n) {
  float m[8];
  for (int j = 0; j < 8; j++) m[j] = l[0];
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) m[j] = l[i + j] > m[j] ? l[i + j] : m[j];
  for (; i < n; i++) m[0] = l[i] > m[0] ? l[i] : m[0];
  for (int j = 1; j < 8; j++) m[0] = m[j] > m[0] ? m[j] : m[0];
  return m[0];
}

/* The first of the largest logits (NaNs never win; 0 where nothing compares). */
static int32_t argmax(const float *l, int n) {
  float mx = max_logit(l, n);
  for (int i = 0; i < n; i++)
    if (l[i] == mx) return i;
  return 0;
}

/* Heaps of token ids ordered by logit (ties: lower id first), in place: no
 * allocation. A max-heap (min = 0) has the largest on top, a min-heap the smallest. */
static int above(const float *l, int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); }

static void sift_down(int32_t *h, int n, int i, const float *l, int min) {
  for (;;) {
    int c = 2 * i + 1;
    if (c >= n) return;
    if (c + 1 < n && (min ? above(l, h[c], h[c + 1]) : above(l, h[c + 1], h[c]))) c++;
    if (min ? !above(l, h[i], h[c]) : !above(l, h[c], h[i])) return;
    int32_t t = h[c];
    h[c] = h[i], h[i] = t, i = c;
  }
}

/* Moves the top of the heap h[0..n) to h[n-1] (heapsort's step); returns it. */
static int32_t pop_top(int32_t *h, int n, const float *l, int min) {
  int32_t top = h[0];
  h[0] = h[n - 1], h[n - 1] = top;
  sift_down(h, n - 1, 0, l, min);
  return top;
}

/* The k largest logits into h[0..k) in ascending order, in one pass over the
 * vocabulary that keeps them in a min-heap (most logits lose to its top). */
static void top_k(const float *l, int V, int k, int32_t *h) {
  for (int i = 0; i < k; i++) h[i] = i;
  for (int i = k / 2 - 1; i >= 0; i--) sift_down(h, k, i, l, 1);
  float least = l[h[0]]; /* the heap's top, in a register: a later id wins only by a larger logit */
  for (int i = k; i < V; i++)
    if (l[i] > least) h[0] = i, sift_down(h, k, 0, l, 1), least = l[h[0]];
  for (int n = k; n > 1; n--) pop_top(h, n, l, 1); /* descending */
  for (int i = 0, j = k - 1; i < j; i++, j--) {
    int32_t t = h[i];
    h[i] = h[j], h[j] = t;
  }
}

static float weight(const bn_sampler *s, const float *logits, int32_t id, double mx) {
  return (float)exp((logits[id] - mx) / s->p.temperature);
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
  double mx = max_logit(logits, V), kept = 0;
  /* Candidates in descending order at idx[V - 1], idx[V - 2], ...: top-k first,
   * then the top-p nucleus of what remains (renormalized over the top k, as
   * llama.cpp does). Without top-k a max-heap of the whole vocabulary yields
   * them one at a time, as far as the nucleus reaches. */
  int k = p->top_k > 0 && p->top_k < V ? p->top_k : V, n = 0;
  if (k < V) {
    top_k(logits, V, k, s->idx + V - k);
    for (; n < k; n++) kept += s->prob[n] = weight(s, logits, s->idx[V - 1 - n], mx);
  } else {
    for (int i = 0; i < V; i++) kept += exp((logits[i] - mx) / p->temperature), s->idx[i] = i;
    for (int i = V / 2 - 1; i >= 0; i--) sift_down(s->idx, V, i, logits, 0);
  }
  double cum = 0;
  int cut = 0;
  while (cut < k) {
    if (cut == n) s->prob[n] = weight(s, logits, pop_top(s->idx, V - n, logits, 0), mx), n++;
    cum += s->prob[cut++];
    if (cum >= p->top_p * kept) break;
  }
  /* the i-th candidate sits at idx[V - 1 - i] */
  double r = bn_rng_unit(&s->state) * cum;
  for (int i = 0; i < cut; i++)
    if ((r -= s->prob[i]) < 0) return s->idx[V - 1 - i];
  return s->idx[V - cut];
}
