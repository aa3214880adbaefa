/* MSL kernels, one emitter per family (emit.h says the parameter order). Integer sums are exact;
 * where the reference works in double (norms, dequantization, attention, float matmuls) the
 * kernels work in float pairs (MSL has no double) and round once, so their results are the
 * reference's bits but for values within ~1e-13 of a rounding boundary (the prelude's helpers). */
#include <stdio.h>
#include <string.h>

#include "../ir/quant.h"
#include "emit.h"

#define IDS                                                                                                       \
  "uint3 tgp [[threadgroup_position_in_grid]], uint tid [[thread_index_in_threadgroup]],\n"                       \
  "    uint sg [[simdgroup_index_in_threadgroup]], uint lane [[thread_index_in_simdgroup]]"

static const char prelude[] =
    "#include <metal_stdlib>\n"
    "using namespace metal;\n"
    "\n"
    "struct bn_step {\n"
    "  uint T, pos, n_ctx, pad;\n"
    "};\n"
    "\n"
    "// Element i of a row-major tensor of each weight type, as ir/quant.c dequantizes it.\n"
    "static inline float bn_ld_f32(device const uchar *w, ulong i) { return ((device const float *)w)[i]; }\n"
    "static inline float bn_ld_f16(device const uchar *w, ulong i) { return float(((device const half *)w)[i]); }\n"
    "static inline float bn_ld_bf16(device const uchar *w, ulong i) {\n"
    "  return as_type<float>(uint(((device const ushort *)w)[i]) << 16);\n"
    "}\n"
    "static inline float bn_ld_q8_0(device const uchar *w, ulong i) {\n"
    "  device const uchar *b = w + i / 32 * 34;\n"
    "  return float(*(device const half *)b) * float(((device const char *)b)[2 + i % 32]);\n"
    "}\n"
    "static inline float bn_ld_q4_0(device const uchar *w, ulong i) {\n"
    "  device const uchar *b = w + i / 32 * 18;\n"
    "  uint k = uint(i % 32), c = b[2 + k % 16];\n"
    "  return float(*(device const half *)b) * float(int(k < 16 ? c & 15 : c >> 4) - 8);\n"
    "}\n"
    "\n"
    "// Double-float arithmetic (a float pair hi + lo, ~2^-46): MSL has no double, and the reference\n"
    "// computes norms, dequantization, attention and float matmuls in double before rounding to\n"
    "// float. Done in pairs, the float here is the reference's unless the exact value lies within\n"
    "// ~1e-13 of a rounding boundary. (The library must be compiled without fast math, which could\n"
    "// fold the error terms away: docs/metal.md.)\n"
    "struct bn_ff {\n"
    "  float hi, lo;\n"
    "};\n"
    "static inline bn_ff bn_two_sum(float a, float b) {\n"
    "  const float s = a + b, bb = s - a;\n"
    "  return bn_ff{s, (a - (s - bb)) + (b - bb)};\n"
    "}\n"
    "static inline bn_ff bn_fast_two_sum(float a, float b) { // |a| >= |b|\n"
    "  const float s = a + b;\n"
    "  return bn_ff{s, b - (s - a)};\n"
    "}\n"
    "static inline bn_ff bn_two_prod(float a, float b) { return bn_ff{a * b, fma(a, b, -(a * b))}; }\n"
    "static inline bn_ff bn_ff_add(bn_ff a, bn_ff b) {\n"
    "  const bn_ff s = bn_two_sum(a.hi, b.hi), t = bn_two_sum(a.lo, b.lo), u = bn_fast_two_sum(s.hi, s.lo + t.hi);\n"
    "  return bn_fast_two_sum(u.hi, u.lo + t.lo);\n"
    "}\n"
    "static inline bn_ff bn_ff_mul(bn_ff a, bn_ff b) {\n"
    "  const bn_ff p = bn_two_prod(a.hi, b.hi);\n"
    "  return bn_fast_two_sum(p.hi, p.lo + (a.hi * b.lo + a.lo * b.hi));\n"
    "}\n"
    "static inline float bn_ff_div(bn_ff a, bn_ff b) { // a / b rounded to float\n"
    "  const float q = a.hi / b.hi;\n"
    "  const bn_ff r = bn_ff_add(a, bn_ff_mul(b, bn_ff{-q, 0}));\n"
    "  return q + r.hi / b.hi;\n"
    "}\n"
    "static inline float bn_ff_round(bn_ff a) { return a.hi + a.lo; }\n"
    "// 1 / sqrt(s / k + eps), as the norms compute it: s / k, one Newton step from the float rsqrt\n"
    "static inline float bn_inv_rms(bn_ff s, float k, float eps) {\n"
    "  const float q = s.hi / k, ql = (fma(-q, k, s.hi) + s.lo) / k;\n"
    "  bn_ff v = bn_two_sum(q, eps);\n"
    "  v.lo += ql;\n"
    "  const float vh = v.hi + v.lo, vl = v.lo - (vh - v.hi);\n"
    "  const float y = 1.0f / sqrt(vh), t = y * y, tl = fma(y, y, -t), p = vh * t, pl = fma(vh, t, -p);\n"
    "  const float e = (1.0f - p) - pl - vh * tl - vl * t; // 1 - v y^2; 1 - p is exact (p is near 1)\n"
    "  return y + y * e * 0.5f;\n"
    "}\n"
    "// float((double)a * rs / s), the ternary matmul's dequantization (a is exact in float: |a| < 2^24,\n"
    "// K < 132096)\n"
    "static inline float bn_dq(int a, float rs, float s) {\n"
    "  const float fa = float(a), p = fa * rs, pe = fma(fa, rs, -p), q = p / s;\n"
    "  return q + (fma(-q, s, p) + pe) / s;\n"
    "}\n"
    "// A TG2 group's f16 scale times 2^24: an integer below 2^40 (every finite half is a multiple of 2^-24)\n"
    "static inline long bn_scale24(ushort h) {\n"
    "  const long m = h & 1023, e = h >> 10 & 31, v = e ? (m | 1024) << (e - 1) : m;\n"
    "  return h & 0x8000 ? -v : v;\n"
    "}\n"
    "constant float BN_EXP_HI[13] = {1, 1, 0.5, 0.166666672, 0.0416666679, 0.00833333377, 0.00138888892,\n"
    "    0.000198412701, 2.48015876e-05, 2.75573188e-06, 2.755732e-07, 2.50521079e-08, 2.08767559e-09};\n"
    "constant float BN_EXP_LO[13] = {0, 0, 0, -4.96705388e-09, -1.24176347e-09, -4.34617203e-10, -3.36310944e-11,\n"
    "    -2.72559687e-12, -3.40699609e-13, 3.79357122e-14, -7.57511221e-15, 4.41762304e-16, 1.10828391e-16}; // 1/n!\n"
    "// exp(d), d <= 0, rounded to float: d - k ln2 (ln2 in three parts, k ln2's first exact), a Taylor\n"
    "// series to r^12 in pairs, then 2^k\n"
    "static inline float bn_ff_exp(bn_ff d) {\n"
    "  if (d.hi < -104.0f) return 0.0f;\n"
    "  const float k = rint(d.hi * 1.44269502f);\n"
    "  bn_ff r = bn_ff_add(d, bn_ff{-k * 0.693145752f, 0});\n"
    "  r = bn_ff_add(r, bn_two_prod(-k, 1.42860677e-06f));\n"
    "  r = bn_ff_add(r, bn_ff{-k * 5.49792315e-14f, 0});\n"
    "  bn_ff e = bn_ff{BN_EXP_HI[12], BN_EXP_LO[12]};\n"
    "  for (int n = 11; n >= 0; n--) e = bn_ff_add(bn_ff_mul(e, r), bn_ff{BN_EXP_HI[n], BN_EXP_LO[n]});\n"
    "  return ldexp(e.hi, int(k)) + ldexp(e.lo, int(k));\n"
    "}\n"
    "static inline float bn_ld_q6_k(device const uchar *w, ulong i) {\n"
    "  device const uchar *b = w + i / 256 * 210;\n"
    "  uint e = uint(i % 256), h = e / 128, j = e % 128 / 32, l = e % 32;\n"
    "  uint lo = (b[h * 64 + j % 2 * 32 + l] >> (j >= 2 ? 4 : 0)) & 15, hi = (b[128 + h * 32 + l] >> (2 * j)) & 3;\n"
    "  float d = float(*(device const half *)(b + 208));\n"
    "  return d * float(((device const char *)b)[192 + h * 8 + j * 2 + l / 16]) * float(int(lo | hi << 4) - 32);\n"
    "}\n";

