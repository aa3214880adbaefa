/* The serving engine (runtime/engine.h): requests batched together give the text each gives alone
 * (greedy, against a session's own generation, made valid UTF-8 as the engine promises: the random
 * model's byte tokens are often not); stop strings cut the text before them; a request that
 * cancels frees its slot; full slots and queue refuse with BN_E_BUSY; a prompt longer than the context
 * ends with an error naming it. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../frontend/import.h"
#include "../frontend/synth.h"
#include "../passes/pass.h"
#include "../runtime/engine.h"
#include "../runtime/tokenizer.h"
#include "testmodel.h"
#include "testutil.h"

static bn_gguf f;
static bn_model m;
static bn_memplan mp;

static int setup(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/engine.gguf", BNC_TEST_TMP);
  bn_synth_params p = {bn_synth_find_shape("tiny"), "bitnet-b1.58", BN_DT_I2_S, BN_DT_F16, 3, 0, NULL, 0};
  bn_pass_opts po = {.max_tokens = 16, .verify = 1};
  bn_error err = {0};
  if (tu_model(path, &p, &po, &f, &m, &mp, &err)) fail_msg("%s", err.msg);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  bn_memplan_free(&mp), bn_model_free(&m), bn_gguf_close(&f);
  return 0;
}

/* One request's outcome, filled by the engine's thread. */
typedef struct {
  char text[4096];
  size_t len;
  int done, cancel_after; /* cancel_after > 0: cancel at that many pieces */
  int pieces, hold;       /* hold: on_text waits until the test clears it */
  bn_engine_result r;
} outcome;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static int on_text(const char *t, size_t n, void *user) {
  outcome *o = user;
  pthread_mutex_lock(&mu);
  while (o->hold) pthread_cond_wait(&cv, &mu);
  if (o->len + n < sizeof o->text) memcpy(o->text + o->len, t, n), o->len += n;
  int cancel = o->cancel_after && ++o->pieces >= o->cancel_after;
  pthread_mutex_unlock(&mu);
  return cancel;
}

