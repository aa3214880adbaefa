/* Where kernels' object code comes from other than a fresh build: the
 * on-disk cache (entries round-trip; damaged, truncated or foreign entries
 * are ignored; concurrent writers never expose a torn entry; a warm JIT
 * loads every kernel from it and the kernels compute what freshly built
 * ones do) and a plan's AOT section (compile --aot: logits bit-identical to
 * the same plan JIT-compiled, nothing built at load; a section needing a
 * CPU feature the host lacks is ignored; damaged sections are errors). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <xxhash.h>

#include "../codegen/llvm/kcache.h"
#include "../codegen/ref/ref.h"
#include "../frontend/synth.h"
#include "../ir/quant.h"
#include "../ir/rng.h"
#include "../passes/pass.h"
#include "../runtime/plan.h"
#include "../runtime/plan_format.h"
#include "../runtime/session.h"
#include "testutil.h"

static char dir[512];

static void fresh_dir(const char *name) {
  snprintf(dir, sizeof dir, "%s/%s", BNC_TEST_TMP, name);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
  setenv("BNC_CACHE_DIR", dir, 1);
}

static char *entry_file(uint64_t key) {
  static char path[600];
  snprintf(path, sizeof path, "%s/%016llx.bnk", dir, (unsigned long long)key);
  return path;
}

static void test_cache_entries(void **state) {
  (void)state;
  fresh_dir("kcache-entries");
  char d[4096];
  assert_int_equal(bn_kcache_dir(d, sizeof d), 1);
  assert_string_equal(d, dir);
  uint8_t data[1000];
  for (int i = 0; i < 1000; i++) data[i] = (uint8_t)(i * 7 + 3);
  size_t n = 0;
  assert_null(bn_kcache_load(d, 42, &n)); /* missing */
  assert_int_equal(bn_kcache_store(d, 42, data, sizeof data), 0);
  uint8_t *got = bn_kcache_load(d, 42, &n);
  assert_non_null(got);
  assert_int_equal(n, sizeof data);
  assert_memory_equal(got, data, sizeof data);
  free(got);
  /* a flipped payload byte, a cut file, an entry that names another key */
  size_t len;
  uint8_t *file = tu_read(entry_file(42), &len);
  assert_int_equal(len, 32 + sizeof data);
  file[32 + 500] ^= 1;
  assert_int_equal(tu_write(entry_file(42), file, len), 0);
  assert_null(bn_kcache_load(d, 42, &n));
  file[32 + 500] ^= 1;
  assert_int_equal(tu_write(entry_file(42), file, len - 1), 0);
  assert_null(bn_kcache_load(d, 42, &n));
  assert_int_equal(tu_write(entry_file(43), file, len), 0);
  assert_null(bn_kcache_load(d, 43, &n));
  free(file);
  /* a store replaces a damaged entry */
  assert_int_equal(bn_kcache_store(d, 42, data, sizeof data), 0);
  assert_non_null(got = bn_kcache_load(d, 42, &n));
  free(got);
  setenv("BNC_CACHE_DIR", "off", 1);
  assert_int_equal(bn_kcache_dir(d, sizeof d), 0);
}

/* Writers store different payloads under one key while a reader loads:
 * every load is missing or exactly one writer's payload. */
enum { WRITERS = 4, ROUNDS = 300, PAYLOAD = 4096 };
static void *writer(void *arg) {
  uint8_t buf[PAYLOAD];
  memset(buf, (int)(intptr_t)arg, sizeof buf);
  for (int r = 0; r < ROUNDS; r++) bn_kcache_store(dir, 7, buf, sizeof buf);
  return NULL;
}

