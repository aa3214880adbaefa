/* The backend seam (codegen/backend.h): a toy backend registered here that
 * supports one kernel family runs a model with the rest deferred to the
 * reference kernels, and a toy "device" that runs whole steps is handed every
 * step; both give the reference's logits exactly. The registry, the family
 * table and the node selector are checked against the graph itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../codegen/backend.h"
#include "../codegen/ref/ref.h"
#include "../frontend/import.h"
#include "../frontend/synth.h"
#include "../passes/pass.h"
#include "../runtime/session.h"
#include "testmodel.h"
#include "testutil.h"

/* ---- the toy backend: the final RMSNorm (NORM_QUANT, mode RMSNORM) on the reference kernel ---- */

static bn_kkey toy_key; /* the one key it builds: the kernel's shape lives here, not in code */
static int toy_calls, toy_keys;

static void toy_rmsnorm(const float *x, const float *w, uint8_t *y, float *tmp, int64_t T, int64_t t0, int64_t t1) {
  int64_t K = toy_key.k;
  __atomic_add_fetch(&toy_calls, 1, __ATOMIC_RELAXED);
  bn_ref_rmsnorm(x + t0 * K, t1 - t0, K, w, toy_key.eps, (float *)y + t0 * K);
}

static int toy_supports(void *self, const bn_kkey *key) {
  if (key->family != BN_K_NORM_QUANT || key->variant != BN_NQ_RMSNORM) return 0;
  return !toy_keys || bn_kkey_eq(key, &toy_key);
}

static bn_status toy_prepare(void *self, const bn_kkey *keys, int n, void **fns, bn_error *err) {
  for (int i = 0; i < n; i++) toy_key = keys[i], toy_keys = 1, fns[i] = (void *)toy_rmsnorm;
  return BN_OK;
}

static const bn_backend toy = {.name = "toy", .about = "one family", .targets = "native", .supports = toy_supports,
                               .prepare = toy_prepare};

/* ---- the toy device: every step through the reference interpreter ---- */

typedef struct {
  bn_ref *r;
  int steps;
} device;

static bn_status dev_open(const bn_backend_opts *o, void **self, bn_error *err) {
  const bn_memplan *mp = o->memplan;
  device *d = calloc(1, sizeof *d);
  bn_status st = bn_ref_create(o->g, mp->max_tokens, o->n_ctx, &d->r, err);
  if (st) return free(d), st;
  *self = d;
  return BN_OK;
}

static int dev_supports(void *self, const bn_kkey *key) { return 0; }

static bn_status dev_run(void *self, bn_graph_step *s, bn_error *err) {
  device *d = self;
  d->steps++;
  bn_status st = bn_ref_eval(d->r, s->tokens, s->n, s->pos, &s->out, err);
  if (!st && s->last_only) s->out += (size_t)(s->n - 1) * (size_t)bn_ref_output_width(d->r);
  return st;
}

static int dev_steps;
static void dev_close(void *self) {
  device *d = self;
  dev_steps = d->steps;
  bn_ref_free(d->r);
  free(d);
}

static const bn_backend dev = {.name = "toy-device", .about = "whole steps", .targets = "native", .open = dev_open,
                               .supports = dev_supports, .run_graph = dev_run, .close = dev_close};

/* ---- a model ---- */

static bn_gguf f;
static bn_model m;
static bn_memplan mp;
enum { NT = 12 };
static const int32_t tok[NT] = {1, 5, 9, 200, 31, 77, 4, 8, 15, 16, 23, 42};

