/* Causal GQA attention over the K/V caches, AVX-512 or AVX2. */
#include <math.h>

#include "emit.h"

/* exp(x - max) of scores [r8 + r14 4] in place, a vector at a time (W bytes), added to vector 5. masked:
 * only the first r15 lanes (mask 1 on AVX-512; on AVX2 the lanes of vector 13, loaded and stored by
 * vmaskmovps, the others zero in the sum). The max in vector 7; vectors 0, 2 and vexp's scratch. */
static void exp_chunk(bn_asm *a, int W, int masked) {
  if (W == 32 && masked) bn_asm_emit(a, bn_asm_inst("vmaskmovps"), bn_vec(0, 32), bn_vec(13, 32), bn_memx(R8, R14, 4, 0, 32), NONE);
  else {
    if (masked) bn_asm_mask(a, 1, 1);
    op(a, "vmovups", bn_vec(0, W), bn_memx(R8, R14, 4, 0, W), NONE);
  }
  op(a, "vsubps", bn_vec(0, W), bn_vec(0, W), bn_vec(7, W));
  vexp(a, 2, 0, W == 64 ? 24 : 8, W);
  if (W == 32 && masked) {
    bn_asm_emit(a, bn_asm_inst("vmaskmovps"), bn_memx(R8, R14, 4, 0, 32), bn_vec(13, 32), bn_vec(2, 32), NONE);
    op(a, "vandps", bn_vec(2, 32), bn_vec(2, 32), bn_vec(13, 32));
  } else {
    if (masked) bn_asm_mask(a, 1, 0);
    op(a, "vmovups", bn_memx(R8, R14, 4, 0, W), bn_vec(2, W), NONE);
    if (masked) bn_asm_mask(a, 1, 0);
  }
  op(a, "vaddps", bn_vec(5, W), bn_vec(5, W), bn_vec(2, W));
}

/* bn_attn_kernel (q rdi, kc rsi, vc rdx, y rcx, scores r8, T r9; pos, h0, h1, n_ctx on the stack), float
 * lanes as the LLVM kernel: for each token t and head h (its KV head h / group), the scores q.k_j /
 * sqrt(hd) of positions j <= pos + t, their max, e_j = exp(score_j - max) and their sum (a vector at a
 * time, the tail masked), then y = sum_j e_j v_j / sum. AVX-512 keeps the head's hd floats in registers
 * (q, then y's sums, in vectors 8..); AVX2 (16 registers) reads q from memory, two chains, and sums y in
 * slices of 8 vectors, each a pass over the positions.
 * Registers: r10 t, r11 h, rbx the row of q and y, r12 the KV head's offset, r13 the positions, r14 j,
 * r15 k_j or v_j; the scale 6, the max 7, the sum 5. */