const char *bn_metal_prelude(void) { return prelude; }

static const char *loader(int dtype) {
  switch (dtype) {
  case BN_DT_F32: return "bn_ld_f32";
  case BN_DT_F16: return "bn_ld_f16";
  case BN_DT_BF16: return "bn_ld_bf16";
  case BN_DT_Q8_0: return "bn_ld_q8_0";
  case BN_DT_Q4_0: return "bn_ld_q4_0";
  case BN_DT_Q6_K: return "bn_ld_q6_k";
  default: return NULL;
  }
}

/* A group for n work items, one a thread: whole simdgroups, at most 256 threads (the rest loop). */
static uint32_t threads_for(int64_t n) { return (uint32_t)((n + 31) / 32 * 32 < 256 ? (n + 31) / 32 * 32 : 256); }

enum { MM_TT = 8, NQ_THREADS = 256, ATT_SG = 4, ROW_THREADS = 256 };

int bn_metal_supports(const bn_kkey *key) {
  switch (key->family) {
  case BN_K_MATMUL: /* the tiles' float sums are exact while K 128 < 2^24 */
    return key->k % 256 == 0 && key->k > 0 && key->n > 0 && !key->pro &&
           (!(key->variant & BN_MTL_MANY) || key->k * 128 < (1 << 24));
  case BN_K_MATMUL_G: /* TG2, TG2H; the sums in 64-bit integers: below 2^15 x 2^40 x K / 256 < 2^63 */
    return key->k % 256 == 0 && key->k > 0 && key->k <= 65536 && key->n > 0 && !key->pro &&
           (key->cache == BN_DT_TG2 || key->cache == BN_DT_TG2H);
  case BN_K_MATMUL_F: return loader(key->variant) && key->k > 0 && key->n > 0;
  case BN_K_EMBED: return loader(key->variant) && key->k > 0;
  case BN_K_NORM_QUANT: /* eps a number MSL can spell; a group (n) for RMSNORM alone */
    return key->k > 0 && key->eps >= 0 && key->eps < 1e30f && key->variant >= 0 && key->variant <= BN_NQ_GATE_SILU_Q &&
           (!key->n || (key->variant == BN_NQ_RMSNORM && key->n > 0 && key->k % key->n == 0));
  case BN_K_ATTENTION:
    return key->k > 0 && key->k <= 1024 && key->n > 0 && (key->variant & ~BN_MTL_STORE) > 0 &&
           key->n % (key->variant & ~BN_MTL_STORE) == 0 && (key->cache == BN_DT_F32 || key->cache == BN_DT_F16);
  case BN_K_ROPE: return key->k > 0 && key->k % 2 == 0 && key->k <= 2048;
  case BN_K_SLICE: return key->n > 0 && key->variant >= 0 && key->variant + key->n <= key->k;
  default: return 0;
  }
}

