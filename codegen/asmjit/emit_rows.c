/* The row-wise kernels: slices and embedding rows, RoPE and the float matmul of the output
 * projection, AVX-512 or AVX2 (16 or 8 float lanes). */
#include "emit.h"

/* Vector v (vb bytes) = the vb / 4 halves at m widened to floats: F16 by vcvtph2ps, BF16 into the upper
 * half of each float (bn_dequant's value). */
static void widen(bn_asm *a, bn_dtype t, int v, int vb, bn_asm_op m) {
  if (t == BN_DT_F16) {
    op(a, "vcvtph2ps", bn_vec(v, vb), m, NONE);
    return;
  }
  op(a, "vpmovzxwd", bn_vec(v, vb), m, NONE);
  op(a, "vpslld", bn_vec(v, vb), bn_vec(v, vb), bn_imm(16));
}

/* Copies n floats from [src] to [dst] (F16, BF16: n halves at src, widened), vectors of `lanes`, the
 * remainder under a mask (AVX-512) or one at a time (AVX2). Uses vector 0, mask 1, rax. */
static void copy_row(bn_asm *a, int avx512, int src, int dst, int64_t n, bn_dtype t) {
  int lanes = avx512 ? 16 : 8, vb = lanes * 4, half = t != BN_DT_F32, ib = half ? 2 : 4;
  int64_t full = n / lanes * lanes;
  for (int64_t c = 0; c < full; c += lanes) {
    if (half) widen(a, t, 0, vb, bn_mem(src, (int32_t)(c * ib), vb / 2));
    else op(a, "vmovups", bn_vec(0, vb), bn_mem(src, (int32_t)(c * ib), vb), NONE);
    op(a, "vmovups", bn_mem(dst, (int32_t)(c * 4), vb), bn_vec(0, vb), NONE);
  }
  int64_t rem = n - full;
  if (!rem) return;
  if (avx512) {
    op(a, "mov", bn_gpd(RAX), bn_imm((1 << rem) - 1), NONE);
    op(a, "kmovw", bn_kreg(1), bn_gpd(RAX), NONE);
    bn_asm_mask(a, 1, 1);
    if (half) widen(a, t, 0, 64, bn_mem(src, (int32_t)(full * ib), 32)); /* the mask is on its load */
    else op(a, "vmovups", bn_vec(0, 64), bn_mem(src, (int32_t)(full * ib), 64), NONE);
    bn_asm_mask(a, 1, 0);
    op(a, "vmovups", bn_mem(dst, (int32_t)(full * 4), 64), bn_vec(0, 64), NONE);
    return;
  }
  for (int64_t c = full; c < n; c++) {
    if (half) {
      op(a, "movzx", bn_gpd(RAX), bn_mem(src, (int32_t)(c * 2), 2), NONE);
      if (t == BN_DT_BF16) op(a, "shl", bn_gpd(RAX), bn_imm(16), NONE);
      op(a, "vmovd", bn_vec(0, 16), bn_gpd(RAX), NONE);
      if (t == BN_DT_F16) op(a, "vcvtph2ps", bn_vec(0, 16), bn_vec(0, 16), NONE);
    } else op(a, "vmovss", bn_vec(0, 16), bn_mem(src, (int32_t)(c * 4), 4), NONE);
    op(a, "vmovss", bn_mem(dst, (int32_t)(c * 4), 4), bn_vec(0, 16), NONE);
  }
}

/* A bn_rows_kernel (in: rdi, w: rsi, y: rdx, T: rcx, t0: r8, t1: r9): for rows t0..t1, r10 the
 * source row and r11 the destination row of n floats, then copy_row. embed: the source row is
 * row in[t] of the table w (K wide, of type t: F32, F16 or BF16); else columns off.. of row t of in (K wide). */