void bn_asmjit_attention(bn_asm *a, int avx512, int64_t hd, int64_t H, int64_t kvh) {
  int W = avx512 ? 64 : 32, L = W / 4;
  int64_t nv = hd / L, group = H / kvh;
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
  op(a, "imul", bn_gp(RBX), bn_gp(R10), bn_imm(H));
  op(a, "add", bn_gp(RBX), bn_gp(R11), NONE);
  op(a, "imul", bn_gp(RBX), bn_gp(RBX), bn_imm(hd * 4));
  if (avx512)
    for (int v = 0; v < nv; v++) op(a, "vmovups", bn_vec(QR + v, 64), bn_memx(RDI, RBX, 1, 64 * v, 64), NONE);
  op(a, "push", bn_gp(RDX), NONE, NONE); /* div: rdx:rax / group */
  op(a, "xor", bn_gpd(RDX), bn_gpd(RDX), NONE);
  op(a, "mov", bn_gp(RAX), bn_gp(R11), NONE);
  op(a, "mov", bn_gp(R12), bn_imm(group), NONE);
  op(a, "div", bn_gp(R12), NONE, NONE);
  op(a, "pop", bn_gp(RDX), NONE, NONE);
  op(a, "imul", bn_gp(RAX), bn_mem(RSP, ARGS + 24, 8), NONE); /* kvh n_ctx */
  op(a, "imul", bn_gp(R12), bn_gp(RAX), bn_imm(hd * 4));
  op(a, "mov", bn_gp(R13), bn_mem(RSP, ARGS, 8), NONE);
  op(a, "lea", bn_gp(R13), bn_memx(R13, R10, 1, 1, 0), NONE); /* pos + t + 1 */
  constant(a, 6, 1.0 / sqrt((double)hd), 1);
  constant(a, 7, -3.0e38, 1);
  op(a, "xor", bn_gpd(R14), bn_gpd(R14), NONE);
  op(a, "lea", bn_gp(R15), bn_memx(RSI, R12, 1, 0, 0), NONE);
  bn_asm_bind(a, s1); /* the scores and their max */
  if (avx512) {
    op(a, "vmulps", bn_vec(0, 64), bn_vec(QR, 64), bn_mem(R15, 0, 64));
    for (int v = 1; v < nv; v++) op(a, "vfmadd231ps", bn_vec(0, 64), bn_vec(QR + v, 64), bn_mem(R15, 64 * v, 64));
  } else {
    op(a, "vxorps", bn_vec(0, 32), bn_vec(0, 32), bn_vec(0, 32));
    op(a, "vxorps", bn_vec(4, 32), bn_vec(4, 32), bn_vec(4, 32));
    for (int v = 0; v < nv; v++) {
      op(a, "vmovups", bn_vec(2, 32), bn_mem(R15, 32 * v, 32), NONE);
      op(a, "vfmadd231ps", bn_vec(v % 2 ? 4 : 0, 32), bn_vec(2, 32), bn_memx(RDI, RBX, 1, 32 * v, 32));
    }
    op(a, "vaddps", bn_vec(0, 32), bn_vec(0, 32), bn_vec(4, 32));
  }
  fold(a, 0, "vaddps", W);
  op(a, "vmulss", bn_vec(0, 16), bn_vec(0, 16), bn_vec(6, 16));
  op(a, "vmovss", bn_memx(R8, R14, 4, 0, 4), bn_vec(0, 16), NONE);
  op(a, "vmaxss", bn_vec(7, 16), bn_vec(7, 16), bn_vec(0, 16));
  op(a, "add", bn_gp(R15), bn_imm(hd * 4), NONE);
  loop_end(a, R14, R13, s1);
  op(a, "vbroadcastss", bn_vec(7, W), bn_vec(7, 16), NONE);
  op(a, "vxorps", bn_vec(5, 32), bn_vec(5, 32), bn_vec(5, 32));
  op(a, "xor", bn_gpd(R14), bn_gpd(R14), NONE);
  bn_asm_bind(a, s2); /* e_j in place of the scores, and their sum */
  op(a, "lea", bn_gp(RAX), bn_mem(R14, L, 0), NONE);
  op(a, "cmp", bn_gp(RAX), bn_gp(R13), NONE);
  op(a, "jg", bn_label(tail), NONE, NONE);
  exp_chunk(a, W, 0);
  op(a, "add", bn_gp(R14), bn_imm(L), NONE);
  op(a, "jmp", bn_label(s2), NONE, NONE);
  bn_asm_bind(a, tail);
  op(a, "mov", bn_gp(R15), bn_gp(R13), NONE);
  op(a, "sub", bn_gp(R15), bn_gp(R14), NONE);
  op(a, "jz", bn_label(s2end), NONE, NONE);
  if (avx512) {
    op(a, "mov", bn_gpd(RAX), bn_imm(1), NONE);
    op(a, "shlx", bn_gpd(RAX), bn_gpd(RAX), bn_gpd(R15));
    op(a, "dec", bn_gpd(RAX), NONE, NONE);
    op(a, "kmovw", bn_kreg(1), bn_gpd(RAX), NONE);
  } else { /* lanes below r15: their indexes 0..7 in vector 12 against it */
    op(a, "mov", bn_gp(RAX), bn_imm(0x0706050403020100), NONE);
    op(a, "vmovq", bn_vec(12, 16), bn_gp(RAX), NONE);
    op(a, "vpmovzxbd", bn_vec(12, 32), bn_vec(12, 16), NONE);
    op(a, "vmovd", bn_vec(13, 16), bn_gpd(R15), NONE);
    op(a, "vpbroadcastd", bn_vec(13, 32), bn_vec(13, 16), NONE);
    op(a, "vpcmpgtd", bn_vec(13, 32), bn_vec(13, 32), bn_vec(12, 32));
  }
  exp_chunk(a, W, 1);
  bn_asm_bind(a, s2end);
  fold(a, 5, "vaddps", W);
  op(a, "vbroadcastss", bn_vec(5, W), bn_vec(5, 16), NONE);
  int slice = avx512 ? (int)nv : 8; /* y's vectors summed in one pass over the positions */
  for (int v0 = 0; v0 < nv; v0 += slice) {
    int n = nv - v0 < slice ? (int)(nv - v0) : slice, s3 = bn_asm_new_label(a);
    for (int v = 0; v < n; v++) op(a, avx512 ? "vpxord" : "vpxor", bn_vec(QR + v, W), bn_vec(QR + v, W), bn_vec(QR + v, W));
    op(a, "xor", bn_gpd(R14), bn_gpd(R14), NONE);
    op(a, "lea", bn_gp(R15), bn_memx(RDX, R12, 1, W * v0, 0), NONE);
    bn_asm_bind(a, s3); /* sum_j e_j v_j */
    op(a, "vbroadcastss", bn_vec(0, W), bn_memx(R8, R14, 4, 0, 4), NONE);
    for (int v = 0; v < n; v++) op(a, "vfmadd231ps", bn_vec(QR + v, W), bn_vec(0, W), bn_mem(R15, W * v, W));
    op(a, "add", bn_gp(R15), bn_imm(hd * 4), NONE);
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