/* kernel void NAME(constant bn_step &st [[buffer(0)]], <operands>, [tgm], IDS) { */
static void open_kernel(bn_sbuf *s, bn_mtl_kernel *k, const char *const *ops, int n_ops) {
  bn_sbuf_put(s, "\nkernel void %s(constant bn_step &st [[buffer(0)]]", k->name);
  for (int i = 0; i < n_ops; i++) bn_sbuf_put(s, ",\n    %s [[buffer(%d)]]", ops[i], i + 1);
  if (k->tg_block) bn_sbuf_put(s, ",\n    threadgroup float *tgm [[threadgroup(0)]]");
  bn_sbuf_put(s, ",\n    " IDS ") {\n");
  k->n_buffers = n_ops + 1;
}

static const char *mm_mode(int v) {
  v &= ~BN_MTL_MANY;
  return v == BN_MM_ACC ? "acc" : v == BN_MM_DQ ? "dq" : "dqadd";
}

/* The matmuls' shape: a group of 4 simdgroups, each MM_R rows for up to MM_TT tokens. A lane keeps
 * partial sums of its share of K for every (row, token); they meet in the threadgroup block, where
 * lane i adds up the 32 partials of pair i: one simdgroup barrier instead of a simd_sum a pair. */
enum { MM_R = 2, MM_ROWS = 4 * MM_R };

/* A ternary matmul's output for row r and token t from its integer sum a, after the kernel set qt, the
 * token's QA8 row offset: a itself (ACC), or dequantized with the row's scale and the token's (plus the
 * residual). Closes the loop over outputs and the kernel. */
static void mm_store(bn_sbuf *s, int mode) {
  if (mode == BN_MM_ACC) bn_sbuf_put(s, "    y[o] = a;\n");
  else
    bn_sbuf_put(s,
                "    const float rs = ((device const float *)(w + ulong(N) * (K / 4)))[r],\n"
                "                sa = *(device const float *)(qa + qt + STRIDE - 64);\n"
                "    y[o] = %sbn_dq(a, rs, sa);\n",
                mode == BN_MM_DQ_ADD ? "resid[o] + " : "");
  bn_sbuf_put(s, "  }\n}\n");
}

/* A ternary matmul kernel's opening (mm, mg): PREFIX_MODE_kK_nN over qa, w, y (int in ACC mode) and resid
 * (DQ_ADD), 4 simdgroups of MM_R rows for MM_TT tokens, each lane's partials `part` bytes in the block. */
static void mm_open(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *s, const char *prefix, int part) {
  int mode = key->variant;
  snprintf(k->name, sizeof k->name, "%s_%s_k%lld_n%lld", prefix, mm_mode(mode), (long long)key->k, (long long)key->n);
  const char *ops[] = {"device const uchar *qa", "device const uchar *w",
                       mode == BN_MM_ACC ? "device int *y" : "device float *y", "device const float *resid"};
  k->threads = 128, k->groups_x = (uint32_t)((key->n + MM_ROWS - 1) / MM_ROWS), k->tok_tile = MM_TT, k->tg_block = 1;
  k->tg_bytes = (uint32_t)(4 * MM_R * MM_TT * 32 * part);
  open_kernel(s, k, ops, mode == BN_MM_DQ_ADD ? 4 : 3);
}

/* Ternary matmul over TP2 weights (ir/quant.h): a lane takes bytes lane and lane + 32 of each
 * 64-byte group of its simdgroup's rows (4 codes a byte, 64 elements apart), the codes unpacked
 * once for all tokens of the group and multiplied as they are (trit + 1: the row's code sum comes
 * off at the end). Integer sums; the dequantization acc * row_scale / s in float pairs. */
static void emit_mm(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *s) {
  int64_t K = key->k, N = key->n, stride = bn_qa8_row_bytes(K);
  int mode = key->variant;
  mm_open(key, k, s, "mm", 4);
  bn_sbuf_put(s,
              "  const uint K = %lld, N = %lld, STRIDE = %lld, TT = %d, R = %d;\n"
              "  const uint r0 = tgp.x * (4 * R) + sg * R, t0 = tgp.y * TT, nt = min(st.T - t0, TT);\n"
              "  int acc[R * TT];\n"
              "  for (uint p = 0; p < R * TT; p++) acc[p] = 0;\n"
              "  for (uint rr = 0; rr < R && r0 + rr < N; rr++) {\n"
              "    const uint r = r0 + rr, m = min(N - r / 4 * 4, 4u);\n"
              "    device const uchar *row = w + ulong(r / 4) * K + (r %% 4) * 64;\n"
              "    for (uint g = 0; g < K / 256; g++)\n"
              "      for (uint b = lane; b < 64; b += 32) {\n"
              "        const uint c = row[g * m * 64 + b];\n"
              "        const int w0 = int(c & 3), w1 = int(c >> 2 & 3), w2 = int(c >> 4 & 3), w3 = int(c >> 6); // trit + 1\n"
              "        for (uint t = 0; t < nt; t++) {\n"
              "          device const char *q = (device const char *)(qa + (t0 + t) * STRIDE) + g * 256 + b;\n"
              "          acc[rr * TT + t] += w0 * q[0] + w1 * q[64] + w2 * q[128] + w3 * q[192];\n"
              "        }\n"
              "      }\n"
              "  }\n",
              (long long)K, (long long)N, (long long)stride, MM_TT, MM_R);
  /* the partials meet in the block; the codes stood for trit + 1: sum (c - 1) q = sum c q - sum q, the QA8
   * row's code sum */
  bn_sbuf_put(s,
              "  threadgroup int *part = (threadgroup int *)tgm + sg * (R * TT * 32);\n"
              "  for (uint p = 0; p < R * TT; p++) part[p * 32 + lane] = acc[p];\n"
              "  simdgroup_barrier(mem_flags::mem_threadgroup);\n"
              "  for (uint p = lane; p < R * TT; p += 32) {\n"
              "    const uint r = r0 + p / TT, t = p %% TT;\n"
              "    if (r >= N || t >= nt) continue;\n"
              "    const ulong qt = (t0 + t) * STRIDE;\n"
              "    int a = -*(device const int *)(qa + qt + STRIDE - 60);\n"
              "    for (uint i = 0; i < 32; i++) a += part[p * 32 + i];\n"
              "    const uint o = (t0 + t) * N + r;\n");
  mm_store(s, mode);
}

