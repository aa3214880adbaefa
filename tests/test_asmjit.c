/* The asmjit backend against the reference: every kernel it emits, over many shapes (odd widths,
 * every remainder of a vector, offsets, row ranges as threads split them) on AVX2 and AVX-512,
 * against the reference kernels, bit for bit (the float matmul within 1e-5 of its largest output); and
 * whole models, whose logits must be the reference's within 1e-6 of their range (what it does not emit
 * yet runs the reference kernels). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../codegen/asmjit/emit.h"
#include "../codegen/backend.h"
#include "../codegen/ref/ref.h"
#include "../frontend/import.h"
#include "../frontend/synth.h"
#include "../ir/quant.h"
#include "../ir/rng.h"
#include "../passes/pass.h"
#include "../runtime/session.h"
#include "testmodel.h"
#include "testutil.h"
#include "tie.h"

extern const bn_backend bn_backend_asmjit;

static bn_codegen *open_isa(const char *isa) {
  bn_codegen *cg;
  bn_error err = {0};
  bn_backend_opts o = {.isa = isa};
  if (bn_codegen_open(&bn_backend_asmjit, &o, &cg, &err)) return NULL; /* this CPU lacks the ISA */
  return cg;
}

static const char *const ISAS[] = {"avx2", "avx512"};

/* The matmul tests' configurations: ISAS natively (this CPU's choices of tiles and prefetch distance:
 * bn_asmjit_tuning), then AVX-512 as the portable target x86-64-v4, whose choices are every CPU's default
 * (so both prompt tilings at K <= 2048 are checked on any host). */
static const char *const CFGS[] = {"avx2", "avx512", "x86-64-v4"};
static bn_codegen *open_cfg(int c) {
  if (c < 2) return open_isa(ISAS[c]);
  bn_codegen *cg;
  bn_error err = {0};
  bn_backend_opts o = {.target = CFGS[c]};
  if (bn_codegen_open(&bn_backend_asmjit, &o, &cg, &err)) return NULL; /* this CPU lacks AVX-512 */
  return cg;
}

/* The LLVM backend on the same ISA, whose float kernels asmjit's sum in the same order (the same bits);
 * NULL in a bnc without LLVM. */
static bn_codegen *open_llvm(const char *isa) {
  const bn_backend *be = bn_backend_find("llvm");
  bn_codegen *cg;
  bn_error err = {0};
  bn_backend_opts o = {.isa = isa};
  if (!be || bn_codegen_open(be, &o, &cg, &err)) return NULL;
  return cg;
}

/* TP2 weights of N rows of K random trits, each row's scale in [0.01, 1.01); the data is malloc'd. */
static bn_value random_tp2(int N, int K, uint64_t *rng) {
  int64_t dims[2] = {N, K};
  bn_shape sh = bn_shape_make(2, dims);
  uint8_t *w = malloc(bn_value_bytes(BN_DT_TP2, &sh, 0));
  int8_t *trit = malloc((size_t)K);
  for (int r = 0; r < N; r++) {
    for (int k = 0; k < K; k++) trit[k] = (int8_t)(bn_rng_next(rng) % 3) - 1;
    bn_tp2_write_row(w, (uint64_t)N, (uint64_t)K, (uint64_t)r, trit, (float)(0.01 + bn_rng_unit(rng)));
  }
  free(trit);
  return (bn_value){BN_VAL_WEIGHT, "w", BN_DT_TP2, sh, -1, w, 0};
}

/* key's kernel from cg, or the test fails with the backend's message. */
static void *kernel(bn_codegen *cg, bn_kkey key) {
  void *fn;
  bn_error err = {0};
  if (bn_codegen_get(cg, &key, &fn, &err)) fail_msg("%s", err.msg);
  return fn;
}

/* A float kernel's n outputs within 1e-5 of the reference's largest (what the LLVM kernels are held to). */
static void within(const float *got, const float *want, int n, const char *what) {
  double scale = 0;
  for (int i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (int i = 0; i < n; i++)
    if (fabs(got[i] - want[i]) > 1e-5 * scale) fail_msg("%s [%d]: %g, the reference %g", what, i, got[i], want[i]);
}

static void test_slices(void **state) {
  (void)state;
  static const int64_t Ks[] = {1, 3, 8, 16, 17, 31, 64, 100, 513, 1536};
  uint64_t rng = 5;
  int checked = 0;
  for (int ia = 0; ia < 2; ia++) {
    bn_codegen *cg = open_isa(ISAS[ia]);
    if (!cg) continue;
    for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
      int64_t K = Ks[ki], T = 5;
      for (int trial = 0; trial < 6; trial++) {
        int64_t off = trial == 0 ? 0 : (int64_t)(bn_rng_next(&rng) % (uint64_t)K);
        int64_t n = trial == 1 ? K - off : 1 + (int64_t)(bn_rng_next(&rng) % (uint64_t)(K - off));
        bn_kkey key = {.family = BN_K_SLICE, .k = K, .n = n, .variant = (int)off};
        void *fn;
        bn_error err = {0};
        assert_true(bn_codegen_supports(cg, &key));
        if (bn_codegen_get(cg, &key, &fn, &err)) fail_msg("%s", err.msg);
        float *x = malloc((size_t)(T * K) * 4), *y = malloc((size_t)(T * n + 16) * 4);
        for (int64_t i = 0; i < T * K; i++) x[i] = (float)bn_rng_unit(&rng) - 0.5f;
        for (int64_t i = 0; i < T * n + 16; i++) y[i] = 99.0f; /* what the kernel must not touch stays */
        ((bn_rows_kernel)fn)(x, NULL, y, T, 0, 2), ((bn_rows_kernel)fn)(x, NULL, y, T, 2, T); /* two threads' rows */
        for (int64_t t = 0; t < T; t++)
          for (int64_t j = 0; j < n; j++)
            if (memcmp(&y[t * n + j], &x[t * K + off + j], 4))
              fail_msg("%s slice K=%lld n=%lld off=%lld: y[%lld][%lld]", ISAS[ia], (long long)K, (long long)n,
                       (long long)off, (long long)t, (long long)j);
        for (int i = 0; i < 16; i++) assert_true(y[T * n + i] == 99.0f);
        free(x), free(y);
        checked++;
      }
    }
    bn_codegen_close(cg);
  }
  printf("  %d slice kernels checked\n", checked);
  assert_true(checked >= 60);
}

static void test_embedding_rows(void **state) {
  (void)state;
  static const int64_t widths[] = {1, 7, 8, 16, 24, 33, 256, 1000, 2560};
  uint64_t rng = 9;
  int checked = 0;
  for (int ia = 0; ia < 2; ia++) {
    bn_codegen *cg = open_isa(ISAS[ia]);
    if (!cg) continue;
    for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++)
      for (int kind = 0; kind < 3; kind++) { /* F32, F16, BF16 */
        int f16 = kind == 1, bf16 = kind == 2;
        int64_t W = widths[wi], V = 37, T = 6;
        bn_kkey key = {.family = BN_K_EMBED, .k = W, .n = V, .variant = bf16 ? BN_DT_BF16 : f16 ? BN_DT_F16 : BN_DT_F32};
        void *fn = kernel(cg, key);
        uint16_t *h = malloc((size_t)(V * W) * 2);
        float *f = malloc((size_t)(V * W) * 4), *y = malloc((size_t)(T * W + 16) * 4);
        for (int64_t i = 0; i < V * W; i++) {
          h[i] = (uint16_t)(bn_rng_next(&rng) & 0x7bff); /* finite halves of either sign */
          f[i] = (float)bn_rng_unit(&rng) * 4 - 2;
        }
        int32_t ids[6] = {0, 36, 5, 5, 17, 1};
        for (int64_t i = 0; i < T * W + 16; i++) y[i] = 99.0f;
        ((bn_rows_kernel)fn)(ids, f16 || bf16 ? (void *)h : (void *)f, y, T, 0, 3);
        ((bn_rows_kernel)fn)(ids, f16 || bf16 ? (void *)h : (void *)f, y, T, 3, T);
        for (int64_t t = 0; t < T; t++)
          for (int64_t j = 0; j < W; j++) {
            uint32_t hb = (uint32_t)h[ids[t] * W + j] << 16;
            float want = f16 ? bn_half_to_float(h[ids[t] * W + j]) : f[ids[t] * W + j];
            if (bf16) memcpy(&want, &hb, 4);
            if (memcmp(&y[t * W + j], &want, 4))
              fail_msg("%s embed %s W=%lld: y[%lld][%lld] %g, want %g", ISAS[ia], bf16 ? "bf16" : f16 ? "f16" : "f32", (long long)W,
                       (long long)t, (long long)j, y[t * W + j], want);
          }
        for (int i = 0; i < 16; i++) assert_true(y[T * W + i] == 99.0f);
        free(h), free(f), free(y);
        checked++;
      }
    bn_codegen_close(cg);
  }
  printf("  %d embedding kernels checked\n", checked);
  assert_true(checked >= 27);
}

