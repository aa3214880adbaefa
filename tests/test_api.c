/* The C API's contract (include/bnc.h): every entry point refuses NULL
 * handles, texts, token arrays and output pointers with BNC_ERR_INVALID and a
 * message; a plan freed before its sessions lives until the last one goes; a
 * plan or session freed twice, or used after its free, is refused; NaN
 * sampling parameters are refused; a generation cut by a full context says
 * so. Run under ASan, a use after free here would be caught. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "../frontend/synth.h"
#include "../include/bnc.h"
#include "../passes/pass.h"
#include "../runtime/plan.h"
#include "testmodel.h"
#include "testutil.h"

static char plan_path[512];

static int setup(void **state) {
  (void)state;
  char gguf[512];
  snprintf(gguf, sizeof gguf, "%s/api.gguf", BNC_TEST_TMP);
  snprintf(plan_path, sizeof plan_path, "%s/api.bnplan", BNC_TEST_TMP);
  bn_synth_params p = {bn_synth_find_shape("tiny"), "bitnet-b1.58", BN_DT_TQ2_0, BN_DT_F16, 3, 0, NULL, 0};
  bn_error err = {0};
  bn_gguf f;
  bn_model m;
  bn_memplan mp;
  bn_pass_opts po = {.max_tokens = 8, .verify = 1};
  if (tu_model(gguf, &p, &po, &f, &m, &mp, &err) || bn_plan_write(&m, &mp, &(bn_plan_write_opts){0}, plan_path, &err))
    fail_msg("%s", err.msg);
  bn_memplan_free(&mp);
  bn_model_free(&m);
  bn_gguf_close(&f);
  return 0;
}

#define EXPECT_INVALID(call, words)                                                   \
  do {                                                                                \
    assert_int_equal((call), BNC_ERR_INVALID);                                        \
    if (!strstr(bnc_last_error(), words)) fail_msg("error was: %s", bnc_last_error()); \
  } while (0)

static bnc_session *open_session(bnc_plan *p, int n_ctx) {
  bnc_session_params sp = bnc_session_default_params();
  sp.n_ctx = n_ctx;
  bnc_session *s;
  if (bnc_session_create(p, &sp, &s)) fail_msg("%s", bnc_last_error());
  return s;
}

static void test_null_arguments(void **state) {
  (void)state;
  bnc_plan *p;
  bnc_session *s;
  int32_t ids[8];
  int n;
  EXPECT_INVALID(bnc_plan_open(NULL, &p), "path is NULL");
  assert_null(p);
  EXPECT_INVALID(bnc_plan_open(plan_path, NULL), "out is NULL");
  if (bnc_plan_open(plan_path, &p)) fail_msg("%s", bnc_last_error());
  bnc_session_params sp = bnc_session_default_params();
  EXPECT_INVALID(bnc_session_create(NULL, &sp, &s), "plan is NULL");
  EXPECT_INVALID(bnc_session_create(p, NULL, &s), "params is NULL");
  EXPECT_INVALID(bnc_session_create(p, &sp, NULL), "out is NULL");
  sp.n_ctx = -1;
  EXPECT_INVALID(bnc_session_create(p, &sp, &s), "n_ctx = -1");
  s = open_session(p, 32);
  EXPECT_INVALID(bnc_tokenize(NULL, "hi", ids, 8, &n), "session is NULL");
  EXPECT_INVALID(bnc_tokenize(s, NULL, ids, 8, &n), "text and n must not be NULL");
  EXPECT_INVALID(bnc_tokenize(s, "hi", ids, 8, NULL), "text and n must not be NULL");
  EXPECT_INVALID(bnc_tokenize(s, "hi", NULL, 8, &n), "ids not NULL");
  EXPECT_INVALID(bnc_tokenize(s, "hi", ids, -1, &n), "cap not negative");
  EXPECT_INVALID(bnc_eval(s, NULL, 1), "tokens must not be NULL");
  EXPECT_INVALID(bnc_eval(s, ids, 0), "n must be at least 1");
  EXPECT_INVALID(bnc_eval(NULL, ids, 1), "session is NULL");
  EXPECT_INVALID(bnc_generate(s, NULL, 4, NULL, NULL), "prompt is NULL");
  EXPECT_INVALID(bnc_generate(s, "hi", -1, NULL, NULL), "n_predict is negative");
  assert_null(bnc_logits(NULL));
  assert_int_equal(bnc_plan_vocab_size(NULL), 0);
  assert_int_equal(bnc_plan_context_length(NULL), 0);
  assert_string_equal(bnc_plan_arch(NULL), "");
  assert_string_equal(bnc_token_text(NULL, 1, NULL), "");
  size_t len;
  bnc_token_text(s, 5, NULL); /* len may be NULL */
  assert_string_equal(bnc_token_text(s, -3, &len), "");
  assert_int_equal(len, 0);
  bnc_session_timings(s, NULL);
  bnc_reset(NULL);
  assert_int_equal(bnc_tokenize(s, "hi", NULL, 0, &n), BNC_ERR_RANGE); /* counting only: no room */
  bnc_session_free(s);
  bnc_plan_free(p);
}

