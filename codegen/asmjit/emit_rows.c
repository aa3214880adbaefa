/* The row-wise kernels: slices and embedding rows, RoPE and the float matmul of the output
 * projection, AVX-512 or AVX2 (16 or 8 float lanes). */
#include "emit.h"

/* Copies n floats from [src] to [dst] (f16: n halves at src, widened), vectors of `lanes`, the
 * remainder under a mask (AVX-512) or one at a time (AVX2). Uses vector 0, mask 1, rax. */
static void copy_row(bn_asm *a, int avx512, int src, int dst, int64_t n, int f16) {
  int lanes = avx512 ? 16 : 8, vb = lanes * 4, ib = f16 ? 2 : 4;
  int64_t full = n / lanes * lanes;
  for (int64_t c = 0; c < full; c += lanes) {
    if (f16) op(a, "vcvtph2ps", bn_vec(0, vb), bn_mem(src, (int32_t)(c * ib), vb / 2), NONE);
    else op(a, "vmovups", bn_vec(0, vb), bn_mem(src, (int32_t)(c * ib), vb), NONE);
    op(a, "vmovups", bn_mem(dst, (int32_t)(c * 4), vb), bn_vec(0, vb), NONE);
  }
  int64_t rem = n - full;
  if (!rem) return;
  if (avx512) {
    op(a, "mov", bn_gpd(RAX), bn_imm((1 << rem) - 1), NONE);
    op(a, "kmovw", bn_kreg(1), bn_gpd(RAX), NONE);
    bn_asm_mask(a, 1, 1);
    if (f16) op(a, "vcvtph2ps", bn_vec(0, 64), bn_mem(src, (int32_t)(full * ib), 32), NONE);
    else op(a, "vmovups", bn_vec(0, 64), bn_mem(src, (int32_t)(full * ib), 64), NONE);
    bn_asm_mask(a, 1, 0);
    op(a, "vmovups", bn_mem(dst, (int32_t)(full * 4), 64), bn_vec(0, 64), NONE);
    return;
  }
  for (int64_t c = full; c < n; c++) {
    if (f16) {
      op(a, "movzx", bn_gpd(RAX), bn_mem(src, (int32_t)(c * 2), 2), NONE);
      op(a, "vmovd", bn_vec(0, 16), bn_gpd(RAX), NONE);
      op(a, "vcvtph2ps", bn_vec(0, 16), bn_vec(0, 16), NONE);
    } else op(a, "vmovss", bn_vec(0, 16), bn_mem(src, (int32_t)(c * 4), 4), NONE);
    op(a, "vmovss", bn_mem(dst, (int32_t)(c * 4), 4), bn_vec(0, 16), NONE);
  }
}

/* A bn_rows_kernel (in: rdi, w: rsi, y: rdx, T: rcx, t0: r8, t1: r9): for rows t0..t1, r10 the
 * source row and r11 the destination row of n floats, then copy_row. embed: the source row is
 * row in[t] of the table w (K wide, f16 or f32); else columns off.. of row t of in (K wide). */
void bn_asmjit_rows(bn_asm *a, int avx512, int embed, int64_t K, int64_t n, int64_t off, int f16) {
  int loop = bn_asm_new_label(a), done = bn_asm_new_label(a);
  op(a, "cmp", bn_gp(R8), bn_gp(R9), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  bn_asm_bind(a, loop);
  if (embed) {
    op(a, "movsxd", bn_gp(RAX), bn_memx(RDI, R8, 4, 0, 4), NONE); /* the token id */
    op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(K * (f16 ? 2 : 4)));
    op(a, "lea", bn_gp(R10), bn_memx(RSI, RAX, 1, 0, 0), NONE);
  } else {
    op(a, "imul", bn_gp(RAX), bn_gp(R8), bn_imm(K * 4));
    op(a, "lea", bn_gp(R10), bn_memx(RDI, RAX, 1, (int32_t)(off * 4), 0), NONE);
  }
  op(a, "imul", bn_gp(RAX), bn_gp(R8), bn_imm(n * 4));
  op(a, "lea", bn_gp(R11), bn_memx(RDX, RAX, 1, 0, 0), NONE);
  copy_row(a, avx512, R10, R11, n, f16);
  loop_end(a, R8, R9, loop);
  bn_asm_bind(a, done);
  leave(a, 0);
}

