/* What the asmjit emitters share: register names, small helpers over the shim, and each kernel
 * family's emitter (emit_*.c), which the backend's entry (backend.c) calls. */
#ifndef BN_ASMJIT_EMIT_H
#define BN_ASMJIT_EMIT_H

#include <stdint.h>
#include <string.h>

#include "../kernels.h"
#include "shim/shim.h"

enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };
static const bn_asm_op NONE = {0};
static const int SAVED[6] = {RBX, R12, R13, R14, R15, RBP}; /* callee-saved: pushed by kernels that use them */
/* The matmul's vectors: codes, weights, activations, scratch, the code mask (accumulators from 0). */
enum { CV = 16, WV = 20, QV = 24, S0 = 28, S1 = 29, MASK = 31 };

/* One instruction by name, up to three operands. */
static inline void op(bn_asm *a, const char *name, bn_asm_op o0, bn_asm_op o1, bn_asm_op o2) {
  bn_asm_emit(a, bn_asm_inst(name), o0, o1, o2, NONE);
}

/* The end of a counted loop: reg + 1, back to label while below limit (a register). */
static inline void loop_end(bn_asm *a, int reg, int limit, int label) {
  op(a, "inc", bn_gp(reg), NONE, NONE);
  op(a, "cmp", bn_gp(reg), bn_gp(limit), NONE);
  op(a, "jl", bn_label(label), NONE, NONE);
}

/* A double or float constant into xmm d (through rax). */
static inline void constant(bn_asm *a, int d, double v, int is_float) {
  int64_t bits = 0;
  if (is_float) {
    float f = (float)v;
    memcpy(&bits, &f, 4);
  } else memcpy(&bits, &v, 8);
  op(a, "mov", bn_gp(RAX), bn_imm(bits), NONE);
  op(a, "vmovq", bn_vec(d, 16), bn_gp(RAX), NONE);
}

/* eax = the lane sum of the int32 vector v, `bytes` wide (64: zmm, 32: ymm); scratch vector s. */
static inline void hsum(bn_asm *a, int v, int s, int bytes) {
  if (bytes == 64) {
    op(a, "vextracti64x4", bn_vec(s, 32), bn_vec(v, 64), bn_imm(1));
    op(a, "vpaddd", bn_vec(v, 32), bn_vec(v, 32), bn_vec(s, 32));
  }
  op(a, s < 16 && v < 16 ? "vextracti128" : "vextracti32x4", bn_vec(s, 16), bn_vec(v, 32), bn_imm(1));
  op(a, "vpaddd", bn_vec(v, 16), bn_vec(v, 16), bn_vec(s, 16));
  op(a, "vpshufd", bn_vec(s, 16), bn_vec(v, 16), bn_imm(0x4e));
  op(a, "vpaddd", bn_vec(v, 16), bn_vec(v, 16), bn_vec(s, 16));
  op(a, "vpshufd", bn_vec(s, 16), bn_vec(v, 16), bn_imm(0xb1));
  op(a, "vpaddd", bn_vec(v, 16), bn_vec(v, 16), bn_vec(s, 16));
  op(a, "vmovd", bn_gpd(RAX), bn_vec(v, 16), NONE);
}

/* Folds the float vector v (`bytes` wide, v < 16) onto lane 0 with a packed operation: vaddps, the sum
 * (in a tree: a float kernel's order), or vmaxps, the max (exact in any order). Scratch: vector 1. */
static inline void fold(bn_asm *a, int v, const char *inst, int bytes) {
  if (bytes == 64) {
    op(a, "vextractf64x4", bn_vec(1, 32), bn_vec(v, 64), bn_imm(1));
    op(a, inst, bn_vec(v, 32), bn_vec(v, 32), bn_vec(1, 32));
  }
  op(a, "vextractf128", bn_vec(1, 16), bn_vec(v, 32), bn_imm(1));
  op(a, inst, bn_vec(v, 16), bn_vec(v, 16), bn_vec(1, 16));
  op(a, "vpermilps", bn_vec(1, 16), bn_vec(v, 16), bn_imm(0x4e));
  op(a, inst, bn_vec(v, 16), bn_vec(v, 16), bn_vec(1, 16));
  op(a, "vpermilps", bn_vec(1, 16), bn_vec(v, 16), bn_imm(0xb1));
  op(a, inst, bn_vec(v, 16), bn_vec(v, 16), bn_vec(1, 16));
}