/* Ternary matmul over TG2 weights (an f16 scale per 256-group; TG2H per 128), emit_mm's shape: a lane's
 * trit sums of each group (half) times the group's scale as an integer (bn_scale24) summed in 64 bits,
 * the lanes' sums met in the block: the exact sum of the reference's products times 2^24, so its float,
 * times 2^-24, is the reference's (float)(exact double sum). ACC stores the float's bits. */
static void emit_mg(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *s) {
  int64_t K = key->k, N = key->n, stride = bn_qa8_row_bytes(K);
  int mode = key->variant, half = key->cache == BN_DT_TG2H;
  mm_open(key, k, s, half ? "mgh" : "mg", 8);
  bn_sbuf_put(s,
              "  const uint K = %lld, N = %lld, STRIDE = %lld, TT = %d, R = %d, GS = %d; // GS: scales a 256-group has\n"
              "  const uint r0 = tgp.x * (4 * R) + sg * R, t0 = tgp.y * TT, nt = min(st.T - t0, TT);\n"
              "  long acc[R * TT];\n"
              "  for (uint p = 0; p < R * TT; p++) acc[p] = 0;\n"
              "  for (uint rr = 0; rr < R && r0 + rr < N; rr++) {\n"
              "    const uint r = r0 + rr, m = min(N - r / 4 * 4, 4u);\n"
              "    device const uchar *row = w + ulong(r / 4) * K + (r %% 4) * 64;\n"
              "    device const ushort *sc = (device const ushort *)(w + ulong(N) * (K / 4)) + ulong(r / 4) * 4 * (K / 256 * GS) + r %% 4;\n"
              "    for (uint g = 0; g < K / 256; g++) {\n"
              "      const long s0 = bn_scale24(sc[GS * g * m]), s1 = bn_scale24(sc[(GS * g + GS - 1) * m]);\n"
              "      for (uint b = lane; b < 64; b += 32) {\n"
              "        const uint c = row[g * m * 64 + b];\n"
              "        const int w0 = int(c & 3) - 1, w1 = int(c >> 2 & 3) - 1, w2 = int(c >> 4 & 3) - 1, w3 = int(c >> 6) - 1;\n"
              "        for (uint t = 0; t < nt; t++) {\n"
              "          device const char *q = (device const char *)(qa + (t0 + t) * STRIDE) + g * 256 + b;\n"
              "          acc[rr * TT + t] += long(w0 * q[0] + w1 * q[64]) * s0 + long(w2 * q[128] + w3 * q[192]) * s1;\n"
              "        }\n"
              "      }\n"
              "    }\n"
              "  }\n"
              "  threadgroup long *part = (threadgroup long *)tgm + sg * (R * TT * 32);\n"
              "  for (uint p = 0; p < R * TT; p++) part[p * 32 + lane] = acc[p];\n"
              "  simdgroup_barrier(mem_flags::mem_threadgroup);\n"
              "  for (uint p = lane; p < R * TT; p += 32) {\n"
              "    const uint r = r0 + p / TT, t = p %% TT;\n"
              "    if (r >= N || t >= nt) continue;\n"
              "    long a = 0;\n"
              "    for (uint i = 0; i < 32; i++) a += part[p * 32 + i];\n"
              "    const float f = float(a) * 5.9604644775390625e-8f; // 2^-24\n"
              "    const uint o = (t0 + t) * N + r;\n",
              (long long)K, (long long)N, (long long)stride, MM_TT, MM_R, half ? 2 : 1);
  if (mode == BN_MM_ACC) bn_sbuf_put(s, "    y[o] = as_type<int>(f);\n");
  else
    bn_sbuf_put(s,
                "    const float sa = *(device const float *)(qa + (t0 + t) * STRIDE + STRIDE - 64), q = f / sa;\n"
                "    y[o] = %s(q + fma(-q, sa, f) / sa); // (double)f / s rounded\n",
                mode == BN_MM_DQ_ADD ? "resid[o] + " : "");
  bn_sbuf_put(s, "  }\n}\n");
}

/* Ternary matmul for many tokens: a group computes a tile of 32 rows x 32 tokens with
 * simdgroup_matrix multiply-accumulate. Each K chunk of 32, the group unpacks the rows' codes to
 * half and the tokens' int8 codes to half in the threadgroup block (both exact in half); each
 * simdgroup multiplies its 8 rows by the 4 token blocks, accumulating in float: every partial sum
 * an integer below K 128 < 2^24, so exact in any order. The tile goes through the block to the
 * dequantization. */