/* The ternary matmul (AVX-512 VNNI) in its three modes against bn_ref_tmatmul / bn_ref_dequant: the
 * sums exact, the dequantized results bit-identical, over tokens, K, N (short last blocks of rows)
 * and two threads' row ranges split anywhere. */
/* The packed (TP2) and the 1.6-bit (TP1: the same trits re-laid) matmuls against the reference over TP2,
 * bit for bit: decode and token tiles, K with TP1's every tail (K % 320) and runs of 4 groups, row
 * ranges split anywhere (TP1 on AVX2: at whole blocks, as the executor splits). */
/* The ternary matmul over TP2, TP1 (the same trits at 1.6 bits) and TG2 / TG2H (the same codes with an
 * f16 scale per 256 / 128 elements, 0.5x..1.5x of 0.01, as TQ and PQ2_0 blocks have), every mode, against
 * bn_ref_tmatmul and bn_ref_dequant over the same weights, bit for bit. */
static void test_ternary_matmul(void **state) {
  (void)state;
  static const char *const KIND[] = {"tp2", "tp1", "tg2", "tg2h"};
  for (int ia = 0; ia < 3; ia++)
    for (int kind = 0; kind < 4; kind++) {
      bn_codegen *cg = open_cfg(ia);
      bn_kkey probe = {.family = BN_K_MATMUL, .k = 256, .n = 4, .variant = BN_MM_DQ};
      if (!cg || !bn_codegen_supports(cg, &probe)) { /* no such ISA here (or AVX-512 without VNNI) */
        bn_codegen_close(cg);
        continue;
      }
      static const int Ts[] = {1, 2, 3, 5, 8, 13, 29, 93, 300}, Ks[] = {256, 512, 768, 1536, 2560, 2816}, Ns[] = {1, 3, 4, 17, 64, 132};
      uint64_t rng = 77;
      int checked = 0, t1 = kind == 1, family = t1 ? BN_K_MATMUL_T1 : kind ? BN_K_MATMUL_G : BN_K_MATMUL;
      bn_dtype gt = kind == 2 ? BN_DT_TG2 : BN_DT_TG2H;
      for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++)
          for (size_t c = 0; c < sizeof Ns / sizeof *Ns; c++) {
            int T = Ts[a], K = Ks[b], N = Ns[c];
            bn_kkey key = {.family = family, .k = K, .n = N, .variant = BN_MM_DQ, .cache = kind >= 2 ? gt : BN_DT_F32};
            if (!bn_codegen_supports(cg, &key)) {
              assert_true(t1 && ia == 0 && N % 4); /* AVX2's TP1 kernels: whole blocks of 4 rows only */
              continue;
            }
            bn_value wv = random_tp2(N, K, &rng);
            uint8_t *w = (uint8_t *)wv.data;
            if (t1) { /* the same trits and scales at 1.6 bits (the reference reads wv's TP2) */
              w = malloc(bn_value_bytes(BN_DT_TP1, &wv.shape, 0));
              bn_tp1_from_tp2(wv.data, (uint64_t)N, (uint64_t)K, w);
            } else if (kind >= 2) { /* TP2's codes, then the group scales; the reference reads these */
              int gsz = kind == 2 ? 256 : 128;
              w = realloc(w, bn_value_bytes(gt, &wv.shape, 0));
              for (int i = 0; i < N * K / gsz; i++) {
                uint16_t d = bn_float_to_half((float)(0.01 * (0.5 + bn_rng_unit(&rng))));
                memcpy(w + (size_t)N * K / 4 + 2 * (size_t)i, &d, 2);
              }
              wv.data = w, wv.dtype = gt;
            }
            int8_t *scr = malloc((size_t)K);
            float *x = malloc((size_t)T * K * 4), *resid = malloc((size_t)T * N * 4), bs[64];
            for (int i = 0; i < T * K; i++) x[i] = (float)(bn_rng_unit(&rng) * 8 - 4) * (i % 7 == 0 ? 30 : 1);
            for (int i = 0; i < T * N; i++) resid[i] = (float)(bn_rng_unit(&rng) - 0.5);
            uint8_t *qa = aligned_alloc(64, (size_t)(T * bn_qa8_row_bytes(K)));
            bn_ref_quantize(x, T, K, qa);
            int32_t *acc_ref = malloc((size_t)T * N * 4), *acc = malloc((size_t)T * N * 4);
            float *y_ref = malloc((size_t)T * N * 4), *y = malloc((size_t)T * N * 4);
            bn_ref_tmatmul(qa, T, K, N, &wv, acc_ref, scr, bs);
            bn_ref_dequant(acc_ref, qa, T, K, N, &wv, 1.0f, y_ref);
            for (int mode = BN_MM_ACC; mode <= BN_MM_DQ_ADD; mode++) {
              key.variant = mode;
              void *fn = kernel(cg, key);
              void *out = mode == BN_MM_ACC ? (void *)acc : (void *)y;
              memset(out, 0x5a, (size_t)T * N * 4);
              int split = (int)(bn_rng_next(&rng) % (uint64_t)(N + 1));
              if (t1 && ia == 0) split &= ~3;
              ((bn_mm_kernel)fn)(qa, w, out, resid, T, 0, split);
              ((bn_mm_kernel)fn)(qa, w, out, resid, T, split, N);
              for (int i = 0; i < T * N; i++) {
                if (mode == BN_MM_ACC && acc[i] != acc_ref[i]) /* TG2: the float's bits */
                  fail_msg("%s %s ACC T=%d K=%d N=%d [%d]: %d, the reference %d", CFGS[ia], KIND[kind], T, K, N, i, acc[i],
                           acc_ref[i]);
                float want = mode == BN_MM_DQ ? y_ref[i] : resid[i] + y_ref[i];
                if (mode != BN_MM_ACC && memcmp(&y[i], &want, 4))
                  fail_msg("%s %s mode %d T=%d K=%d N=%d [%d]: %.9g, the reference %.9g", CFGS[ia], KIND[kind], mode, T, K,
                           N, i, y[i], want);
              }
              checked++;
            }
            if (t1) free(w);
            free((void *)wv.data), free(scr), free(x), free(resid), free(qa), free(acc_ref), free(acc), free(y_ref), free(y);
          }
      bn_codegen_close(cg);
      printf("  %d ternary matmul kernels checked (%s, %s)\n", checked, CFGS[ia], KIND[kind]);
      assert_true(checked >= (t1 && ia == 0 ? 300 : 700));
    }
}

/* The 1.6-bit prompt's two ways of unpacking (by compares; by VBMI lookups, which the backend takes where the
 * CPU has them) under both prompt tilings (4 x 4; rows in the lanes), whatever this CPU's tuning picks: each
 * kernel emitted with the tuning given, against the reference over the same trits, bit for bit. K has every
 * tail of a run of 4 groups (K % 1280: 256..1024) and none. */
