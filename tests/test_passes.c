/* The compiler pipeline: the fused, packed graph computes what the
 * unfused graph computes (integer sums exactly, logits within 1e-5
 * relative), every pass's output round-trips through the parser, and the
 * memory plan never lets two simultaneously live values overlap (checked
 * here by brute force, independently of bn_memplan_check). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../codegen/ref/ref.h"
#include "../frontend/synth.h"
#include "../ir/irparse.h"
#include "../ir/quant.h"
#include "../ir/rng.h"
#include "../passes/pass.h"
#include "testutil.h"

static float *run(const bn_graph *g, const int32_t *tok, int n, int chunk, size_t V) {
  bn_ref *r;
  bn_error err = {0};
  if (bn_ref_create(g, chunk, 64, &r, &err)) fail_msg("%s", err.msg);
  float *out = malloc((size_t)n * V * sizeof *out);
  for (int i = 0; i < n; i += chunk) {
    int c = n - i < chunk ? n - i : chunk;
    const float *l;
    if (bn_ref_eval(r, tok + i, c, i, &l, &err)) fail_msg("%s", err.msg);
    memcpy(out + (size_t)i * V, l, (size_t)c * V * sizeof *l);
  }
  bn_ref_free(r);
  return out;
}

typedef struct {
  int passes;
  const char *what;
} hook_state;

/* After every pass: print -> parse -> print is identical. */
static void roundtrip_hook(const char *pass, const bn_graph *g, double s, void *user) {
  (void)s;
  hook_state *h = user;
  char *a = bn_graph_print(g);
  bn_graph p;
  bn_error err = {0};
  if (bn_ir_parse(a, strlen(a), pass, &p, &err)) fail_msg("%s after %s: %s", h->what, pass, err.msg);
  char *b = bn_graph_print(&p);
  if (strcmp(a, b)) fail_msg("%s: IR after %s does not round-trip", h->what, pass);
  free(a), free(b);
  bn_graph_free(&p);
  h->passes++;
}

/* Independent check: at every node, the values live there occupy disjoint bytes. */
static void brute_force_plan_check(const bn_graph *g, const bn_memplan *mp) {
  int n = g->n_values;
  int *first = malloc((size_t)n * sizeof *first), *last = malloc((size_t)n * sizeof *last);
  for (int v = 0; v < n; v++) first[v] = -1, last[v] = -1;
  for (int i = 0; i < g->n_nodes; i++) {
    first[g->nodes[i].out] = i;
    if (last[g->nodes[i].out] < i) last[g->nodes[i].out] = i;
    for (int k = 0; k < g->nodes[i].n_in; k++) last[g->nodes[i].in[k]] = i;
  }
  for (int k = 0; k < g->n_outputs; k++) last[g->outputs[k]] = g->n_nodes;
  for (int i = 0; i < g->n_nodes; i++) {
    /* live at i: node outputs with first <= i <= last, plus node i's body intermediates */
    int64_t lo[4096], hi[4096];
    int m = 0;
    for (int v = 0; v < n; v++)
      if (g->values[v].kind == BN_VAL_NODE && first[v] <= i && i <= last[v]) {
        lo[m] = mp->offset[v];
        hi[m++] = mp->offset[v] + (int64_t)bn_value_bytes(g->values[v].dtype, &g->values[v].shape, mp->max_tokens);
      }
    const bn_graph *b = g->nodes[i].body;
    for (int k = 0; b && k < b->n_nodes; k++)
      if (b->nodes[k].out != b->outputs[0]) {
        const bn_value *bv = &b->values[b->nodes[k].out];
        lo[m] = mp->body_offset[i][b->nodes[k].out];
        hi[m] = lo[m] + (int64_t)bn_value_bytes(bv->dtype, &bv->shape, mp->max_tokens);
        m++;
      }
    for (int x = 0; x < m; x++) {
      assert_true(lo[x] >= 0 && hi[x] <= mp->arena_bytes);
      for (int y = 0; y < x; y++)
        if (lo[x] < hi[y] && lo[y] < hi[x]) fail_msg("node %d: two live values overlap", i);
    }
  }
  free(first), free(last);
}

static void check_model(const char *path, const char *what) {
  bn_gguf f;
  bn_model m, opt;
  bn_error err = {0};
  assert_int_equal(bn_gguf_open(&f, path, &err), BN_OK);
  assert_int_equal(bn_import_gguf(&f, &m, &err), BN_OK);
  assert_int_equal(bn_import_gguf(&f, &opt, &err), BN_OK);
  bn_pass_opts po = {8, 1};
  bn_memplan mp;
  hook_state h = {0, what};
  if (bn_pass_run_pipeline(&opt.graph, &po, &mp, roundtrip_hook, &h, &err)) fail_msg("%s: %s", what, err.msg);
  int n_pass;
  bn_pass_list(&n_pass);
  assert_int_equal(h.passes, n_pass + 1);
  brute_force_plan_check(&opt.graph, &mp);
  printf("  %s: %d -> %d nodes, arena %lld bytes vs %lld unplanned\n", what, m.graph.n_nodes, opt.graph.n_nodes,
         (long long)mp.arena_bytes, (long long)mp.sum_bytes);
  assert_true(mp.arena_bytes < mp.sum_bytes);
  int32_t tok[12] = {3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26};
  size_t V = (size_t)m.hp.n_vocab;
  float *a = run(&m.graph, tok, 12, 5, V), *b = run(&opt.graph, tok, 12, 5, V);
  double maxrel = 0;
  for (size_t i = 0; i < 12 * V; i++) maxrel = fmax(maxrel, fabs(a[i] - b[i]) / fmax(fabs(a[i]), 1e-3));
  printf("  %s: fused vs unfused logits, max relative diff %.3g\n", what, maxrel);
  assert_true(maxrel < 1e-5);
  free(a), free(b);
  bn_memplan_free(&mp);
  bn_model_free(&m);
  bn_model_free(&opt);
  bn_gguf_close(&f);
}