static void emit_mmt(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *s) {
  int64_t K = key->k, N = key->n, stride = bn_qa8_row_bytes(K);
  int mode = key->variant & ~BN_MTL_MANY;
  snprintf(k->name, sizeof k->name, "mmt_%s_k%lld_n%lld", mm_mode(mode), (long long)K, (long long)N);
  const char *ops[] = {"device const uchar *qa", "device const uchar *w",
                       mode == BN_MM_ACC ? "device int *y" : "device float *y", "device const float *resid"};
  k->threads = 128, k->groups_x = (uint32_t)((N + 31) / 32), k->tok_tile = 32, k->tg_block = 1;
  k->tg_bytes = (32 * 32 * 2 * 2) + 32 * 32 * 4;
  open_kernel(s, k, ops, mode == BN_MM_DQ_ADD ? 4 : 3);
  bn_sbuf_put(s,
              "  const uint K = %lld, N = %lld, STRIDE = %lld, TR = 32, TN = 32, KC = 32;\n"
              "  const uint r0 = tgp.x * TR, t0 = tgp.y * TN;\n"
              "  threadgroup half *ws = (threadgroup half *)tgm; // [TR][KC] the rows' codes\n"
              "  threadgroup half *as = ws + TR * KC;             // [KC][TN] the tokens' codes\n"
              "  threadgroup float *cs = tgm + TR * KC;           // [TR][TN] the sums\n"
              "  simdgroup_float8x8 c[4];\n"
              "  for (uint j = 0; j < 4; j++) c[j] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);\n"
              "  for (uint k0 = 0; k0 < K; k0 += KC) {\n"
              "    for (uint e = tid; e < TR * KC; e += 128) {\n"
              "      const uint r = r0 + e / KC, kk = k0 + e %% KC, j = kk %% 256;\n"
              "      int v = 0;\n"
              "      if (r < N) {\n"
              "        const uint m = min(N - r / 4 * 4, 4u);\n"
              "        v = int(w[ulong(r / 4) * K + (kk / 256 * m + r %% 4) * 64 + j %% 64] >> (2 * (j / 64)) & 3) - 1;\n"
              "      }\n"
              "      ws[e] = half(v);\n"
              "    }\n"
              "    for (uint e = tid; e < KC * TN; e += 128) {\n"
              "      const uint kk = k0 + e / TN, t = t0 + e %% TN;\n"
              "      as[e] = half(t < st.T ? int(((device const char *)(qa + ulong(t) * STRIDE))[kk]) : 0);\n"
              "    }\n"
              "    threadgroup_barrier(mem_flags::mem_threadgroup);\n"
              "    for (uint kk = 0; kk < KC; kk += 8) {\n"
              "      simdgroup_half8x8 a;\n"
              "      simdgroup_load(a, ws + sg * 8 * KC + kk, KC);\n"
              "      for (uint j = 0; j < 4; j++) {\n"
              "        simdgroup_half8x8 b;\n"
              "        simdgroup_load(b, as + kk * TN + j * 8, TN);\n"
              "        simdgroup_multiply_accumulate(c[j], a, b, c[j]);\n"
              "      }\n"
              "    }\n"
              "    threadgroup_barrier(mem_flags::mem_threadgroup); // before the next chunk overwrites the tiles\n"
              "  }\n"
              "  for (uint j = 0; j < 4; j++) simdgroup_store(c[j], cs + sg * 8 * TN + j * 8, TN);\n"
              "  threadgroup_barrier(mem_flags::mem_threadgroup);\n"
              "  for (uint e = tid; e < TR * TN; e += 128) {\n"
              "    const uint r = r0 + e / TN, t = t0 + e %% TN;\n"
              "    if (r >= N || t >= st.T) continue;\n"
              "    const int a = int(cs[e]);\n"
              "    const uint o = t * N + r;\n"
              "    const ulong qt = ulong(t) * STRIDE;\n",
              (long long)K, (long long)N, (long long)stride);
  mm_store(s, mode);
}

/* Float matmul y = x W^T over any weight type, shaped as the ternary one (lanes over K), its sums
 * in float pairs: the reference's double sum rounded to float. */
static void emit_mf(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *s) {
  int64_t K = key->k, N = key->n;
  snprintf(k->name, sizeof k->name, "mf_%s_k%lld_n%lld", bn_dtype_table[key->variant].name, (long long)K, (long long)N);
  const char *ops[] = {"device const float *x", "device const uchar *w", "device float *y"};
  k->threads = 128, k->groups_x = (uint32_t)((N + MM_ROWS - 1) / MM_ROWS), k->tok_tile = MM_TT, k->tg_block = 1;
  k->tg_bytes = 4 * MM_R * MM_TT * 64 * 4;
  open_kernel(s, k, ops, 3);
  bn_sbuf_put(s,
              "  const uint K = %lld, N = %lld, TT = %d, R = %d;\n"
              "  const uint r0 = tgp.x * (4 * R) + sg * R, t0 = tgp.y * TT, nt = min(st.T - t0, TT);\n"
              "  bn_ff acc[R * TT];\n"
              "  for (uint p = 0; p < R * TT; p++) acc[p] = bn_ff{0, 0};\n"
              "  for (uint rr = 0; rr < R && r0 + rr < N; rr++)\n"
              "    for (uint i = lane; i < K; i += 32) {\n"
              "      const float wv = %s(w, ulong(r0 + rr) * K + i);\n"
              "      for (uint t = 0; t < nt; t++) acc[rr * TT + t] = bn_ff_add(acc[rr * TT + t], bn_two_prod(x[(t0 + t) * K + i], wv));\n"
              "    }\n"
              "  threadgroup float *part = tgm + sg * (R * TT * 64);\n"
              "  for (uint p = 0; p < R * TT; p++) part[p * 64 + lane] = acc[p].hi, part[p * 64 + 32 + lane] = acc[p].lo;\n"
              "  simdgroup_barrier(mem_flags::mem_threadgroup);\n"
              "  for (uint p = lane; p < R * TT; p += 32) {\n"
              "    const uint r = r0 + p / TT, t = p %% TT;\n"
              "    if (r >= N || t >= nt) continue;\n"
              "    bn_ff a = bn_ff{0, 0};\n"
              "    for (uint i = 0; i < 32; i++) a = bn_ff_add(a, bn_ff{part[p * 64 + i], part[p * 64 + 32 + i]});\n"
              "    y[(t0 + t) * N + r] = bn_ff_round(a);\n"
              "  }\n}\n",
              (long long)K, (long long)N, MM_TT, MM_R, loader(key->variant));
}

static const char *nq_mode(int v) {
  static const char *const name[] = {"nq", "relu2", "silu", "rmsnorm", "quant", "relu2q", "siluq"};
  return v >= 0 && v <= BN_NQ_GATE_SILU_Q ? name[v] : "?";
}

