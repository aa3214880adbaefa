/* The sampler: greedy is argmax, the distribution follows softmax(logits / T),
 * top-k / top-p cut the tail, the repetition penalty follows llama.cpp's
 * rule, and a seed fixes the sequence. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <stdlib.h>

#include "../ir/rng.h"
#include "../runtime/sampler.h"

static bn_sampler *make(float temp, int top_k, float top_p, float rp, uint64_t seed, int n) {
  bn_sampler_params p = {temp, top_k, top_p, rp, 64, seed};
  bn_sampler *s;
  bn_error err = {0};
  assert_int_equal(bn_sampler_create(&p, n, &s, &err), BN_OK);
  return s;
}

static void test_greedy_is_argmax(void **state) {
  (void)state;
  bn_sampler *s = make(0, 40, 0.95f, 1.0f, 1, 5);
  float l[5] = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f};
  assert_int_equal(bn_sampler_sample(s, l, NULL, 0), 1); /* first of the tied maxima */
  bn_sampler_free(s);
  s = make(1.0f, 1, 1.0f, 1.0f, 7, 5); /* top-k 1 at any temperature */
  for (int i = 0; i < 50; i++) {
    float m[5] = {0.1f, 2.0f, -1.0f, 3.0f, 2.9f};
    assert_int_equal(bn_sampler_sample(s, m, NULL, 0), 3);
  }
  bn_sampler_free(s);
}

static void test_distribution_follows_softmax(void **state) {
  (void)state;
  const double p[3] = {0.5, 0.3, 0.2};
  int count[3] = {0};
  bn_sampler *s = make(2.0f, 0, 1.0f, 1.0f, 12345, 3);
  enum { N = 40000 };
  for (int i = 0; i < N; i++) {
    float l[3];
    for (int k = 0; k < 3; k++) l[k] = (float)(2.0 * log(p[k])); /* divided by T = 2 gives log p */
    count[bn_sampler_sample(s, l, NULL, 0)]++;
  }
  for (int k = 0; k < 3; k++) assert_true(fabs((double)count[k] / N - p[k]) < 0.015);
  bn_sampler_free(s);
}