static int setup(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/backend-tiny.gguf", BNC_TEST_TMP);
  bn_synth_params p = {bn_synth_find_shape("tiny"), "bitnet", BN_DT_TQ2_0, BN_DT_F16, 5, 0, NULL, 0};
  bn_error err = {0};
  bn_pass_opts po = {.max_tokens = 8, .verify = 1};
  if (tu_model(path, &p, &po, &f, &m, &mp, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return -1;
  }
  return 0; /* the weights point into f's mapping, kept for the whole run */
}

static int teardown(void **state) {
  (void)state;
  bn_memplan_free(&mp);
  bn_model_free(&m);
  bn_gguf_close(&f);
  return 0;
}

/* The logits of tok through a session on backend be (NULL: the reference kernels alone), in chunks
 * of 8 and then one token at a time (prefill and decode steps both). */
static float *logits(const bn_backend *be, int threads, int *jit_nodes, int *ref_nodes) {
  bn_session_params sp = {.n_ctx = 32, .exec = {.backend = be, .threads = threads}, .sampler = bn_sampler_defaults()};
  bn_session *s;
  bn_error err = {0};
  if (bn_session_create(&m, &mp, &sp, &s, &err)) fail_msg("%s", err.msg);
  size_t V = (size_t)m.hp.n_vocab;
  float *out = malloc(2 * NT * V * sizeof *out);
  if (bn_session_eval(s, tok, NT, out, &err)) fail_msg("%s", err.msg);
  bn_session_reset(s);
  for (int i = 0; i < NT; i++) { /* each after the tokens before it */
    const float *last;
    if (bn_session_append(s, tok + i, 1, &last, &err)) fail_msg("%s", err.msg);
    memcpy(out + (NT + i) * V, last, V * sizeof *out);
  }
  char kinds[256];
  if (jit_nodes) *jit_nodes = bn_exec_jit_nodes(bn_session_exec(s), NULL);
  if (ref_nodes) *ref_nodes = bn_exec_ref_nodes(bn_session_exec(s), kinds, sizeof kinds);
  bn_session_free(s);
  return out;
}

/* A prompt in chunks of 3 runs the output projection once, for its last chunk: the logits of its last token
 * are the bits of the same prompt in one call, on the reference kernels and the default backend, 1 and 2
 * threads. */
static void test_prompt_chunks_skip_the_head(void **state) {
  (void)state;
  size_t V = (size_t)m.hp.n_vocab;
  for (int b = 0; b < 2; b++)
    for (int threads = 1; threads <= 2; threads++) {
      bn_session_params sp = {.n_ctx = 32, .n_batch = 3, .exec = {.backend = b ? NULL : bn_backend_find("ref"),
                                                                  .threads = threads},
                              .sampler = bn_sampler_defaults()};
      bn_session *s;
      bn_error err = {0};
      if (bn_session_create(&m, &mp, &sp, &s, &err)) fail_msg("%s", err.msg);
      float *all = malloc(NT * V * sizeof *all);
      const float *last;
      if (bn_session_eval(s, tok, NT, all, &err)) fail_msg("%s", err.msg);
      bn_session_reset(s);
      const bn_exec_stat *st;
      int n = bn_exec_stats(bn_session_exec(s), &st), head = -1;
      for (int k = 0; k < n; k++)
        if (!strcmp(st[k].kind, "output_proj")) head = k;
      assert_true(head >= 0);
      long before = st[head].calls;
      if (bn_session_append(s, tok, NT, &last, &err)) fail_msg("%s", err.msg);
      assert_int_equal(st[head].calls - before, 1); /* 4 chunks, one projection */
      if (memcmp(last, all + (NT - 1) * V, V * sizeof *last)) fail_msg("backend %d, %d threads: other logits", b, threads);
      free(all);
      bn_session_free(s);
    }
}

static void test_toy_backend_defers_the_rest(void **state) {
  (void)state;
  bn_error err = {0};
  assert_int_equal(bn_backend_register(&toy, &err), BN_OK);
  assert_ptr_equal(bn_backend_find("toy"), &toy);
  assert_int_equal(bn_backend_register(&toy, &err), BN_E_INVALID); /* a name once */
  assert_non_null(strstr(err.msg, "registered already"));
  size_t n = 2 * NT * (size_t)m.hp.n_vocab;
  float *want = logits(NULL, 1, NULL, NULL);
  for (int threads = 1; threads <= 2; threads++) {
    int jit, ref;
    toy_calls = 0;
    float *got = logits(bn_backend_find("toy"), threads, &jit, &ref);
    assert_int_equal(jit, 1); /* the final norm */
    assert_int_equal(ref, m.graph.n_nodes - 1);
    assert_true(toy_calls >= 1 + NT); /* every step ran it (each thread its share) */
    assert_memory_equal(got, want, n * sizeof *got);
    free(got);
  }
  free(want);
}

static void test_device_runs_whole_steps(void **state) {
  (void)state;
  bn_error err = {0};
  assert_int_equal(bn_backend_register(&dev, &err), BN_OK);
  size_t n = 2 * NT * (size_t)m.hp.n_vocab;
  float *want = logits(NULL, 1, NULL, NULL);
  int jit;
  float *got = logits(bn_backend_find("toy-device"), 1, &jit, NULL);
  assert_int_equal(jit, m.graph.n_nodes); /* the device ran every node of the steps */
  assert_int_equal(dev_steps, 2 + NT); /* 12 tokens in chunks of 8, then 12 single ones */
  assert_memory_equal(got, want, n * sizeof *got);
  free(got), free(want);
}

/* The family table is whole, and the selector finds every node's family as the graph states it. */
static void test_families_and_selection(void **state) {
  (void)state;
  for (int f = 0; f < BN_K_COUNT; f++)
    assert_true(bn_kfamilies[f].name && bn_kfamilies[f].type && bn_kfamilies[f].key && bn_kfamilies[f].ref);
  int counts[BN_K_COUNT] = {0}, layers = m.hp.n_layer;
  for (int i = 0; i < m.graph.n_nodes; i++) {
    bn_kkey key;
    const bn_node *nd = &m.graph.nodes[i];
    if (!bn_kernel_select(&m.graph, i, &key)) continue;
    counts[key.family]++;
    if (nd->op == BN_OP_ATTENTION) assert_int_equal(key.family, BN_K_ATTENTION);
    if (nd->op == BN_OP_OUTPUT_PROJ) assert_int_equal(key.family, BN_K_MATMUL_F);
    if (nd->op == BN_OP_EMBED) assert_int_equal(key.family, BN_K_EMBED);
    if (nd->op == BN_OP_ROPE) assert_int_equal(key.family, BN_K_ROPE);
  }
  /* a BitNet layer: q/k/v, o, gate/up and down ternary matmuls (q/k/v and gate/up fused) */
  assert_int_equal(counts[BN_K_MATMUL] + counts[BN_K_MATMUL_LUT], 4 * layers);
  assert_int_equal(counts[BN_K_ATTENTION], layers);
  assert_int_equal(counts[BN_K_ROPE], 2 * layers);
  assert_int_equal(counts[BN_K_MATMUL_F], 1);
  assert_int_equal(counts[BN_K_EMBED], 1);
}

static void test_registry(void **state) {
  (void)state;
  assert_non_null(bn_backend_find("ref"));
  assert_null(bn_backend_find("nonesuch"));
  assert_ptr_equal(bn_backend_at(0), bn_backend_find("ref"));
  assert_non_null(strstr(bn_backend_names(), "ref"));
#ifdef BN_WITH_LLVM
  assert_non_null(bn_backend_find("llvm"));
#else
  assert_null(bn_backend_find("llvm"));
#endif
  assert_ptr_equal(bn_backend_default(), bn_backend_find("auto")); /* asmjit's kernels, else LLVM's */
  /* asking a backend for a kernel it does not support is an error naming both */
  bn_codegen *cg;
  bn_error err = {0};
  assert_int_equal(bn_codegen_open(bn_backend_find("ref"), NULL, &cg, &err), BN_OK);
  void *fn;
  bn_kkey key = {.family = BN_K_ROPE, .k = 64, .n = 4};
  assert_int_equal(bn_codegen_get(cg, &key, &fn, &err), BN_E_UNSUPPORTED);
  assert_non_null(strstr(err.msg, "backend ref: no kernel for rope"));
  bn_objcode code;
  assert_int_equal(bn_codegen_objects(cg, &m.graph, &code, &err), BN_E_UNSUPPORTED);
  bn_codegen_close(cg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),
      cmocka_unit_test(test_families_and_selection),
      cmocka_unit_test(test_toy_backend_defers_the_rest),
      cmocka_unit_test(test_prompt_chunks_skip_the_head),
      cmocka_unit_test(test_device_runs_whole_steps),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