/* Norm (+ gate) + quantize, one group of NQ_THREADS a token: the sum of squares in float pairs,
 * added up through the threadgroup block by thread 0, which turns it into 1 / rms; the row's absmax
 * through simdgroups and the block; then the codes, their sum, and the QA8 row's scale and sum
 * (ir/ir.h). RMSNORM mode writes the normed floats instead. The gate's act(g) * u is recomputed in
 * each pass: the same bits every time, and no scratch row. */
static void emit_nq(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *s) {
  int64_t K = key->n ? key->n : key->k, W = key->k, stride = bn_qa8_row_bytes(K); /* K normed alone; W a row */
  int mode = key->variant, gate = bn_nq_gated(mode), normed = bn_nq_normed(mode), nsg = NQ_THREADS / 32;
  snprintf(k->name, sizeof k->name, "%s_k%lld", nq_mode(mode), (long long)W);
  if (key->n) snprintf(k->name + strlen(k->name), sizeof k->name - strlen(k->name), "_g%lld", (long long)K);
  const char *ops[] = {"device const float *x", "device const float *wn",
                       mode == BN_NQ_RMSNORM ? "device float *y" : "device uchar *qa"};
  k->threads = NQ_THREADS, k->groups_x = (uint32_t)(W / K), k->tok_tile = 1, k->tg_block = 1; /* a group per piece */
  k->tg_bytes = (uint32_t)((2 * NQ_THREADS + 1 + 2 * nsg) * 4);
  if (!normed) ops[1] = ops[2]; /* no norm weights: x, qa */
  open_kernel(s, k, ops, normed ? 3 : 2);
  bn_sbuf_put(s, "  const uint K = %lld, NT = %d, NSG = %d;\n", (long long)K, NQ_THREADS, nsg);
  if (normed) bn_sbuf_put(s, "  const float EPS = %.9g;\n", key->eps);
  bn_sbuf_put(s, "  device const float *xr = x + tgp.y * %lld + tgp.x * K;\n", (long long)(gate ? 2 * W : W));
  if (mode == BN_NQ_GATE_RELU2 || mode == BN_NQ_GATE_RELU2_Q)
    bn_sbuf_put(s, "#define H(i) ((xr[i] > 0 ? xr[i] * xr[i] : 0.0f) * xr[K + (i)])\n");
  else if (gate) bn_sbuf_put(s, "#define H(i) (xr[i] / (1.0f + exp(-xr[i])) * xr[K + (i)])\n");
  else bn_sbuf_put(s, "#define H(i) xr[i]\n");
  bn_sbuf_put(s, normed ? "#define Y(i) (H(i) * inv * wn[i])\n" : "#define Y(i) H(i)\n");
  if (normed) bn_sbuf_put(s,
              "  bn_ff ss = bn_ff{0, 0};\n"
              "  for (uint i = tid; i < K; i += NT) ss = bn_ff_add(ss, bn_two_prod(H(i), H(i)));\n"
              "  tgm[2 * tid] = ss.hi, tgm[2 * tid + 1] = ss.lo;\n"
              "  threadgroup_barrier(mem_flags::mem_threadgroup);\n"
              "  if (tid == 0) {\n"
              "    for (uint i = 1; i < NT; i++) ss = bn_ff_add(ss, bn_ff{tgm[2 * i], tgm[2 * i + 1]});\n"
              "    tgm[2 * NT] = bn_inv_rms(ss, float(K), EPS);\n"
              "  }\n"
              "  threadgroup_barrier(mem_flags::mem_threadgroup);\n"
              "  const float inv = tgm[2 * NT];\n");
  if (mode == BN_NQ_RMSNORM) {
    bn_sbuf_put(s, "  for (uint i = tid; i < K; i += NT) y[tgp.y * %lld + tgp.x * K + i] = Y(i);\n#undef Y\n#undef H\n}\n", (long long)W);
    return;
  }
  bn_sbuf_put(s,
              "  float mx = 0;\n"
              "  for (uint i = tid; i < K; i += NT) mx = max(mx, abs(Y(i)));\n"
              "  mx = simd_max(mx);\n"
              "  if (lane == 0) tgm[2 * NT + 1 + sg] = mx;\n"
              "  threadgroup_barrier(mem_flags::mem_threadgroup);\n"
              "  mx = 0;\n"
              "  for (uint g = 0; g < NSG; g++) mx = max(mx, tgm[2 * NT + 1 + g]);\n"
              "  const float sc = 127.0f / max(mx, 1e-5f);\n"
              "  device uchar *row = qa + tgp.y * %lld;\n"
              "  int sum = 0;\n"
              "  for (uint i = tid; i < K; i += NT) {\n"
              "    const float q = clamp(rint(Y(i) * sc), -128.0f, 127.0f);\n"
              "    ((device char *)row)[i] = char(q);\n"
              "    sum += int(q);\n"
              "  }\n"
              "  for (uint i = K + tid; i < %lld; i += NT) row[i] = 0;\n"
              "  sum = simd_sum(sum);\n"
              "  if (lane == 0) tgm[2 * NT + 1 + NSG + sg] = as_type<float>(sum);\n"
              "  threadgroup_barrier(mem_flags::mem_threadgroup);\n"
              "  if (tid != 0) return;\n"
              "  sum = 0;\n"
              "  for (uint g = 0; g < NSG; g++) sum += as_type<int>(tgm[2 * NT + 1 + NSG + g]);\n"
              "  *(device float *)(row + %lld) = sc;\n"
              "  *(device int *)(row + %lld) = sum;\n"
              "#undef Y\n#undef H\n}\n",
              (long long)stride, (long long)(stride - 64), (long long)(stride - 64), (long long)(stride - 60));
}

/* An attention kernel's K and V cache parameters ("device const half *kc"; qual "const " or ""), and the
 * caches' element type in MSL. */
