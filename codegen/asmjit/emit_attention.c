/* Causal GQA attention over the K/V caches of F32 or F16 (widened by vcvtph2ps as loaded), AVX-512 or AVX2. */
#include <math.h>

#include "emit.h"

/* Vector dst of W bytes of floats from a cache row at [base + disp], es bytes an element (4: F32, 2: F16). */
static void load_kv(bn_asm *a, int es, int dst, int W, int base, int32_t disp) {
  if (es == 2) op(a, "vcvtph2ps", bn_vec(dst, W), bn_mem(base, disp, W / 2), NONE);
  else op(a, "vmovups", bn_vec(dst, W), bn_mem(base, disp, W), NONE);
}

/* exp(x - max) of scores [base + r14 4] in place, a vector at a time (W bytes), added to vector 5. masked:
 * only the first r15 lanes (mask 1 on AVX-512; on AVX2 the lanes of vector 13, loaded and stored by
 * vmaskmovps, the others zero in the sum). The max in vector 7; vectors 0, 2 and vexp's scratch. */
static void exp_chunk(bn_asm *a, int W, int masked, int base) {
  if (W == 32 && masked) bn_asm_emit(a, bn_asm_inst("vmaskmovps"), bn_vec(0, 32), bn_vec(13, 32), bn_memx(base, R14, 4, 0, 32), NONE);
  else {
    if (masked) bn_asm_mask(a, 1, 1);
    op(a, "vmovups", bn_vec(0, W), bn_memx(base, R14, 4, 0, W), NONE);
  }
  op(a, "vsubps", bn_vec(0, W), bn_vec(0, W), bn_vec(7, W));
  vexp(a, 2, 0, W == 64 ? 24 : 8, W);
  if (W == 32 && masked) {
    bn_asm_emit(a, bn_asm_inst("vmaskmovps"), bn_memx(base, R14, 4, 0, 32), bn_vec(13, 32), bn_vec(2, 32), NONE);
    op(a, "vandps", bn_vec(2, 32), bn_vec(2, 32), bn_vec(13, 32));
  } else {
    if (masked) bn_asm_mask(a, 1, 0);
    op(a, "vmovups", bn_memx(base, R14, 4, 0, W), bn_vec(2, W), NONE);
    if (masked) bn_asm_mask(a, 1, 0);
  }
  op(a, "vaddps", bn_vec(5, W), bn_vec(5, W), bn_vec(2, W));
}

/* The AVX-512 kernel, tokens in tiles of Q = 4 (then one at a time), so each K and V row read serves
 * Q tokens; per tile and head three passes:
 *   scores: blocks of 16 / Q keys x Q tokens, 16 accumulators (a key's vectors loaded once, q from
 *           memory), their lane sums in one tree16 and stored to the tokens' rows; keys left one by one;
 *           every token of the tile scores the tile's n = pos + t + Q keys (the cache holds them);
 *   softmax: per token, its max over its own pos + t + i + 1 keys, exp and their sum (16 at a time, the
 *           tail under a mask), zeros for the keys it does not see;
 *   output:  y_i = sum_j e_ij v_j / sum_i over the n keys, Q x 6 vectors of y (Q = 1: 16) in registers,
 *           a V row's vectors loaded once for the Q tokens.
 * Score rows: token t's at scores + t n_ctx. Locals: [rsp] n_ctx 4, [rsp + 8] the Q sums, [rsp + 24] a
 * token's key count, [rsp + 32] the Q score rows, [rsp + 64] T. Registers: r10 t, r11 h, rbx the tile's
 * q and y row offset, r12 the KV head's offset, r13 n, r14 the key, r15 K or V rows or a score row,
 * rbp the tile's score rows, r9 and rax scratch. */
enum { LOCALS = 80, TARGS = 8 + 6 * 8 + LOCALS }; /* the stack arguments: pos, h0, h1, n_ctx */

/* For token r10 and head r11: rbx = the offset of its q and y rows, (r10 H + r11) hd 4; r12 = its KV
 * head's offset in the caches, (r11 / (H / kvh)) n_ctx hd es, n_ctx at [rsp + nctx]. */