/* bn_rope_kernel (x rdi, y rsi, table rdx, T rcx, pos r8, h0 r9; h1 and n_ctx on the stack), NeoX
 * style over whole heads: o[i] = a c - b s, o[i + half] = a s + b c with a = x[i], b = x[i + half], each
 * product rounded as the reference rounds it; c and s from the executor's table (bn_rope_table). */
void bn_asmjit_rope(bn_asm *a, int avx512, int64_t hd, int64_t heads) {
  int64_t half = hd / 2;
  int W = avx512 ? 64 : 32;
  int tl = bn_asm_new_label(a), hl = bn_asm_new_label(a), hnext = bn_asm_new_label(a), tnext = bn_asm_new_label(a);
  int done = bn_asm_new_label(a);
  enter(a, 3); /* rbx, r12, r13 */
  op(a, "mov", bn_gp(R10), bn_mem(RSP, 8 + 24, 8), NONE); /* h1 */
  op(a, "mov", bn_gp(R11), bn_mem(RSP, 16 + 24, 8), NONE);
  op(a, "imul", bn_gp(R11), bn_gp(R11), bn_imm(half * 4)); /* the sines: n_ctx rows after the cosines */
  op(a, "xor", bn_gpd(RBX), bn_gpd(RBX), NONE);             /* t */
  op(a, "test", bn_gp(RCX), bn_gp(RCX), NONE);
  op(a, "jle", bn_label(done), NONE, NONE);
  bn_asm_bind(a, tl);
  op(a, "lea", bn_gp(RAX), bn_memx(R8, RBX, 1, 0, 0), NONE); /* the position's row of cosines */
  op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(half * 4));
  op(a, "lea", bn_gp(R13), bn_memx(RDX, RAX, 1, 0, 0), NONE);
  op(a, "mov", bn_gp(R12), bn_gp(R9), NONE);
  op(a, "cmp", bn_gp(R12), bn_gp(R10), NONE);
  op(a, "jge", bn_label(tnext), NONE, NONE);
  bn_asm_bind(a, hl);
  op(a, "mov", bn_gp(RAX), bn_gp(RBX), NONE); /* (t heads + h) hd 4 */
  op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(heads));
  op(a, "add", bn_gp(RAX), bn_gp(R12), NONE);
  op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(hd * 4));
  for (int64_t i = 0; i < half; i += W / 4) {
    int32_t lo = (int32_t)(4 * i), hi = (int32_t)(4 * (i + half));
    op(a, "vmovups", bn_vec(0, W), bn_memx(RDI, RAX, 1, lo, W), NONE);
    op(a, "vmovups", bn_vec(1, W), bn_memx(RDI, RAX, 1, hi, W), NONE);
    op(a, "vmovups", bn_vec(2, W), bn_mem(R13, lo, W), NONE);
    op(a, "vmovups", bn_vec(3, W), bn_memx(R13, R11, 1, lo, W), NONE);
    op(a, "vmulps", bn_vec(4, W), bn_vec(0, W), bn_vec(2, W));
    op(a, "vmulps", bn_vec(5, W), bn_vec(1, W), bn_vec(3, W));
    op(a, "vsubps", bn_vec(4, W), bn_vec(4, W), bn_vec(5, W));
    op(a, "vmovups", bn_memx(RSI, RAX, 1, lo, W), bn_vec(4, W), NONE);
    op(a, "vmulps", bn_vec(4, W), bn_vec(0, W), bn_vec(3, W));
    op(a, "vmulps", bn_vec(5, W), bn_vec(1, W), bn_vec(2, W));
    op(a, "vaddps", bn_vec(4, W), bn_vec(4, W), bn_vec(5, W));
    op(a, "vmovups", bn_memx(RSI, RAX, 1, hi, W), bn_vec(4, W), NONE);
  }
  bn_asm_bind(a, hnext);
  loop_end(a, R12, R10, hl);
  bn_asm_bind(a, tnext);
  loop_end(a, RBX, RCX, tl);
  bn_asm_bind(a, done);
  leave(a, 3);
}