static void test_top_p_cuts_tail(void **state) {
  (void)state;
  bn_sampler *s = make(1.0f, 0, 0.6f, 1.0f, 3, 3);
  int seen[3] = {0};
  for (int i = 0; i < 2000; i++) {
    float l[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    seen[bn_sampler_sample(s, l, NULL, 0)]++;
  }
  assert_true(seen[0] > 0 && seen[1] > 0);
  assert_int_equal(seen[2], 0); /* 0.5 < 0.6 <= 0.5 + 0.3: the nucleus is {0, 1} */
  bn_sampler_free(s);
  /* top-k 2, then top-p 0.6 over the renormalized pair (0.625, 0.375): only token 1 of 4 survives */
  s = make(1.0f, 2, 0.6f, 1.0f, 3, 4);
  memset(seen, 0, sizeof seen);
  for (int i = 0; i < 500; i++) {
    float l[4] = {logf(0.3f), logf(0.5f), logf(0.05f), logf(0.15f)};
    int t = bn_sampler_sample(s, l, NULL, 0);
    assert_true(t == 1);
  }
  bn_sampler_free(s);
}

static void test_repetition_penalty(void **state) {
  (void)state;
  bn_sampler *s = make(0, 0, 1.0f, 1.1f, 1, 3);
  int32_t hist[1] = {0};
  float l[3] = {2.0f, 1.9f, -5.0f}; /* 2.0 / 1.1 = 1.82 < 1.9 */
  assert_int_equal(bn_sampler_sample(s, l, hist, 1), 1);
  float m[3] = {-1.0f, -1.05f, -5.0f}; /* a negative logit is multiplied: -1.1 < -1.05 */
  assert_int_equal(bn_sampler_sample(s, m, hist, 1), 1);
  int32_t twice[2] = {0, 0}; /* a repeated token is penalized once: 2.2 / 1.1 = 2.0 > 1.95 */
  float r[3] = {2.2f, 1.95f, -5.0f};
  assert_int_equal(bn_sampler_sample(s, r, twice, 2), 0);
  bn_sampler_free(s);
}

static void test_seed_fixes_sequence(void **state) {
  (void)state;
  int32_t a[64], b[64], c[64];
  bn_sampler *s1 = make(1.0f, 0, 1.0f, 1.0f, 99, 16), *s2 = make(1.0f, 0, 1.0f, 1.0f, 99, 16),
             *s3 = make(1.0f, 0, 1.0f, 1.0f, 100, 16);
  for (int i = 0; i < 64; i++) {
    float l1[16], l2[16], l3[16];
    for (int k = 0; k < 16; k++) l1[k] = l2[k] = l3[k] = (float)(k % 5) * 0.3f;
    a[i] = bn_sampler_sample(s1, l1, NULL, 0);
    b[i] = bn_sampler_sample(s2, l2, NULL, 0);
    c[i] = bn_sampler_sample(s3, l3, NULL, 0);
  }
  assert_memory_equal(a, b, sizeof a);
  assert_memory_not_equal(a, c, sizeof a);
  bn_sampler_free(s1), bn_sampler_free(s2), bn_sampler_free(s3);
}

/* ---- against a sort: the whole vocabulary ordered by qsort, cut and drawn from as documented ---- */

static const float *g_l;
static int by_logit(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  if (g_l[x] != g_l[y]) return g_l[x] > g_l[y] ? -1 : 1;
  return x < y ? -1 : 1; /* ties: lower id first */
}

static int32_t sort_sample(const float *l, int V, float temp, int top_k, float top_p, uint64_t *state) {
  static int32_t id[4096];
  static float pr[4096];
  for (int i = 0; i < V; i++) id[i] = i;
  g_l = l;
  qsort(id, (size_t)V, sizeof *id, by_logit);
  double mx = l[id[0]], kept = 0, cum = 0;
  int k = top_k > 0 && top_k < V ? top_k : V, cut = 0;
  for (int i = 0; i < V; i++) pr[i] = (float)exp((l[id[i]] - mx) / temp);
  for (int i = 0; i < V; i++) /* over the top k; without top-k, the softmax total in id order */
    kept += k < V ? (i < k ? pr[i] : 0) : exp((l[i] - mx) / temp);
  while (cut < k) {
    cum += pr[cut++];
    if (cum >= top_p * kept) break;
  }
  double r = bn_rng_unit(state) * cum;
  for (int i = 0; i < cut; i++)
    if ((r -= pr[i]) < 0) return id[i];
  return id[cut - 1];
}

static void test_matches_sort(void **state) {
  (void)state;
  enum { V = 3000 };
  const struct { float temp, top_p; int top_k; } cfg[] = {{0.8f, 0.95f, 40}, {1.0f, 1.0f, 7}, {1.5f, 0.5f, 0},
                                                           {0.7f, 0.9f, 2999}, {1.2f, 1.0f, 1}, {0.5f, 0.99f, 300}};
  uint64_t g = 99;
  for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
    bn_sampler *s = make(cfg[c].temp, cfg[c].top_k, cfg[c].top_p, 1.0f, 1000 + c, V);
    uint64_t ref_state = 1000 + c;
    for (int step = 0; step < 40; step++) {
      float l[V], m[V];
      for (int i = 0; i < V; i++) /* coarse values: many ties, as F16-rounded logits have */
        l[i] = m[i] = (float)((int)(bn_rng_unit(&g) * 64) - 40) / 8;
      assert_int_equal(bn_sampler_sample(s, l, NULL, 0), sort_sample(m, V, cfg[c].temp, cfg[c].top_k, cfg[c].top_p, &ref_state));
    }
    bn_sampler_free(s);
  }
}

/* Greedy against the sort's first id: coarse logits (many tied maxima), an
 * odd vocabulary, the maximum placed first, last and in the 8-wide tail. */
static void test_greedy_matches_sort(void **state) {
  (void)state;
  enum { V = 3001 };
  bn_sampler *s = make(0, 40, 0.95f, 1.0f, 1, V);
  uint64_t g = 7;
  for (int step = 0; step < 60; step++) {
    float l[V], m[V];
    for (int i = 0; i < V; i++) l[i] = m[i] = (float)((int)(bn_rng_unit(&g) * 64) - 40) / 8;
    int at = step % 4 == 0 ? 0 : step % 4 == 1 ? V - 1 : step % 4 == 2 ? V - 3 : -1;
    if (at >= 0) l[at] = m[at] = 9.0f;
    uint64_t unused = 0;
    int32_t want = sort_sample(m, V, 1.0f, 1, 1.0f, &unused);
    if (at >= 0) assert_int_equal(want, at);
    assert_int_equal(bn_sampler_sample(s, l, NULL, 0), want);
  }
  bn_sampler_free(s);
  s = make(0, 40, 0.95f, 1.0f, 1, 3);
  float nan_later[3] = {1.0f, NAN, 2.0f};
  assert_int_equal(bn_sampler_sample(s, nan_later, NULL, 0), 2); /* a NaN never wins */
  bn_sampler_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_greedy_is_argmax), cmocka_unit_test(test_distribution_follows_softmax),
      cmocka_unit_test(test_top_p_cuts_tail), cmocka_unit_test(test_repetition_penalty),
      cmocka_unit_test(test_seed_fixes_sequence), cmocka_unit_test(test_matches_sort), cmocka_unit_test(test_greedy_matches_sort),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