static void test_cache_concurrent(void **state) {
  (void)state;
  fresh_dir("kcache-concurrent");
  char d[4096];
  assert_int_equal(bn_kcache_dir(d, sizeof d), 1);
  pthread_t th[WRITERS];
  for (int i = 0; i < WRITERS; i++) pthread_create(&th[i], NULL, writer, (void *)(intptr_t)(i + 1));
  int seen = 0;
  for (int r = 0; r < 2000; r++) {
    size_t n;
    uint8_t *p = bn_kcache_load(d, 7, &n);
    if (!p) continue;
    assert_int_equal(n, PAYLOAD);
    for (int i = 1; i < PAYLOAD; i++) assert_int_equal(p[i], p[0]);
    assert_true(p[0] >= 1 && p[0] <= WRITERS);
    seen++;
    free(p);
  }
  for (int i = 0; i < WRITERS; i++) pthread_join(th[i], NULL);
  printf("  %d whole entries read while %d writers replaced them\n", seen, WRITERS);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 1", dir); /* no temporary files left behind */
  assert_int_equal(system(cmd), 0);
}

/* A matmul kernel from a cold JIT and from a warm one (loaded from the
 * cache) compute the same bytes; a damaged entry is rebuilt. */
static void run_mm(bn_llvm *j, const uint8_t *qa, const uint8_t *w, float *y, int T, int K, int N) {
  bn_mm_kernel fn;
  bn_error err = {0};
  if (bn_llvm_matmul(j, K, N, BN_MM_DQ, &fn, &err)) fail_msg("%s", err.msg);
  fn(qa, w, y, NULL, T, 0, N);
}

static void test_cache_jit(void **state) {
  (void)state;
  fresh_dir("kcache-jit");
  enum { T = 3, K = 512, N = 40 };
  uint64_t rng = 5;
  int64_t dims[2] = {N, K};
  bn_shape shape = bn_shape_make(2, dims);
  uint8_t *w = malloc(bn_value_bytes(BN_DT_TP2, &shape, 0)), *qa = aligned_alloc(64, (size_t)(T * bn_qa8_row_bytes(K)));
  int8_t trit[K];
  for (int r = 0; r < N; r++) {
    for (int k = 0; k < K; k++) trit[k] = (int8_t)(bn_rng_next(&rng) % 3) - 1;
    bn_tp2_write_row(w, N, K, (uint64_t)r, trit, 0.5f + (float)r);
  }
  float x[T * K];
  for (int i = 0; i < T * K; i++) x[i] = (float)(bn_rng_unit(&rng) * 8 - 4);
  bn_ref_quantize(x, T, K, qa);
  float y[3][T * N];
  bn_llvm_counts c[3];
  for (int run = 0; run < 3; run++) {
    bn_llvm *j;
    bn_error err = {0};
    if (bn_llvm_create(bn_llvm_host_isa(), &j, &err)) skip();
    run_mm(j, qa, w, y[run], T, K, N);
    c[run] = bn_llvm_get_counts(j);
    bn_llvm_free(j);
    if (run == 1) { /* damage the entry: the next JIT builds again */
      char cmd[700];
      snprintf(cmd, sizeof cmd, "for f in '%s'/*.bnk; do printf 'X' | dd of=\"$f\" bs=1 seek=100 conv=notrunc 2>/dev/null; done", dir);
      assert_int_equal(system(cmd), 0);
    }
  }
  assert_true(c[0].built == 1 && c[0].stored == 1 && c[0].cached == 0);
  assert_true(c[1].built == 0 && c[1].cached == 1);
  assert_true(c[2].built == 1 && c[2].cached == 0);
  assert_memory_equal(y[0], y[1], sizeof y[0]);
  assert_memory_equal(y[0], y[2], sizeof y[0]);
  printf("  cold %.1f ms, warm %.1f ms, after damage %.1f ms\n", c[0].seconds * 1e3, c[1].seconds * 1e3, c[2].seconds * 1e3);
  free(w), free(qa);
}

/* compile --aot, in process: the plan with object code and without. */
static char gguf[512], plain[512], aot_plan[512];