/* The plan is freed first: its sessions keep working, the same logits as before. */
static void test_plan_freed_before_session(void **state) {
  (void)state;
  bnc_plan *p;
  if (bnc_plan_open(plan_path, &p)) fail_msg("%s", bnc_last_error());
  int V = bnc_plan_vocab_size(p);
  bnc_session *a = open_session(p, 32), *b = open_session(p, 32);
  int32_t tok[3] = {1, 7, 42};
  if (bnc_eval(a, tok, 3)) fail_msg("%s", bnc_last_error());
  float *before = malloc((size_t)V * sizeof *before);
  memcpy(before, bnc_logits(a), (size_t)V * sizeof *before);
  bnc_plan_free(p);
  bnc_plan_free(p); /* twice: refused, not a double free */
  assert_non_null(strstr(bnc_last_error(), "freed twice"));
  bnc_session *c;
  bnc_session_params sp = bnc_session_default_params();
  EXPECT_INVALID(bnc_session_create(p, &sp, &c), "the plan was freed");
  if (bnc_eval(b, tok, 3)) fail_msg("%s", bnc_last_error());
  assert_memory_equal(bnc_logits(b), before, (size_t)V * sizeof *before);
  bnc_session_free(a);
  if (bnc_eval(b, tok, 1)) fail_msg("%s", bnc_last_error()); /* still alive: b holds the plan */
  bnc_session_free(b); /* the last one: the plan goes with it */
  EXPECT_INVALID(bnc_eval(b, tok, 1), "not a live session");
  bnc_session_free(b);
  assert_non_null(strstr(bnc_last_error(), "freed twice"));
  assert_int_equal(bnc_plan_vocab_size(p), 0);
  assert_non_null(strstr(bnc_last_error(), "not a live plan"));
  free(before);
}

/* A session pointer is not a plan and the other way round. */
static void test_handle_kinds(void **state) {
  (void)state;
  bnc_plan *p;
  if (bnc_plan_open(plan_path, &p)) fail_msg("%s", bnc_last_error());
  bnc_session *s = open_session(p, 16);
  int32_t tok = 1;
  assert_int_equal(bnc_plan_vocab_size((bnc_plan *)s), 0);
  EXPECT_INVALID(bnc_eval((bnc_session *)p, &tok, 1), "not a live session");
  bnc_session_free(s);
  bnc_plan_free(p);
}

static void test_nan_sampling(void **state) {
  (void)state;
  bnc_plan *p;
  bnc_session *s;
  if (bnc_plan_open(plan_path, &p)) fail_msg("%s", bnc_last_error());
  float bad[3] = {NAN, INFINITY, -INFINITY};
  for (int field = 0; field < 3; field++)
    for (int k = 0; k < 3; k++) {
      bnc_session_params sp = bnc_session_default_params();
      if (field == 0) sp.temperature = bad[k];
      if (field == 1) sp.top_p = bad[k];
      if (field == 2) sp.repeat_penalty = bad[k];
      EXPECT_INVALID(bnc_session_create(p, &sp, &s), "finite numbers");
    }
  bnc_session_params sp = bnc_session_default_params();
  sp.repeat_penalty = 0;
  EXPECT_INVALID(bnc_session_create(p, &sp, &s), "the penalty positive");
  bnc_plan_free(p);
}

static int count(int32_t token, const char *text, size_t len, void *user) {
  (void)token, (void)text, (void)len;
  ++*(int *)user;
  return 0;
}