static void test_t1_unpacking(void **state) {
  (void)state;
  if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bw")) skip();
  static uint8_t lut[512];
  bn_asmjit_t1_tables(lut);
  int vbmi = __builtin_cpu_supports("avx512vbmi") != 0;
  static const int Ts[] = {8, 64, 93, 130}, Ks[] = {256, 512, 768, 1024, 1280, 1536, 2304}, Ns[] = {16, 36};
  uint64_t rng = 91;
  int checked = 0;
  bn_asm_rt *rt = bn_asm_rt_new();
  assert_non_null(rt);
  for (int tiling = 0; tiling < 2; tiling++)
    for (int by_lut = 0; by_lut <= vbmi; by_lut++) {
      bn_asmjit_tuning tune = {.ahead = 6144, .rows_in_lanes = tiling, .t1_lut = by_lut ? lut : NULL};
      for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++)
        for (size_t c = 0; c < sizeof Ns / sizeof *Ns; c++) {
          int K = Ks[b], N = Ns[c];
          char msg[200];
          bn_asm *a = bn_asm_new(rt, 0);
          bn_asmjit_matmul(a, 1, &tune, BN_DT_TP1, K, N, BN_MM_DQ, 0, 0);
          bn_mm_kernel fn = (bn_mm_kernel)bn_asm_finish(a, msg, sizeof msg);
          bn_asm_free(a);
          if (!fn) fail_msg("K=%d N=%d: %s", K, N, msg);
          bn_value wv = random_tp2(N, K, &rng);
          uint8_t *w = malloc(bn_value_bytes(BN_DT_TP1, &wv.shape, 0));
          bn_tp1_from_tp2(wv.data, (uint64_t)N, (uint64_t)K, w);
          for (size_t t = 0; t < sizeof Ts / sizeof *Ts; t++) {
            int T = Ts[t];
            int8_t *scr = malloc((size_t)K);
            float *x = malloc((size_t)T * K * 4), bs[64];
            for (int i = 0; i < T * K; i++) x[i] = (float)(bn_rng_unit(&rng) * 8 - 4);
            uint8_t *qa = aligned_alloc(64, (size_t)(T * bn_qa8_row_bytes(K)));
            bn_ref_quantize(x, T, K, qa);
            int32_t *acc = malloc((size_t)T * N * 4);
            float *want = malloc((size_t)T * N * 4), *got = malloc((size_t)T * N * 4);
            bn_ref_tmatmul(qa, T, K, N, &wv, acc, scr, bs);
            bn_ref_dequant(acc, qa, T, K, N, &wv, 1.0f, want);
            memset(got, 0x5a, (size_t)T * N * 4);
            fn(qa, w, got, NULL, T, 0, N);
            if (memcmp(got, want, (size_t)T * N * 4))
              fail_msg("TP1 by %s, %s: T=%d K=%d N=%d differs from the reference", by_lut ? "lookups" : "compares",
                       tiling ? "rows in the lanes" : "4 x 4 tiles", T, K, N);
            checked++;
            free(scr), free(x), free(qa), free(acc), free(want), free(got);
          }
          free(w), free((void *)wv.data);
        }
    }
  bn_asm_rt_free(rt);
  printf("  %d 1.6-bit prompts checked (both tilings; by compares%s)\n", checked, vbmi ? " and by lookups" : "");
  assert_true(checked >= 100);
}

/* The dequantization's exact tie (tie.h) on every tile: tokens up to the rows-in-the-lanes tiles, TP2 and
 * TP1, both modes that dequantize. */
static void test_dequant_tie(void **state) {
  (void)state;
  bn_shape sh = tie_shape();
  uint8_t *tp2 = tie_tp2(), *tp1 = malloc(bn_value_bytes(BN_DT_TP1, &sh, 0));
  bn_tp1_from_tp2(tp2, TIE_N, TIE_K, tp1);
  static const int Ts[] = {1, 4, 16, 64, 93};
  int checked = 0;
  for (int ia = 0; ia < 3; ia++) {
    bn_codegen *cg = open_cfg(ia);
    bn_kkey probe = {.family = BN_K_MATMUL, .k = TIE_K, .n = TIE_N, .variant = BN_MM_DQ};
    if (!cg || !bn_codegen_supports(cg, &probe)) {
      bn_codegen_close(cg);
      continue;
    }
    for (int t1 = 0; t1 < 2; t1++)
      for (size_t a = 0; a < sizeof Ts / sizeof *Ts; a++)
        for (int mode = BN_MM_DQ; mode <= BN_MM_DQ_ADD; mode++) {
          int T = Ts[a];
          bn_kkey key = {.family = t1 ? BN_K_MATMUL_T1 : BN_K_MATMUL, .k = TIE_K, .n = TIE_N, .variant = mode};
          float got;
          int i = tie_run((bn_mm_kernel)kernel(cg, key), t1 ? tp1 : tp2, T, &got);
          if (i >= 0) fail_msg("%s %s T=%d mode %d [%d]: %a, want %a", CFGS[ia], t1 ? "tp1" : "tp2", T, mode, i, got, tie_want(i));
          checked++;
        }
    bn_codegen_close(cg);
  }
  printf("  %d kernels give the tie's even float\n", checked);
  assert_true(checked >= 20);
  free(tp2), free(tp1);
}

/* RMSNorm + quantize (and RMSNorm alone, a quantize alone, and the gates before it), standalone and as a matmul's prologue, against bn_ref_rmsnorm,
 * bn_ref_quantize, bn_ref_tmatmul and bn_ref_dequant, bit for bit, over widths, tokens and row ranges. */
