/* Where kernels' object code comes from other than a fresh build, and when
 * it may run: the on-disk cache (entries round-trip; damaged, truncated,
 * foreign or forged entries are dropped; a directory others may write to or
 * that is not the user's is refused; concurrent writers never expose a torn
 * entry; a warm JIT loads every kernel from it and the kernels compute what
 * freshly built ones do; an entry that does not link is dropped and rebuilt)
 * and a plan's AOT section (compile --aot: signed; run only when its signer
 * is trusted and the signature matches every byte; logits bit-identical to the
 * same plan JIT-compiled, nothing built at load; a section needing a CPU
 * feature the host lacks is ignored; damaged sections are errors). */
#define _GNU_SOURCE /* memmem */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>
#include <xxhash.h>

#include "../codegen/kcache.h"
#include "../codegen/llvm/llvm.h"
#include "../codegen/ref/ref.h"
#include "../frontend/synth.h"
#include "../ir/quant.h"
#include "../ir/rng.h"
#include "../passes/pass.h"
#include "../runtime/plan.h"
#include "../runtime/plan_format.h"
#include "../runtime/session.h"
#include "testmodel.h"
#include "testutil.h"

static char dir[512];
static bn_kcache kc;

static void fresh_dir(const char *name) {
  snprintf(dir, sizeof dir, "%s/%s", BNC_TEST_TMP, name);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
  bn_error err;
  if (bn_kcache_open(&kc, dir, &err)) fail_msg("%s", err.msg);
}

static char *entry_file(uint64_t key) {
  static char path[600];
  snprintf(path, sizeof path, "%s/%016llx.bnk", dir, (unsigned long long)key);
  return path;
}

static void test_cache_entries(void **state) {
  (void)state;
  fresh_dir("kcache-entries");
  const bn_kcache *d = &kc;
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
  /* a flipped payload byte, a cut file, an entry that names another key: each dropped */
  size_t len;
  uint8_t *file = tu_read(entry_file(42), &len);
  enum { H = 56 };
  assert_int_equal(len, H + sizeof data);
  file[H + 500] ^= 1;
  assert_int_equal(tu_write(entry_file(42), file, len), 0);
  assert_null(bn_kcache_load(d, 42, &n));
  assert_int_equal(access(entry_file(42), F_OK), -1);
  file[H + 500] ^= 1;
  assert_int_equal(tu_write(entry_file(42), file, len - 1), 0);
  assert_null(bn_kcache_load(d, 42, &n));
  assert_int_equal(tu_write(entry_file(43), file, len), 0);
  assert_null(bn_kcache_load(d, 43, &n));
  /* the whole entry is good, but another cache's key made it (a forgery: its checksum
   * recomputed by someone without this directory's secret) */
  bn_kcache other;
  bn_error err;
  char odir[600];
  snprintf(odir, sizeof odir, "%s-other", dir);
  if (bn_kcache_open(&other, odir, &err)) fail_msg("%s", err.msg);
  assert_int_equal(bn_kcache_store(&other, 44, data, sizeof data), 0);
  assert_non_null(got = bn_kcache_load(&other, 44, &n));
  free(got);
  assert_int_equal(bn_kcache_store(&other, 44, data, sizeof data), 0);
  char copy[1700];
  snprintf(copy, sizeof copy, "cp '%s/%016llx.bnk' '%s/'", odir, 44ull, dir);
  assert_int_equal(system(copy), 0);
  assert_null(bn_kcache_load(d, 44, &n));
  free(file);
  /* a store replaces a damaged entry */
  assert_int_equal(bn_kcache_store(d, 42, data, sizeof data), 0);
  assert_non_null(got = bn_kcache_load(d, 42, &n));
  free(got);
}

/* A cache directory others may write to, or that is a link, is refused, as is a key
 * file others may read; as root, a directory of another user's too. */
