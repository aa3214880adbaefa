/* The trained example model (examples/bitnet-kjv-*.gguf, made by
 * examples/tiny-model/train.py) against what PyTorch computed at training
 * time (examples/tiny-model/reference.json, heldout.tokens):
 *  - bnc tokenizes the held-out text into exactly the tokenizer's ids;
 *  - bnc's perplexity on it equals PyTorch's within 0.5% relative, for both
 *    GGUFs and for a compiled plan;
 *  - greedy generation of 32 tokens from the prompt equals PyTorch's, on the
 *    reference kernels and on the LLVM backend. */
#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../frontend/import.h"
#include "../passes/pass.h"
#include "../runtime/plan.h"
#include "../runtime/session.h"
#include "testmodel.h"
#include "testutil.h"

#define EX BNC_TEST_DATA "/../../examples"

static cJSON *ref;
static double ref_ppl;

static int setup(void **state) {
  (void)state;
  char *text = tu_read(EX "/tiny-model/reference.json", NULL);
  if (!text || !(ref = cJSON_Parse(text))) return -1;
  free(text);
  ref_ppl = cJSON_GetObjectItem(ref, "heldout_perplexity")->valuedouble;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  cJSON_Delete(ref);
  return 0;
}

typedef struct {
  bn_gguf f;
  bn_model m;
  bn_memplan mp;
} compiled;

static void compile(const char *path, compiled *c) {
  bn_error err = {0};
  bn_pass_opts po = {.max_tokens = 32, .verify = 1};
  if (tu_model(path, NULL, &po, &c->f, &c->m, &c->mp, &err)) fail_msg("%s", err.msg);
}

static void release(compiled *c) {
  bn_memplan_free(&c->mp);
  bn_model_free(&c->m);
  bn_gguf_close(&c->f);
}

static bn_session *session(const bn_model *m, const bn_memplan *mp, const bn_backend *b, int greedy) {
  bn_sampler_params sp = bn_sampler_defaults();
  if (greedy) sp.temperature = 0, sp.repeat_penalty = 1;
  bn_session_params p = {.n_ctx = 256, .ignore_eos = 1, .exec = {.backend = b, .threads = 2}, .sampler = sp};
  bn_session *s;
  bn_error err = {0};
  if (bn_session_create(m, mp, &p, &s, &err)) fail_msg("%s", err.msg);
  return s;
}

static int32_t *heldout_ids(bn_session *s, int *n) {
  size_t len = 0;
  char *text = tu_read(EX "/tiny-model/heldout.txt", &len);
  assert_non_null(text);
  int32_t *ids = malloc((len + 1) * sizeof *ids);
  bn_error err = {0};
  if (bn_tok_encode(bn_session_tokenizer(s), text, len, 0, ids, (int)len + 1, n, &err)) fail_msg("%s", err.msg);
  free(text);
  return ids;
}

static void test_tokenization_matches(void **state) {
  (void)state;
  compiled c;
  compile(EX "/bitnet-kjv-i2_s.gguf", &c);
  assert_false(c.m.vocab.add_bos);
  bn_session *s = session(&c.m, &c.mp, bn_backend_find("llvm"), 1);
  int n;
  int32_t *ids = heldout_ids(s, &n);
  size_t bytes = 0;
  int32_t *want = tu_read(EX "/tiny-model/heldout.tokens", &bytes);
  assert_non_null(want);
  assert_int_equal(n, (int)(bytes / 4));
  for (int i = 0; i < n; i++)
    if (ids[i] != want[i]) fail_msg("held-out token %d: bnc %d, tokenizers %d", i, ids[i], want[i]);
  free(ids), free(want);
  bn_session_free(s);
  release(&c);
}