static void head_offsets(bn_asm *a, int64_t hd, int64_t H, int64_t kvh, int es, int32_t nctx) {
  op(a, "imul", bn_gp(RBX), bn_gp(R10), bn_imm(H));
  op(a, "add", bn_gp(RBX), bn_gp(R11), NONE);
  op(a, "imul", bn_gp(RBX), bn_gp(RBX), bn_imm(hd * 4));
  op(a, "push", bn_gp(RDX), NONE, NONE); /* div: rdx:rax / group */
  op(a, "xor", bn_gpd(RDX), bn_gpd(RDX), NONE);
  op(a, "mov", bn_gp(RAX), bn_gp(R11), NONE);
  op(a, "mov", bn_gp(R12), bn_imm(H / kvh), NONE);
  op(a, "div", bn_gp(R12), NONE, NONE);
  op(a, "pop", bn_gp(RDX), NONE, NONE);
  op(a, "imul", bn_gp(RAX), bn_mem(RSP, nctx, 8), NONE);
  op(a, "imul", bn_gp(R12), bn_gp(RAX), bn_imm(hd * es));
}

/* k1 = the first r9 lanes (r9 in 1..15). */
static void tail_mask(bn_asm *a) {
  op(a, "mov", bn_gpd(RAX), bn_imm(1), NONE);
  op(a, "shlx", bn_gpd(RAX), bn_gpd(RAX), bn_gpd(R9));
  op(a, "dec", bn_gpd(RAX), NONE, NONE);
  op(a, "kmovw", bn_kreg(1), bn_gpd(RAX), NONE);
}

/* rax = score row i of the tile. */
static void score_row(bn_asm *a, int i) { op(a, "mov", bn_gp(RAX), bn_mem(RSP, 32 + 8 * i, 8), NONE); }