void bn_asmjit_rows(bn_asm *a, int avx512, int embed, int64_t K, int64_t n, int64_t off, bn_dtype t) {
  int loop = bn_asm_new_label(a), done = bn_asm_new_label(a);
  op(a, "cmp", bn_gp(R8), bn_gp(R9), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  bn_asm_bind(a, loop);
  if (embed) {
    op(a, "movsxd", bn_gp(RAX), bn_memx(RDI, R8, 4, 0, 4), NONE); /* the token id */
    op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(K * (t == BN_DT_F32 ? 4 : 2)));
    op(a, "lea", bn_gp(R10), bn_memx(RSI, RAX, 1, 0, 0), NONE);
  } else {
    op(a, "imul", bn_gp(RAX), bn_gp(R8), bn_imm(K * 4));
    op(a, "lea", bn_gp(R10), bn_memx(RDI, RAX, 1, (int32_t)(off * 4), 0), NONE);
  }
  op(a, "imul", bn_gp(RAX), bn_gp(R8), bn_imm(n * 4));
  op(a, "lea", bn_gp(R11), bn_memx(RDX, RAX, 1, 0, 0), NONE);
  copy_row(a, avx512, R10, R11, n, t);
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

/* Q6_K's red zone (below rsp, which these leaf kernels may use): the block's 16 scales d sc as floats,
 * and on AVX-512 64 of its codes less 32 as int8. */
enum { Q6_SCALES = -64, Q6_CODES = -128 };

/* The 16 scales d sc of the Q6_K block at rbx + blk, each int8 sc times d in float (exact: bn_dequant's
 * product), to the red zone; vector 10 gets d, 6 is scratch. */
static void q6_scales(bn_asm *a, int W, int32_t blk) {
  op(a, "vpbroadcastw", bn_vec(10, W / 2), bn_mem(RBX, blk + 208, 2), NONE);
  op(a, "vcvtph2ps", bn_vec(10, W), bn_vec(10, W / 2), NONE);
  for (int c = 0; c < 64; c += W) {
    op(a, "vpmovsxbd", bn_vec(6, W), bn_mem(RBX, blk + 192 + c / 4, W / 4), NONE);
    op(a, "vcvtdq2ps", bn_vec(6, W), bn_vec(6, W), NONE);
    op(a, "vmulps", bn_vec(6, W), bn_vec(6, W), bn_vec(10, W));
    op(a, "vmovups", bn_mem(RSP, Q6_SCALES + c, W), bn_vec(6, W), NONE);
  }
}

/* AVX-512: a Q6_K block's 256 dot products with x at r12, 64 codes at a time decoded as bytes: per half
 * h, A = ql's 64 bytes, Q = qh's 32 in both 256-bit halves; the low nibbles of A are elements 0..63 of
 * the half, its high nibbles 64..127, their high pairs Q's bits 0-1 and 2-3 (shifted left 4 and 2
 * words: vector 15's counts), 4-5 and 6-7 (right 0 and 2: vector 17's), merged by vpternlogd under
 * the 0x0f bytes (12) and kept to 6 bits (13), less 32 (14); stored to the red zone and read back as
 * dwords a vector at a time (vpmovsxbd from memory, no shuffle); x at r12 + xoff. Vectors 5, 16, 18
 * scratch. */
static void q6_block_avx512(bn_asm *a, int32_t blk, int32_t xoff) {
  q6_scales(a, 64, blk);
  for (int g = 0; g < 4; g++) { /* 64 codes: half g / 2, low (g even) or high nibbles */
    int h = g / 2;
    if (g % 2 == 0) {
      op(a, "vmovdqu64", bn_vec(18, 64), bn_mem(RBX, blk + 64 * h, 64), NONE);
      op(a, "vbroadcasti64x4", bn_vec(16, 64), bn_mem(RBX, blk + 128 + 32 * h, 32), NONE);
      op(a, "vpsllvw", bn_vec(5, 64), bn_vec(16, 64), bn_vec(15, 64));
      bn_asm_emit(a, bn_asm_inst("vpternlogd"), bn_vec(5, 64), bn_vec(12, 64), bn_vec(18, 64), bn_imm(0xb8));
    } else {
      op(a, "vpsrlw", bn_vec(18, 64), bn_vec(18, 64), bn_imm(4));
      op(a, "vpsrlvw", bn_vec(5, 64), bn_vec(16, 64), bn_vec(17, 64));
      bn_asm_emit(a, bn_asm_inst("vpternlogd"), bn_vec(5, 64), bn_vec(12, 64), bn_vec(18, 64), bn_imm(0xb8));
    }
    op(a, "vpandd", bn_vec(5, 64), bn_vec(5, 64), bn_vec(13, 64));
    op(a, "vpsubb", bn_vec(5, 64), bn_vec(5, 64), bn_vec(14, 64));
    for (int k = 0; k < 4; k++) {
      int p = 4 * g + k; /* the vector: elements 16 p.., sub-block p */
      if (k) bn_asm_emit(a, bn_asm_inst("vextracti32x4"), bn_vec(19, 16), bn_vec(5, 64), bn_imm(k), NONE);
      op(a, "vpmovsxbd", bn_vec(4, 64), bn_vec(k ? 19 : 5, 16), NONE);
      op(a, "vcvtdq2ps", bn_vec(4, 64), bn_vec(4, 64), NONE);
      op(a, "vbroadcastss", bn_vec(6, 64), bn_mem(RSP, Q6_SCALES + 4 * p, 4), NONE);
      op(a, "vmulps", bn_vec(4, 64), bn_vec(4, 64), bn_vec(6, 64));
      op(a, "vfmadd231ps", bn_vec(p % 4, 64), bn_vec(4, 64), bn_mem(R12, xoff + 64 * p, 64));
    }
  }
}

/* Vector p (L lanes) of the block at rbx + blk into float vector 4, exactly as bn_dequant decodes it: Q8_0 d q;
 * Q4_0 d (nibble - 8), elements 0..15 the low nibbles, 16..31 the high; Q6_K (d sc) q, q six bits from
 * ql's nibble and qh's pair less 32, sc the 16 elements' int8 scale, d sc from the block's scales in the
 * red zone (q6_scales). Vector 10 holds d (broadcast), 7 the int 0x0f, 8 the int 3, 9 the int 32, 11 the
 * int 8; 5 and 6 are scratch. */
static void decode(bn_asm *a, int W, bn_dtype dt, int p, int32_t blk) {
  int L = W / 4, e = L * p, mb = L; /* the first element, the bytes of L int8 */
  if (dt == BN_DT_Q8_0) {
    op(a, "vpmovsxbd", bn_vec(4, W), bn_mem(RBX, blk + 2 + e, mb), NONE);
  } else if (dt == BN_DT_Q4_0) {
    op(a, "vpmovzxbd", bn_vec(4, W), bn_mem(RBX, blk + 2 + e % 16, mb), NONE);
    if (e >= 16) op(a, "vpsrld", bn_vec(4, W), bn_vec(4, W), bn_imm(4));
    else op(a, W == 64 ? "vpandd" : "vpand", bn_vec(4, W), bn_vec(4, W), bn_vec(7, W));
    op(a, "vpsubd", bn_vec(4, W), bn_vec(4, W), bn_vec(11, W));
  } else { /* Q6_K: half h, quarter j, l0 within the quarter's 32 */
    int h = e / 128, j = e % 128 / 32, l0 = e % 32;
    op(a, "vpmovzxbd", bn_vec(4, W), bn_mem(RBX, blk + h * 64 + (j % 2) * 32 + l0, mb), NONE);
    if (j >= 2) op(a, "vpsrld", bn_vec(4, W), bn_vec(4, W), bn_imm(4));
    else op(a, W == 64 ? "vpandd" : "vpand", bn_vec(4, W), bn_vec(4, W), bn_vec(7, W));
    op(a, "vpmovzxbd", bn_vec(5, W), bn_mem(RBX, blk + 128 + h * 32 + l0, mb), NONE);
    if (j) op(a, "vpsrld", bn_vec(5, W), bn_vec(5, W), bn_imm(2 * j));
    op(a, W == 64 ? "vpandd" : "vpand", bn_vec(5, W), bn_vec(5, W), bn_vec(8, W));
    op(a, "vpslld", bn_vec(5, W), bn_vec(5, W), bn_imm(4));
    op(a, W == 64 ? "vpord" : "vpor", bn_vec(4, W), bn_vec(4, W), bn_vec(5, W));
    op(a, "vpsubd", bn_vec(4, W), bn_vec(4, W), bn_vec(9, W));
    op(a, "vbroadcastss", bn_vec(6, W), bn_mem(RSP, Q6_SCALES + 4 * (e / 16), 4), NONE);
  }
  op(a, "vcvtdq2ps", bn_vec(4, W), bn_vec(4, W), NONE);
  op(a, "vmulps", bn_vec(4, W), bn_vec(4, W), bn_vec(dt == BN_DT_Q6_K ? 6 : 10, W));
}

static void row_blocks(bn_asm *a, int W, bn_dtype dt, int ub);

/* One row's dot products with token rax's x into the accumulators 0..3: F32/F16/BF16 unrolled over K (row at
 * r10); a block type block by block in a loop (rbx the block, r12 its x, r13 the row's end). */
static void row_dot(bn_asm *a, int W, int64_t K, bn_dtype dt) {
  int L = W / 4;
  if (dt == BN_DT_F32 || dt == BN_DT_F16 || dt == BN_DT_BF16) {
    int64_t wb = dt == BN_DT_F32 ? 4 : 2;
    for (int64_t c = 0; c < K; c += L) {
      if (c % 32 == 0) op(a, "prefetcht0", bn_mem(R10, (int32_t)(c * wb + 4096), 64), NONE, NONE);
      if (wb == 2) widen(a, dt, 4, W, bn_mem(R10, (int32_t)(c * 2), W / 2));
      else op(a, "vmovups", bn_vec(4, W), bn_mem(R10, (int32_t)(c * 4), W), NONE);
      op(a, "vfmadd231ps", bn_vec((int)(c / L % 4), W), bn_vec(4, W), bn_mem(RAX, (int32_t)(c * 4), W));
    }
    return;
  }
  int64_t E = bn_dtype_table[dt].block_elems, B = bn_dtype_table[dt].block_bytes, nb = K / E;
  /* blocks an iteration: 4, or the fewest that make a multiple of 4 vectors (the chains of the vectors of a row
   * in turn, as the LLVM kernel's), then the blocks left unrolled after the loop */
  int ub = dt != BN_DT_Q6_K && nb % 4 == 0 ? 4 : E / L % 4 == 0 ? 1 : E / L % 2 == 0 ? 2 : 4;
  int64_t nloop = nb / ub * ub;
  int blk = bn_asm_new_label(a), rest = bn_asm_new_label(a);
  op(a, "mov", bn_gp(RBX), bn_gp(R10), NONE);
  op(a, "mov", bn_gp(R12), bn_gp(RAX), NONE);
  op(a, "lea", bn_gp(R13), bn_mem(R10, (int32_t)(nloop * B), 0), NONE);
  if (!nloop) op(a, "jmp", bn_label(rest), NONE, NONE);
  bn_asm_bind(a, blk);
  for (int64_t off = 0; off < ub * B; off += 64) op(a, "prefetcht0", bn_mem(RBX, (int32_t)(4096 + off), 64), NONE, NONE);
  row_blocks(a, W, dt, ub);
  op(a, "add", bn_gp(RBX), bn_imm(ub * B), NONE);
  op(a, "add", bn_gp(R12), bn_imm(4 * E * ub), NONE);
  op(a, "cmp", bn_gp(RBX), bn_gp(R13), NONE);
  op(a, "jb", bn_label(blk), NONE, NONE);
  bn_asm_bind(a, rest);
  row_blocks(a, W, dt, (int)(nb - nloop));
}

/* ub blocks of a row (rbx, x at r12) into the accumulators 0..3: vector v of them in chain v mod 4. */
static void row_blocks(bn_asm *a, int W, bn_dtype dt, int ub) {
  int L = W / 4;
  int64_t E = bn_dtype_table[dt].block_elems, B = bn_dtype_table[dt].block_bytes;
  for (int u = 0; u < ub; u++) {
    int32_t at = (int32_t)(u * B);
    if (dt == BN_DT_Q6_K && W == 64) {
      q6_block_avx512(a, at, (int32_t)(4 * u * E));
      continue;
    }
    if (dt == BN_DT_Q6_K) q6_scales(a, W, at);
    else { /* d, f16, in every lane */
      op(a, "vpbroadcastw", bn_vec(10, W / 2), bn_mem(RBX, at, 2), NONE);
      op(a, "vcvtph2ps", bn_vec(10, W), bn_vec(10, W / 2), NONE);
    }
    for (int p = 0; p < E / L; p++) {
      decode(a, W, dt, p, at);
      op(a, "vfmadd231ps", bn_vec((int)((u * E / L + p) % 4), W), bn_vec(4, W), bn_mem(R12, (int32_t)(4 * (u * E + L * p)), W));
    }
  }
}

/* Row r10's dot products with g tokens' x (token u at rax + 4 K u) into accumulators 4u..4u+3, F32/F16/BF16:
 * each chunk widened once for the g tokens, each token's chains in row_dot's order (so its bits are its own).
 * Prefetches `ahead` bytes on: the same row of the next block, so that every token group's pass over a block
 * (not only the first's) streams the next one in. */
static void row_dot_g(bn_asm *a, int W, int64_t K, bn_dtype dt, int g, int64_t ahead) {
  int L = W / 4, wv0 = W == 64 ? 16 : 12;
  int64_t wb = dt == BN_DT_F32 ? 4 : 2;
  for (int64_t c = 0; c < K; c += L) {
    int v = wv0 + (int)(c / L % 4);
    if (c % 32 == 0) op(a, "prefetcht0", bn_mem(R10, (int32_t)(c * wb + ahead), 64), NONE, NONE);
    if (wb == 2) widen(a, dt, v, W, bn_mem(R10, (int32_t)(c * 2), W / 2));
    else op(a, "vmovups", bn_vec(v, W), bn_mem(R10, (int32_t)(c * 4), W), NONE);
    for (int u = 0; u < g; u++)
      op(a, "vfmadd231ps", bn_vec(4 * u + (int)(c / L % 4), W), bn_vec(v, W), bn_mem(RAX, (int32_t)((c + u * K) * 4), W));
  }
}

/* Several tokens over F32/F16/BF16 rows: the rows in blocks that stay in L2, and for each block the tokens g at a
 * time, each row's chunks widened once for the g, whose x stay in L1 (a row reading every token's x from L2 was
 * the bound: bench/README.md). Rows r12..r13 of a block, token r11 (x at rax), row r15; then to `next`, r14 = g. */
static void rows_g(bn_asm *a, int W, int64_t K, int64_t N, int64_t row, bn_dtype dt, int g, int next, int64_t ahead) {
  int rl = bn_asm_new_label(a);
  op(a, "mov", bn_gp(R15), bn_gp(R12), NONE);
  bn_asm_bind(a, rl);
  op(a, "imul", bn_gp(R10), bn_gp(R15), bn_imm(row));
  op(a, "add", bn_gp(R10), bn_gp(RSI), NONE);
  for (int c = 0; c < 4 * g; c++) op(a, "vpxor", bn_vec(c, 32), bn_vec(c, 32), bn_vec(c, 32));
  row_dot_g(a, W, K, dt, g, ahead);
  for (int u = 0; u < g; u++) { /* row_dot's tree, then y[(t + u) N + n] */
    int v = 4 * u;
    op(a, "vaddps", bn_vec(v, W), bn_vec(v, W), bn_vec(v + 1, W));
    op(a, "vaddps", bn_vec(v + 2, W), bn_vec(v + 2, W), bn_vec(v + 3, W));
    op(a, "vaddps", bn_vec(v, W), bn_vec(v, W), bn_vec(v + 2, W));
    fold(a, v, "vaddps", W); /* scratch: vector 1, token 0's, already summed */
    op(a, "lea", bn_gp(RBX), bn_mem(R11, u, 0), NONE);
    op(a, "imul", bn_gp(RBX), bn_gp(RBX), bn_imm(N));
    op(a, "add", bn_gp(RBX), bn_gp(R15), NONE);
    op(a, "vmovss", bn_memx(RDX, RBX, 4, 0, 4), bn_vec(v, 16), NONE);
  }
  op(a, "inc", bn_gp(R15), NONE, NONE);
  op(a, "cmp", bn_gp(R15), bn_gp(R13), NONE);
  op(a, "jl", bn_label(rl), NONE, NONE);
  op(a, "mov", bn_gp(R14), bn_imm(g), NONE);
  op(a, "jmp", bn_label(next), NONE, NONE);
}

/* The tokens of a call of 2 or more over F32/F16/BF16 rows n0..n1 (rows_g), then to done. */
static void tokens_g(bn_asm *a, int W, int64_t K, int64_t N, int64_t row, bn_dtype dt, int done) {
  int G = (int)(32768 / (4 * K)), RB = (int)(65536 / row); /* x of G tokens in 32 KiB; a block of rows in 64 KiB */
  G = G < 1 ? 1 : G > W / 16 ? W / 16 : G;                    /* 4 tokens' chains in zmm0..15, 2 in ymm0..7 */
  RB = RB < 1 ? 1 : RB;
  int blk = bn_asm_new_label(a), tg = bn_asm_new_label(a), next = bn_asm_new_label(a), body[5];
  for (int g = 1; g <= G; g++) body[g] = bn_asm_new_label(a);
  op(a, "mov", bn_gp(R12), bn_gp(R8), NONE);
  bn_asm_bind(a, blk);
  op(a, "lea", bn_gp(R13), bn_mem(R12, RB, 0), NONE);
  op(a, "cmp", bn_gp(R13), bn_gp(R9), NONE);
  op(a, "cmovg", bn_gp(R13), bn_gp(R9), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  op(a, "mov", bn_gp(RAX), bn_gp(RDI), NONE);
  bn_asm_bind(a, tg);
  op(a, "mov", bn_gp(R14), bn_gp(RCX), NONE);
  op(a, "sub", bn_gp(R14), bn_gp(R11), NONE);
  for (int g = G; g > 1; g--) {
    op(a, "cmp", bn_gp(R14), bn_imm(g), NONE);
    op(a, "jge", bn_label(body[g]), NONE, NONE);
  }
  for (int g = 1; g <= G; g++) {
    bn_asm_bind(a, body[g]);
    rows_g(a, W, K, N, row, dt, g, next, RB * row);
  }
  bn_asm_bind(a, next);
  op(a, "add", bn_gp(R11), bn_gp(R14), NONE);
  op(a, "imul", bn_gp(R14), bn_gp(R14), bn_imm(4 * K));
  op(a, "add", bn_gp(RAX), bn_gp(R14), NONE);
  op(a, "cmp", bn_gp(R11), bn_gp(RCX), NONE);
  op(a, "jl", bn_label(tg), NONE, NONE);
  op(a, "mov", bn_gp(R12), bn_gp(R13), NONE);
  op(a, "cmp", bn_gp(R12), bn_gp(R9), NONE);
  op(a, "jl", bn_label(blk), NONE, NONE);
  op(a, "jmp", bn_label(done), NONE, NONE);
}

/* bn_mf_kernel (x rdi, w rsi, y rdx, T rcx, n0 r8, n1 r9), weights F32, F16, BF16, Q8_0, Q4_0 or Q6_K: for each
 * row n and token t the dot product in float lanes (rows decoded as the reference decodes them, fused
 * multiply-adds, four chains, then a tree), as the LLVM kernel does: within 1e-5 of the largest output
 * of the reference, which sums in double. Decode streams each row once, prefetching ahead. */
void bn_asmjit_matmul_f(bn_asm *a, int avx512, int64_t K, int64_t N, bn_dtype dt) {
  int W = avx512 ? 64 : 32;
  int64_t row = dt == BN_DT_F32   ? 4 * K
                : dt == BN_DT_F16 || dt == BN_DT_BF16 ? 2 * K
                                                       : K / bn_dtype_table[dt].block_elems * bn_dtype_table[dt].block_bytes;
  int nl = bn_asm_new_label(a), tl = bn_asm_new_label(a), tdone = bn_asm_new_label(a), done = bn_asm_new_label(a);
  enter(a, 5); /* rbx, r12..r15: the block loops; the y index in rbx */
  if (dt != BN_DT_F32 && dt != BN_DT_F16 && dt != BN_DT_BF16) { /* decode's constants */
    splat_i(a, 7, 0x0f, W);
    splat_i(a, 8, 3, W);
    splat_i(a, 9, 32, W);
    splat_i(a, 11, 8, W);
  }
  if (dt == BN_DT_Q6_K && avx512) { /* q6_block_avx512's: bytes 0x0f, 0x3f, 32; word shift counts 4 | 2, 0 | 2 */
    splat_i(a, 12, 0x0f0f0f0f, 64);
    splat_i(a, 13, 0x3f3f3f3f, 64);
    splat_i(a, 14, 0x20202020, 64);
    splat_i(a, 16, 0x00020002, 32);
    splat_i(a, 15, 0x00040004, 64);
    op(a, "vpxord", bn_vec(17, 64), bn_vec(17, 64), bn_vec(17, 64));
    bn_asm_emit(a, bn_asm_inst("vinserti64x4"), bn_vec(15, 64), bn_vec(15, 64), bn_vec(16, 32), bn_imm(1));
    bn_asm_emit(a, bn_asm_inst("vinserti64x4"), bn_vec(17, 64), bn_vec(17, 64), bn_vec(16, 32), bn_imm(1));
  }
  op(a, "cmp", bn_gp(R8), bn_gp(R9), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  if ((dt == BN_DT_F32 || dt == BN_DT_F16 || dt == BN_DT_BF16) && K <= 8192) { /* unrolled over K: its code grows with it */
    int one = bn_asm_new_label(a);
    op(a, "cmp", bn_gp(RCX), bn_imm(1), NONE);
    op(a, "jle", bn_label(one), NONE, NONE);
    tokens_g(a, W, K, N, row, dt, done);
    bn_asm_bind(a, one);
  }
  bn_asm_bind(a, nl);
  op(a, "imul", bn_gp(R10), bn_gp(R8), bn_imm(row)); /* the row */
  op(a, "add", bn_gp(R10), bn_gp(RSI), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE); /* t */
  op(a, "mov", bn_gp(RAX), bn_gp(RDI), NONE);   /* token t's x */
  op(a, "test", bn_gp(RCX), bn_gp(RCX), NONE);
  op(a, "jle", bn_label(tdone), NONE, NONE);
  bn_asm_bind(a, tl);
  for (int c = 0; c < 4; c++) op(a, "vpxor", bn_vec(c, 32), bn_vec(c, 32), bn_vec(c, 32));
  row_dot(a, W, K, dt);
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
  leave(a, 5);
}