static void on_done(const bn_engine_result *r, void *user) {
  outcome *o = user;
  pthread_mutex_lock(&mu);
  o->r = *r, o->done = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static void wait_done(outcome *o) {
  pthread_mutex_lock(&mu);
  while (!o->done) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
}

/* s as valid UTF-8, in place (room for 3x): each maximal ill-formed part of it one U+FFFD, as Unicode's
 * "best practice" (and Python's "replace") has it: what the engine promises to give out. */
static void sanitize(char *s) {
  size_t n = strlen(s), o = 0;
  unsigned char *in = malloc(n + 1), *p;
  memcpy(in, s, n + 1);
  for (p = in; p < in + n;) {
    static const unsigned char lo2[256] = {[0xe0] = 0xa0, [0xf0] = 0x90}, hi2[256] = {[0xed] = 0x9f, [0xf4] = 0x8f};
    unsigned b = *p;
    int len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0, ok = 1;
    for (int k = 1; k < len && ok; k++) {
      unsigned lo = k == 1 && lo2[b] ? lo2[b] : 0x80, hi = k == 1 && hi2[b] ? hi2[b] : 0xbf;
      if (p + k >= in + n || p[k] < lo || p[k] > hi) ok = 0, len = k; /* the part that was a prefix */
    }
    if (len && ok) memcpy(s + o, p, (size_t)len), o += (size_t)len;
    else memcpy(s + o, "\xef\xbf\xbd", 3), o += 3;
    p += len ? len : 1;
  }
  s[o] = 0;
  free(in);
}

static bn_sampler_params greedy(void) {
  bn_sampler_params s = bn_sampler_defaults();
  s.temperature = 0, s.repeat_penalty = 1;
  return s;
}

static int collect(int32_t tok, const char *text, size_t len, void *user) {
  (void)tok;
  strncat(user, text, len);
  return 0;
}

/* What a session alone generates for prompt, greedy. */
static void alone(const char *prompt, int n, char *out) {
  bn_session_params sp = {.n_ctx = 64, .exec = {.backend = bn_backend_find("ref"), .threads = 1}, .sampler = greedy()};
  bn_session *s;
  bn_error err = {0};
  out[0] = 0;
  if (bn_session_create(&m, &mp, &sp, &s, &err) || bn_session_generate(s, prompt, n, collect, out, &err))
    fail_msg("%s", err.msg);
  bn_session_free(s);
  sanitize(out);
}

static bn_engine *engine(int slots, int queue) {
  bn_engine_params p = {.slots = slots, .queue = queue,
                        .session = {.n_ctx = 64, .exec = {.backend = bn_backend_find("ref"), .threads = 2}}};
  bn_engine *e;
  bn_error err = {0};
  if (bn_engine_create(&m, &mp, &p, &e, &err)) fail_msg("%s", err.msg);
  return e;
}

static bn_engine_request request(const char *prompt, int max_tokens, outcome *o) {
  return (bn_engine_request){.prompt = prompt, .len = strlen(prompt), .max_tokens = max_tokens, .sampler = greedy(),
                             .on_text = on_text, .on_done = on_done, .user = o};
}

static const char *const prompts[] = {"the cat", "a dog runs", "hello", "once upon a time there was", "zz",
                                      "the quick brown fox jumps over", "x", "in the beginning", "abc abc abc",
                                      "what is", "ok ok", "1 2 3 4 5 6 7 8 9 10 11 12"};
enum { NP = sizeof prompts / sizeof *prompts, NGEN = 12 };

/* 12 requests on 4 slots (the rest queued), prompts of 1 to 24 tokens beside decodes: each gives its own text. */
static void test_batched_requests_give_their_own_text(void **state) {
  (void)state;
  bn_engine *e = engine(4, 16);
  static outcome o[NP];
  bn_error err = {0};
  memset(o, 0, sizeof o);
  for (int i = 0; i < NP; i++) {
    bn_engine_request r = request(prompts[i], NGEN, &o[i]);
    if (bn_engine_submit(e, &r, &err)) fail_msg("%s", err.msg);
  }
  for (int i = 0; i < NP; i++) {
    wait_done(&o[i]);
    char want[4096];
    alone(prompts[i], NGEN, want);
    o[i].text[o[i].len] = 0;
    if (strcmp(o[i].text, want)) fail_msg("request %d ('%s'): '%s', alone '%s'", i, prompts[i], o[i].text, want);
    assert_true(o[i].r.finish == BN_FINISH_LENGTH || o[i].r.finish == BN_FINISH_STOP);
    assert_true(o[i].r.n_prompt >= 1 && o[i].r.n_gen >= 1 && o[i].r.n_gen <= NGEN);
  }
  bn_engine_stats st;
  bn_engine_stats_get(e, &st);
  assert_int_equal(st.requests, NP), assert_int_equal(st.done, NP), assert_int_equal(st.active, 0);
  assert_true(st.steps < NP * (NGEN + 1)); /* steps were shared */
  printf("  %d requests on 4 slots in %ld steps, each the text it gives alone\n", NP, st.steps);
  bn_engine_free(e);
}

/* A stop string ends the text before it; a cancelling request frees its slot for the next. */
static void test_stop_and_cancel(void **state) {
  (void)state;
  char want[4096];
  alone(prompts[3], NGEN, want);
  size_t n = strlen(want);
  assert_true(n >= 4);
  char stop[3] = {want[n / 2], want[n / 2 + 1], 0};
  const char *stops[] = {"never appears", stop};
  bn_engine *e = engine(1, 4);
  static outcome a, b, c;
  memset(&a, 0, sizeof a), memset(&b, 0, sizeof b), memset(&c, 0, sizeof c);
  bn_engine_request r = request(prompts[3], NGEN, &a);
  r.stop = stops, r.n_stop = 2;
  bn_error err = {0};
  assert_int_equal(bn_engine_submit(e, &r, &err), BN_OK);
  wait_done(&a);
  a.text[a.len] = 0;
  size_t cut = (size_t)(strstr(want, stop) - want);
  assert_int_equal(a.r.finish, BN_FINISH_STOP);
  assert_int_equal(a.len, cut);
  assert_memory_equal(a.text, want, cut);
  b.cancel_after = 1;
  r = request(prompts[0], NGEN, &b);
  assert_int_equal(bn_engine_submit(e, &r, &err), BN_OK);
  r = request(prompts[1], 3, &c);
  assert_int_equal(bn_engine_submit(e, &r, &err), BN_OK);
  wait_done(&b), wait_done(&c);
  assert_int_equal(b.r.finish, BN_FINISH_CANCELLED);
  assert_int_equal(c.r.n_gen, 3);
  bn_engine_free(e);
}

/* One slot, no queue: a second request while the first runs is refused; a prompt over the context ends
 * with an error; freeing the engine cancels what runs. */
static void test_busy_and_errors(void **state) {
  (void)state;
  bn_engine *e = engine(1, 0);
  static outcome a, b, c;
  memset(&a, 0, sizeof a), memset(&b, 0, sizeof b), memset(&c, 0, sizeof c);
  a.hold = 1; /* the first request's first text waits */
  bn_engine_request r = request(prompts[0], 40, &a);
  bn_error err = {0};
  assert_int_equal(bn_engine_submit(e, &r, &err), BN_OK);
  r = request(prompts[1], 4, &b);
  assert_int_equal(bn_engine_submit(e, &r, &err), BN_E_BUSY);
  assert_non_null(strstr(err.msg, "1 slots"));
  pthread_mutex_lock(&mu);
  a.hold = 0;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  wait_done(&a);
  static char longer[400];
  for (int i = 0; i < 399; i++) longer[i] = i % 2 ? ' ' : 'a' + i % 26;
  r = request(longer, 4, &c);
  assert_int_equal(bn_engine_submit(e, &r, &err), BN_OK);
  wait_done(&c);
  assert_int_equal(c.r.finish, BN_FINISH_ERROR);
  assert_non_null(strstr(c.r.err.msg, "context of 64"));
  r.max_tokens = 0;
  assert_int_equal(bn_engine_submit(e, &r, &err), BN_E_INVALID);
  bn_engine_free(e);
}

/* A prompt in pieces, as serve's llama3 chat template gives it: control tokens by name, text tokenized on its
 * own. The engine's prompt is those ids (BOS first) and its text what greedy decoding of them gives, ending
 * at <|eot_id|>; a name the vocabulary lacks ends the request with an error. */
static void test_template_pieces(void **state) {
  (void)state;
  static const char *const parts[] = {"<|start_header_id|>", "user", "<|end_header_id|>", "\n\nhi there", "<|eot_id|>",
                                      "<|start_header_id|>", "assistant", "<|end_header_id|>", "\n\n"};
  static const unsigned char special[] = {1, 0, 1, 0, 1, 1, 0, 1, 0};
  enum { NPART = 9 };
  bn_session_params sp = {.n_ctx = 64, .exec = {.backend = bn_backend_find("ref"), .threads = 1}, .sampler = greedy()};
  bn_session *s;
  bn_error err = {0};
  if (bn_session_create(&m, &mp, &sp, &s, &err)) fail_msg("%s", err.msg);
  const bn_tokenizer *tok = bn_session_tokenizer(s);
  int32_t ids[64];
  int n = 0, eot = bn_tok_control(tok, "<|eot_id|>");
  assert_true(eot >= 0 && bn_tok_control(tok, "<|start_header_id|>") >= 0 && bn_tok_control(tok, "hi") < 0);
  ids[n++] = m.vocab.bos;
  for (int k = 0; k < NPART; k++) {
    int c = 0;
    if (special[k]) ids[n++] = bn_tok_control(tok, parts[k]);
    else if (bn_tok_encode(tok, parts[k], strlen(parts[k]), 0, ids + n, 64 - n, &c, &err)) fail_msg("%s", err.msg);
    n += c;
  }
  char want[4096] = {0};
  const float *last;
  if (bn_session_append(s, ids, n, &last, &err)) fail_msg("%s", err.msg);
  for (int i = 0; i < NGEN; i++) { /* greedy, to the end of the turn */
    int best = 0;
    for (int v = 1; v < m.hp.n_vocab; v++)
      if (last[v] > last[best]) best = v;
    if (best == m.vocab.eos || best == eot) break;
    size_t len;
    const char *piece = bn_tok_piece(tok, best, &len);
    strncat(want, piece, len);
    if (bn_session_append(s, &best, 1, &last, &err)) fail_msg("%s", err.msg);
  }
  bn_session_free(s);
  sanitize(want);
  bn_engine *e = engine(2, 2);
  static outcome a, b;
  memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
  bn_engine_request r = {.parts = parts, .special = special, .n_parts = NPART, .max_tokens = NGEN, .sampler = greedy(),
                         .on_text = on_text, .on_done = on_done, .user = &a};
  assert_int_equal(bn_engine_submit(e, &r, &err), BN_OK);
  wait_done(&a);
  a.text[a.len] = 0;
  assert_int_equal(a.r.n_prompt, n);
  if (strcmp(a.text, want)) fail_msg("pieces give '%s', the ids alone '%s'", a.text, want);
  static const char *const bad[] = {"<|no_such_token|>", "x"};
  r.parts = bad, r.n_parts = 2, r.user = &b;
  assert_int_equal(bn_engine_submit(e, &r, &err), BN_OK);
  wait_done(&b);
  assert_int_equal(b.r.finish, BN_FINISH_ERROR);
  assert_non_null(strstr(b.r.err.msg, "no control token '<|no_such_token|>'"));
  bn_engine_free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batched_requests_give_their_own_text),
      cmocka_unit_test(test_stop_and_cancel),
      cmocka_unit_test(test_busy_and_errors),
      cmocka_unit_test(test_template_pieces),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