static const char *cache_params(const bn_kkey *key, const char *qual, char kc[48], char vc[48]) {
  const char *ct = key->cache == BN_DT_F16 ? "half" : "float";
  snprintf(kc, 48, "device %s%s *kc", qual, ct), snprintf(vc, 48, "device %s%s *vc", qual, ct);
  return ct;
}

/* Causal attention as the reference computes it, one group of ATT_SG simdgroups per (head,
 * token), in two passes over the keys: the scores' max, then the weights exp(s - max) (each
 * rounded to float, as the reference stores them), their sum and the weighted values. A lane
 * scores one key of a block of 32 (dot products in float pairs, rounded as the reference's double
 * ones); the block's weights go through the threadgroup block to lanes over the head's dims.
 * Sums in pairs, merged across simdgroups through the block; one division rounds each output. */
static void emit_attention(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *s) {
  int64_t hd = key->k, H = key->n, kvh = key->variant, D = (hd + 31) / 32;
  char kc[48], vc[48];
  const char *ct = cache_params(key, "const ", kc, vc);
  snprintf(k->name, sizeof k->name, "attn_h%lld_kv%lld_d%lld_%s", (long long)H, (long long)kvh, (long long)hd,
           key->cache == BN_DT_F16 ? "f16" : "f32");
  double scale = 1.0 / __builtin_sqrt((double)hd);
  float shi = (float)scale, slo = (float)(scale - (double)shi);
  /* the score of one key: sum_d q k in pairs, times the scale, rounded */
  bn_sbuf_put(s,
              "\nstatic inline float %s_score(device const float *q, device const %s *kr) {\n"
              "  bn_ff d = bn_ff{0, 0};\n"
              "  for (uint i = 0; i < %lld; i++) d = bn_ff_add(d, bn_two_prod(q[i], float(kr[i])));\n"
              "  return bn_ff_round(bn_ff_mul(d, bn_ff{%.9g, %.9g}));\n}\n",
              k->name, ct, (long long)hd, shi, slo);
  const char *ops[] = {"device const float *q", kc, vc, "device float *y"};
  k->threads = 32 * ATT_SG, k->groups_x = (uint32_t)H, k->tok_tile = 1, k->tg_block = 1;
  k->tg_bytes = (uint32_t)((ATT_SG + ATT_SG * (2 + 2 * hd) + ATT_SG * 32) * 4);
  open_kernel(s, k, ops, 4);
  bn_sbuf_put(s,
              "  const uint H = %lld, HD = %lld, GROUP = %lld, D = %lld, NSG = %d, MB = NSG, MW = 2 + 2 * HD;\n"
              "  const uint h = tgp.x, t = tgp.y, n = st.pos + t + 1;\n"
              "  device const float *qh = q + (t * H + h) * HD;\n"
              "  device const %s *kb = kc + ulong(h / GROUP) * st.n_ctx * HD, *vb = vc + ulong(h / GROUP) * st.n_ctx * HD;\n"
              "  threadgroup float *pw = tgm + MB + NSG * MW + sg * 32; // this simdgroup's block of weights\n"
              "  float mx = -INFINITY;\n"
              "  for (uint j = sg * 32 + lane; j < n; j += NSG * 32) mx = max(mx, %s_score(qh, kb + j * HD));\n"
              "  mx = simd_max(mx);\n"
              "  if (lane == 0) tgm[sg] = mx;\n"
              "  threadgroup_barrier(mem_flags::mem_threadgroup);\n"
              "  float M = tgm[0];\n"
              "  for (uint g = 1; g < NSG; g++) M = max(M, tgm[g]);\n"
              "  bn_ff sum = bn_ff{0, 0}, acc[D];\n"
              "  for (uint i = 0; i < D; i++) acc[i] = bn_ff{0, 0};\n"
              "  for (uint j0 = sg * 32; j0 < n; j0 += NSG * 32) {\n"
              "    const uint j = j0 + lane, nb = min(n - j0, 32u);\n"
              "    pw[lane] = j < n ? bn_ff_exp(bn_two_sum(%s_score(qh, kb + j * HD), -M)) : 0.0f;\n"
              "    simdgroup_barrier(mem_flags::mem_threadgroup);\n"
              "    for (uint b = 0; b < nb; b++) sum = bn_ff_add(sum, bn_ff{pw[b], 0});\n"
              "    for (uint i = 0; i < D; i++) {\n"
              "      const uint d = lane + 32 * i;\n"
              "      if (d >= HD) continue;\n"
              "      for (uint b = 0; b < nb; b++) acc[i] = bn_ff_add(acc[i], bn_two_prod(pw[b], float(vb[(j0 + b) * HD + d])));\n"
              "    }\n"
              "    simdgroup_barrier(mem_flags::mem_threadgroup); // every lane has read pw\n"
              "  }\n"
              "  threadgroup float *mine = tgm + MB + sg * MW;\n"
              "  if (lane == 0) mine[0] = sum.hi, mine[1] = sum.lo;\n"
              "  for (uint i = 0; i < D; i++)\n"
              "    if (lane + 32 * i < HD) mine[2 + 2 * (lane + 32 * i)] = acc[i].hi, mine[3 + 2 * (lane + 32 * i)] = acc[i].lo;\n"
              "  threadgroup_barrier(mem_flags::mem_threadgroup);\n"
              "  for (uint d = tid; d < HD; d += NSG * 32) {\n"
              "    bn_ff S = bn_ff{0, 0}, A = bn_ff{0, 0};\n"
              "    for (uint g = 0; g < NSG; g++) {\n"
              "      threadgroup float *part = tgm + MB + g * MW;\n"
              "      S = bn_ff_add(S, bn_ff{part[0], part[1]}), A = bn_ff_add(A, bn_ff{part[2 + 2 * d], part[3 + 2 * d]});\n"
              "    }\n"
              "    y[(t * H + h) * HD + d] = bn_ff_div(A, S);\n"
              "  }\n}\n",
              (long long)H, (long long)hd, (long long)(H / kvh), (long long)D, ATT_SG, ct, k->name, k->name);
}