static void test_norm_quantize(void **state) {
  (void)state;
  for (int ia = 0; ia < 2; ia++) {
    bn_codegen *cg = open_isa(ISAS[ia]);
    if (!cg) continue;
    bn_codegen *lc = open_llvm(ISAS[ia]);
  /* 48 and 80 (RMSNorm alone: the others take whole 64s): rows shorter than a loop iteration of the passes,
   * and whole iterations with steps after */
  static const int Ks[] = {48, 80, 256, 512, 1536, 2560}, Ts[] = {1, 3, 9};
  uint64_t rng = 21;
  int checked = 0;
  for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
    for (size_t ti = 0; ti < 3; ti++) {
      int K = Ks[ki], T = Ts[ti];
      float eps = ki % 2 ? 1e-5f : 1e-6f;
      float *x = malloc((size_t)T * K * 4), *wn = malloc((size_t)K * 4), *y = malloc((size_t)T * K * 4);
      float *ynorm = malloc((size_t)T * K * 4), *tmp = malloc((size_t)K * 4 + 64);
      for (int i = 0; i < T * K; i++) x[i] = (float)(bn_rng_unit(&rng) * 6 - 3) * (i % 11 == 0 ? 20 : 1);
      for (int i = 0; i < K; i++) wn[i] = (float)(bn_rng_unit(&rng) + 0.5);
      int64_t rb = bn_qa8_row_bytes(K);
      uint8_t *qa_ref = aligned_alloc(64, (size_t)(T * rb)), *qa = aligned_alloc(64, (size_t)(T * rb));
      bn_ref_rmsnorm(x, T, K, wn, eps, ynorm);
      memset(qa_ref, 0x5a, (size_t)(T * rb)); /* the bytes after the scale and sum are neither's to write */
      bn_ref_quantize(ynorm, T, K, qa_ref);
      for (int gi = 0; gi < 4 && K % 64 == 0; gi++) { /* the gates: rows g | u of 2K, act(g) u normalized (gi < 2; llama's not) and quantized */
        int silu = gi % 2, normed = gi < 2;
        float *gu = malloc((size_t)T * K * 8), *m = malloc((size_t)T * K * 4), *mn = malloc((size_t)T * K * 4);
        for (int i = 0; i < 2 * T * K; i++) gu[i] = (float)(bn_rng_unit(&rng) * 4 - 2);
        for (int t = 0; t < T; t++)
          for (int i = 0; i < K; i++) {
            float g = gu[t * 2 * K + i], u = gu[t * 2 * K + K + i], r = g > 0 ? g * g : 0.0f;
            m[t * K + i] = (silu ? g / (1.0f + expf(-g)) : r) * u; /* as the interpreter computes them */
          }
        bn_ref_rmsnorm(m, T, K, wn, eps, mn);
        uint8_t *want = aligned_alloc(64, (size_t)(T * rb)), *got = aligned_alloc(64, (size_t)(T * rb));
        memset(want, 0x5a, (size_t)(T * rb)), memset(got, 0x5a, (size_t)(T * rb));
        bn_ref_quantize(normed ? mn : m, T, K, want);
        int mode = normed ? (silu ? BN_NQ_GATE_SILU : BN_NQ_GATE_RELU2) : silu ? BN_NQ_GATE_SILU_Q : BN_NQ_GATE_RELU2_Q;
        bn_kkey key = {.family = BN_K_NORM_QUANT, .k = K, .variant = mode, .eps = eps};
        void *fn = kernel(cg, key);
        ((bn_nq_kernel)fn)(gu, wn, got, tmp, T, 0, T);
        if (!silu && memcmp(got, want, (size_t)(T * rb))) fail_msg("relu2's gate (mode %d) K=%d T=%d differs from the reference", mode, K, T);
        int moved = 0; /* silu: exp is not libm's, so a code may move by one on a rounding tie (0.1 % of them at most) */
        for (int t = 0; silu && t < T; t++) {
          for (int i = 0; i < K; i++) {
            int d = (int8_t)got[t * rb + i] - (int8_t)want[t * rb + i];
            if (d < -1 || d > 1) fail_msg("silu's gate K=%d: code %d off by %d", K, i, d);
            moved += d != 0;
          }
          float s1, s2;
          memcpy(&s1, got + t * rb + rb - 64, 4), memcpy(&s2, want + t * rb + rb - 64, 4);
          if (!(fabsf(s1 - s2) <= 1e-6f * s2)) fail_msg("silu's gate K=%d: scale %g, the reference %g", K, s1, s2);
        }
        if (moved > T * K / 1000 + 1) fail_msg("silu's gate K=%d: %d codes moved", K, moved);
        if (lc) { /* LLVM's kernel: the same exp, the same bits */
          memset(want, 0x5a, (size_t)(T * rb));
          ((bn_nq_kernel)kernel(lc, key))(gu, wn, want, tmp, T, 0, T);
          if (memcmp(got, want, (size_t)(T * rb))) fail_msg("gate mode %d K=%d T=%d differs from LLVM's", mode, K, T);
        }
        checked++;
        free(gu), free(m), free(mn), free(want), free(got);
      }
      for (int mode = K % 64 != 0; mode < 2; mode++) { /* PLAIN, then RMSNORM */
        bn_kkey key = {.family = BN_K_NORM_QUANT, .k = K, .variant = mode ? BN_NQ_RMSNORM : BN_NQ_PLAIN, .eps = eps};
        void *fn = kernel(cg, key);
        void *out = mode ? (void *)y : (void *)qa;
        memset(out, 0x5a, (size_t)(mode ? T * K * 4 : T * rb));
        ((bn_nq_kernel)fn)(x, wn, out, tmp, T, 0, T / 2), ((bn_nq_kernel)fn)(x, wn, out, tmp, T, T / 2, T);
        if (mode ? memcmp(y, ynorm, (size_t)T * K * 4) : memcmp(qa, qa_ref, (size_t)(T * rb)))
          fail_msg("norm-quantize mode %d K=%d T=%d differs from the reference", mode, K, T);
        checked++;
      }
      { /* RMSNORM by groups (qwen3's per-head q/k norms; 16 where K is no multiple of 64): each piece a row */
        int gr = K % 64 ? 16 : 64;
        float *yg = malloc((size_t)T * K * 4);
        bn_ref_rmsnorm(x, T * K / gr, gr, wn, eps, yg);
        void *fn = kernel(cg, (bn_kkey){.family = BN_K_NORM_QUANT, .k = K, .n = gr, .variant = BN_NQ_RMSNORM, .eps = eps});
        ((bn_nq_kernel)fn)(x, wn, (uint8_t *)y, tmp, T, 0, T / 2), ((bn_nq_kernel)fn)(x, wn, (uint8_t *)y, tmp, T, T / 2, T);
        if (memcmp(y, yg, (size_t)T * K * 4)) fail_msg("rmsnorm by groups of %d, K=%d T=%d differs from the reference", gr, K, T);
        free(yg);
        checked++;
      }
      if (K % 64 == 0) { /* QUANT: x quantized as it is (llama's and qwen3's quantizes, no norm before them) */
        uint8_t *want = aligned_alloc(64, (size_t)(T * rb));
        memset(want, 0x5a, (size_t)(T * rb)), memset(qa, 0x5a, (size_t)(T * rb));
        bn_ref_quantize(x, T, K, want);
        void *fn = kernel(cg, (bn_kkey){.family = BN_K_NORM_QUANT, .k = K, .variant = BN_NQ_QUANT});
        ((bn_nq_kernel)fn)(x, NULL, qa, tmp, T, 0, T / 2), ((bn_nq_kernel)fn)(x, NULL, qa, tmp, T, T / 2, T);
        if (memcmp(qa, want, (size_t)(T * rb))) fail_msg("quantize K=%d T=%d differs from the reference", K, T);
        free(want);
        checked++;
      }
      free(x), free(wn), free(y), free(ynorm), free(tmp), free(qa_ref), free(qa);
    }
  for (size_t ki = 2; ki < sizeof Ks / sizeof *Ks; ki++) /* the matmul with the prologue (whole TP2 groups) */
    for (size_t ti = 0; ti < 3; ti++) {
      int K = Ks[ki], T = Ts[ti], N = 12;
      float eps = ki % 2 ? 1e-5f : 1e-6f;
      float *x = malloc((size_t)T * K * 4), *wn = malloc((size_t)K * 4), *ynorm = malloc((size_t)T * K * 4);
      float *tmp = malloc((size_t)K * 4 + 64);
      for (int i = 0; i < T * K; i++) x[i] = (float)(bn_rng_unit(&rng) * 6 - 3) * (i % 11 == 0 ? 20 : 1);
      for (int i = 0; i < K; i++) wn[i] = (float)(bn_rng_unit(&rng) + 0.5);
      int64_t rb = bn_qa8_row_bytes(K);
      uint8_t *qa_ref = aligned_alloc(64, (size_t)(T * rb)), *qa = aligned_alloc(64, (size_t)(T * rb));
      bn_ref_rmsnorm(x, T, K, wn, eps, ynorm);
      bn_ref_quantize(ynorm, T, K, qa_ref);
      /* QA8 scratch filled from x, then rows n0..n1 */
      bn_value wv = random_tp2(N, K, &rng);
      uint8_t *w = (uint8_t *)wv.data;
      int8_t *scr = malloc((size_t)K);
      int32_t *acc = malloc((size_t)T * N * 4);
      float *want = malloc((size_t)T * N * 4), *got = malloc((size_t)T * N * 4), bs[64];
      bn_ref_tmatmul(qa_ref, T, K, N, &wv, acc, scr, bs);
      bn_ref_dequant(acc, qa_ref, T, K, N, &wv, 1.0f, want);
      bn_kkey key = {.family = BN_K_MATMUL, .k = K, .n = N, .variant = BN_MM_DQ, .eps = eps, .pro = 1 + BN_NQ_PLAIN};
      void *fn = kernel(cg, key);
      ((bn_mmp_kernel)fn)(qa, w, got, NULL, x, wn, tmp, T, 0, 8), ((bn_mmp_kernel)fn)(qa, w, got, NULL, x, wn, tmp, T, 8, N);
      if (memcmp(got, want, (size_t)T * N * 4)) fail_msg("matmul with its prologue K=%d T=%d differs", K, T);
      checked++;
      free(x), free(wn), free(ynorm), free(tmp), free(qa_ref), free(qa), free(w), free(scr);
      free(acc), free(want), free(got);
    }
  bn_codegen_close(cg);
  if (lc) bn_codegen_close(lc);
  printf("  %d norm-quantize and prologue kernels checked (%s)\n", checked, ISAS[ia]);
  }
}

/* RoPE against bn_ref_rope: heads, head sizes, tokens, positions and head ranges, bit for bit. */
static void test_rope(void **state) {
  (void)state;
  for (int ia = 0; ia < 2; ia++) {
    bn_codegen *cg = open_isa(ISAS[ia]);
    if (!cg) continue;
  static const int hds[] = {32, 64, 128}, Hs[] = {1, 3, 8};
  uint64_t rng = 33;
  int checked = 0, n_ctx = 64;
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 3; b++) {
      int hd = hds[a], H = Hs[b], T = 1 + (int)(bn_rng_next(&rng) % 5), pos = (int)(bn_rng_next(&rng) % 40);
      double base = a == 1 ? 500000.0 : 10000.0;
      float *table = malloc((size_t)n_ctx * hd * 4), *x = malloc((size_t)T * H * hd * 4);
      float *want = malloc((size_t)T * H * hd * 4), *got = malloc((size_t)T * H * hd * 4);
      bn_rope_table(table, n_ctx, hd, base);
      for (int i = 0; i < T * H * hd; i++) x[i] = (float)(bn_rng_unit(&rng) * 4 - 2);
      bn_ref_rope(x, T, H, hd, hd, (float)base, pos, want);
      bn_kkey key = {.family = BN_K_ROPE, .k = hd, .n = H};
      void *fn = kernel(cg, key);
      memset(got, 0, (size_t)T * H * hd * 4);
      ((bn_rope_kernel)fn)(x, got, table, T, pos, 0, H / 2, n_ctx), ((bn_rope_kernel)fn)(x, got, table, T, pos, H / 2, H, n_ctx);
      if (memcmp(got, want, (size_t)T * H * hd * 4)) fail_msg("rope hd=%d H=%d T=%d pos=%d differs", hd, H, T, pos);
      free(table), free(x), free(want), free(got);
      checked++;
    }
  bn_codegen_close(cg);
  printf("  %d RoPE kernels checked (%s)\n", checked, ISAS[ia]);
  }
}

/* The float matmul (the output projection), F32, F16, Q8_0, Q4_0 and Q6_K rows, against bn_ref_matmul_f
 * (which decodes each row with bn_dequant and sums in double): within 1e-5 of the largest output, as
 * the LLVM kernel is held to; on both ISAs. Block data is random, its f16 scales small and finite. */
