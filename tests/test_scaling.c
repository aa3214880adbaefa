/* Inputs a stranger can make large cost time in proportion to their size:
 * a GGUF of 200 000 keys, a .bnir of 80 000 nodes and a 1 MB prompt for the
 * SentencePiece merge each take well under the bound here (each was a
 * quadratic path: 42 s for such a GGUF). The bounds are 10x and more above
 * what these take on the development machine under the sanitizers, so only a
 * change of complexity class fails them; speed itself is measured in bench/.
 * Also the string map under them: insert/replace/lookup semantics and many
 * keys that share long prefixes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "../frontend/gguf.h"
#include "../ir/irparse.h"
#include "../ir/strmap.h"
#include "../runtime/tokenizer.h"
#include "testutil.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

enum { BOUND_S = 10 };

static void put(uint8_t **p, const void *src, size_t n) {
  memcpy(*p, src, n);
  *p += n;
}

static void test_gguf_many_keys(void **state) {
  (void)state;
  enum { N = 200000 };
  uint8_t *buf = malloc((size_t)N * 32 + 64), *p = buf;
  uint32_t u32 = 3, type = 4;
  uint64_t zero = 0, n = N + 1;
  put(&p, "GGUF", 4), put(&p, &u32, 4), put(&p, &zero, 8), put(&p, &n, 8);
  for (uint32_t i = 0; i <= N; i++) {
    char key[16];
    uint64_t len = (uint64_t)snprintf(key, sizeof key, "k%07u", i == N ? 123u : i); /* the last repeats k0000123 */
    put(&p, &len, 8), put(&p, key, len), put(&p, &type, 4), put(&p, &i, 4);
  }
  bn_gguf f;
  bn_error err = {0};
  double t0 = now();
  assert_int_equal(bn_gguf_parse(&f, buf, (size_t)(p - buf), "keys.gguf", &err), BN_E_FORMAT);
  assert_non_null(strstr(err.msg, "key 'k0000123' appears twice"));
  n = N, memcpy(buf + 16, &n, 8); /* without the repeat */
  assert_int_equal(bn_gguf_parse(&f, buf, (size_t)(p - buf), "keys.gguf", &err), BN_OK);
  const bn_gguf_kv *kv = bn_gguf_find(&f, "k0199999");
  assert_non_null(kv);
  assert_int_equal(kv->num.u, 199999);
  assert_null(bn_gguf_find(&f, "k0200000"));
  double dt = now() - t0;
  printf("  %d keys: %.3f s\n", N, dt);
  assert_true(dt < BOUND_S);
  bn_gguf_close(&f);
  free(buf);
}

static void test_bnir_many_nodes(void **state) {
  (void)state;
  enum { N = 80000 };
  size_t cap = (size_t)N * 64 + 4096, len = 0;
  char *text = malloc(cap);
  len += (size_t)snprintf(text + len, cap - len, "bnc.ir 1\ngraph \"bitnet\" {\n  input %%tokens : i32[T]\n"
                          "  weight %%e : f32[512, 64]\n  %%x0 = embed %%tokens, %%e : f32[T, 64]\n");
  for (int i = 0; i < N; i++)
    len += (size_t)snprintf(text + len, cap - len, "  %%x%d = add %%x%d, %%x%d : f32[T, 64]\n", i + 1, i, i / 2);
  size_t body = len;
  len += (size_t)snprintf(text + len, cap - len, "  output %%x%d\n}\n", N);
  bn_graph g;
  bn_error err = {0};
  double t0 = now();
  if (bn_ir_parse(text, len, "big.bnir", &g, &err)) fail_msg("%s", err.msg);
  assert_int_equal(g.n_nodes, N + 1);
  assert_int_equal(bn_graph_verify(&g, &err), BN_OK);
  assert_int_equal(bn_graph_find_value(&g, "x4321", 5), 4321 + 2);
  bn_graph_free(&g);
  /* a name defined twice, at the very end */
  len = body + (size_t)snprintf(text + body, cap - body, "  %%x7 = add %%x1, %%x1 : f32[T, 64]\n  output %%x7\n}\n");
  assert_int_not_equal(bn_ir_parse(text, len, "big.bnir", &g, &err), BN_OK);
  assert_non_null(strstr(err.msg, "value %x7 is defined twice"));
  double dt = now() - t0;
  printf("  %d nodes: %.3f s\n", N, dt);
  assert_true(dt < BOUND_S);
  free(text);
}