/* The K/V store: this step's rows of every KV head into the caches at pos.. (as bn_ref_kv_store),
 * one group per (KV head, token); F16 caches round to nearest even. */
static void emit_store(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *s) {
  int64_t hd = key->k, kvh = key->variant & ~BN_MTL_STORE;
  char kc[48], vc[48];
  const char *ct = cache_params(key, "", kc, vc);
  snprintf(k->name, sizeof k->name, "kvstore_kv%lld_d%lld_%s", (long long)kvh, (long long)hd,
           key->cache == BN_DT_F16 ? "f16" : "f32");
  const char *ops[] = {"device const float *k", "device const float *v", kc, vc};
  k->threads = threads_for(hd), k->groups_x = (uint32_t)kvh, k->tok_tile = 1;
  open_kernel(s, k, ops, 4);
  bn_sbuf_put(s,
              "  const uint KVH = %lld, HD = %lld;\n"
              "  const uint h = tgp.x, t = tgp.y;\n"
              "  const ulong from = (t * KVH + h) * HD, to = (ulong(h) * st.n_ctx + st.pos + t) * HD;\n"
              "  for (uint d = tid; d < HD; d += %u) kc[to + d] = %s(k[from + d]), vc[to + d] = %s(v[from + d]);\n}\n",
              (long long)kvh, (long long)hd, k->threads, ct, ct);
}

/* RoPE (NeoX halves) from the host's table of cosines then sines (bn_rope_table), one group per
 * (head, token); each product rounded on its own, as the reference. */
static void emit_rope(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *s) {
  int64_t hd = key->k, H = key->n, half = hd / 2;
  snprintf(k->name, sizeof k->name, "rope_h%lld_d%lld", (long long)H, (long long)hd);
  const char *ops[] = {"device const float *x", "device float *y", "device const float *tab"};
  k->threads = threads_for(half), k->groups_x = (uint32_t)H, k->tok_tile = 1;
  open_kernel(s, k, ops, 3);
  bn_sbuf_put(s,
              "  const uint H = %lld, HD = %lld, HALF = %lld;\n"
              "  const uint h = tgp.x, t = tgp.y, p = st.pos + t;\n"
              "  device const float *a = x + (t * H + h) * HD;\n"
              "  device float *o = y + (t * H + h) * HD;\n"
              "  for (uint i = tid; i < HALF; i += %u) {\n"
              "    const float c = tab[p * HALF + i], s = tab[(st.n_ctx + p) * HALF + i];\n"
              "    const float ac = a[i] * c, bs = a[i + HALF] * s, as = a[i] * s, bc = a[i + HALF] * c;\n"
              "    o[i] = ac - bs, o[i + HALF] = as + bc;\n"
              "  }\n}\n",
              (long long)H, (long long)hd, (long long)half, k->threads);
}

/* The embedding gather, one group a token. */
static void emit_embed(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *s) {
  int64_t W = key->k;
  snprintf(k->name, sizeof k->name, "embed_%s_w%lld", bn_dtype_table[key->variant].name, (long long)W);
  const char *ops[] = {"device const int *tok", "device const uchar *table", "device float *y"};
  k->threads = ROW_THREADS, k->groups_x = 1, k->tok_tile = 1;
  open_kernel(s, k, ops, 3);
  bn_sbuf_put(s,
              "  const uint W = %lld, t = tgp.y;\n"
              "  for (uint i = tid; i < W; i += %d) y[t * W + i] = %s(table, ulong(tok[t]) * W + i);\n}\n",
              (long long)W, ROW_THREADS, loader(key->variant));
}

/* Columns [variant, variant + n) of rows of k floats, one group a token. */
static void emit_slice(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *s) {
  snprintf(k->name, sizeof k->name, "slice_k%lld_n%lld_at%d", (long long)key->k, (long long)key->n, key->variant);
  const char *ops[] = {"device const float *x", "device float *y"};
  k->threads = ROW_THREADS, k->groups_x = 1, k->tok_tile = 1;
  open_kernel(s, k, ops, 2);
  bn_sbuf_put(s,
              "  const uint KW = %lld, NW = %lld, AT = %d, t = tgp.y;\n"
              "  for (uint i = tid; i < NW; i += %d) y[t * NW + i] = x[t * KW + AT + i];\n}\n",
              (long long)key->k, (long long)key->n, key->variant, ROW_THREADS);
}

bn_status bn_metal_emit(const bn_kkey *key, bn_mtl_kernel *k, bn_sbuf *src, bn_error *err) {
  memset(k, 0, sizeof *k);
  k->key = *key;
  if (!bn_metal_supports(key)) {
    char d[96];
    bn_kkey_describe(key, d, sizeof d);
    return bn_fail(err, BN_E_UNSUPPORTED, "metal: no kernel for %s", d);
  }
  switch (key->family) {
  case BN_K_MATMUL: (key->variant & BN_MTL_MANY ? emit_mmt : emit_mm)(key, k, src); break;
  case BN_K_MATMUL_G: emit_mg(key, k, src); break;
  case BN_K_MATMUL_F: emit_mf(key, k, src); break;
  case BN_K_NORM_QUANT: emit_nq(key, k, src); break;
  case BN_K_ATTENTION: (key->variant & BN_MTL_STORE ? emit_store : emit_attention)(key, k, src); break;
  case BN_K_ROPE: emit_rope(key, k, src); break;
  case BN_K_EMBED: emit_embed(key, k, src); break;
  case BN_K_SLICE: emit_slice(key, k, src); break;
  default: break;
  }
  return src->oom ? bn_fail(err, BN_E_NOMEM, "metal: out of memory") : BN_OK;
}