static void test_cache_dir_refused(void **state) {
  (void)state;
  char d[600], cmd[2600];
  bn_kcache c;
  bn_error err;
  snprintf(d, sizeof d, "%s/kcache-shared", BNC_TEST_TMP);
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s-link' && mkdir -p '%s' && chmod 777 '%s'", d, d, d, d);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(bn_kcache_open(&c, d, &err), BN_E_INVALID);
  assert_non_null(strstr(err.msg, "others may write to it"));
  chmod(d, 0700);
  assert_int_equal(bn_kcache_open(&c, d, &err), BN_OK);
  char key[700];
  snprintf(key, sizeof key, "%s/mac.key", d);
  chmod(key, 0644);
  assert_int_equal(bn_kcache_open(&c, d, &err), BN_E_INVALID);
  assert_non_null(strstr(err.msg, "nobody else may read"));
  chmod(key, 0600);
  snprintf(cmd, sizeof cmd, "ln -s '%s' '%s-link'", d, d);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "%s-link", d);
  assert_int_equal(bn_kcache_open(&c, cmd, &err), BN_E_INVALID);
  if (geteuid() == 0) {
    assert_int_equal(chown(d, 65534, 65534), 0);
    assert_int_equal(bn_kcache_open(&c, d, &err), BN_E_INVALID);
    assert_non_null(strstr(err.msg, "not to you"));
  }
}

/* Writers store different payloads under one key while a reader loads:
 * every load is missing or exactly one writer's payload. */
enum { WRITERS = 4, ROUNDS = 300, PAYLOAD = 4096 };
static void *writer(void *arg) {
  uint8_t buf[PAYLOAD];
  memset(buf, (int)(intptr_t)arg, sizeof buf);
  for (int r = 0; r < ROUNDS; r++) bn_kcache_store(&kc, 7, buf, sizeof buf);
  return NULL;
}

static void test_cache_concurrent(void **state) {
  (void)state;
  fresh_dir("kcache-concurrent");
  const bn_kcache *d = &kc;
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
  snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 2", dir); /* the key and the entry: no temporary files */
  assert_int_equal(system(cmd), 0);
}

/* A matmul kernel from a cold JIT and from a warm one (loaded from the
 * cache) compute the same bytes; a damaged entry is rebuilt, and so is one
 * whose MAC holds but whose code does not link. */
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
  float y[4][T * N];
  bn_codegen_counts c[4];
  for (int run = 0; run < 4; run++) {
    bn_llvm *j;
    bn_error err = {0};
    if (bn_llvm_create(bn_llvm_host_isa(), &j, &err)) skip();
    bn_llvm_use_cache(j, &kc);
    run_mm(j, qa, w, y[run], T, K, N);
    c[run] = bn_llvm_get_counts(j);
    bn_llvm_free(j);
    if (run == 1) { /* damage the entry: the next JIT builds again */
      char cmd[700];
      snprintf(cmd, sizeof cmd, "for f in '%s'/*.bnk; do printf 'X' | dd of=\"$f\" bs=1 seek=100 conv=notrunc 2>/dev/null; done", dir);
      assert_int_equal(system(cmd), 0);
    }
    if (run == 2) { /* an entry under the right key and MAC whose bytes are no object file */
      char cmd[700];
      snprintf(cmd, sizeof cmd, "ls '%s' | grep -c bnk", dir);
      assert_int_equal(system(cmd), 0);
      snprintf(cmd, sizeof cmd, "ls '%s' | grep bnk", dir);
      FILE *ls = popen(cmd, "r");
      unsigned long long key = 0;
      assert_int_equal(fscanf(ls, "%llx", &key), 1);
      pclose(ls);
      uint8_t junk[256];
      memset(junk, 0x90, sizeof junk);
      assert_int_equal(bn_kcache_store(&kc, key, junk, sizeof junk), 0);
    }
  }
  assert_true(c[0].built == 1 && c[0].stored == 1 && c[0].cached == 0);
  assert_true(c[1].built == 0 && c[1].cached == 1);
  assert_true(c[2].built == 1 && c[2].cached == 0);
  assert_true(c[3].built == 1 && c[3].cached == 0);
  assert_memory_equal(y[0], y[1], sizeof y[0]);
  assert_memory_equal(y[0], y[2], sizeof y[0]);
  assert_memory_equal(y[0], y[3], sizeof y[0]);
  printf("  cold %.1f ms, warm %.1f ms, after damage %.1f ms\n", c[0].seconds * 1e3, c[1].seconds * 1e3, c[2].seconds * 1e3);
  free(w), free(qa);
}