static void test_pipeline_other_tools_files(void **state) {
  (void)state;
  const char *names[] = {"t2-TQ2_0", "t2-TQ1_0", "t2-I2_S", "b158-TQ2_0", "b158-TQ1_0"};
  for (int i = 0; i < 5; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", BNC_TEST_DATA, names[i]);
    check_model(path, names[i]);
  }
}

static void test_pipeline_synth(void **state) {
  (void)state;
  const char *archs[] = {"bitnet", "bitnet-b1.58"};
  const bn_dtype types[] = {BN_DT_TQ1_0, BN_DT_TQ2_0, BN_DT_I2_S};
  for (int a = 0; a < 2; a++)
    for (int t = 0; t < 3; t++) {
      char path[512], what[64];
      snprintf(what, sizeof what, "synth %s %s", archs[a], bn_dtype_table[types[t]].name);
      snprintf(path, sizeof path, "%s/passes-%d-%d.gguf", BNC_TEST_TMP, a, t);
      bn_synth_params p = {bn_synth_find_shape("tiny"), archs[a], types[t], BN_DT_F16, 3, 0};
      bn_error err = {0};
      assert_int_equal(bn_synth_write(&p, path, &err), BN_OK);
      check_model(path, what);
      remove(path);
    }
}

/* Integer parts exactly: tmatmul over TP2-packed weights equals the int32
 * sums over the original encoding, and dequant equals bitlinear bit for bit. */
static void test_packed_matmul_exact(void **state) {
  (void)state;
  uint64_t rng = 11;
  const bn_dtype types[] = {BN_DT_TQ1_0, BN_DT_TQ2_0, BN_DT_I2_S};
  const int shapes[][3] = {{1, 256, 3}, {5, 512, 7}, {3, 768, 64}, {8, 256, 129}};
  for (int ti = 0; ti < 3; ti++)
    for (int si = 0; si < 4; si++) {
      int T = shapes[si][0], K = shapes[si][1], N = shapes[si][2];
      int8_t *trit = malloc((size_t)N * K), *row = malloc((size_t)K), *q = malloc((size_t)T * K);
      for (int i = 0; i < N * K; i++) trit[i] = (int8_t)(bn_rng_next(&rng) % 3) - 1;
      int64_t dims[2] = {N, K};
      bn_shape s = bn_shape_make(2, dims);
      uint8_t *orig = malloc(bn_dtype_nbytes(types[ti], (uint64_t)N * K));
      bn_ternary_encode(types[ti], trit, (uint64_t)N * K, 0.37f, orig);
      uint8_t *tp2 = malloc(bn_value_bytes(BN_DT_TP2, &s, 0));
      for (int r = 0; r < N; r++) /* the scale as the original stores it (TQ: fp16) */
        bn_tp2_write_row(tp2, (uint64_t)N, (uint64_t)K, (uint64_t)r, trit + (size_t)r * K,
                         bn_ternary_row_scale(types[ti], orig, (uint64_t)N * K, (uint64_t)r, (uint64_t)K));
      bn_value wo = {BN_VAL_WEIGHT, "w", types[ti], s, -1, orig, 0}, wp = {BN_VAL_WEIGHT, "p", BN_DT_TP2, s, -1, tp2, 0};
      float *x = malloc((size_t)T * K * sizeof *x), *y1 = malloc((size_t)T * N * 4), *y2 = malloc((size_t)T * N * 4);
      for (int i = 0; i < T * K; i++) x[i] = (float)(bn_rng_unit(&rng) * 4 - 2);
      uint8_t *qa = malloc((size_t)(T * bn_qa8_row_bytes(K)));
      bn_ref_quantize(x, T, K, qa);
      int32_t *a1 = malloc((size_t)T * N * 4), *a2 = malloc((size_t)T * N * 4);
      float bs[16], sc[8];
      bn_ref_tmatmul(qa, T, K, N, &wo, a1, row, bs);
      bn_ref_tmatmul(qa, T, K, N, &wp, a2, row, bs);
      if (memcmp(a1, a2, (size_t)T * N * 4)) fail_msg("tmatmul differs: type %s, T=%d K=%d N=%d", bn_dtype_table[types[ti]].name, T, K, N);
      for (int t = 0; t < T; t++) /* and the sums are the hand-computed ones */
        for (int n = 0; n < N; n++) {
          int32_t want = 0;
          for (int k = 0; k < K; k++) want += ((int8_t *)(qa + t * bn_qa8_row_bytes(K)))[k] * trit[(size_t)n * K + k];
          assert_int_equal(a2[t * N + n], want);
        }
      bn_ref_dequant(a2, qa, T, K, N, &wp, 1.0f, y1);
      bn_ref_bitlinear(x, T, K, N, &wo, 1.0f, y2, q, sc, row, bs);
      assert_memory_equal(y1, y2, (size_t)T * N * 4);
      free(trit), free(row), free(q), free(orig), free(tp2), free(x), free(y1), free(y2), free(qa), free(a1), free(a2);
    }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_packed_matmul_exact),
      cmocka_unit_test(test_pipeline_other_tools_files),
      cmocka_unit_test(test_pipeline_synth),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