/* An int32 constant in every lane of vector d, `bytes` wide (through rax). */
static inline void splat_i(bn_asm *a, int d, int32_t v, int bytes) {
  op(a, "mov", bn_gpd(RAX), bn_imm(v), NONE);
  op(a, "vmovd", bn_vec(d, 16), bn_gpd(RAX), NONE);
  op(a, "vpbroadcastd", bn_vec(d, bytes), bn_vec(d, 16), NONE);
}

/* A float constant broadcast to every lane of vector d (`bytes` wide), through rax. */
static inline void splat(bn_asm *a, int d, double v, int bytes) {
  constant(a, d, v, 1);
  op(a, "vbroadcastss", bn_vec(d, bytes), bn_vec(d, 16), NONE);
}

/* The lane sums of the 16 zmm vectors 0..15 in vector 6, by a transposing tree (folding 512-bit halves,
 * then 128-bit lanes, then qwords, then dwords; `add`: vpaddd or vaddps): lane 4 t + r holds the sum of
 * vector 4 r + t. Uses vectors 0..7 and 16..25. */
static inline void tree16(bn_asm *a, const char *add) {
  for (int i = 0; i < 8; i++) {
    bn_asm_emit(a, bn_asm_inst("vshufi64x2"), bn_vec(16 + i, 64), bn_vec(2 * i, 64), bn_vec(2 * i + 1, 64), bn_imm(0x44));
    bn_asm_emit(a, bn_asm_inst("vshufi64x2"), bn_vec(24, 64), bn_vec(2 * i, 64), bn_vec(2 * i + 1, 64), bn_imm(0xee));
    op(a, add, bn_vec(16 + i, 64), bn_vec(16 + i, 64), bn_vec(24, 64));
  }
  for (int j = 0; j < 4; j++) {
    bn_asm_emit(a, bn_asm_inst("vshufi32x4"), bn_vec(24, 64), bn_vec(16 + 2 * j, 64), bn_vec(17 + 2 * j, 64), bn_imm(0x88));
    bn_asm_emit(a, bn_asm_inst("vshufi32x4"), bn_vec(25, 64), bn_vec(16 + 2 * j, 64), bn_vec(17 + 2 * j, 64), bn_imm(0xdd));
    op(a, add, bn_vec(j, 64), bn_vec(24, 64), bn_vec(25, 64));
  }
  for (int k = 0; k < 2; k++) {
    op(a, "vpunpcklqdq", bn_vec(24, 64), bn_vec(2 * k, 64), bn_vec(2 * k + 1, 64));
    op(a, "vpunpckhqdq", bn_vec(25, 64), bn_vec(2 * k, 64), bn_vec(2 * k + 1, 64));
    op(a, add, bn_vec(4 + k, 64), bn_vec(24, 64), bn_vec(25, 64));
  }
  bn_asm_emit(a, bn_asm_inst("vshufps"), bn_vec(24, 64), bn_vec(4, 64), bn_vec(5, 64), bn_imm(0x88));
  bn_asm_emit(a, bn_asm_inst("vshufps"), bn_vec(25, 64), bn_vec(4, 64), bn_vec(5, 64), bn_imm(0xdd));
  op(a, add, bn_vec(6, 64), bn_vec(24, 64), bn_vec(25, 64));
}

/* A kernel's entry and exit: the first n callee-saved registers (SAVED) pushed, which puts the stack
 * arguments 8 + 8 n bytes above rsp; then popped in reverse, vzeroupper, ret. */