static void test_context_full(void **state) {
  (void)state;
  bnc_plan *p;
  if (bnc_plan_open(plan_path, &p)) fail_msg("%s", bnc_last_error());
  bnc_session_params sp = bnc_session_default_params();
  sp.n_ctx = 12, sp.ignore_eos = 1;
  bnc_session *s;
  if (bnc_session_create(p, &sp, &s)) fail_msg("%s", bnc_last_error());
  int32_t ids[16];
  int n, got = 0;
  if (bnc_tokenize(s, "ab", ids, 16, &n)) fail_msg("%s", bnc_last_error());
  if (bnc_generate(s, "ab", 100, count, &got)) fail_msg("%s", bnc_last_error());
  bnc_timings t;
  bnc_session_timings(s, &t);
  assert_int_equal(got, 12 - n);
  assert_int_equal(t.context_full, 1);
  got = 0;
  if (bnc_generate(s, "ab", 2, count, &got)) fail_msg("%s", bnc_last_error());
  bnc_session_timings(s, &t);
  assert_int_equal(got, 2);
  assert_int_equal(t.context_full, 0);
  bnc_session_free(s);
  bnc_plan_free(p);
}

/* The K/V cache's type: F16 changes the logits a little (1e-5 .. 5 % of their range: docs/kv-cache.md),
 * F32 is the default, anything else is refused. */
static void test_kv_type(void **state) {
  (void)state;
  bnc_plan *p;
  if (bnc_plan_open(plan_path, &p)) fail_msg("%s", bnc_last_error());
  static const int32_t tok[6] = {1, 5, 17, 30, 2, 9};
  float out[2][4096];
  int V = bnc_plan_vocab_size(p);
  assert_true(V > 0 && V <= 4096);
  for (int k = 0; k < 2; k++) {
    bnc_session_params sp = bnc_session_default_params();
    assert_int_equal(sp.kv, BNC_KV_F32);
    sp.n_ctx = 16, sp.kv = k ? BNC_KV_F16 : BNC_KV_F32;
    bnc_session *s;
    if (bnc_session_create(p, &sp, &s) || bnc_eval(s, tok, 6)) fail_msg("%s", bnc_last_error());
    memcpy(out[k], bnc_logits(s), (size_t)V * sizeof(float));
    bnc_session_free(s);
  }
  double rel = tu_rel_to_range(out[1], out[0], (size_t)V);
  printf("  F16 K/V cache: max |diff| / logit range %.3g\n", rel);
  assert_true(rel > 1e-5 && rel < 0.05);
  bnc_session_params sp = bnc_session_default_params();
  sp.kv = (bnc_kv_type)7;
  bnc_session *s;
  EXPECT_INVALID(bnc_session_create(p, &sp, &s), "kv = 7");
  bnc_plan_free(p);
}

/* A kernel cache the caller names is used (entries appear there) and checked (a directory
 * others may write to is refused with the reason). */
static void test_cache_dir(void **state) {
  (void)state;
  char dir[600], cmd[1300];
  snprintf(dir, sizeof dir, "%s/api-cache", BNC_TEST_TMP);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
  bnc_plan *p;
  if (bnc_plan_open(plan_path, &p)) fail_msg("%s", bnc_last_error());
  bnc_session_params sp = bnc_session_default_params();
  sp.cache_dir = dir;
  bnc_session *s;
  if (bnc_session_create(p, &sp, &s)) fail_msg("%s", bnc_last_error());
  bnc_session_free(s);
#ifdef BN_WITH_LLVM /* a backend that generates code keeps it there */
  snprintf(cmd, sizeof cmd, "ls '%s' | grep -q '[.]bnk$'", dir);
  assert_int_equal(system(cmd), 0);
#endif
  chmod(dir, 0777);
  assert_int_equal(bnc_session_create(p, &sp, &s), BNC_ERR_INVALID);
  assert_non_null(strstr(bnc_last_error(), "others may write to it"));
  bnc_plan_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_null_arguments), cmocka_unit_test(test_plan_freed_before_session),
      cmocka_unit_test(test_handle_kinds),   cmocka_unit_test(test_nan_sampling),
      cmocka_unit_test(test_context_full),   cmocka_unit_test(test_cache_dir),
      cmocka_unit_test(test_kv_type),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