static void write_plans(void) {
  snprintf(gguf, sizeof gguf, "%s/aot-t2.gguf", BNC_TEST_TMP);
  snprintf(plain, sizeof plain, "%s/aot-plain.bnplan", BNC_TEST_TMP);
  snprintf(aot_plan, sizeof aot_plan, "%s/aot-objects.bnplan", BNC_TEST_TMP);
  bn_synth_params p = {bn_synth_find_shape("tiny"), "bitnet", BN_DT_TQ2_0, BN_DT_F16, 11, 0};
  bn_error err = {0};
  assert_int_equal(bn_synth_write(&p, gguf, &err), BN_OK);
  bn_gguf f;
  bn_model m;
  bn_memplan mp;
  assert_int_equal(bn_gguf_open(&f, gguf, &err), BN_OK);
  assert_int_equal(bn_import_gguf(&f, &m, &err), BN_OK);
  bn_pass_opts po = {.max_tokens = 8, .verify = 1};
  if (bn_pass_run_pipeline(&m.graph, &po, &mp, NULL, NULL, &err)) fail_msg("%s", err.msg);
  bn_llvm *j;
  bn_llvm_aot aot;
  if (bn_llvm_create_for("native", &j, &err) || bn_llvm_aot_build(j, &m.graph, &aot, &err)) fail_msg("%s", err.msg);
  bn_llvm_free(j);
  assert_true(aot.n >= 5); /* matmuls, norms, attention, rope, output projection */
  if (bn_plan_write(&m, &mp, "native", NULL, plain, &err) || bn_plan_write(&m, &mp, "native", &aot, aot_plan, &err))
    fail_msg("%s", err.msg);
  bn_llvm_aot_free(&aot);
  bn_memplan_free(&mp);
  bn_model_free(&m);
  bn_gguf_close(&f);
}

static float *eval_plan(bn_plan *p, const bn_llvm_aot *aot, bn_llvm_counts *c, char *missing) {
  static const int32_t tok[10] = {1, 5, 9, 200, 31, 77, 4, 8, 15, 16};
  bn_session_params sp = {.n_ctx = 32, .exec = {BN_BACKEND_LLVM, 2, p->target, aot}, .sampler = bn_sampler_defaults()};
  bn_session *s;
  bn_error err = {0};
  if (bn_session_create(&p->model, &p->mem, &sp, &s, &err)) fail_msg("%s", err.msg);
  float *out = malloc(10 * (size_t)p->model.hp.n_vocab * sizeof *out);
  if (bn_session_eval(s, tok, 10, out, &err)) fail_msg("%s", err.msg);
  bn_exec_jit_nodes(bn_session_exec(s), c);
  const char *m = bn_exec_aot_missing(bn_session_exec(s)); /* it lives in the session: copy it */
  snprintf(missing, 64, "%s", m ? m : "");
  bn_session_free(s);
  return out;
}