static void add_token(bn_vocab *v, const char *text, float score, int type) {
  int i = v->n_tokens++;
  v->tokens = realloc(v->tokens, (size_t)v->n_tokens * sizeof *v->tokens);
  v->scores = realloc(v->scores, (size_t)v->n_tokens * sizeof *v->scores);
  v->types = realloc(v->types, (size_t)v->n_tokens * sizeof *v->types);
  v->tokens[i] = strdup(text), v->scores[i] = score, v->types[i] = type;
}

static void test_spm_long_text(void **state) {
  (void)state;
  bn_vocab v = {.kind = BN_VOCAB_SPM, .bos = -1, .eos = -1, .unk = 0};
  add_token(&v, "<unk>", 0, BN_TOK_UNKNOWN);
  const char *pieces[] = {"\xe2\x96\x81", "a", "b", "c", "ab", "bc", "abc", "\xe2\x96\x81" "a", "cab", "abca"};
  for (int i = 0; i < 10; i++) add_token(&v, pieces[i], (float)(i % 3), BN_TOK_NORMAL);
  bn_tokenizer *t;
  bn_error err = {0};
  assert_int_equal(bn_tok_create(&v, &t, &err), BN_OK);
  enum { LEN = 1 << 20 };
  char *text = malloc(LEN);
  uint64_t x = 7;
  for (int i = 0; i < LEN; i++) x = x * 6364136223846793005ull + 1, text[i] = "abc "[(x >> 33) % 4];
  int32_t *ids = malloc(2 * (size_t)LEN * sizeof *ids);
  int n;
  double t0 = now();
  assert_int_equal(bn_tok_encode(t, text, LEN, 0, ids, 2 * LEN, &n, &err), BN_OK);
  double dt = now() - t0;
  printf("  %d bytes: %d tokens, %.3f s\n", LEN, n, dt);
  assert_true(n > LEN / 4 && n < LEN);
  assert_true(dt < BOUND_S);
  bn_tok_free(t);
  bn_vocab_free(&v);
  free(text), free(ids);
}

static void test_strmap(void **state) {
  (void)state;
  bn_strmap m = {0};
  assert_int_equal(bn_strmap_get(&m, "a", 1), -1); /* empty, never initialised */
  assert_int_equal(bn_strmap_add(&m, "a", 1, 5), -1);
  assert_int_equal(bn_strmap_add(&m, "a", 1, 6), 5); /* the first stays */
  assert_int_equal(bn_strmap_get(&m, "a", 1), 5);
  assert_int_equal(bn_strmap_set(&m, "a", 1, 7), 0);
  assert_int_equal(bn_strmap_get(&m, "a", 1), 7);
  assert_int_equal(bn_strmap_get(&m, "ab", 1), 7); /* by length: "a" */
  assert_int_equal(bn_strmap_add(&m, "", 0, 9), -1);
  assert_int_equal(bn_strmap_get(&m, "", 0), 9);
  enum { N = 100000 };
  static char keys[N][80];
  for (int i = 0; i < N; i++) { /* long shared prefixes, growing the table many times */
    memset(keys[i], 'p', 64);
    snprintf(keys[i] + 64, 16, "%d", i);
    assert_int_equal(bn_strmap_add(&m, keys[i], strlen(keys[i]), i), -1);
  }
  for (int i = 0; i < N; i++) assert_int_equal(bn_strmap_get(&m, keys[i], strlen(keys[i])), i);
  assert_int_equal(bn_strmap_get(&m, keys[0], 63), -1);
  assert_int_equal((int)m.n, N + 2);
  bn_strmap_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gguf_many_keys), cmocka_unit_test(test_bnir_many_nodes),
      cmocka_unit_test(test_spm_long_text),  cmocka_unit_test(test_strmap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
