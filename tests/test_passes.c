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
#include "../codegen/kernels.h"
#include "../frontend/synth.h"
#include "../ir/irparse.h"
#include "../ir/quant.h"
#include "../ir/rng.h"
#include "../passes/pass.h"
#include "../passes/rewrite.h"
#include "testmodel.h"
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
        lo[m] = mp->offset[g->values[v].node];
        hi[m] = lo[m] + (int64_t)bn_value_bytes(g->values[v].dtype, &g->values[v].shape, mp->max_tokens);
        m++;
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

static int weights_of_type(const bn_graph *g, bn_dtype t);

static void check_model(const char *path, const char *what) {
  bn_gguf f;
  bn_model m, opt;
  bn_error err = {0};
  assert_int_equal(bn_gguf_open(&f, path, &err), BN_OK);
  assert_int_equal(bn_import_gguf(&f, &m, &err), BN_OK);
  assert_int_equal(bn_import_gguf(&f, &opt, &err), BN_OK);
  bn_pass_opts po = {.max_tokens = 8, .verify = 1};
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
  /* relayout-lut on every other matmul shape: the reference reads TL2 as the same trits, bit for bit */
  int64_t *all = malloc((size_t)opt.graph.n_nodes * 2 * sizeof *all), *shapes = malloc((size_t)opt.graph.n_nodes * 2 * sizeof *shapes);
  int n_all = bn_pass_matmul_shapes(&opt.graph, all), kept = 0;
  for (int i = 0; i < n_all; i += 2) shapes[2 * kept] = all[2 * i], shapes[2 * kept + 1] = all[2 * i + 1], kept++;
  int tp2 = weights_of_type(&opt.graph, BN_DT_TP2), eligible = 0;
  for (int i = 0; i < opt.graph.n_values; i++) {
    const bn_value *v = &opt.graph.values[i];
    for (int k = 0; k < kept && v->dtype == BN_DT_TP2 && v->shape.d[0] % 16 == 0; k++)
      if (shapes[2 * k] == v->shape.d[1] && shapes[2 * k + 1] == v->shape.d[0]) eligible++;
  }
  bn_pass_opts lo = {.max_tokens = 8, .verify = 1, .lut = shapes, .n_lut = kept, .t1 = all, .n_t1 = n_all};
  if (bn_pass_relayout_lut(&opt.graph, &lo, &err)) fail_msg("%s: relayout-lut: %s", what, err.msg);
  assert_int_equal(weights_of_type(&opt.graph, BN_DT_TL2), eligible);
  assert_int_equal(weights_of_type(&opt.graph, BN_DT_TP2), tp2 - eligible);
  hook_state h2 = {0, what};
  roundtrip_hook("relayout-lut", &opt.graph, 0, &h2);
  float *c = run(&opt.graph, tok, 12, 5, V);
  assert_memory_equal(b, c, 12 * V * sizeof *b);
  printf("  %s: %d of %d packed weights re-laid as TL2, logits bit-identical\n", what, eligible, tp2);
  /* relayout-t1 on every shape: the others at 1.6 bits (TL2 kept), the same trits: bit-identical again */
  if (bn_pass_relayout_t1(&opt.graph, &lo, &err)) fail_msg("%s: relayout-t1: %s", what, err.msg);
  assert_int_equal(weights_of_type(&opt.graph, BN_DT_TP1), tp2 - eligible);
  assert_int_equal(weights_of_type(&opt.graph, BN_DT_TL2), eligible);
  roundtrip_hook("relayout-t1", &opt.graph, 0, &h2);
  float *d = run(&opt.graph, tok, 12, 5, V);
  assert_memory_equal(b, d, 12 * V * sizeof *b);
  printf("  %s: %d re-laid as TP1, logits bit-identical\n", what, tp2 - eligible);
  assert_true(tp2 == 0 || (tp2 - eligible > 0 && eligible > 0)); /* none: every linear group-scaled (TG2H) */
  if (!tp2) assert_int_equal(weights_of_type(&opt.graph, BN_DT_TG2H), 4 * m.hp.n_layer); /* q|k|v, o, gate|up, down */
  free(a), free(b), free(c), free(d), free(shapes), free(all);
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
  const char *archs[] = {"bitnet", "bitnet-b1.58", "llama", "qwen3"};
  const bn_dtype types[] = {BN_DT_TQ1_0, BN_DT_TQ2_0, BN_DT_I2_S};
  for (int a = 0; a < 4; a++)
    for (int t = 0; t < 3; t++) {
      char path[512], what[64];
      snprintf(what, sizeof what, "synth %s %s", archs[a], bn_dtype_table[types[t]].name);
      snprintf(path, sizeof path, "%s/passes-%d-%d.gguf", BNC_TEST_TMP, a, t);
      bn_synth_params p = {bn_synth_find_shape("tiny"), archs[a], types[t], BN_DT_F16, 3, 0, NULL, 0};
      bn_error err = {0};
      assert_int_equal(bn_synth_write(&p, path, &err), BN_OK);
      check_model(path, what);
      remove(path);
    }
  /* a scale per block (TG2: TQ2_0's 256; TG2H: PQ2_0's 128), concatenated by fuse-projections as they are */
  const char *garch[] = {"llama", "qwen3"};
  const bn_dtype gtype[] = {BN_DT_TQ2_0, BN_DT_PQ2_0};
  for (int c = 0; c < 2; c++) {
    char path[512], what[64];
    snprintf(what, sizeof what, "synth %s %s, a scale per block", garch[c], bn_dtype_table[gtype[c]].name);
    snprintf(path, sizeof path, "%s/passes-g%d.gguf", BNC_TEST_TMP, c);
    bn_synth_params p = {bn_synth_find_shape("tiny"), garch[c], gtype[c], BN_DT_F16, 3, 0, NULL, 1};
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

/* ---- each pass on its own: what it leaves in the graph ---- */

static void histogram(const bn_graph *g, int h[BN_OP_COUNT]) {
  memset(h, 0, BN_OP_COUNT * sizeof *h);
  for (int i = 0; i < g->n_nodes; i++) h[g->nodes[i].op]++;
}

static int weights_of_type(const bn_graph *g, bn_dtype t) {
  int n = 0;
  for (int i = 0; i < g->n_values; i++) n += g->values[i].kind == BN_VAL_WEIGHT && g->values[i].dtype == t;
  return n;
}

static void load(const char *name, bn_gguf *f, bn_model *m) {
  char path[512];
  bn_error err = {0};
  snprintf(path, sizeof path, "%s/%s.gguf", BNC_TEST_DATA, name);
  assert_int_equal(bn_gguf_open(f, path, &err), BN_OK);
  assert_int_equal(bn_import_gguf(f, m, &err), BN_OK);
}

static void run_pass(bn_graph *g, const char *name) {
  bn_pass_opts o = {.max_tokens = 8, .verify = 1};
  bn_error err = {0};
  if (bn_pass_find(name)->run(g, &o, &err) || bn_graph_verify(g, &err)) fail_msg("%s: %s", name, err.msg);
}

/* 3 layers of t2 (SiLU, 4 heads): the op counts after each pass, in order. */
static void test_each_pass_shape_of_graph(void **state) {
  (void)state;
  bn_gguf f;
  bn_model m;
  load("t2-I2_S", &f, &m);
  int h[BN_OP_COUNT];
  histogram(&m.graph, h);
  assert_int_equal(h[BN_OP_BITLINEAR], 21);
  assert_int_equal(h[BN_OP_RMSNORM], 13);

  m.graph.values[m.graph.nodes[5].out].shape.d[1] = 7; /* a wrong declared shape */
  run_pass(&m.graph, "infer-shapes");
  assert_int_equal(m.graph.values[m.graph.nodes[5].out].shape.d[1], 256);

  run_pass(&m.graph, "lower-bitlinear");
  histogram(&m.graph, h);
  assert_int_equal(h[BN_OP_BITLINEAR], 0);
  assert_int_equal(h[BN_OP_TMATMUL], 21);
  assert_int_equal(h[BN_OP_DEQUANT], 21);
  assert_int_equal(h[BN_OP_QUANTIZE], 12); /* one per distinct input: attn_in, attn_sub, ffn_in, ffn_sub */

  run_pass(&m.graph, "pack-weights");
  assert_int_equal(weights_of_type(&m.graph, BN_DT_I2_S), 0);
  assert_int_equal(weights_of_type(&m.graph, BN_DT_TP2), 21);

  run_pass(&m.graph, "fold-constants");
  run_pass(&m.graph, "fuse-projections");
  histogram(&m.graph, h);
  assert_int_equal(h[BN_OP_TMATMUL], 12); /* qkv, o, gate_up, down */
  assert_int_equal(h[BN_OP_SLICE], 15);
  assert_int_equal(weights_of_type(&m.graph, BN_DT_TP2), 12);

  run_pass(&m.graph, "fuse-matmul");
  histogram(&m.graph, h);
  assert_int_equal(h[BN_OP_TMATMUL] + h[BN_OP_DEQUANT] + h[BN_OP_ADD], 0);
  assert_int_equal(h[BN_OP_FUSED], 12);

  run_pass(&m.graph, "fuse-gate");
  histogram(&m.graph, h);
  assert_int_equal(h[BN_OP_SILU] + h[BN_OP_MUL], 0);
  assert_int_equal(h[BN_OP_SLICE], 9);
  assert_int_equal(h[BN_OP_FUSED], 15);

  run_pass(&m.graph, "fuse-norm-quant");
  histogram(&m.graph, h);
  assert_int_equal(h[BN_OP_QUANTIZE], 0);
  assert_int_equal(h[BN_OP_RMSNORM], 1); /* the output norm feeds a float matmul */
  assert_int_equal(h[BN_OP_FUSED], 24);

  run_pass(&m.graph, "fuse-prologue");
  histogram(&m.graph, h);
  assert_int_equal(h[BN_OP_FUSED], 12); /* each norm + quantize went into the matmul reading it */
  for (int i = 0; i < m.graph.n_nodes; i++) {
    const bn_node *n = &m.graph.nodes[i];
    if (n->op != BN_OP_FUSED) continue;
    int wi, at = bn_fused_tmatmul(n, &wi);
    const bn_graph *b = n->body;
    assert_true(at == 2 || at == 6); /* after rmsnorm, quantize; or the gate's six */
    assert_int_equal(b->nodes[at - 2].op, BN_OP_RMSNORM);
    assert_int_equal(b->nodes[at - 1].op, BN_OP_QUANTIZE);
    assert_int_equal(b->nodes[at].in[0], b->nodes[at - 1].out);
    assert_int_equal(wi, 2); /* operands: the float rows, the norm weights, the matmul's weights (, residual) */
    assert_int_equal(m.graph.values[n->in[wi]].dtype, BN_DT_TP2);
    assert_int_equal(n->n_in, b->nodes[b->n_nodes - 1].op == BN_OP_ADD ? 4 : 3);
  }
  bn_model_free(&m);
  bn_gguf_close(&f);
}

/* llama's FFN gate has no sub-norm: fuse-gate makes slice, slice, silu, mul, quantize one kernel (a gate
 * without the norm), which stays a node of its own (a prologue normalizes); the selector gives it the
 * norm-quantize family's GATE_SILU_Q mode. (check_model compares its logits with the unfused graph's.) */
static void test_gate_without_norm(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/passes-llama.gguf", BNC_TEST_TMP);
  bn_synth_params p = {bn_synth_find_shape("tiny"), "llama", BN_DT_TQ2_0, BN_DT_F16, 3, 0, NULL, 0};
  bn_error err = {0};
  bn_gguf f;
  bn_model m;
  bn_memplan mp;
  bn_pass_opts po = {.max_tokens = 8, .verify = 1};
  if (tu_model(path, &p, &po, &f, &m, &mp, &err)) fail_msg("%s", err.msg);
  int h[BN_OP_COUNT], gates = 0;
  histogram(&m.graph, h);
  assert_int_equal(h[BN_OP_SILU] + h[BN_OP_MUL], 0);
  for (int i = 0; i < m.graph.n_nodes; i++) {
    const bn_node *n = &m.graph.nodes[i];
    int len, mode = n->body ? bn_fused_norm_quant(n->body, &len) : -1;
    if (mode < 0) continue;
    bn_kkey key;
    if (len == 5) {
      assert_int_equal(mode, BN_FUSED_GATE_SILU_Q);
      assert_int_equal(n->body->n_nodes, 5);
      assert_int_equal(n->n_in, 1); /* the gate|up rows alone */
      assert_true(bn_kernel_select(&m.graph, i, &key));
      assert_int_equal(key.family, BN_K_NORM_QUANT);
      assert_int_equal(key.variant, BN_NQ_GATE_SILU_Q);
      assert_int_equal(key.k, m.hp.n_ff);
      gates++;
    } else assert_true(len == 2); /* every prologue normalizes */
  }
  assert_int_equal(gates, m.hp.n_layer);
  bn_memplan_free(&mp);
  bn_model_free(&m);
  bn_gguf_close(&f);
  remove(path);
}

/* fuse-prologue leaves a quantized row with a second reader as it was: the kernel
 * that makes it stays, and the matmul reading it keeps no prologue. */
static void test_prologue_needs_one_reader(void **state) {
  (void)state;
  bn_gguf f;
  bn_model m;
  load("t2-I2_S", &f, &m);
  int n_passes;
  const bn_pass *pipe = bn_pass_list(&n_passes);
  for (int i = 0; i < n_passes && strcmp(pipe[i].name, "fuse-prologue"); i++) run_pass(&m.graph, pipe[i].name);
  bn_graph *g = &m.graph;
  int q = bn_graph_find_value(g, "l0.ffn_in.q8", 12), w = bn_graph_find_value(g, "l0.gate_up.w", 12);
  assert_true(q >= 0 && w >= 0);
  bn_error err = {0};
  int extra = bn_graph_add_node(g, BN_OP_TMATMUL, "extra", (int[]){q, w}, 2, NULL, &err);
  assert_true(extra >= 0);
  assert_int_equal(bn_graph_mark_output(g, extra), 0);
  run_pass(g, "fuse-prologue");
  int h[BN_OP_COUNT];
  histogram(g, h);
  assert_int_equal(h[BN_OP_FUSED], 13); /* 11 matmuls with their prologue, and l0's gate_up and its norm apart */
  q = bn_graph_find_value(g, "l0.ffn_in.q8", 12);
  assert_true(q >= 0);
  const bn_node *gu = &g->nodes[g->values[bn_graph_find_value(g, "l0.gate_up", 10)].node];
  assert_int_equal(gu->in[0], q);
  assert_int_equal(bn_fused_tmatmul(gu, NULL), 0);
  bn_model_free(&m);
  bn_gguf_close(&f);
}

static const float SCALE[2] = {1.75f, 0.5f};

/* fold-constants: per-tensor scales end up in the packed row scales. */
static void test_fold_constants(void **state) {
  (void)state;
  bn_gguf f, f2;
  bn_model m, ref;
  load("b158-TQ2_0", &f, &m);
  load("b158-TQ2_0", &f2, &ref);
  bn_model *both[2] = {&m, &ref};
  for (int k = 0; k < 2; k++) { /* give two bitlinears of layer 1 a .scale operand */
    bn_graph *g = &both[k]->graph;
    int64_t one = 1;
    for (int i = 0, done = 0; i < g->n_nodes && done < 2; i++)
      if (g->nodes[i].op == BN_OP_BITLINEAR && !strncmp(g->values[g->nodes[i].out].name, "l1.", 3)) {
        char nm[32];
        snprintf(nm, sizeof nm, "scale%d", done);
        g->nodes[i].in[2] = bn_graph_add_weight(g, nm, BN_DT_F32, bn_shape_make(1, &one), &SCALE[done], 4);
        g->nodes[i].n_in = 3;
        done++;
      }
  }
  const char *before[] = {"infer-shapes", "lower-bitlinear", "pack-weights"};
  for (int i = 0; i < 3; i++) run_pass(&m.graph, before[i]);
  int four = 0, h[BN_OP_COUNT];
  for (int i = 0; i < m.graph.n_nodes; i++) four += m.graph.nodes[i].op == BN_OP_DEQUANT && m.graph.nodes[i].n_in == 4;
  assert_int_equal(four, 2);
  run_pass(&m.graph, "fold-constants");
  for (int i = 0; i < m.graph.n_nodes; i++) assert_false(m.graph.nodes[i].op == BN_OP_DEQUANT && m.graph.nodes[i].n_in == 4);
  histogram(&m.graph, h);
  assert_int_equal(h[BN_OP_DEQUANT], 21);
  int32_t tok[6] = {1, 2, 3, 500, 600, 7};
  size_t V = (size_t)m.hp.n_vocab;
  float *a = run(&ref.graph, tok, 6, 6, V), *b = run(&m.graph, tok, 6, 6, V);
  assert_true(tu_rel_to_range(b, a, 6 * V) < 1e-5);
  free(a), free(b);
  bn_model_free(&m);
  bn_model_free(&ref);
  bn_gguf_close(&f);
  bn_gguf_close(&f2);
}

/* dce: a node nothing reads, and the weight only it read, disappear. */
static void test_dce(void **state) {
  (void)state;
  bn_gguf f;
  bn_model m;
  load("t2-TQ1_0", &f, &m);
  bn_graph *g = &m.graph;
  int64_t d = 256;
  float w[256] = {0};
  int wid = bn_graph_add_weight(g, "lonely", BN_DT_F32, bn_shape_make(1, &d), w, sizeof w);
  bn_error err = {0};
  int x0 = bn_graph_find_value(g, "x0", 2);
  assert_true(bn_graph_add_node(g, BN_OP_RMSNORM, "dead", (int[]){x0, wid}, 2, (double[4]){1e-5}, &err) >= 0);
  int n = g->n_nodes;
  run_pass(g, "dce");
  assert_int_equal(g->n_nodes, n - 1);
  assert_int_equal(bn_graph_find_value(g, "dead", 4), -1);
  assert_int_equal(bn_graph_find_value(g, "lonely", 6), -1);
  bn_model_free(&m);
  bn_gguf_close(&f);
}

/* A fused body whose node fails its shape rule is reported with the rule's message (it was
 * reported as "out of memory"). Two graphs: src makes %n = rmsnorm(%x [T, 8], %w [8]); the
 * body maps src's %x onto an argument of width 4, where that rmsnorm does not fit. */
static void test_fusion_error_keeps_its_message(void **state) {
  (void)state;
  const char *text = "bnc.ir 1\ngraph \"x\" {\n  input %t : i32[T]\n  weight %e : f32[3, 8]\n"
                     "  weight %e4 : f32[3, 4]\n  weight %w : f32[8]\n"
                     "  %x = embed %t, %e : f32[T, 8]\n  %y = embed %t, %e4 : f32[T, 4]\n"
                     "  %n = rmsnorm %x, %w {eps = 1.0000000000000001e-05} : f32[T, 8]\n  output %n\n  output %y\n}\n";
  bn_graph g;
  bn_error err = {0};
  if (bn_ir_parse(text, strlen(text), "t.bnir", &g, &err)) fail_msg("%s", err.msg);
  bn_rw rw;
  assert_int_equal(bn_rw_begin(&rw, &g, &err), BN_OK);
  bn_rw_copy(&rw, 0), bn_rw_copy(&rw, 1);
  bn_body b;
  bn_body_begin(&b, &g);
  bn_body_arg(&b, g.nodes[1].out);                   /* %y, 4 wide */
  bn_body_continue(&b, &g, g.nodes[0].out, bn_body_id(&b, g.nodes[1].out)); /* %x read as %y */
  bn_body_arg(&b, bn_graph_find_value(&g, "w", 1));
  bn_body_node(&b, 2);
  int in[2] = {bn_rw_val(&rw, g.nodes[1].out), bn_rw_val(&rw, bn_graph_find_value(&g, "w", 1))};
  assert_int_equal(bn_rw_add_fused(&rw, "n", in, 2, bn_body_end(&b, g.nodes[2].out)), -1);
  assert_int_equal(rw.st, BN_E_INVALID);
  if (!strstr(err.msg, "fusing %n: rmsnorm: weight %arg1 does not match the last dim of %arg0")) fail_msg("%s", err.msg);
  bn_rw_abort(&rw);
  bn_graph_free(&g);
}

/* Q8_0 quantization, against values worked out by hand and a bound: a block x_k = (k - 16) / 2 has
 * max |x| = 8, so d = 8 / 127 and q_k = round(x_k 127 / 8): q_0 = -127, q_16 = 0, q_17 = round(7.9375)
 * = 8, q_18 = round(15.875) = 16, q_31 = round(119.0625) = 119; a zero block has d = 0 and codes 0; on
 * random rows every element comes back within half a step (d / 2, d rounded to f16) of its value. */
static void test_q8_0_quantizer(void **state) {
  (void)state;
  float x[64];
  uint8_t q[68];
  for (int k = 0; k < 32; k++) x[k] = (float)(k - 16) / 2, x[32 + k] = 0;
  bn_q8_0_quantize(x, 64, q);
  const int want[][2] = {{0, -127}, {16, 0}, {17, 8}, {18, 16}, {31, 119}};
  for (int i = 0; i < 5; i++) assert_int_equal((int8_t)q[2 + want[i][0]], want[i][1]);
  uint16_t d;
  memcpy(&d, q, 2);
  assert_int_equal(d, bn_float_to_half(8.0f / 127));
  memcpy(&d, q + 34, 2);
  assert_int_equal(d, 0);
  for (int k = 0; k < 32; k++) assert_int_equal(q[36 + k], 0);
  uint64_t rng = 9;
  float r[256], back[256];
  uint8_t qr[8 * 34];
  for (int k = 0; k < 256; k++) r[k] = (float)(bn_rng_unit(&rng) * 6 - 3) * (k < 32 ? 100 : 1);
  bn_q8_0_quantize(r, 256, qr);
  bn_dequant(BN_DT_Q8_0, qr, 256, 0, 256, back);
  for (int b = 0; b < 8; b++) {
    float amax = 0;
    for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(r[32 * b + k]));
    for (int k = 0; k < 32; k++) /* d / 2, plus f16's rounding of d (2^-11 relative) over 127 steps */
      assert_true(fabsf(back[32 * b + k] - r[32 * b + k]) <= amax / 127 * (0.5f + 127 / 2048.0f));
  }
}

/* Q6_K quantization: a block whose 16-element sub-blocks are all x_k = (k % 16 - 8) / 4 has every
 * sub-block scale 2 / 32 = 1/16 (-2 to -32), so iscale = -128 / (1/16) = -2048, d = -2^-11 (f16 0x9000),
 * every sc = round(-2048 / 16) = -128 and the codes (k % 16 - 8) 4 exact: it comes back bit for bit. On
 * random blocks, one sub-block 50 times larger than the rest, every element comes back within one step
 * of its sub-block widened by the int8 scale's rounding: max |x| / 32 + 2 |d|. */
static void test_q6_k_quantizer(void **state) {
  (void)state;
  float x[256], back[256];
  uint8_t q[210];
  for (int k = 0; k < 256; k++) x[k] = (float)(k % 16 - 8) / 4;
  bn_q6_k_quantize(x, 256, q);
  uint16_t d;
  memcpy(&d, q + 208, 2);
  assert_int_equal(d, 0x9000);
  for (int s = 0; s < 16; s++) assert_int_equal((int8_t)q[192 + s], -128);
  bn_dequant(BN_DT_Q6_K, q, 256, 0, 256, back);
  assert_memory_equal(back, x, sizeof x);
  uint64_t rng = 11;
  float r[1024], rb[1024];
  uint8_t qr[4 * 210];
  for (int k = 0; k < 1024; k++) r[k] = (float)(bn_rng_unit(&rng) * 2 - 1) * (k % 256 < 16 ? 50 : 1);
  bn_q6_k_quantize(r, 1024, qr);
  bn_dequant(BN_DT_Q6_K, qr, 1024, 0, 1024, rb);
  for (int s = 0; s < 64; s++) {
    float amax = 0;
    uint16_t h;
    memcpy(&h, qr + s / 16 * 210 + 208, 2);
    float d = fabsf(bn_half_to_float(h));
    for (int k = 0; k < 16; k++) amax = fmaxf(amax, fabsf(r[16 * s + k]));
    for (int k = 0; k < 16; k++)
      if (fabsf(rb[16 * s + k] - r[16 * s + k]) > amax / 32 + 2 * d)
        fail_msg("q6_k element %d: %g back as %g (sub-block max %g)", 16 * s + k, r[16 * s + k], rb[16 * s + k], amax);
  }
}

/* quantize-head: asked for, the output projection reads a Q8_0 copy; the tied embedding keeps its exact
 * table; the logits stay within 1 % of their range of the exact graph's (measured: 0.26 %); Q6_K: more
 * error than Q8_0, the logits within 2 %; not
 * asked for, the graph is the pipeline's without it (the same printed IR). */
static void test_quantize_head(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/passes-head.gguf", BNC_TEST_TMP);
  bn_synth_params p = {bn_synth_find_shape("tiny"), "bitnet-b1.58", BN_DT_I2_S, BN_DT_F16, 3, 0, NULL, 0};
  bn_error err = {0};
  assert_int_equal(bn_synth_write(&p, path, &err), BN_OK);
  bn_gguf f;
  bn_model exact, q8, plain;
  assert_int_equal(bn_gguf_open(&f, path, &err), BN_OK);
  assert_int_equal(bn_import_gguf(&f, &exact, &err), BN_OK);
  assert_int_equal(bn_import_gguf(&f, &q8, &err), BN_OK);
  assert_int_equal(bn_import_gguf(&f, &plain, &err), BN_OK);
  bn_memplan m1, m2, m3;
  double rms = -1;
  bn_pass_opts pe = {.max_tokens = 8, .verify = 1, .head = "exact"}, pq = {.max_tokens = 8, .verify = 1, .head = "q8_0", .head_error = &rms},
               pp = {.max_tokens = 8, .verify = 1};
  if (bn_pass_run_pipeline(&exact.graph, &pe, &m1, NULL, NULL, &err) || bn_pass_run_pipeline(&q8.graph, &pq, &m2, NULL, NULL, &err) ||
      bn_pass_run_pipeline(&plain.graph, &pp, &m3, NULL, NULL, &err))
    fail_msg("%s", err.msg);
  char *a = bn_graph_print(&exact.graph), *b = bn_graph_print(&plain.graph);
  assert_string_equal(a, b);
  free(a), free(b);
  int head = -1, emb = -1;
  for (int i = 0; i < q8.graph.n_nodes; i++) {
    if (q8.graph.nodes[i].op == BN_OP_OUTPUT_PROJ) head = q8.graph.nodes[i].in[1];
    if (q8.graph.nodes[i].op == BN_OP_EMBED) emb = q8.graph.nodes[i].in[1];
  }
  assert_true(head >= 0 && emb >= 0 && head != emb);
  assert_int_equal(q8.graph.values[head].dtype, BN_DT_Q8_0);
  assert_int_equal(q8.graph.values[emb].dtype, BN_DT_F16);
  assert_true(rms > 0 && rms < 0.01); /* Q8_0 of N(0, s) rows: about 0.5 % */
  int32_t tok[12] = {3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26};
  size_t V = (size_t)exact.hp.n_vocab;
  float *x = run(&exact.graph, tok, 12, 5, V), *y = run(&q8.graph, tok, 12, 5, V);
  double rel = tu_rel_to_range(y, x, 12 * V);
  printf("  head q8_0: weights' rms error %.3f %%, logits within %.3g of their range of the exact head's\n", 100 * rms, rel);
  assert_true(rel > 0 && rel < 0.01);
  bn_model q6;
  bn_memplan m4;
  double rms6 = -1;
  bn_pass_opts p6 = {.max_tokens = 8, .verify = 1, .head = "q6_k", .head_error = &rms6};
  assert_int_equal(bn_import_gguf(&f, &q6, &err), BN_OK);
  if (bn_pass_run_pipeline(&q6.graph, &p6, &m4, NULL, NULL, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < q6.graph.n_nodes; i++)
    if (q6.graph.nodes[i].op == BN_OP_OUTPUT_PROJ) assert_int_equal(q6.graph.values[q6.graph.nodes[i].in[1]].dtype, BN_DT_Q6_K);
  float *z = run(&q6.graph, tok, 12, 5, V);
  double rel6 = tu_rel_to_range(z, x, 12 * V);
  printf("  head q6_k: weights' rms error %.3f %%, logits within %.3g of their range of the exact head's\n", 100 * rms6, rel6);
  assert_true(rms6 > rms && rms6 < 0.03 && rel6 > 0 && rel6 < 0.02);
  free(z);
  bn_memplan_free(&m4), bn_model_free(&q6);
  pq.head = "q4";
  assert_int_equal(bn_pass_quantize_head(&plain.graph, &pq, &err), BN_E_INVALID);
  assert_non_null(strstr(err.msg, "'q4'"));
  free(x), free(y);
  bn_memplan_free(&m1), bn_memplan_free(&m2), bn_memplan_free(&m3);
  bn_model_free(&exact), bn_model_free(&q8), bn_model_free(&plain);
  bn_gguf_close(&f);
  remove(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_packed_matmul_exact),
      cmocka_unit_test(test_pipeline_other_tools_files),
      cmocka_unit_test(test_pipeline_synth), cmocka_unit_test(test_gate_without_norm),
      cmocka_unit_test(test_each_pass_shape_of_graph),
      cmocka_unit_test(test_prologue_needs_one_reader),
      cmocka_unit_test(test_fold_constants),
      cmocka_unit_test(test_dce),
      cmocka_unit_test(test_fusion_error_keeps_its_message),
      cmocka_unit_test(test_q8_0_quantizer),
      cmocka_unit_test(test_q6_k_quantizer),
      cmocka_unit_test(test_quantize_head),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