static void test_aot_plan(void **state) {
  (void)state;
  setenv("BNC_CACHE_DIR", "off", 1); /* every kernel either from the plan or built */
  write_plans();
  bn_plan a, b;
  bn_error err = {0};
  if (bn_plan_open(&a, plain, &err) || bn_plan_open(&b, aot_plan, &err)) fail_msg("%s", err.msg);
  assert_int_equal(a.aot.n, 0);
  assert_true(b.aot.n >= 5);
  bn_llvm_counts ca, cb, cc;
  char ma[64], mb[64], mc[64];
  float *la = eval_plan(&a, &a.aot, &ca, ma), *lb = eval_plan(&b, &b.aot, &cb, mb);
  assert_true(ca.built > 0 && ca.aot == 0);
  assert_true(cb.built == 0 && cb.aot == b.aot.n);
  assert_string_equal(ma, ""), assert_string_equal(mb, "");
  size_t n = 10 * (size_t)a.model.hp.n_vocab;
  assert_memory_equal(la, lb, n * sizeof *la);
  /* object code that needs a feature this CPU lacks is not used */
  bn_llvm_aot foreign = b.aot;
  foreign.features = "+avx2,+bnc-imaginary-feature";
  float *lc = eval_plan(&b, &foreign, &cc, mc);
  assert_true(cc.aot == 0 && cc.built == ca.built);
  assert_string_equal(mc, "this CPU lacks bnc-imaginary-feature");
  assert_memory_equal(la, lc, n * sizeof *la);
  /* nor object code made by another build of the generators (its kernel names end in another stamp) */
  bn_llvm_obj *renamed = malloc((size_t)b.aot.n * sizeof *renamed);
  char (*names)[160] = malloc((size_t)b.aot.n * sizeof *names);
  for (int i = 0; i < b.aot.n; i++) {
    const char *g = strrchr(b.aot.objs[i].name, 'g');
    snprintf(names[i], sizeof names[i], "%.*sgffffffff", (int)(g - b.aot.objs[i].name), b.aot.objs[i].name);
    renamed[i] = (bn_llvm_obj){names[i], b.aot.objs[i].data, b.aot.objs[i].size};
  }
  bn_llvm_aot older = b.aot;
  older.objs = renamed;
  bn_llvm_counts cd;
  char md[64];
  float *ld = eval_plan(&b, &older, &cd, md);
  assert_true(cd.aot == 0 && cd.built == ca.built);
  assert_string_equal(md, "made by another build of bnc's code generator");
  assert_memory_equal(la, ld, n * sizeof *la);
  free(ld), free(renamed), free(names);
  printf("  %d kernels: JIT %.1f ms, from the plan %.1f ms\n", b.aot.n, ca.seconds * 1e3, cb.seconds * 1e3);
  free(la), free(lb), free(lc);
  bn_plan_close(&a), bn_plan_close(&b);
}

/* Damage inside the object section (hash recomputed) is an error naming it. */
static void expect_bad(uint8_t *file, size_t len, const char *want) {
  uint64_t h = XXH3_64bits(file + BN_PLAN_HEADER, len - BN_PLAN_HEADER);
  memcpy(file + 24, &h, 8);
  bn_plan p;
  bn_error err = {0};
  assert_int_not_equal(bn_plan_parse(&p, file, len, "damaged.bnplan", &err), BN_OK);
  if (!strstr(err.msg, want)) fail_msg("expected '%s' in: %s", want, err.msg);
}

static void test_aot_damage(void **state) {
  (void)state;
  size_t len;
  uint8_t *file = tu_read(aot_plan, &len), *copy = malloc(len);
  assert_non_null(file);
  uint64_t off;
  memcpy(&off, file + BN_PLAN_HEADER + BN_PLAN_ENTRY * (BN_SEC_OBJECTS - 1) + 8, 8);
  uint32_t cpu_len, feat_len, count_at;
  memcpy(&cpu_len, file + off, 4);
  memcpy(&feat_len, file + off + 4 + cpu_len, 4);
  count_at = (uint32_t)(off + 8 + cpu_len + feat_len);
  uint32_t name_len, big = 1u << 30;
  memcpy(&name_len, file + count_at + 4, 4);
  size_t size_at = count_at + 8 + name_len;
  memcpy(copy, file, len), memcpy(copy + count_at, &big, 4);
  expect_bad(copy, len, "section objects: count");
  uint64_t huge = UINT64_C(1) << 40, zero = 0;
  memcpy(copy, file, len), memcpy(copy + size_at, &huge, 8);
  expect_bad(copy, len, "section objects: object size");
  memcpy(copy, file, len), memcpy(copy + size_at, &zero, 8);
  expect_bad(copy, len, "section objects: object size");
  uint32_t seven = 7, eight = 8;
  memcpy(copy, file, len), memcpy(copy + 32, &eight, 4);
  expect_bad(copy, len, "n_sections 8");
  (void)seven;
  free(file), free(copy);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cache_entries), cmocka_unit_test(test_cache_concurrent), cmocka_unit_test(test_cache_jit),
      cmocka_unit_test(test_aot_plan),      cmocka_unit_test(test_aot_damage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