static inline void enter(bn_asm *a, int n) {
  for (int i = 0; i < n; i++) op(a, "push", bn_gp(SAVED[i]), NONE, NONE);
}
static inline void leave(bn_asm *a, int n) {
  for (int i = n - 1; i >= 0; i--) op(a, "pop", bn_gp(SAVED[i]), NONE, NONE);
  op(a, "vzeroupper", NONE, NONE, NONE);
  op(a, "ret", NONE, NONE, NONE);
}


/* d = exp(x), float lanes, `bytes` wide, the LLVM kernels' exp (bn_gen_exp) operation for operation, so
 * both backends' softmaxes and gates give the same bits: x clamped to [-87.3, 88], n = rint(x log2 e),
 * r = x - n ln 2 (in two parts), p = 1 + r + r^2 P(r) (Cephes' degree-5 P), scaled by 2^n (vscalefps on
 * AVX-512, the exponent bits on AVX2: the same product, 2^n being normal). x is changed. Scratch:
 * vectors sc..sc+2 and rax. */
/* Its constants: the clamp below, log2 e, ln 2 in two parts (the second negated), P's coefficients, 1, the
 * clamp above. */
static const float BN_EXP_K[12] = {-87.3f, 1.44269504088896341f, 0.693359375f, -2.12194440e-4f, 1.9875691500e-4f,
                                   1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f,
                                   5.0000001201e-1f, 1.0f, 88.0f};
enum { BN_EXP_NK = 12 };
static inline void vexp(bn_asm *a, int d, int x, int sc, int bytes) {
  int n = sc, r = sc + 1, c = sc + 2, W = bytes;
  splat(a, c, BN_EXP_K[0], W);
  op(a, "vmaxps", bn_vec(x, W), bn_vec(x, W), bn_vec(c, W));
  splat(a, c, BN_EXP_K[11], W);
  op(a, "vminps", bn_vec(x, W), bn_vec(x, W), bn_vec(c, W));
  splat(a, c, BN_EXP_K[1], W);
  op(a, "vmulps", bn_vec(n, W), bn_vec(x, W), bn_vec(c, W));
  bn_asm_emit(a, bn_asm_inst(W == 64 ? "vrndscaleps" : "vroundps"), bn_vec(n, W), bn_vec(n, W), bn_imm(W == 64 ? 0 : 8), NONE);
  splat(a, c, BN_EXP_K[2], W); /* ln 2, high part (exact in float) */
  op(a, "vmovaps", bn_vec(r, W), bn_vec(x, W), NONE);
  op(a, "vfnmadd231ps", bn_vec(r, W), bn_vec(n, W), bn_vec(c, W));
  splat(a, c, BN_EXP_K[3], W); /* ln 2 - the high part */
  op(a, "vfnmadd231ps", bn_vec(r, W), bn_vec(n, W), bn_vec(c, W));
  splat(a, d, BN_EXP_K[4], W);
  for (int i = 5; i < 10; i++) { /* Horner: p = p r + K[i] */
    splat(a, c, BN_EXP_K[i], W);
    op(a, "vfmadd213ps", bn_vec(d, W), bn_vec(r, W), bn_vec(c, W));
  }
  op(a, "vmulps", bn_vec(c, W), bn_vec(r, W), bn_vec(r, W));
  splat(a, x, 1.0, W);
  op(a, "vaddps", bn_vec(r, W), bn_vec(r, W), bn_vec(x, W));
  op(a, "vfmadd213ps", bn_vec(d, W), bn_vec(c, W), bn_vec(r, W)); /* p r^2 + (r + 1) */
  if (W == 64) {
    op(a, "vscalefps", bn_vec(d, W), bn_vec(d, W), bn_vec(n, W));
    return;
  }
  op(a, "vcvtps2dq", bn_vec(n, W), bn_vec(n, W), NONE); /* 2^n: (n + 127) << 23, n in -126..127 */
  splat_i(a, c, 127, W);
  op(a, "vpaddd", bn_vec(n, W), bn_vec(n, W), bn_vec(c, W));
  op(a, "vpslld", bn_vec(n, W), bn_vec(n, W), bn_imm(23));
  op(a, "vmulps", bn_vec(d, W), bn_vec(d, W), bn_vec(n, W));
}