static void test_float_matmul(void **state) {
  (void)state;
  static const bn_dtype types[] = {BN_DT_F32, BN_DT_F16, BN_DT_BF16, BN_DT_Q8_0, BN_DT_Q4_0, BN_DT_Q6_K};
  static const int Ks[] = {16, 48, 64, 96, 256, 2560}, Ns[] = {1, 5, 33}, Ts[] = {1, 3, 6, 9};
  for (int ia = 0; ia < 2; ia++) {
    bn_codegen *cg = open_isa(ISAS[ia]);
    if (!cg) continue;
    bn_codegen *lc = open_llvm(ISAS[ia]);
    uint64_t rng = 41;
    int checked = 0;
    for (int ti = 0; ti < 6; ti++)
      for (int a = 0; a < 6; a++)
        for (int b = 0; b < 3; b++)
          for (int c = 0; c < 4; c++) {
            bn_dtype dt = types[ti];
            int K = Ks[a], N = Ns[b], T = Ts[c], E = (int)bn_dtype_table[dt].block_elems, B = (int)bn_dtype_table[dt].block_bytes;
            bn_kkey key = {.family = BN_K_MATMUL_F, .k = K, .n = N, .variant = dt};
            if (K % (dt == BN_DT_F32 || dt == BN_DT_F16 || dt == BN_DT_BF16 ? 16 : E)) continue;
            int64_t dims[2] = {N, K};
            bn_shape sh = bn_shape_make(2, dims);
            size_t bytes = bn_value_bytes(dt, &sh, 0);
            uint8_t *w = malloc(bytes);
            for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)bn_rng_next(&rng);
            if (dt == BN_DT_F32)
              for (int i = 0; i < N * K; i++) ((float *)w)[i] = (float)(bn_rng_unit(&rng) * 2 - 1);
            else if (dt == BN_DT_F16)
              for (int i = 0; i < N * K; i++) ((uint16_t *)w)[i] = (uint16_t)(bn_rng_next(&rng) & 0x3bff); /* halves below 1 */
            else if (dt == BN_DT_BF16) /* the upper halves of floats in [-1, 1) */
              for (int i = 0; i < N * K; i++) {
                float f = (float)(bn_rng_unit(&rng) * 2 - 1);
                uint32_t u;
                memcpy(&u, &f, 4);
                ((uint16_t *)w)[i] = (uint16_t)(u >> 16);
              }
            else /* each block's d: a half in [2^-8, 2^-4) */
              for (size_t blk = 0; blk < bytes / (size_t)B; blk++) {
                uint16_t d = (uint16_t)(0x1c00 + bn_rng_next(&rng) % 0x1000);
                memcpy(w + blk * (size_t)B + (dt == BN_DT_Q6_K ? 208 : 0), &d, 2);
              }
            float *x = malloc((size_t)T * K * 4), *want = malloc((size_t)T * N * 4), *got = malloc((size_t)T * N * 4);
            float *wrow = malloc((size_t)K * 4);
            for (int i = 0; i < T * K; i++) x[i] = (float)(bn_rng_unit(&rng) * 2 - 1);
            bn_value wv = {BN_VAL_WEIGHT, "w", dt, sh, -1, w, bytes};
            bn_ref_matmul_f(x, T, K, N, &wv, wrow, want);
            void *fn = kernel(cg, key);
            ((bn_mf_kernel)fn)(x, w, got, T, 0, N / 2), ((bn_mf_kernel)fn)(x, w, got, T, N / 2, N);
            char what[64];
            snprintf(what, sizeof what, "float matmul %s K=%d N=%d T=%d", bn_dtype_table[dt].name, K, N, T);
            within(got, want, T * N, what);
            for (int t = 0; t < T; t++) { /* a token's bits do not depend on the tokens beside it (bnc serve's batches) */
              ((bn_mf_kernel)fn)(x + (size_t)t * K, w, want, 1, 0, N);
              if (memcmp(want, got + (size_t)t * N, (size_t)N * 4)) fail_msg("%s: token %d alone differs", what, t);
            }
            if (lc) { /* and they are LLVM's bits */
              ((bn_mf_kernel)kernel(lc, key))(x, w, want, T, 0, N);
              if (memcmp(want, got, (size_t)T * N * 4)) fail_msg("%s differs from LLVM's", what);
            }
            free(w), free(x), free(want), free(got), free(wrow);
            checked++;
          }
    bn_codegen_close(cg);
    if (lc) bn_codegen_close(lc);
    printf("  %d float matmul kernels checked (%s)%s\n", checked, ISAS[ia], lc ? ", LLVM's bits" : "");
  }
}

/* Causal GQA attention over the K/V caches against bn_ref_attention (which stores this step's K/V rows
 * first, then attends in double): heads, KV heads, head sizes, tokens, positions (a tail of every
 * length), a peaked softmax, caches of F32 and of F16 (the reference reading the same halves); within
 * 1e-5 of the largest output, as the LLVM kernel is held to. */
static void test_attention(void **state) {
  (void)state;
  for (int ia = 0; ia < 2; ia++) {
    bn_codegen *cg = open_isa(ISAS[ia]);
    if (!cg) continue;
    bn_codegen *lc = open_llvm(ISAS[ia]);
    /* heads, KV heads, head size, tokens, position, q scaled by 60 (a peaked softmax) */
    const int cfg[][6] = {{4, 4, 64, 1, 0, 0},    {8, 2, 64, 3, 5, 0},    {20, 5, 128, 7, 40, 0}, {6, 2, 64, 1, 200, 0},
                          {4, 1, 64, 12, 0, 1},   {4, 1, 64, 40, 3, 1},   {16, 16, 96, 5, 33, 0}, {4, 1, 96, 1, 16, 0},
                          {8, 2, 64, 13, 250, 0}, {4, 2, 32, 1, 15, 0},   {2, 1, 256, 2, 17, 0},
                          /* then tiles of 16 tokens (and what is left of T) */
                          {16, 16, 96, 16, 0, 0}, {20, 5, 128, 33, 7, 0}, {4, 1, 64, 48, 100, 1}, {8, 2, 32, 17, 250, 0},
                          {2, 1, 256, 16, 5, 0},  {6, 2, 64, 40, 530, 1},
                          /* pairs of 16-token tiles (the scores two tiles at a time) at the smallest and largest heads */
                          {4, 2, 32, 64, 3, 1},   {2, 1, 256, 35, 9, 0}};
    enum { NC = sizeof cfg / sizeof *cfg };
    uint64_t rng = 55;
    for (int c = 0; c < 2 * NC; c++) {
      const int *f = cfg[c % NC];
      int H = f[0], Hkv = f[1], hd = f[2], T = f[3], pos = f[4], n_ctx = pos + T + 3;
      bn_dtype kv = c < NC ? BN_DT_F32 : BN_DT_F16;
      int64_t kvw = (int64_t)Hkv * hd;
      float *q = malloc((size_t)T * H * hd * 4), *k = malloc((size_t)T * kvw * 4), *v = malloc((size_t)T * kvw * 4);
      void *kc = calloc((size_t)n_ctx * kvw, 4), *vc = calloc((size_t)n_ctx * kvw, 4);
      float *y1 = malloc((size_t)T * H * hd * 4), *y2 = malloc((size_t)T * H * hd * 4);
      float *sc = malloc((size_t)(bn_attn_scores(T, n_ctx) + 16) * 4);
      for (int64_t i = 0; i < (int64_t)n_ctx * kvw; i++) {
        float x[2] = {(float)(bn_rng_unit(&rng) - 0.5), (float)(bn_rng_unit(&rng) - 0.5)};
        bn_ref_kv_row(kv, kc, i, x, 1), bn_ref_kv_row(kv, vc, i, x + 1, 1);
      }
      for (int i = 0; i < T * H * hd; i++) q[i] = (float)(bn_rng_unit(&rng) * 4 - 2) * (f[5] ? 60 : 1);
      for (int64_t i = 0; i < T * kvw; i++) k[i] = (float)(bn_rng_unit(&rng) - 0.5), v[i] = (float)(bn_rng_unit(&rng) - 0.5);
      bn_ref_attention(q, k, v, T, H, Hkv, hd, pos, n_ctx, kv, kc, vc, sc, y1); /* stores this step's rows in kc, vc */
      bn_kkey key = {.family = BN_K_ATTENTION, .k = hd, .n = H, .variant = Hkv, .cache = kv};
      void *fn = kernel(cg, key);
      ((bn_attn_kernel)fn)(q, kc, vc, y2, sc, T, pos, 0, H / 2, n_ctx), ((bn_attn_kernel)fn)(q, kc, vc, y2, sc, T, pos, H / 2, H, n_ctx);
      char what[48];
      snprintf(what, sizeof what, "attention cfg %d (%s cache)", c % NC, bn_dtype_table[kv].name);
      within(y2, y1, T * H * hd, what);
      /* each token's output is the bits of its call alone (tiles of 16, 4 and 1 sum in one order), and LLVM's */
      for (int t = 0; t < T; t++) {
        ((bn_attn_kernel)fn)(q + (size_t)t * H * hd, kc, vc, y1, sc, 1, pos + t, 0, H, n_ctx);
        if (memcmp(y1, y2 + (size_t)t * H * hd, (size_t)H * hd * 4)) fail_msg("%s: token %d alone differs", what, t);
      }
      if (lc) {
        ((bn_attn_kernel)kernel(lc, key))(q, kc, vc, y1, sc, T, pos, 0, H, n_ctx);
        if (memcmp(y1, y2, (size_t)T * H * hd * 4)) fail_msg("%s differs from LLVM's", what);
      }
      free(q), free(k), free(v), free(kc), free(vc), free(y1), free(y2), free(sc);
    }
    bn_codegen_close(cg);
    if (lc) bn_codegen_close(lc);
    printf("  %d attention kernels checked, F32 and F16 caches (%s)%s\n", 2 * NC, ISAS[ia], lc ? ", LLVM's bits" : "");
  }
}