static void tile_scores(bn_asm *a, int Q, int64_t hd, int64_t H, int es) {
  int64_t nv = hd / 16, qrow = H * hd * 4;
  int KB = 16 / Q, blk = bn_asm_new_label(a), rest = bn_asm_new_label(a), one = bn_asm_new_label(a), done = bn_asm_new_label(a);
  float scale = (float)(1.0 / sqrt((double)hd));
  op(a, "xor", bn_gpd(R14), bn_gpd(R14), NONE);
  op(a, "lea", bn_gp(R15), bn_memx(RSI, R12, 1, 0, 0), NONE);
  bn_asm_bind(a, blk);
  op(a, "lea", bn_gp(RAX), bn_mem(R14, KB, 0), NONE);
  op(a, "cmp", bn_gp(RAX), bn_gp(R13), NONE);
  op(a, "jg", bn_label(rest), NONE, NONE);
  for (int c = 0; c < 16; c++) op(a, "vpxord", bn_vec(c, 64), bn_vec(c, 64), bn_vec(c, 64));
  for (int v = 0; v < nv; v++)
    for (int k = 0; k < KB; k++) {
      load_kv(a, es, 16, 64, R15, (int32_t)(k * hd * es + 16 * es * v));
      for (int i = 0; i < Q; i++) /* tree16 puts vector 4 r + t in lane 4 t + r: key k of token i in lane 4 i + k */
        op(a, "vfmadd231ps", bn_vec(Q == 4 ? 4 * k + i : 4 * (k % 4) + k / 4, 64), bn_vec(16, 64),
           bn_memx(RDI, RBX, 1, (int32_t)(i * qrow + 64 * v), 64));
    }
  tree16(a, "vaddps");
  splat(a, 17, scale, 64);
  op(a, "vmulps", bn_vec(6, 64), bn_vec(6, 64), bn_vec(17, 64));
  for (int i = 0; i < Q; i++) {
    score_row(a, i);
    if (Q == 1) op(a, "vmovups", bn_memx(RAX, R14, 4, 0, 64), bn_vec(6, 64), NONE);
    else op(a, "vextractf32x4", bn_memx(RAX, R14, 4, 0, 16), bn_vec(6, 64), bn_imm(i));
  }
  op(a, "add", bn_gp(R14), bn_imm(KB), NONE);
  op(a, "add", bn_gp(R15), bn_imm(KB * hd * es), NONE);
  op(a, "jmp", bn_label(blk), NONE, NONE);
  bn_asm_bind(a, rest); /* the keys left, one at a time */
  op(a, "cmp", bn_gp(R14), bn_gp(R13), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  bn_asm_bind(a, one);
  for (int i = 0; i < Q; i++) op(a, "vpxord", bn_vec(2 + i, 64), bn_vec(2 + i, 64), bn_vec(2 + i, 64));
  for (int v = 0; v < nv; v++) {
    load_kv(a, es, 16, 64, R15, 16 * es * v);
    for (int i = 0; i < Q; i++)
      op(a, "vfmadd231ps", bn_vec(2 + i, 64), bn_vec(16, 64), bn_memx(RDI, RBX, 1, (int32_t)(i * qrow + 64 * v), 64));
  }
  constant(a, 0, scale, 1);
  for (int i = 0; i < Q; i++) {
    fold(a, 2 + i, "vaddps", 64);
    op(a, "vmulss", bn_vec(2 + i, 16), bn_vec(2 + i, 16), bn_vec(0, 16));
    score_row(a, i);
    op(a, "vmovss", bn_memx(RAX, R14, 4, 0, 4), bn_vec(2 + i, 16), NONE);
  }
  op(a, "add", bn_gp(R15), bn_imm(hd * es), NONE);
  loop_end(a, R14, R13, one);
  bn_asm_bind(a, done);
}

/* One pass of a softmax over the [rsp + 24] keys of the score row r15, 16 at a time, the tail (r9
 * keys) under mask 1: the max into vector 7 (exp 0) or e_j = exp(score_j - max) in place, summed in 5. */
static void key_pass(bn_asm *a, int exp) {
  int loop = bn_asm_new_label(a), tail = bn_asm_new_label(a), done = bn_asm_new_label(a);
  op(a, "xor", bn_gpd(R14), bn_gpd(R14), NONE);
  bn_asm_bind(a, loop);
  op(a, "lea", bn_gp(RAX), bn_mem(R14, 16, 0), NONE);
  op(a, "cmp", bn_gp(RAX), bn_mem(RSP, 24, 8), NONE);
  op(a, "jg", bn_label(tail), NONE, NONE);
  if (exp) exp_chunk(a, 64, 0, R15);
  else op(a, "vmaxps", bn_vec(7, 64), bn_vec(7, 64), bn_memx(R15, R14, 4, 0, 64));
  op(a, "add", bn_gp(R14), bn_imm(16), NONE);
  op(a, "jmp", bn_label(loop), NONE, NONE);
  bn_asm_bind(a, tail);
  op(a, "mov", bn_gp(R9), bn_mem(RSP, 24, 8), NONE);
  op(a, "sub", bn_gp(R9), bn_gp(R14), NONE);
  op(a, "jz", bn_label(done), NONE, NONE);
  tail_mask(a);
  if (exp) exp_chunk(a, 64, 1, R15);
  else {
    bn_asm_mask(a, 1, 0);
    op(a, "vmaxps", bn_vec(7, 64), bn_vec(7, 64), bn_memx(R15, R14, 4, 0, 64));
  }
  bn_asm_bind(a, done);
}

/* Token i's softmax over its n - (Q - 1 - i) keys in its score row (r15); its sum to [rsp + 8 + 4 i]. */
static void tile_softmax(bn_asm *a, int Q, int i) {
  score_row(a, i);
  op(a, "mov", bn_gp(R15), bn_gp(RAX), NONE);
  op(a, "lea", bn_gp(RAX), bn_mem(R13, -(Q - 1 - i), 0), NONE);
  op(a, "mov", bn_mem(RSP, 24, 8), bn_gp(RAX), NONE);
  splat(a, 7, -3.0e38, 64);
  key_pass(a, 0); /* the max */
  fold(a, 7, "vmaxps", 64);
  op(a, "vbroadcastss", bn_vec(7, 64), bn_vec(7, 16), NONE);
  op(a, "vpxord", bn_vec(5, 64), bn_vec(5, 64), bn_vec(5, 64));
  key_pass(a, 1); /* e_j in place of the scores, and their sum */
  fold(a, 5, "vaddps", 64);
  op(a, "vmovss", bn_mem(RSP, 8 + 4 * i, 4), bn_vec(5, 16), NONE);
  for (int m = 0; m < Q - 1 - i; m++) /* the keys of later tokens: no weight */
    op(a, "mov", bn_memx(R15, R13, 4, -4 * (Q - 1 - i) + 4 * m, 4), bn_imm(0), NONE);
}

static void tile_output(bn_asm *a, int Q, int64_t hd, int64_t H, int es) {
  int64_t nv = hd / 16, qrow = H * hd * 4;
  int S = Q == 4 ? 6 : 16;
  for (int v0 = 0; v0 < nv; v0 += S) {
    int n = nv - v0 < S ? (int)(nv - v0) : S, yl = bn_asm_new_label(a);
    for (int c = 0; c < Q * n; c++) op(a, "vpxord", bn_vec(c, 64), bn_vec(c, 64), bn_vec(c, 64));
    op(a, "xor", bn_gpd(R14), bn_gpd(R14), NONE);
    op(a, "lea", bn_gp(R15), bn_memx(RDX, R12, 1, (int32_t)(16 * es * v0), 0), NONE);
    bn_asm_bind(a, yl);
    for (int i = 0; i < Q; i++) {
      score_row(a, i);
      op(a, "vbroadcastss", bn_vec(24 + i, 64), bn_memx(RAX, R14, 4, 0, 4), NONE);
    }
    for (int v = 0; v < n; v++) {
      load_kv(a, es, 28, 64, R15, 16 * es * v);
      for (int i = 0; i < Q; i++) op(a, "vfmadd231ps", bn_vec(i * n + v, 64), bn_vec(24 + i, 64), bn_vec(28, 64));
    }
    op(a, "add", bn_gp(R15), bn_imm(hd * es), NONE);
    loop_end(a, R14, R13, yl);
    for (int i = 0; i < Q; i++) {
      op(a, "vbroadcastss", bn_vec(29, 64), bn_mem(RSP, 8 + 4 * i, 4), NONE);
      for (int v = 0; v < n; v++) {
        op(a, "vdivps", bn_vec(i * n + v, 64), bn_vec(i * n + v, 64), bn_vec(29, 64));
        op(a, "vmovups", bn_memx(RCX, RBX, 1, (int32_t)(i * qrow + 64 * (v0 + v)), 64), bn_vec(i * n + v, 64), NONE);
      }
    }
  }
}

/* One tile of Q tokens from r10, every head h0..h1. */
static void tile(bn_asm *a, int Q, int64_t hd, int64_t H, int64_t kvh, int es) {
  int hl = bn_asm_new_label(a), end = bn_asm_new_label(a);
  op(a, "mov", bn_gp(RBP), bn_gp(R10), NONE); /* the tile's score rows */
  op(a, "imul", bn_gp(RBP), bn_mem(RSP, 0, 8), NONE);
  op(a, "add", bn_gp(RBP), bn_gp(R8), NONE);
  for (int i = 0; i < Q; i++) {
    op(a, "imul", bn_gp(RAX), bn_mem(RSP, 0, 8), bn_imm(i));
    op(a, "add", bn_gp(RAX), bn_gp(RBP), NONE);
    op(a, "mov", bn_mem(RSP, 32 + 8 * i, 8), bn_gp(RAX), NONE);
  }
  op(a, "mov", bn_gp(R11), bn_mem(RSP, TARGS + 8, 8), NONE); /* h0 */
  op(a, "cmp", bn_gp(R11), bn_mem(RSP, TARGS + 16, 8), NONE);
  op(a, "jge", bn_label(end), NONE, NONE);
  bn_asm_bind(a, hl);
  head_offsets(a, hd, H, kvh, es, TARGS + 24);
  op(a, "mov", bn_gp(R13), bn_mem(RSP, TARGS, 8), NONE);
  op(a, "lea", bn_gp(R13), bn_memx(R13, R10, 1, Q, 0), NONE); /* pos + t + Q */
  tile_scores(a, Q, hd, H, es);
  for (int i = 0; i < Q; i++) tile_softmax(a, Q, i);
  tile_output(a, Q, hd, H, es);
  op(a, "inc", bn_gp(R11), NONE, NONE);
  op(a, "cmp", bn_gp(R11), bn_mem(RSP, TARGS + 16, 8), NONE);
  op(a, "jl", bn_label(hl), NONE, NONE);
  bn_asm_bind(a, end);
}

static void attention_tiled(bn_asm *a, int64_t hd, int64_t H, int64_t kvh, int es) {
  int t4 = bn_asm_new_label(a), t1 = bn_asm_new_label(a), done = bn_asm_new_label(a);
  enter(a, 6);
  op(a, "sub", bn_gp(RSP), bn_imm(LOCALS), NONE);
  op(a, "mov", bn_gp(RAX), bn_mem(RSP, TARGS + 24, 8), NONE);
  op(a, "shl", bn_gp(RAX), bn_imm(2), NONE);
  op(a, "mov", bn_mem(RSP, 0, 8), bn_gp(RAX), NONE);
  op(a, "mov", bn_mem(RSP, 64, 8), bn_gp(R9), NONE);
  op(a, "xor", bn_gpd(R10), bn_gpd(R10), NONE);
  bn_asm_bind(a, t4);
  op(a, "lea", bn_gp(RAX), bn_mem(R10, 4, 0), NONE);
  op(a, "cmp", bn_gp(RAX), bn_mem(RSP, 64, 8), NONE);
  op(a, "jg", bn_label(t1), NONE, NONE);
  tile(a, 4, hd, H, kvh, es);
  op(a, "add", bn_gp(R10), bn_imm(4), NONE);
  op(a, "jmp", bn_label(t4), NONE, NONE);
  bn_asm_bind(a, t1);
  op(a, "cmp", bn_gp(R10), bn_mem(RSP, 64, 8), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  tile(a, 1, hd, H, kvh, es);
  op(a, "inc", bn_gp(R10), NONE, NONE);
  op(a, "jmp", bn_label(t1), NONE, NONE);
  bn_asm_bind(a, done);
  op(a, "add", bn_gp(RSP), bn_imm(LOCALS), NONE);
  leave(a, 6);
}

/* bn_attn_kernel (q rdi, kc rsi, vc rdx, y rcx, scores r8, T r9; pos, h0, h1, n_ctx on the stack): the
 * AVX-512 kernel above, or on AVX2 (16 registers) one token at a time: per head the scores q.k_j /
 * sqrt(hd) of positions j <= pos + t (q read from memory, two chains), their max, e_j = exp(score_j -
 * max) and their sum (8 at a time, the tail by vmaskmovps), then y = sum_j e_j v_j / sum in slices of 8
 * vectors, each a pass over the positions. Float lanes as the LLVM kernel.
 * Registers: r10 t, r11 h, rbx the row of q and y, r12 the KV head's offset, r13 the positions, r14 j,
 * r15 k_j or v_j; the scale 6, the max 7, the sum 5, y's sums 8..15. */
void bn_asmjit_attention(bn_asm *a, int avx512, int64_t hd, int64_t H, int64_t kvh, int f16) {
  int es = f16 ? 2 : 4;
  if (avx512) {
    attention_tiled(a, hd, H, kvh, es);
    return;
  }
  int W = 32, L = 8;
  int64_t nv = hd / L;
  enum { ARGS = 8 + 5 * 8, QR = 8 };
  int tl = bn_asm_new_label(a), hl = bn_asm_new_label(a), hend = bn_asm_new_label(a), done = bn_asm_new_label(a);
  int s1 = bn_asm_new_label(a), s2 = bn_asm_new_label(a), tail = bn_asm_new_label(a), s2end = bn_asm_new_label(a);
  enter(a, 5);
  op(a, "xor", bn_gpd(R10), bn_gpd(R10), NONE);
  op(a, "test", bn_gp(R9), bn_gp(R9), NONE);
  op(a, "jle", bn_label(done), NONE, NONE);
  bn_asm_bind(a, tl);
  op(a, "mov", bn_gp(R11), bn_mem(RSP, ARGS + 8, 8), NONE); /* h0 */
  op(a, "cmp", bn_gp(R11), bn_mem(RSP, ARGS + 16, 8), NONE);
  op(a, "jge", bn_label(hend), NONE, NONE);
  bn_asm_bind(a, hl);
  head_offsets(a, hd, H, kvh, es, ARGS + 24);
  op(a, "mov", bn_gp(R13), bn_mem(RSP, ARGS, 8), NONE);
  op(a, "lea", bn_gp(R13), bn_memx(R13, R10, 1, 1, 0), NONE); /* pos + t + 1 */
  constant(a, 6, 1.0 / sqrt((double)hd), 1);
  constant(a, 7, -3.0e38, 1);
  op(a, "xor", bn_gpd(R14), bn_gpd(R14), NONE);
  op(a, "lea", bn_gp(R15), bn_memx(RSI, R12, 1, 0, 0), NONE);
  bn_asm_bind(a, s1); /* the scores and their max */
  op(a, "vxorps", bn_vec(0, 32), bn_vec(0, 32), bn_vec(0, 32));
  op(a, "vxorps", bn_vec(4, 32), bn_vec(4, 32), bn_vec(4, 32));
  for (int v = 0; v < nv; v++) {
    load_kv(a, es, 2, 32, R15, 8 * es * v);
    op(a, "vfmadd231ps", bn_vec(v % 2 ? 4 : 0, 32), bn_vec(2, 32), bn_memx(RDI, RBX, 1, 32 * v, 32));
  }
  op(a, "vaddps", bn_vec(0, 32), bn_vec(0, 32), bn_vec(4, 32));
  fold(a, 0, "vaddps", W);
  op(a, "vmulss", bn_vec(0, 16), bn_vec(0, 16), bn_vec(6, 16));
  op(a, "vmovss", bn_memx(R8, R14, 4, 0, 4), bn_vec(0, 16), NONE);
  op(a, "vmaxss", bn_vec(7, 16), bn_vec(7, 16), bn_vec(0, 16));
  op(a, "add", bn_gp(R15), bn_imm(hd * es), NONE);
  loop_end(a, R14, R13, s1);
  op(a, "vbroadcastss", bn_vec(7, W), bn_vec(7, 16), NONE);
  op(a, "vxorps", bn_vec(5, 32), bn_vec(5, 32), bn_vec(5, 32));
  op(a, "xor", bn_gpd(R14), bn_gpd(R14), NONE);
  bn_asm_bind(a, s2); /* e_j in place of the scores, and their sum */
  op(a, "lea", bn_gp(RAX), bn_mem(R14, L, 0), NONE);
  op(a, "cmp", bn_gp(RAX), bn_gp(R13), NONE);
  op(a, "jg", bn_label(tail), NONE, NONE);
  exp_chunk(a, W, 0, R8);
  op(a, "add", bn_gp(R14), bn_imm(L), NONE);
  op(a, "jmp", bn_label(s2), NONE, NONE);
  bn_asm_bind(a, tail);
  op(a, "mov", bn_gp(R15), bn_gp(R13), NONE);
  op(a, "sub", bn_gp(R15), bn_gp(R14), NONE);
  op(a, "jz", bn_label(s2end), NONE, NONE);
  { /* lanes below r15: their indexes 0..7 in vector 12 against it */
    op(a, "mov", bn_gp(RAX), bn_imm(0x0706050403020100), NONE);
    op(a, "vmovq", bn_vec(12, 16), bn_gp(RAX), NONE);
    op(a, "vpmovzxbd", bn_vec(12, 32), bn_vec(12, 16), NONE);
    op(a, "vmovd", bn_vec(13, 16), bn_gpd(R15), NONE);
    op(a, "vpbroadcastd", bn_vec(13, 32), bn_vec(13, 16), NONE);
    op(a, "vpcmpgtd", bn_vec(13, 32), bn_vec(13, 32), bn_vec(12, 32));
  }
  exp_chunk(a, W, 1, R8);
  bn_asm_bind(a, s2end);
  fold(a, 5, "vaddps", W);
  op(a, "vbroadcastss", bn_vec(5, W), bn_vec(5, 16), NONE);
  int slice = 8; /* y's vectors summed in one pass over the positions */
  for (int v0 = 0; v0 < nv; v0 += slice) {
    int n = nv - v0 < slice ? (int)(nv - v0) : slice, s3 = bn_asm_new_label(a);
    for (int v = 0; v < n; v++) op(a, "vpxor", bn_vec(QR + v, W), bn_vec(QR + v, W), bn_vec(QR + v, W));
    op(a, "xor", bn_gpd(R14), bn_gpd(R14), NONE);
    op(a, "lea", bn_gp(R15), bn_memx(RDX, R12, 1, 8 * es * v0, 0), NONE);
    bn_asm_bind(a, s3); /* sum_j e_j v_j */
    op(a, "vbroadcastss", bn_vec(0, W), bn_memx(R8, R14, 4, 0, 4), NONE);
    for (int v = 0; v < n; v++)
      if (es == 2) {
        load_kv(a, es, 2, W, R15, 8 * es * v);
        op(a, "vfmadd231ps", bn_vec(QR + v, W), bn_vec(0, W), bn_vec(2, W));
      } else op(a, "vfmadd231ps", bn_vec(QR + v, W), bn_vec(0, W), bn_mem(R15, W * v, W));
    op(a, "add", bn_gp(R15), bn_imm(hd * es), NONE);
    loop_end(a, R14, R13, s3);
    for (int v = 0; v < n; v++) {
      op(a, "vdivps", bn_vec(QR + v, W), bn_vec(QR + v, W), bn_vec(5, W));
      op(a, "vmovups", bn_memx(RCX, RBX, 1, W * (v0 + v), W), bn_vec(QR + v, W), NONE);
    }
  }
  op(a, "inc", bn_gp(R11), NONE, NONE);
  op(a, "cmp", bn_gp(R11), bn_mem(RSP, ARGS + 16, 8), NONE);
  op(a, "jl", bn_label(hl), NONE, NONE);
  bn_asm_bind(a, hend);
  loop_end(a, R10, R9, tl);
  bn_asm_bind(a, done);
  leave(a, 5);
}