/* bn_mf_kernel (x rdi, w rsi, y rdx, T rcx, n0 r8, n1 r9), F16 or F32 weights: for each row n and
 * token t the dot product in float lanes (widened halves, fused multiply-adds, four chains, then a tree),
 * as the LLVM kernel does: within 1e-5 of the largest output of the reference, which sums in double.
 * Decode streams each row once, prefetching ahead. */
void bn_asmjit_matmul_f(bn_asm *a, int avx512, int64_t K, int64_t N, int f16) {
  int64_t wb = f16 ? 2 : 4;
  int W = avx512 ? 64 : 32, L = W / 4;
  int nl = bn_asm_new_label(a), tl = bn_asm_new_label(a), tdone = bn_asm_new_label(a), done = bn_asm_new_label(a);
  enter(a, 1); /* rbx */
  op(a, "cmp", bn_gp(R8), bn_gp(R9), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  bn_asm_bind(a, nl);
  op(a, "imul", bn_gp(R10), bn_gp(R8), bn_imm(K * wb)); /* the row */
  op(a, "add", bn_gp(R10), bn_gp(RSI), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE); /* t */
  op(a, "mov", bn_gp(RAX), bn_gp(RDI), NONE);   /* token t's x */
  op(a, "test", bn_gp(RCX), bn_gp(RCX), NONE);
  op(a, "jle", bn_label(tdone), NONE, NONE);
  bn_asm_bind(a, tl);
  for (int c = 0; c < 4; c++) op(a, "vpxor", bn_vec(c, 32), bn_vec(c, 32), bn_vec(c, 32));
  for (int64_t c = 0; c < K; c += L) {
    if (c % 32 == 0) op(a, "prefetcht0", bn_mem(R10, (int32_t)(c * wb + 4096), 64), NONE, NONE);
    if (f16) op(a, "vcvtph2ps", bn_vec(4, W), bn_mem(R10, (int32_t)(c * 2), W / 2), NONE);
    else op(a, "vmovups", bn_vec(4, W), bn_mem(R10, (int32_t)(c * 4), W), NONE);
    op(a, "vfmadd231ps", bn_vec((int)(c / L % 4), W), bn_vec(4, W), bn_mem(RAX, (int32_t)(c * 4), W));
  }
  op(a, "vaddps", bn_vec(0, W), bn_vec(0, W), bn_vec(1, W));
  op(a, "vaddps", bn_vec(2, W), bn_vec(2, W), bn_vec(3, W));
  op(a, "vaddps", bn_vec(0, W), bn_vec(0, W), bn_vec(2, W));
  fold(a, 0, "vaddps", W);
  op(a, "imul", bn_gp(RBX), bn_gp(R11), bn_imm(N)); /* y[t N + n] */
  op(a, "add", bn_gp(RBX), bn_gp(R8), NONE);
  op(a, "vmovss", bn_memx(RDX, RBX, 4, 0, 4), bn_vec(0, 16), NONE);
  op(a, "add", bn_gp(RAX), bn_imm(K * 4), NONE);
  loop_end(a, R11, RCX, tl);
  bn_asm_bind(a, tdone);
  loop_end(a, R8, R9, nl);
  bn_asm_bind(a, done);
  leave(a, 1);
}