/* The peak loop (what bnc bench takes the int8 peak from): after `iters` rounds of its 8 chains, each
 * 32-bit lane holds 8 iters times the dot product of the lane's 4 unsigned bytes of in[0..) with its 4
 * signed bytes of in[64..), computed here in plain integers; on both ISAs. */
static void test_peak_loop(void **state) {
  (void)state;
  uint8_t in[128];
  uint64_t rng = 5;
  for (int i = 0; i < 128; i++) in[i] = (uint8_t)(bn_rng_next(&rng) % 64); /* no 16-bit saturation on AVX2 */
  for (int ia = 0; ia < 2; ia++) {
    bn_codegen *cg = open_isa(ISAS[ia]);
    if (!cg) continue;
    bn_peak_kernel fn = (bn_peak_kernel)kernel(cg, (bn_kkey){.family = BN_K_PEAK});
    int lanes = bn_codegen_get_info(cg).lanes;
    for (int64_t iters = 0; iters <= 1000; iters += 333) {
      int32_t out[16] = {0};
      fn(in, out, iters);
      for (int l = 0; l < lanes; l++) {
        int32_t dot = 0;
        for (int i = 0; i < 4; i++) dot += in[4 * l + i] * (int8_t)in[64 + 4 * l + i];
        assert_int_equal(out[l], 8 * iters * dot);
      }
    }
    bn_codegen_close(cg);
  }
}

/* The logits of tok[0..n) as one chunk, then (from a reset) decoded one token at a time, each after those
 * before it: 2 n rows of V, malloc'd. The session holds the n tokens after. */
static float *chunk_and_steps(bn_session *s, const int32_t *tok, int n, size_t V) {
  bn_error err = {0};
  float *out = malloc(2 * (size_t)n * V * sizeof *out);
  const float *last;
  if (bn_session_eval(s, tok, n, out, &err)) fail_msg("%s", err.msg);
  bn_session_reset(s);
  for (int i = 0; i < n; i++) {
    if (bn_session_append(s, tok + i, 1, &last, &err)) fail_msg("%s", err.msg);
    memcpy(out + (size_t)(n + i) * V, last, V * sizeof *out);
  }
  return out;
}

/* Whole models: the logits of a prompt chunk and of single steps, 1..3 threads, are the reference's bits. */
static void test_models_match_the_reference(void **state) {
  (void)state;
  bn_error err = {0};
  if (!bn_backend_find("asmjit")) assert_int_equal(bn_backend_register(&bn_backend_asmjit, &err), BN_OK);
  const char *arches[] = {"bitnet", "bitnet-b1.58"};
  for (int ai = 0; ai < 2; ai++) {
    char path[512];
    snprintf(path, sizeof path, "%s/asmjit-%s.gguf", BNC_TEST_TMP, arches[ai]);
    bn_synth_params p = {bn_synth_find_shape("tiny"), arches[ai], BN_DT_I2_S, BN_DT_F16, 3, 0, NULL, 0};
    bn_gguf f;
    bn_model m;
    bn_memplan mp;
    bn_pass_opts po = {.max_tokens = 8, .verify = 1};
    if (tu_model(path, &p, &po, &f, &m, &mp, &err)) fail_msg("%s", err.msg);
    static const int32_t tok[10] = {1, 5, 9, 200, 31, 77, 4, 8, 15, 16};
    size_t V = (size_t)m.hp.n_vocab;
    float *outs[7] = {NULL};
    for (int t1 = 0; t1 < 2; t1++) {
      if (t1) { /* then the same model at 1.6 bits */
        int64_t *all = malloc((size_t)m.graph.n_nodes * 2 * sizeof *all);
        bn_pass_opts to = {.verify = 1, .t1 = all, .n_t1 = bn_pass_matmul_shapes(&m.graph, all)};
        if (bn_pass_relayout_t1(&m.graph, &to, &err)) fail_msg("%s", err.msg);
        free(all);
        int tp1 = 0;
        for (int i = 0; i < m.graph.n_values; i++) tp1 += m.graph.values[i].dtype == BN_DT_TP1;
        assert_true(tp1 >= 4);
      }
      for (int b = t1; b < 7; b++) { /* the reference, then asmjit on 1, 2 and 3 threads, AVX2 then AVX-512 */
        int threads = b ? 1 + (b - 1) % 3 : 1;
        const char *isa = b ? ISAS[(b - 1) / 3] : NULL;
        bn_session_params sp = {.n_ctx = 32,
                                .exec = {.backend = bn_backend_find(b ? "asmjit" : "ref"), .threads = threads, .isa = isa},
                                .sampler = bn_sampler_defaults()};
        bn_session *s;
        if (bn_session_create(&m, &mp, &sp, &s, &err)) {
          if (isa && !strcmp(isa, "avx512")) continue; /* this CPU has no AVX-512 */
          fail_msg("%s", err.msg);
        }
        float *out = chunk_and_steps(s, tok, 10, V);
        if (b) assert_true(bn_exec_jit_nodes(bn_session_exec(s), NULL) >= 1);
        bn_session_free(s);
        if (t1) { /* at 1.6 bits: the same bits as at 2 */
          if (memcmp(out, outs[b], 20 * V * sizeof *out)) fail_msg("%s, %s, %d threads: TP1 differs from TP2", arches[ai], isa, threads);
          free(out);
        } else if (!b) outs[0] = out;
        else { /* every kernel but the output projection's (float lanes, as LLVM's) is the reference's bits */
          double rel = tu_rel_to_range(out, outs[0], 20 * V), bound = ai ? 1e-6 : 1e-4; /* bitnet: silu's exp */
          printf("  %s, %s, %d thread(s): max |diff| / logit range %.3g\n", arches[ai], isa, threads, rel);
          if (rel > bound) fail_msg("%s, %s, %d threads: logits differ by %.3g of their range", arches[ai], isa, threads, rel);
          outs[b] = out;
        }
      }
    }
    printf("  %s: TP1 logits bit-identical to TP2's on asmjit, every ISA and thread count\n", arches[ai]);
    for (int b = 0; b < 7; b++) free(outs[b]);
    bn_memplan_free(&mp), bn_model_free(&m), bn_gguf_close(&f);
  }
}

/* A file of tests/data (or, by a relative name, the example model), compiled for up to 16 tokens a step. */
static void open_file(const char *name, bn_gguf *f, bn_model *m, bn_memplan *mp) {
  char path[512];
  bn_error err = {0};
  bn_pass_opts po = {.max_tokens = 16, .verify = 1};
  snprintf(path, sizeof path, "%s/%s.gguf", BNC_TEST_DATA, name);
  if (tu_model(path, NULL, &po, f, m, mp, &err)) fail_msg("%s: %s", path, err.msg);
}

/* The files other tools wrote (tests/data, with transformers' logits) and the example model: asmjit's
 * logits of a 12-token chunk and of 12 single steps, on each ISA and 1..3 threads, against LLVM's on the
 * same ISA and 1 thread: the same bits (every float kernel of both sums in one order; where bnc has no
 * LLVM, the reference's within 1e-6 of the logit range), the chunk's logits its single steps' bits, a
 * chunk of 16 (a tile of 16 tokens on AVX-512) against the chunk of 12 likewise, and against
 * transformers' (tests/data: 1e-4, what tests/data/README.md calls faithful); greedy continuations of
 * 16 tokens identical to LLVM's. */