static double ppl_of(const bn_model *m, const bn_memplan *mp) {
  bn_session *s = session(m, mp, bn_backend_find("llvm"), 1);
  int n;
  int32_t *ids = heldout_ids(s, &n);
  float *logits = malloc((size_t)256 * m->hp.n_vocab * sizeof *logits);
  bn_ppl_result r;
  bn_error err = {0};
  if (bn_session_perplexity(s, ids, n, 256, 256, logits, &r, &err)) fail_msg("%s", err.msg);
  assert_int_equal(r.scored, cJSON_GetObjectItem(ref, "heldout_scored_tokens")->valueint);
  free(ids), free(logits);
  bn_session_free(s);
  return r.ppl;
}

/* The I2_S GGUF (compiled in memory) and the TQ2_0 one through a plan file. */
static void test_perplexity_matches_pytorch(void **state) {
  (void)state;
#ifndef BN_WITH_LLVM
  skip(); /* 2 x 39k tokens on the reference kernels alone take minutes: the greedy test below covers them */
#endif
  const char *files[] = {EX "/bitnet-kjv-i2_s.gguf", EX "/bitnet-kjv-tq2_0.gguf"};
  for (int i = 0; i < 2; i++) {
    compiled c;
    compile(files[i], &c);
    if (i == 0) {
      double ppl = ppl_of(&c.m, &c.mp);
      printf("  %s: perplexity %.4f, PyTorch %.4f (%.4f%%)\n", strrchr(files[i], '/') + 1, ppl, ref_ppl,
             100 * fabs(ppl - ref_ppl) / ref_ppl);
      assert_true(fabs(ppl - ref_ppl) / ref_ppl < 0.005);
    } else {
      char plan_path[512];
      bn_error err = {0};
      snprintf(plan_path, sizeof plan_path, "%s/kjv.bnplan", BNC_TEST_TMP);
      if (bn_plan_write(&c.m, &c.mp, &(bn_plan_write_opts){0}, plan_path, &err)) fail_msg("%s", err.msg);
      bn_plan p;
      if (bn_plan_open(&p, plan_path, &err)) fail_msg("%s", err.msg);
      double pp = ppl_of(&p.model, &p.mem);
      printf("  %s as a plan: perplexity %.4f, PyTorch %.4f (%.4f%%)\n", strrchr(files[i], '/') + 1, pp, ref_ppl,
             100 * fabs(pp - ref_ppl) / ref_ppl);
      assert_true(fabs(pp - ref_ppl) / ref_ppl < 0.005);
      bn_plan_close(&p);
      remove(plan_path);
    }
    release(&c);
  }
}

static int collect(int32_t tok, const char *piece, size_t len, void *user) {
  (void)piece, (void)len;
  cJSON_AddItemToArray(user, cJSON_CreateNumber(tok));
  return 0;
}

static void test_greedy_matches_pytorch(void **state) {
  (void)state;
  compiled c;
  compile(EX "/bitnet-kjv-i2_s.gguf", &c);
  const char *prompt = cJSON_GetObjectItem(ref, "greedy_prompt")->valuestring;
  cJSON *want = cJSON_GetObjectItem(ref, "greedy_ids");
  for (int b = 0; b < 2; b++) {
    bn_session *s = session(&c.m, &c.mp, b ? bn_backend_find("llvm") : bn_backend_find("ref"), 1);
    cJSON *got = cJSON_CreateArray();
    bn_error err = {0};
    if (bn_session_generate(s, prompt, 32, collect, got, &err)) fail_msg("%s", err.msg);
    assert_int_equal(cJSON_GetArraySize(got), cJSON_GetArraySize(want));
    for (int i = 0; i < cJSON_GetArraySize(want); i++)
      if (cJSON_GetArrayItem(got, i)->valueint != cJSON_GetArrayItem(want, i)->valueint)
        fail_msg("%s backend: greedy token %d is %d, PyTorch's %d", b ? "llvm" : "ref", i,
                 cJSON_GetArrayItem(got, i)->valueint, cJSON_GetArrayItem(want, i)->valueint);
    cJSON_Delete(got);
    bn_session_free(s);
  }
  release(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tokenization_matches),
      cmocka_unit_test(test_perplexity_matches_pytorch),
      cmocka_unit_test(test_greedy_matches_pytorch),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