/* compile --aot, in process: the plan with object code and without. */
static char gguf[512], plain[512], aot_plan[512];
static uint8_t signer_pk[BN_PK_BYTES], signer_sk[BN_SK_BYTES];

static void write_plans(void) {
  snprintf(gguf, sizeof gguf, "%s/aot-t2.gguf", BNC_TEST_TMP);
  snprintf(plain, sizeof plain, "%s/aot-plain.bnplan", BNC_TEST_TMP);
  snprintf(aot_plan, sizeof aot_plan, "%s/aot-objects.bnplan", BNC_TEST_TMP);
  bn_synth_params p = {bn_synth_find_shape("tiny"), "bitnet", BN_DT_TQ2_0, BN_DT_F16, 11, 0, NULL, 0};
  bn_error err = {0};
  bn_gguf f;
  bn_model m;
  bn_memplan mp;
  bn_pass_opts po = {.max_tokens = 8, .verify = 1};
  if (tu_model(gguf, &p, &po, &f, &m, &mp, &err)) fail_msg("%s", err.msg);
  bn_codegen *cg;
  bn_objcode aot;
  if (bn_codegen_open(bn_backend_find("llvm"), NULL, &cg, &err) || bn_codegen_objects(cg, &m.graph, &aot, &err))
    fail_msg("%s", err.msg);
  bn_codegen_close(cg);
  assert_string_equal(aot.backend, "llvm");
  assert_true(aot.n >= 5); /* matmuls, norms, attention, rope, output projection */
  if (sodium_init() < 0) fail_msg("libsodium");
  crypto_sign_keypair(signer_pk, signer_sk);
  if (bn_plan_write(&m, &mp, &(bn_plan_write_opts){0}, plain, &err) ||
      bn_plan_write(&m, &mp, &(bn_plan_write_opts){.code = &aot, .sign_sk = signer_sk}, aot_plan, &err))
    fail_msg("%s", err.msg);
  bn_objcode_free(&aot);
  bn_memplan_free(&mp);
  bn_model_free(&m);
  bn_gguf_close(&f);
}