static void test_files_match_llvm(void **state) {
  (void)state;
  static const char *const files[] = {"t2-TQ2_0",        "t2-TQ1_0",       "t2-I2_S", "b158-TQ2_0", "b158-TQ1_0",
                                      "hf/llama-groups", "hf/qwen3-pq2_0", /* group scales: TG2, TG2H */
                                      "../../examples/bitnet-kjv-i2_s"};
  static const int32_t tok[12] = {3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26};
  enum { FILES = sizeof files / sizeof *files };
  bn_error err = {0};
  if (!bn_backend_find("asmjit")) assert_int_equal(bn_backend_register(&bn_backend_asmjit, &err), BN_OK);
  const bn_backend *oracle = bn_backend_find("llvm") ? bn_backend_find("llvm") : bn_backend_find("ref");
  double bound = bn_backend_find("llvm") ? 0 : 1e-6, worst = 0, worst16 = 0;
  for (size_t fi = 0; fi < sizeof files / sizeof *files; fi++) {
    char path[512];
    bn_gguf f;
    bn_model m;
    bn_memplan mp;
    open_file(files[fi], &f, &m, &mp);
    size_t V = (size_t)m.hp.n_vocab;
    float *want = NULL;
    int32_t greedy_want[16];
    for (int b = 0; b < 8; b++) { /* per ISA (AVX2, AVX-512): the oracle on it, then asmjit on 1, 2 and 3 threads */
      int threads = b % 4 ? b % 4 : 1;
      const char *isa = ISAS[b / 4];
      bn_sampler_params smp = bn_sampler_defaults();
      smp.temperature = 0, smp.repeat_penalty = 1;
      bn_session_params sp = {.n_ctx = 64, .ignore_eos = 1,
                              .exec = {.backend = b % 4 ? bn_backend_find("asmjit") : oracle, .threads = threads, .isa = isa},
                              .sampler = smp};
      bn_session *s;
      if (bn_session_create(&m, &mp, &sp, &s, &err)) {
        if (!strcmp(isa, "avx512")) break; /* this CPU has no AVX-512 */
        fail_msg("%s", err.msg);
      }
      char kinds[256] = ""; /* asmjit runs every ternary matmul, group-scaled ones too, as generated code */
      bn_exec_ref_nodes(bn_session_exec(s), kinds, sizeof kinds);
      if (b % 4 && strstr(kinds, "tmatmul")) fail_msg("%s, %s: a ternary matmul on the reference kernels (%s)", files[fi], isa, kinds);
      float *out = chunk_and_steps(s, tok, 12, V);
      if (b % 4 && memcmp(out, out + 12 * V, 12 * V * sizeof *out)) /* every tile sums in the one-token order */
        fail_msg("%s, %s, %d threads: the 12-token chunk's logits differ from its single steps'", files[fi], isa, threads);
      int32_t greedy[16];
      const float *step = out + 23 * V; /* greedy: the argmax of the last logits, appended */
      for (int i = 0; i < 16; i++) {
        if (i && bn_session_append(s, &greedy[i - 1], 1, &step, &err)) fail_msg("%s", err.msg);
        int arg = 0;
        for (size_t v = 1; v < V; v++)
          if (step[v] > step[arg]) arg = (int)v;
        greedy[i] = arg;
      }
      /* the prompt and 4 tokens of its continuation as one chunk of 16 (attention's 16-token tiles on AVX-512):
       * its first 12 positions within the bound of the 12-token chunk's (the same bits where LLVM is the
       * oracle: every tile sums in the one-token order) */
      int32_t seq[16];
      memcpy(seq, tok, sizeof tok), memcpy(seq + 12, greedy, 4 * sizeof *greedy);
      float *chunk16 = malloc(16 * V * sizeof *chunk16);
      bn_session_reset(s);
      if (bn_session_eval(s, seq, 16, chunk16, &err)) fail_msg("%s", err.msg);
      bn_session_free(s);
      double rel16 = tu_rel_to_range(chunk16, out, 12 * V);
      worst16 = rel16 > worst16 ? rel16 : worst16;
      if (rel16 > bound) fail_msg("%s, %s, %d threads: a chunk of 16 differs from one of 12 by %.3g of the logit range", files[fi], isa, threads, rel16);
      free(chunk16);
      if (b % 4 == 0) {
        free(want);
        want = out, memcpy(greedy_want, greedy, sizeof greedy);
        continue;
      }
      double rel = tu_rel_to_range(out, want, 24 * V);
      worst = rel > worst ? rel : worst;
      if (rel > bound) fail_msg("%s, %s, %d threads: logits differ from %s's by %.3g of their range", files[fi], isa, threads,
                                oracle->name, rel);
      if (memcmp(greedy, greedy_want, sizeof greedy)) fail_msg("%s, %s, %d threads: greedy tokens differ", files[fi], isa, threads);
      size_t lbytes = 0;
      snprintf(path, sizeof path, "%s/%s.logits", BNC_TEST_DATA, files[fi]);
      float *hf = fi < FILES - 1 ? tu_read(path, &lbytes) : NULL;
      if (hf && lbytes == 12 * V * 4 && tu_rel_to_range(out, hf, 12 * V) > 1e-4)
        fail_msg("%s: asmjit's logits differ from transformers' by %.3g of their range", files[fi], tu_rel_to_range(out, hf, 12 * V));
      free(hf), free(out);
    }
    free(want);
    bn_memplan_free(&mp), bn_model_free(&m), bn_gguf_close(&f);
  }
  printf("  %d models: largest difference from %s's logits %.3g of their range; chunks of 16 from chunks of 12 %.3g\n",
         (int)FILES, oracle->name, worst, worst16);
}

/* K/V caches in F16 (bnc run --kv f16): on the example model and a file with transformers' logits, a
 * 12-token chunk and 12 single steps. asmjit on each ISA and LLVM read the same halves as the reference
 * (within 1e-6 of the logit range, as the F32 caches are held to where there is no LLVM); the caches
 * take half the bytes; the halves cost more than float noise and less than 5 % of the logit range
 * against the F32 caches and transformers (measured 1.1-2.0 %: docs/kv-cache.md). */
static void test_f16_kv_cache(void **state) {
  (void)state;
  static const char *const files[] = {"t2-TQ2_0", "../../examples/bitnet-kjv-i2_s"};
  static const int32_t tok[12] = {3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26};
  bn_error err = {0};
  if (!bn_backend_find("asmjit")) assert_int_equal(bn_backend_register(&bn_backend_asmjit, &err), BN_OK);
  for (size_t fi = 0; fi < sizeof files / sizeof *files; fi++) {
    char path[512];
    bn_gguf f;
    bn_model m;
    bn_memplan mp;
    open_file(files[fi], &f, &m, &mp);
    size_t V = (size_t)m.hp.n_vocab;
    float *want[2] = {NULL, NULL}; /* the reference over F32 and over F16 caches */
    size_t kv_bytes[2] = {0, 0};
    const char *runs[][2] = {{"ref", NULL}, {"asmjit", "avx2"}, {"asmjit", "avx512"}, {"llvm", NULL}};
    for (int r = 0; r < 5; r++) {
      const char *be = runs[r ? r - 1 : 0][0], *isa = runs[r ? r - 1 : 0][1];
      if (!bn_backend_find(be)) continue; /* a bnc without LLVM */
      bn_session_params sp = {.n_ctx = 64,
                              .exec = {.backend = bn_backend_find(be), .threads = 1 + r % 2, .isa = isa,
                                       .kv = r ? BN_DT_F16 : BN_DT_F32},
                              .sampler = bn_sampler_defaults()};
      bn_session *s;
      if (bn_session_create(&m, &mp, &sp, &s, &err)) {
        if (isa && !strcmp(isa, "avx512")) continue; /* this CPU has no AVX-512 */
        fail_msg("%s", err.msg);
      }
      kv_bytes[r > 0] = bn_exec_kv_bytes(bn_session_exec(s));
      float *out = chunk_and_steps(s, tok, 12, V);
      bn_session_free(s);
      if (r < 2) {
        want[r] = out;
        continue;
      }
      double rel = tu_rel_to_range(out, want[1], 24 * V);
      printf("  %s, %s %s over F16 caches: max |diff| / logit range %.3g from the reference's\n", files[fi], be, isa ? isa : "",
             rel);
      if (rel > 1e-6) fail_msg("%s, %s %s: F16-cache logits differ from the reference's by %.3g of their range", files[fi], be,
                               isa ? isa : "", rel);
      free(out);
    }
    double cost = tu_rel_to_range(want[1], want[0], 24 * V);
    printf("  %s: F16 caches against F32: max |diff| / logit range %.3g\n", files[fi], cost);
    if (cost < 1e-5 || cost > 0.05) fail_msg("%s: F16 caches cost %.3g of the logit range (1e-5 .. 0.05)", files[fi], cost);
    if (2 * kv_bytes[1] > kv_bytes[0] + 64 * (size_t)m.hp.n_layer)
      fail_msg("%s: F16 caches take %zu bytes, F32 %zu", files[fi], kv_bytes[1], kv_bytes[0]);
    size_t lbytes = 0;
    snprintf(path, sizeof path, "%s/%s.logits", BNC_TEST_DATA, files[fi]);
    float *hf = fi == 0 ? tu_read(path, &lbytes) : NULL;
    if (hf && lbytes == 12 * V * 4) {
      double hf_cost = tu_rel_to_range(want[1], hf, 12 * V);
      printf("  %s: against transformers' %.3g (F32 caches %.3g)\n", files[fi], hf_cost, tu_rel_to_range(want[0], hf, 12 * V));
      if (hf_cost > 0.05) fail_msg("%s: F16 caches differ from transformers by %.3g of the logit range", files[fi], hf_cost);
    }
    free(hf), free(want[0]), free(want[1]);
    bn_memplan_free(&mp), bn_model_free(&m), bn_gguf_close(&f);
  }
}