/* vexp on AVX-512 with its constants preloaded in vectors C..C + BN_EXP_NK - 1 (vexp_consts): the same
 * operations, the same results, none of the splats in a loop. Scratch: vectors n and r; x is changed. */
static inline void vexp_consts(bn_asm *a, int C) {
  for (int i = 0; i < BN_EXP_NK; i++) splat(a, C + i, BN_EXP_K[i], 64);
}
static inline void vexp_pre(bn_asm *a, int d, int x, int n, int r, int C) {
  op(a, "vmaxps", bn_vec(x, 64), bn_vec(x, 64), bn_vec(C, 64));
  op(a, "vminps", bn_vec(x, 64), bn_vec(x, 64), bn_vec(C + 11, 64));
  op(a, "vmulps", bn_vec(n, 64), bn_vec(x, 64), bn_vec(C + 1, 64));
  bn_asm_emit(a, bn_asm_inst("vrndscaleps"), bn_vec(n, 64), bn_vec(n, 64), bn_imm(0), NONE);
  op(a, "vmovaps", bn_vec(r, 64), bn_vec(x, 64), NONE);
  op(a, "vfnmadd231ps", bn_vec(r, 64), bn_vec(n, 64), bn_vec(C + 2, 64));
  op(a, "vfnmadd231ps", bn_vec(r, 64), bn_vec(n, 64), bn_vec(C + 3, 64));
  op(a, "vmovaps", bn_vec(d, 64), bn_vec(C + 4, 64), NONE);
  for (int i = 5; i < 10; i++) op(a, "vfmadd213ps", bn_vec(d, 64), bn_vec(r, 64), bn_vec(C + i, 64));
  op(a, "vmulps", bn_vec(x, 64), bn_vec(r, 64), bn_vec(r, 64));
  op(a, "vaddps", bn_vec(r, 64), bn_vec(r, 64), bn_vec(C + 10, 64));
  op(a, "vfmadd213ps", bn_vec(d, 64), bn_vec(x, 64), bn_vec(r, 64));
  op(a, "vscalefps", bn_vec(d, 64), bn_vec(d, 64), bn_vec(n, 64));
}

/* The kernels, by family: kernels.h has their calling conventions, emit_*.c what each does. */
void bn_asmjit_rows(bn_asm *a, int avx512, int embed, int64_t K, int64_t n, int64_t off, bn_dtype t);
/* The matmul emitter's choices that depend on the CPU (the backend's, measured: bench/README.md): the bytes a
 * TP2/TG2 decode tile prefetches ahead of its weight stream; whether a prompt over TP2/TP1 with K <= 2048
 * puts 16 rows in the lanes (else the 4 x 4 tiles, as at larger K); on a CPU with AVX-512 VBMI, the tables
 * bn_asmjit_t1_tables fills, by which prompts unpack TP1 (NULL: by compares). */
typedef struct {
  int ahead, rows_in_lanes;
  const uint8_t *t1_lut;
} bn_asmjit_tuning;
/* TP1's two lookup tables (256 bytes each) from a byte x to TP2's byte of its codes c0..c3 (c0 in the low
 * bits), then of c1..c4: the codes as the kernels extract them, (x > 85) + (x > 170) and x <- 3 x. */
void bn_asmjit_t1_tables(uint8_t lut[512]);
void bn_asmjit_matmul(bn_asm *a, int avx512, const bn_asmjit_tuning *tune, bn_dtype wt, int64_t K, int64_t N, int mode,
                      int pro, float eps);
void bn_asmjit_norm_quant(bn_asm *a, int avx512, int64_t K, int64_t group, int mode, float eps);
void bn_asmjit_rope(bn_asm *a, int avx512, int64_t hd, int64_t heads);
void bn_asmjit_matmul_f(bn_asm *a, int avx512, int64_t K, int64_t N, bn_dtype dt);
void bn_asmjit_attention(bn_asm *a, int avx512, int64_t hd, int64_t H, int64_t kvh, int f16);
void bn_asmjit_peak(bn_asm *a, int avx512);

#endif