static float *eval_plan(bn_plan *p, const bn_objcode *aot, bn_codegen_counts *c, char *missing) {
  static const int32_t tok[10] = {1, 5, 9, 200, 31, 77, 4, 8, 15, 16};
  bn_session_params sp = {.n_ctx = 32, .exec = {.backend = bn_backend_find("llvm"), .threads = 2, .target = p->target, .code = aot},
                          .sampler = bn_sampler_defaults()};
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

/* Object code the executor must not use: every kernel built anew (as many as jit built), the
 * logits want, and why in one phrase. */
static void expect_unused(bn_plan *p, const bn_objcode *code, const float *want, const bn_codegen_counts *jit,
                          const char *why) {
  bn_codegen_counts c;
  char m[64];
  float *l = eval_plan(p, code, &c, m);
  assert_true(c.aot == 0 && c.built == jit->built);
  assert_string_equal(m, why);
  assert_memory_equal(l, want, 10 * (size_t)p->model.hp.n_vocab * sizeof *l);
  free(l);
}

static void test_aot_plan(void **state) {
  (void)state; /* no disk cache: every kernel either from the plan or built */
  write_plans();
  bn_plan a, b;
  bn_error err = {0};
  if (bn_plan_open(&a, plain, &err) || bn_plan_open(&b, aot_plan, &err)) fail_msg("%s", err.msg);
  assert_int_equal(a.code.n, 0);
  assert_true(b.code.n >= 5);
  bn_codegen_counts ca, cb;
  char ma[64], mb[64];
  float *la = eval_plan(&a, &a.code, &ca, ma), *lb = eval_plan(&b, &b.code, &cb, mb);
  assert_true(ca.built > 0 && ca.aot == 0);
  assert_true(cb.built == 0 && cb.aot == b.code.n);
  assert_string_equal(ma, ""), assert_string_equal(mb, "");
  size_t n = 10 * (size_t)a.model.hp.n_vocab;
  assert_memory_equal(la, lb, n * sizeof *la);
  /* object code that needs a feature this CPU lacks is not used */
  bn_objcode foreign = b.code;
  foreign.features = "+avx2,+bnc-imaginary-feature";
  expect_unused(&b, &foreign, la, &ca, "this CPU lacks bnc-imaginary-feature");
  /* nor object code another backend made (the section names its backend) */
  bn_objcode other = b.code;
  other.backend = "metal";
  expect_unused(&b, &other, la, &ca, "made by the metal backend");
  /* nor object code made by another build of the generators (its kernel names end in another stamp) */
  bn_kobj *renamed = malloc((size_t)b.code.n * sizeof *renamed);
  char (*names)[160] = malloc((size_t)b.code.n * sizeof *names);
  for (int i = 0; i < b.code.n; i++) {
    const char *g = strrchr(b.code.objs[i].name, 'g');
    snprintf(names[i], sizeof names[i], "%.*sgffffffff", (int)(g - b.code.objs[i].name), b.code.objs[i].name);
    renamed[i] = (bn_kobj){names[i], b.code.objs[i].data, b.code.objs[i].size};
  }
  bn_objcode older = b.code;
  older.objs = renamed;
  expect_unused(&b, &older, la, &ca, "made by another build of bnc's code generator");
  free(renamed), free(names);
  printf("  %d kernels: JIT %.1f ms, from the plan %.1f ms\n", b.code.n, ca.seconds * 1e3, cb.seconds * 1e3);
  free(la), free(lb);
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
  off += BN_PLAN_SIGBLOCK;
  uint32_t backend_len, cpu_len, feat_len, count_at;
  memcpy(&backend_len, file + off, 4);
  off += 4 + backend_len;
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
  uint32_t eight = 8, nine = 9;
  memcpy(copy, file, len), memcpy(copy + 32, &eight, 4);
  expect_bad(copy, len, "section 7 has id 0 (expected 8)"); /* a device section's entry that is not there */
  memcpy(copy, file, len), memcpy(copy + 32, &nine, 4);
  expect_bad(copy, len, "n_sections 9");
  free(file), free(copy);
}

/* A version 3 plan (no backend name in its object section) reads as LLVM's code. */
static void test_v3_objects_are_llvms(void **state) {
  (void)state;
  size_t len;
  uint8_t *file = tu_read(aot_plan, &len);
  assert_non_null(file);
  uint64_t ooff, obytes, fbytes;
  uint8_t *entry = file + BN_PLAN_HEADER + BN_PLAN_ENTRY * (BN_SEC_OBJECTS - 1);
  memcpy(&ooff, entry + 8, 8), memcpy(&obytes, entry + 16, 8), memcpy(&fbytes, file + 16, 8);
  uint32_t blen, v3 = 3;
  memcpy(&blen, file + ooff + BN_PLAN_SIGBLOCK, 4);
  assert_int_equal(blen, 4); /* "llvm" */
  size_t cut = ooff + BN_PLAN_SIGBLOCK, gone = 4 + blen; /* the objects section is the file's last */
  memmove(file + cut, file + cut + gone, len - cut - gone);
  len -= gone, obytes -= gone, fbytes -= gone;
  memcpy(entry + 16, &obytes, 8), memcpy(file + 16, &fbytes, 8), memcpy(file + 8, &v3, 4);
  uint64_t h = XXH3_64bits(file + BN_PLAN_HEADER, len - BN_PLAN_HEADER);
  memcpy(file + 24, &h, 8);
  bn_plan p, q;
  bn_error err = {0};
  if (bn_plan_parse(&p, file, len, "v3.bnplan", &err) || bn_plan_open(&q, aot_plan, &err)) fail_msg("%s", err.msg);
  assert_int_equal(p.version, 3);
  assert_string_equal(p.code.backend, "llvm");
  assert_int_equal(p.code.n, q.code.n);
  assert_string_equal(p.code.features, q.code.features);
  bn_plan_close(&p), bn_plan_close(&q);
  free(file);
}

/* Object code runs only when its signer is trusted and the signature covers the file as
 * it is: another signer, a changed IR, kernel or target byte, a swapped key (each with
 * the content hash recomputed, as an attacker would) are refused. */
static int trusted(const uint8_t *file, size_t len, const bn_trust *t, char *why) {
  uint8_t *c = malloc(len);
  memcpy(c, file, len);
  uint64_t h = XXH3_64bits(c + BN_PLAN_HEADER, len - BN_PLAN_HEADER);
  memcpy(c + 24, &h, 8);
  bn_plan p;
  bn_error err = {0};
  if (bn_plan_parse(&p, c, len, "signed.bnplan", &err)) fail_msg("%s", err.msg);
  int ok = bn_plan_code_trusted(&p, t, why, 200);
  bn_plan_close(&p);
  free(c);
  return ok;
}

static void test_aot_trust(void **state) {
  (void)state;
  size_t len = 0;
  uint8_t *file = tu_read(aot_plan, &len), other_pk[BN_PK_BYTES], other_sk[BN_SK_BYTES];
  crypto_sign_keypair(other_pk, other_sk);
  uint8_t keys[2][BN_PK_BYTES];
  memcpy(keys[0], signer_pk, BN_PK_BYTES), memcpy(keys[1], other_pk, BN_PK_BYTES);
  bn_trust none = {0}, signer = {keys, 1}, other = {keys + 1, 1}, both = {keys, 2};
  char why[200];
  assert_true(trusted(file, len, &signer, why));
  assert_true(trusted(file, len, &both, why));
  assert_false(trusted(file, len, &none, why));
  assert_non_null(strstr(why, "which you do not trust"));
  assert_false(trusted(file, len, &other, why));
  uint64_t woff, ooff;
  memcpy(&woff, file + BN_PLAN_HEADER + BN_PLAN_ENTRY * (BN_SEC_WEIGHTS - 1) + 8, 8);
  memcpy(&ooff, file + BN_PLAN_HEADER + BN_PLAN_ENTRY * (BN_SEC_OBJECTS - 1) + 8, 8);
  uint8_t *eps = memmem(file, len, "eps = 9.99", 10); /* a digit of an attribute in the IR */
  assert_non_null(eps);
  size_t at[4] = {(size_t)(eps - file) + 9, len - 10 /* object code */, 40 /* the target */,
                  ooff /* the signer's key: now another's */};
  for (int i = 0; i < 4; i++) {
    if (i == 3) memcpy(file + ooff, other_pk, BN_PK_BYTES);
    else file[at[i]] ^= 1;
    assert_false(trusted(file, len, &both, why));
    if (i < 3) assert_non_null(strstr(why, "does not match its contents")), file[at[i]] ^= 1;
  }
  memcpy(file + ooff, signer_pk, BN_PK_BYTES);
  assert_true(trusted(file, len, &signer, why));
  /* the weight bytes are data the kernels read within the signed bounds: left out of the signature */
  file[woff + 100] ^= 1;
  assert_true(trusted(file, len, &signer, why));
  free(file);
  /* code written without a signing key never runs */
  bn_plan p;
  bn_error err = {0};
  uint8_t *plain_file = tu_read(plain, &len);
  if (bn_plan_parse(&p, plain_file, len, "plain.bnplan", &err)) fail_msg("%s", err.msg);
  assert_false(bn_plan_code_trusted(&p, &both, why, sizeof why));
  assert_string_equal(why, "the plan has no object code");
  bn_plan_close(&p);
  free(plain_file);
}

/* The user's key is made once, kept private and trusted by its owner; trusted-keys
 * lines are checked; a secret others may read is refused. */
static void test_keys(void **state) {
  (void)state;
  char d[600], cmd[800], path[700];
  snprintf(d, sizeof d, "%s/keys", BNC_TEST_TMP);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
  assert_int_equal(system(cmd), 0);
  uint8_t sk[BN_SK_BYTES], pk[BN_PK_BYTES], sk2[BN_SK_BYTES], pk2[BN_PK_BYTES], got[BN_PK_BYTES];
  int made, added;
  bn_error err;
  if (bn_key_signing(d, sk, pk, &made, &err)) fail_msg("%s", err.msg);
  assert_true(made);
  if (bn_key_signing(d, sk2, pk2, &made, &err)) fail_msg("%s", err.msg);
  assert_false(made);
  assert_memory_equal(pk, pk2, BN_PK_BYTES);
  assert_memory_equal(sk, sk2, BN_SK_BYTES);
  struct stat sb;
  snprintf(path, sizeof path, "%s/signing.key", d);
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  assert_int_equal(stat(d, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0700);
  snprintf(path, sizeof path, "%s/signing.pub", d);
  if (bn_key_read_public(path, got, &err)) fail_msg("%s", err.msg);
  assert_memory_equal(got, pk, BN_PK_BYTES);
  char zero[700]; /* the all-zero "key" of unsigned plans is no key */
  snprintf(zero, sizeof zero, "%s/zero.pub", d);
  FILE *zf = fopen(zero, "w");
  fprintf(zf, "bnc-ed25519 %064d nobody\n", 0);
  fclose(zf);
  assert_int_equal(bn_key_read_public(zero, got, &err), BN_E_FORMAT);
  assert_non_null(strstr(err.msg, "not an Ed25519 public key"));
  bn_trust t;
  snprintf(path, sizeof path, "%s/trusted-keys", d);
  if (bn_trust_read(path, &t, &err)) fail_msg("%s", err.msg);
  assert_int_equal(t.n, 1);
  assert_true(bn_trust_has(&t, pk));
  bn_trust_free(&t);
  if (bn_trust_add(path, pk, "again", &added, &err)) fail_msg("%s", err.msg);
  assert_false(added);
  FILE *fp = fopen(path, "a");
  fputs("bnc-ed25519 0123 short\n", fp);
  fclose(fp);
  assert_int_equal(bn_trust_read(path, &t, &err), BN_E_FORMAT);
  assert_non_null(strstr(err.msg, "trusted-keys:2: not a key line"));
  /* a trusted-keys file others may write is refused (they could add keys) */
  fp = fopen(path, "w");
  fclose(fp);
  chmod(path, 0666);
  assert_int_equal(bn_trust_read(path, &t, &err), BN_E_INVALID);
  assert_non_null(strstr(err.msg, "nobody else may write"));
  chmod(path, 0644);
  assert_int_equal(bn_trust_read(path, &t, &err), BN_OK);
  snprintf(path, sizeof path, "%s/signing.key", d);
  chmod(path, 0640);
  assert_int_equal(bn_key_signing(d, sk2, pk2, &made, &err), BN_E_INVALID);
  chmod(d, 0770);
  chmod(path, 0600);
  assert_int_equal(bn_key_signing(d, sk2, pk2, &made, &err), BN_E_INVALID);
  assert_non_null(strstr(err.msg, "others may write"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cache_entries), cmocka_unit_test(test_cache_concurrent), cmocka_unit_test(test_cache_jit),
      cmocka_unit_test(test_aot_plan),      cmocka_unit_test(test_aot_damage), cmocka_unit_test(test_aot_trust),
      cmocka_unit_test(test_v3_objects_are_llvms), cmocka_unit_test(test_keys), cmocka_unit_test(test_cache_dir_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