/* Several sequences in one step (bn_session_step): each sequence's logits after its prompt and after
 * every decoded token are the bits it gets alone, whichever sequences share its steps (prompts beside
 * decodes, four at once), on the reference, asmjit (both ISAs) and LLVM, 1 and 2 threads; a sequence
 * twice in a step, one out of range and a step over the plan's tokens are refused. */
static void test_sequences_batched(void **state) {
  (void)state;
  bn_error err = {0};
  if (!bn_backend_find("asmjit")) assert_int_equal(bn_backend_register(&bn_backend_asmjit, &err), BN_OK);
  char path[512];
  snprintf(path, sizeof path, "%s/batch.gguf", BNC_TEST_TMP);
  bn_synth_params p = {bn_synth_find_shape("tiny"), "bitnet-b1.58", BN_DT_I2_S, BN_DT_F16, 3, 0, NULL, 0};
  bn_gguf f;
  bn_model m;
  bn_memplan mp;
  bn_pass_opts po = {.max_tokens = 16, .verify = 1};
  if (tu_model(path, &p, &po, &f, &m, &mp, &err)) fail_msg("%s", err.msg);
  size_t V = (size_t)m.hp.n_vocab;
  enum { NS = 4, ND = 4 };
  static const int32_t prompt[NS][7] = {{1, 5, 9, 200, 31, 77, 4}, {8, 15, 16}, {23, 42, 99, 7, 3}, {11}};
  static const int plen[NS] = {7, 3, 5, 1};
  static const int32_t next[NS][ND] = {{2, 3, 4, 5}, {6, 7, 8, 9}, {10, 11, 12, 13}, {14, 15, 16, 17}};
  /* the schedule: at step k, sequence q runs its prompt (0) or its decoded token d (1 + d), or nothing (-1) */
  static const int plan[][NS] = {{0, 0, -1, -1}, {1, 1, 0, -1}, {2, 2, 1, 0}, {3, -1, 2, 1}, {4, 3, 3, 2},
                                 {-1, 4, 4, 3}, {-1, -1, -1, 4}};
  const char *runs[][2] = {{"ref", NULL}, {"asmjit", "avx2"}, {"asmjit", "avx512"}, {"llvm", NULL}};
  for (int r = 0; r < 4; r++)
    for (int threads = 1; threads <= 2; threads++) {
      const bn_backend *be = bn_backend_find(runs[r][0]);
      if (!be) continue; /* a bnc without LLVM */
      float *alone = malloc(NS * (1 + ND) * V * sizeof *alone);
      int ok = 1;
      for (int q = 0; q < NS && ok; q++) { /* each sequence alone: its prompt, then one token at a time */
        bn_session_params sp = {.n_ctx = 32, .exec = {.backend = be, .threads = threads, .isa = runs[r][1]},
                                .sampler = bn_sampler_defaults()};
        bn_session *s;
        if (bn_session_create(&m, &mp, &sp, &s, &err)) {
          if (runs[r][1] && !strcmp(runs[r][1], "avx512")) { ok = 0; break; } /* no AVX-512 here */
          fail_msg("%s", err.msg);
        }
        const float *last;
        for (int d = 0; d <= ND; d++) {
          if (bn_session_append(s, d ? &next[q][d - 1] : prompt[q], d ? 1 : plen[q], &last, &err)) fail_msg("%s", err.msg);
          memcpy(alone + ((size_t)q * (1 + ND) + d) * V, last, V * sizeof *last);
        }
        bn_session_free(s);
      }
      if (!ok) {
        free(alone);
        continue;
      }
      bn_session_params sp = {.n_ctx = 32, .exec = {.backend = be, .threads = threads, .isa = runs[r][1], .n_seq = NS},
                              .sampler = bn_sampler_defaults()};
      bn_session *s;
      if (bn_session_create(&m, &mp, &sp, &s, &err)) fail_msg("%s", err.msg);
      int steps = 0;
      for (size_t k = 0; k < sizeof plan / sizeof *plan; k++) {
        bn_seq_tokens in[NS];
        int n = 0, which[NS];
        for (int q = 0; q < NS; q++) {
          int at = plan[k][q];
          if (at < 0) continue;
          in[n] = at ? (bn_seq_tokens){q, &next[q][at - 1], 1} : (bn_seq_tokens){q, prompt[q], plen[q]};
          which[n++] = at;
        }
        const float *out;
        if (bn_session_step(s, in, n, &out, &err)) fail_msg("%s", err.msg);
        for (int i = 0; i < n; i++)
          if (memcmp(out + (size_t)i * V, alone + ((size_t)in[i].seq * (1 + ND) + which[i]) * V, V * sizeof *out))
            fail_msg("%s %s, %d threads, step %zu: sequence %d's logits differ from its own run", runs[r][0],
                     runs[r][1] ? runs[r][1] : "", threads, k, in[i].seq);
        steps++;
      }
      for (int q = 0; q < NS; q++) assert_int_equal(bn_session_seq_past(s, q), plen[q] + ND);
      /* refused: a sequence twice, one out of range, more tokens than the plan's step */
      const float *out;
      bn_seq_tokens twice[2] = {{1, next[1], 1}, {1, next[1], 1}}, bad = {NS, next[0], 1};
      assert_int_equal(bn_session_step(s, twice, 2, &out, &err), BN_E_INVALID);
      assert_non_null(strstr(err.msg, "sequence 1 twice"));
      assert_int_equal(bn_session_step(s, &bad, 1, &out, &err), BN_E_RANGE);
      bn_session_seq_truncate(s, 0, 0), bn_session_seq_truncate(s, 1, 0);
      int32_t many[12] = {0};
      bn_seq_tokens big[2] = {{0, many, 12}, {1, many, 12}};
      assert_int_equal(bn_session_step(s, big, 2, &out, &err), BN_E_RANGE);
      assert_int_equal(bn_session_seq_past(s, 0), 0);
      bn_session_free(s);
      free(alone);
      printf("  %s %s, %d thread(s): %d steps of up to 4 sequences, each sequence's logits its own run's bits\n",
             runs[r][0], runs[r][1] ? runs[r][1] : "", threads, steps);
    }
  bn_memplan_free(&mp), bn_model_free(&m), bn_gguf_close(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_slices),
      cmocka_unit_test(test_embedding_rows),
      cmocka_unit_test(test_ternary_matmul),
      cmocka_unit_test(test_t1_unpacking),
      cmocka_unit_test(test_dequant_tie),
      cmocka_unit_test(test_norm_quantize),
      cmocka_unit_test(test_rope),
      cmocka_unit_test(test_float_matmul),
      cmocka_unit_test(test_attention),
      cmocka_unit_test(test_peak_loop),
      cmocka_unit_test(test_models_match_the_reference),
      cmocka_unit_test(test_files_match_llvm),
      cmocka_unit_test(test_f16_kv_cache),
      cmocka_unit_test(test_sequences_batched),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
