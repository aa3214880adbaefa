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

/* Every tile and ISA sums in one order, the LLVM kernel's, so that a token's output has the same bits in
 * any chunk and on either backend: a dot product's chains over head_dim (one on AVX-512, even and odd vectors
 * on AVX2) of lanes, then the halving tree of the lanes; a softmax sum with key j in lane j mod lanes (the
 * last ones under a mask), then the halving tree; the output's sum over the keys in order, times 1 / sum.
 * The AVX-512 kernel's small tiles (what the 16-token tiles below leave): tokens in tiles of Q = 4, then
 * one at a time, so each K and V row read serves Q tokens; per tile and head three passes:
 *   scores: blocks of 16 / Q keys x Q tokens, 16 accumulators (a key's vectors loaded once, q from
 *           memory), their lane sums in one tree16 and stored to the tokens' rows; keys left one by one;
 *           every token of the tile scores the tile's n = pos + t + Q keys (the cache holds them);
 *   softmax: per token, its max over its own pos + t + i + 1 keys, exp and their sum (16 at a time, the
 *           tail under a mask), zeros for the keys it does not see;
 *   output:  y_i = sum_j e_ij v_j (1 / sum_i) over the n keys, Q x 6 vectors of y (Q = 1: 16) in registers,
 *           a V row's vectors loaded once for the Q tokens.
 * Score rows: token t's at scores + t n_ctx. Locals: [rsp] n_ctx 4, [rsp + 8] the Q inverse sums, [rsp + 24] a
 * token's key count, [rsp + 32] the Q score rows, [rsp + 64] T. Registers: r10 t, r11 h, rbx the tile's
 * q and y row offset, r12 the KV head's offset, r13 n, r14 the key, r15 K or V rows or a score row,
 * rbp the tile's score rows, r9 and rax scratch. */
/* The frame (64-byte aligned) from [rsp + 64]: T, the caller's rsp, the stack arguments pos, h0, h1,
 * n_ctx copied to [rsp + AR], the key block [BLO, BHI) of heads16, the second tile's score rows' distance
 * (TB) and a saved rdx (RDXS) of group(), two tiles' Q^T (hd x 16 floats each) from QT, then for F16 caches
 * 16 keys widened (16 x hd floats). KB: heads16's keys per block. */
enum { AR = 80, BLO = 112, BHI = 120, TB = 128, RDXS = 136, QT = 192, ARGS6 = 8 + 6 * 8, KB = 256 };

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
  for (int vk = 0; vk < nv * KB; vk++) { /* one token: a key's row front to back, keys in turn (one stream) */
    int v = Q == 1 ? vk % (int)nv : vk / KB, k = Q == 1 ? vk / (int)nv : vk % KB;
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
  constant(a, 0, 1.0, 1);
  op(a, "vdivss", bn_vec(5, 16), bn_vec(0, 16), bn_vec(5, 16)); /* y = acc (1 / sum), as LLVM's kernel */
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
        op(a, "vmulps", bn_vec(i * n + v, 64), bn_vec(i * n + v, 64), bn_vec(29, 64));
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
  op(a, "mov", bn_gp(R11), bn_mem(RSP, AR + 8, 8), NONE); /* h0 */
  op(a, "cmp", bn_gp(R11), bn_mem(RSP, AR + 16, 8), NONE);
  op(a, "jge", bn_label(end), NONE, NONE);
  bn_asm_bind(a, hl);
  head_offsets(a, hd, H, kvh, es, AR + 24);
  op(a, "mov", bn_gp(R13), bn_mem(RSP, AR, 8), NONE);
  op(a, "lea", bn_gp(R13), bn_memx(R13, R10, 1, Q, 0), NONE); /* pos + t + Q */
  tile_scores(a, Q, hd, H, es);
  for (int i = 0; i < Q; i++) tile_softmax(a, Q, i);
  tile_output(a, Q, hd, H, es);
  op(a, "inc", bn_gp(R11), NONE, NONE);
  op(a, "cmp", bn_gp(R11), bn_mem(RSP, AR + 16, 8), NONE);
  op(a, "jl", bn_label(hl), NONE, NONE);
  bn_asm_bind(a, end);
}

/* Vectors 0..15 (rows) transposed into 0..15 (columns) through 16..31: 32-bit then 64-bit interleaves
 * within 128-bit lanes, then two rounds of 128-bit lane shuffles. */
static void transpose16(bn_asm *a) {
  for (int k = 0; k < 8; k++) {
    op(a, "vunpcklps", bn_vec(16 + 2 * k, 64), bn_vec(2 * k, 64), bn_vec(2 * k + 1, 64));
    op(a, "vunpckhps", bn_vec(17 + 2 * k, 64), bn_vec(2 * k, 64), bn_vec(2 * k + 1, 64));
  }
  for (int k = 0; k < 4; k++) /* vector 4 k + c: column 4 L + c of rows 4 k..4 k + 3 in 128-bit lane L */
    for (int c = 0; c < 4; c++)
      op(a, c % 2 ? "vunpckhpd" : "vunpcklpd", bn_vec(4 * k + c, 64), bn_vec(16 + 4 * k + c / 2, 64), bn_vec(18 + 4 * k + c / 2, 64));
  for (int c = 0; c < 4; c++) {
    bn_asm_emit(a, bn_asm_inst("vshuff32x4"), bn_vec(16 + 4 * c, 64), bn_vec(c, 64), bn_vec(4 + c, 64), bn_imm(0x44));
    bn_asm_emit(a, bn_asm_inst("vshuff32x4"), bn_vec(17 + 4 * c, 64), bn_vec(c, 64), bn_vec(4 + c, 64), bn_imm(0xee));
    bn_asm_emit(a, bn_asm_inst("vshuff32x4"), bn_vec(18 + 4 * c, 64), bn_vec(8 + c, 64), bn_vec(12 + c, 64), bn_imm(0x44));
    bn_asm_emit(a, bn_asm_inst("vshuff32x4"), bn_vec(19 + 4 * c, 64), bn_vec(8 + c, 64), bn_vec(12 + c, 64), bn_imm(0xee));
  }
  for (int c = 0; c < 4; c++)
    for (int L = 0; L < 4; L++)
      bn_asm_emit(a, bn_asm_inst("vshuff32x4"), bn_vec(4 * L + c, 64), bn_vec(16 + 4 * c + L / 2, 64), bn_vec(18 + 4 * c + L / 2, 64),
                  bn_imm(L % 2 ? 0xdd : 0x88));
}

/* k2 = the lanes from m up (m in 1..15). */
static void lanes_from(bn_asm *a, int m) {
  op(a, "mov", bn_gpd(RAX), bn_imm(0xffff & ~((1 << m) - 1)), NONE);
  op(a, "kmovw", bn_kreg(2), bn_gpd(RAX), NONE);
}

/* The products of head elements l, l + 8, l + 16, .. (vector v's lane l) of `keys` keys with the queries of
 * `tiles` tiles of 16 tokens: a chain over v into slot x of each (key, tile) stream, the same for l + 8 into
 * slot y, then x += y (the first level of the tree below). Stream s = k tiles + g owns vectors 5 s..5 s + 4;
 * tile g's Q^T vectors in 20 + 2 g, 21 + 2 g; keys at r15, rowb bytes apart. One tile: each k_d a broadcast
 * memory operand; two: broadcast once into 24, 25 for both tiles (a load a FMA instead of 1.25: this core
 * sustains about two loads a cycle beside two FMAs, bench/README.md). */
static void pair(bn_asm *a, int64_t hd, int32_t rowb, int keys, int tiles, int l, int x, int y) {
  int n = keys * tiles;
  for (int st = 0; st < n; st++) {
    op(a, "vpxord", bn_vec(5 * st + x, 64), bn_vec(5 * st + x, 64), bn_vec(5 * st + x, 64));
    op(a, "vpxord", bn_vec(5 * st + y, 64), bn_vec(5 * st + y, 64), bn_vec(5 * st + y, 64));
  }
  for (int d = l; d < hd; d += 16) {
    for (int g = 0; g < tiles; g++) {
      int32_t qt = (int32_t)(QT + g * hd * 64);
      op(a, "vmovaps", bn_vec(20 + 2 * g, 64), bn_mem(RSP, qt + 64 * d, 64), NONE);
      op(a, "vmovaps", bn_vec(21 + 2 * g, 64), bn_mem(RSP, qt + 64 * (d + 8), 64), NONE);
    }
    for (int k = 0; k < keys; k++) {
      bn_asm_op kx = bn_bcst(bn_mem(R15, k * rowb + 4 * d, 4), 16), ky = bn_bcst(bn_mem(R15, k * rowb + 4 * (d + 8), 4), 16);
      if (tiles > 1) {
        op(a, "vbroadcastss", bn_vec(24, 64), bn_mem(R15, k * rowb + 4 * d, 4), NONE);
        op(a, "vbroadcastss", bn_vec(25, 64), bn_mem(R15, k * rowb + 4 * (d + 8), 4), NONE);
        kx = bn_vec(24, 64), ky = bn_vec(25, 64);
      }
      for (int g = 0; g < tiles; g++) {
        int st = k * tiles + g;
        op(a, "vfmadd231ps", bn_vec(5 * st + x, 64), bn_vec(20 + 2 * g, 64), kx);
        op(a, "vfmadd231ps", bn_vec(5 * st + y, 64), bn_vec(21 + 2 * g, 64), ky);
      }
    }
  }
  for (int st = 0; st < n; st++) op(a, "vaddps", bn_vec(5 * st + x, 64), bn_vec(5 * st + x, 64), bn_vec(5 * st + y, 64));
}

/* Into slot x of every stream, the node of the halving tree that sums lane positions l, l + s, l + 2 s, ..:
 * its two halves (l and l + s at step 2 s) in slots x and x + 1, added; at s = 8 the pair (l, l + 8). Slots
 * up to x + 4 in use. */
static void tree(bn_asm *a, int64_t hd, int32_t rowb, int keys, int tiles, int l, int s, int x) {
  if (s == 8) {
    pair(a, hd, rowb, keys, tiles, l, x, x + 1);
    return;
  }
  tree(a, hd, rowb, keys, tiles, l, 2 * s, x);
  tree(a, hd, rowb, keys, tiles, l + s, 2 * s, x + 1);
  for (int st = 0; st < keys * tiles; st++)
    op(a, "vaddps", bn_vec(5 * st + x, 64), bn_vec(5 * st + x, 64), bn_vec(5 * st + x + 1, 64));
}

/* The scores of the key group r14..r14 + 15 for the 16 tokens of one tile (a token per lane; tiles = 2: of
 * two, the second's rows [rsp + TB] bytes after the first's), in the order of the one-token kernels' and
 * LLVM's dot products, so that every backend and tile gives the same bits: per head element l of a vector
 * (0..15), a chain over the vectors of the head, then the halving tree over l ((l, l + 8), then (l, l + 4),
 * (l, l + 2), (0, 1)), evaluated depth first so that a stream needs 5 vectors (tree): 4 keys at a time (2
 * of two tiles), each k_d broadcast from its row. Scaled and stored as rows r14.. of the transposed scores
 * (rbp, 64 bytes a key). F16 rows are widened into the frame's key buffer first. */
static void group(bn_asm *a, int64_t hd, int es, int tiles) {
  int kl = bn_asm_new_label(a), keys = 4 / tiles;
  int32_t rowb = (int32_t)(hd * 4), kbuf = (int32_t)(QT + 2 * hd * 64);
  op(a, "imul", bn_gp(R15), bn_gp(R14), bn_imm(hd * es));
  op(a, "add", bn_gp(R15), bn_gp(R12), NONE);
  op(a, "add", bn_gp(R15), bn_gp(RSI), NONE);
  if (es == 2) {
    for (int k = 0; k < 16; k++)
      for (int v = 0; v < hd / 16; v++) {
        op(a, "vcvtph2ps", bn_vec(16, 64), bn_mem(R15, (int32_t)(k * hd * 2 + 32 * v), 32), NONE);
        op(a, "vmovaps", bn_mem(RSP, kbuf + k * rowb + 64 * v, 64), bn_vec(16, 64), NONE);
      }
    op(a, "lea", bn_gp(R15), bn_mem(RSP, kbuf, 0), NONE);
  }
  splat(a, 26, (float)(1.0 / sqrt((double)hd)), 64);
  op(a, "mov", bn_gp(RAX), bn_gp(R14), NONE);
  op(a, "shl", bn_gp(RAX), bn_imm(6), NONE);
  op(a, "add", bn_gp(RAX), bn_gp(RBP), NONE);
  if (tiles > 1) { /* the second tile's rows at rdx */
    op(a, "mov", bn_mem(RSP, RDXS, 8), bn_gp(RDX), NONE);
    op(a, "mov", bn_gp(RDX), bn_gp(RAX), NONE);
    op(a, "add", bn_gp(RDX), bn_mem(RSP, TB, 8), NONE);
  }
  op(a, "mov", bn_gpd(R9), bn_imm(16 / keys), NONE);
  bn_asm_bind(a, kl); /* `keys` keys an iteration */
  tree(a, hd, rowb, keys, tiles, 0, 1, 0);
  for (int k = 0; k < keys; k++)
    for (int g = 0; g < tiles; g++) {
      int v = 5 * (k * tiles + g);
      op(a, "vmulps", bn_vec(v, 64), bn_vec(v, 64), bn_vec(26, 64));
      op(a, "vmovups", bn_mem(g ? RDX : RAX, 64 * k, 64), bn_vec(v, 64), NONE);
    }
  op(a, "add", bn_gp(RAX), bn_imm(64 * keys), NONE);
  if (tiles > 1) op(a, "add", bn_gp(RDX), bn_imm(64 * keys), NONE);
  op(a, "add", bn_gp(R15), bn_imm(keys * rowb), NONE); /* F16: the widened rows */
  op(a, "dec", bn_gpd(R9), NONE, NONE);
  op(a, "jnz", bn_label(kl), NONE, NONE);
  if (tiles > 1) op(a, "mov", bn_gp(RDX), bn_mem(RSP, RDXS, 8), NONE);
}

/* The softmax of tile16's transposed scores, all 16 tokens at once (a token per lane): rows 0..n - 16
 * are every token's keys, row n - 16 + m (m = 1..15) only tokens m..15's. Each lane's max, then e_j =
 * exp(s_j - max) in place (zero where a token does not see the key), added to key j mod 16's sums (16
 * vectors in the frame's Q^T area), their halving tree, and each lane's 1 / sum after the T score rows
 * (sums_at). r9: the first diagonal row. */
static void sums_at(bn_asm *a);
static void softmax16(bn_asm *a, int64_t hd, int64_t H, int es, int tiles) {
  (void)hd, (void)H, (void)es, (void)tiles;
  int ml = bn_asm_new_label(a), el = bn_asm_new_label(a);
  enum { C = 16 };
  op(a, "imul", bn_gp(RAX), bn_gp(R13), bn_imm(64));
  op(a, "lea", bn_gp(R9), bn_memx(RBP, RAX, 1, -64 * 15, 0), NONE);
  splat(a, 7, -3.0e38, 64);
  op(a, "vmovaps", bn_vec(8, 64), bn_vec(7, 64), NONE);
  op(a, "mov", bn_gp(R14), bn_gp(RBP), NONE);
  bn_asm_bind(a, ml);
  op(a, "vmaxps", bn_vec(7, 64), bn_vec(7, 64), bn_mem(R14, 0, 64));
  op(a, "add", bn_gp(R14), bn_imm(64), NONE);
  op(a, "cmp", bn_gp(R14), bn_gp(R9), NONE);
  op(a, "jb", bn_label(ml), NONE, NONE);
  for (int m = 1; m < 16; m++) {
    lanes_from(a, m);
    bn_asm_mask(a, 2, 0);
    op(a, "vmaxps", bn_vec(8, 64), bn_vec(8, 64), bn_mem(R9, 64 * (m - 1), 64));
  }
  op(a, "vmaxps", bn_vec(7, 64), bn_vec(7, 64), bn_vec(8, 64));
  vexp_consts(a, C);
  op(a, "vpxord", bn_vec(5, 64), bn_vec(5, 64), bn_vec(5, 64));
  for (int l = 0; l < 16; l++) op(a, "vmovaps", bn_mem(RSP, QT + 64 * l, 64), bn_vec(5, 64), NONE);
  op(a, "mov", bn_gp(R14), bn_gp(RBP), NONE);
  for (int m = 0; m < 16; m++) { /* m = 0: the loop over the common rows; then the diagonal */
    if (!m) bn_asm_bind(a, el);
    bn_asm_op row = m ? bn_mem(R9, 64 * (m - 1), 64) : bn_mem(R14, 0, 64);
    op(a, "vmovups", bn_vec(0, 64), row, NONE);
    op(a, "vsubps", bn_vec(0, 64), bn_vec(0, 64), bn_vec(7, 64));
    vexp_pre(a, 2, 0, 3, 4, C);
    if (m) {
      lanes_from(a, m);
      bn_asm_mask(a, 2, 1);
      op(a, "vmovaps", bn_vec(2, 64), bn_vec(2, 64), NONE);
    }
    op(a, "vmovups", row, bn_vec(2, 64), NONE);
    if (m) op(a, "lea", bn_gp(RAX), bn_mem(R9, 64 * (m - 1), 0), NONE); /* key j's sum: 64 (j mod 16) */
    else op(a, "mov", bn_gp(RAX), bn_gp(R14), NONE);
    op(a, "sub", bn_gp(RAX), bn_gp(RBP), NONE);
    op(a, "and", bn_gpd(RAX), bn_imm(1023), NONE);
    op(a, "vaddps", bn_vec(5, 64), bn_vec(2, 64), bn_memx(RSP, RAX, 1, QT, 64));
    op(a, "vmovaps", bn_memx(RSP, RAX, 1, QT, 64), bn_vec(5, 64), NONE);
    if (!m) {
      op(a, "add", bn_gp(R14), bn_imm(64), NONE);
      op(a, "cmp", bn_gp(R14), bn_gp(R9), NONE);
      op(a, "jb", bn_label(el), NONE, NONE);
    }
  }
  for (int l = 0; l < 16; l++) op(a, "vmovaps", bn_vec(l, 64), bn_mem(RSP, QT + 64 * l, 64), NONE);
  for (int w = 8; w >= 1; w /= 2) /* the halving tree over j mod 16 */
    for (int l = 0; l < w; l++) op(a, "vaddps", bn_vec(l, 64), bn_vec(l, 64), bn_vec(l + w, 64));
  splat(a, 1, 1.0, 64);
  op(a, "vdivps", bn_vec(0, 64), bn_vec(1, 64), bn_vec(0, 64)); /* each token's 1 / sum */
  sums_at(a);
  op(a, "vmovups", bn_mem(RAX, 0, 64), bn_vec(0, 64), NONE);
}

/* rax = tile16's 16 inverse softmax sums: after the T score rows, at scores + (T n_ctx + t) floats. */
static void sums_at(bn_asm *a) {
  op(a, "mov", bn_gp(RAX), bn_mem(RSP, 64, 8), NONE);
  op(a, "imul", bn_gp(RAX), bn_mem(RSP, 0, 8), NONE);
  op(a, "add", bn_gp(RAX), bn_gp(R8), NONE);
  op(a, "lea", bn_gp(RAX), bn_memx(RAX, R10, 4, 0, 0), NONE);
}

/* y_i += sum_j e_ij v_j over the keys [BLO, BHI) of the block for tile16's tokens, Qo at a time: Qo x nv
 * accumulators (zero in the first block, else y's partial sums), e_ij broadcast from the transposed rows
 * (zero where token i does not see key j), a V row's vectors loaded once for the Qo tokens; times each
 * token's 1 / sum after its last block (BHI = n). */
static void output16(bn_asm *a, int64_t hd, int64_t H, int es, int tiles) {
  (void)tiles;
  int nv = (int)(hd / 16), Qo = 8;
  while (Qo > 1 && Qo * (nv + 1) > 31) Qo /= 2;
  int B = Qo * nv; /* the broadcasts B..B + Qo - 1, a V vector in 31 */
  int64_t qrow = H * hd * 4;
  for (int s = 0; s < 16 / Qo; s++) {
    int yl = bn_asm_new_label(a), zero = bn_asm_new_label(a), go = bn_asm_new_label(a), store = bn_asm_new_label(a);
#define YV(i, v) bn_memx(RCX, RBX, 1, (int32_t)((s * Qo + (i)) * qrow + 64 * (v)), 64)
    op(a, "cmp", bn_mem(RSP, BLO, 8), bn_imm(0), NONE);
    op(a, "je", bn_label(zero), NONE, NONE);
    for (int i = 0; i < Qo; i++)
      for (int v = 0; v < nv; v++) op(a, "vmovups", bn_vec(i * nv + v, 64), YV(i, v), NONE);
    op(a, "jmp", bn_label(go), NONE, NONE);
    bn_asm_bind(a, zero);
    for (int c = 0; c < B; c++) op(a, "vpxord", bn_vec(c, 64), bn_vec(c, 64), bn_vec(c, 64));
    bn_asm_bind(a, go);
    op(a, "mov", bn_gp(R14), bn_mem(RSP, BLO, 8), NONE);
    op(a, "imul", bn_gp(R15), bn_gp(R14), bn_imm(hd * es));
    op(a, "add", bn_gp(R15), bn_gp(R12), NONE);
    op(a, "add", bn_gp(R15), bn_gp(RDX), NONE);
    op(a, "shl", bn_gp(R14), bn_imm(6), NONE);
    op(a, "lea", bn_gp(R14), bn_memx(RBP, R14, 1, 4 * s * Qo, 0), NONE);
    op(a, "mov", bn_gp(RAX), bn_mem(RSP, BHI, 8), NONE);
    op(a, "shl", bn_gp(RAX), bn_imm(6), NONE);
    op(a, "lea", bn_gp(RAX), bn_memx(RBP, RAX, 1, 4 * s * Qo, 0), NONE);
    bn_asm_bind(a, yl);
    for (int i = 0; i < Qo; i++) op(a, "vbroadcastss", bn_vec(B + i, 64), bn_mem(R14, 4 * i, 4), NONE);
    for (int v = 0; v < nv; v++) {
      load_kv(a, es, 31, 64, R15, 16 * es * v);
      for (int i = 0; i < Qo; i++) op(a, "vfmadd231ps", bn_vec(i * nv + v, 64), bn_vec(B + i, 64), bn_vec(31, 64));
    }
    op(a, "add", bn_gp(R14), bn_imm(64), NONE);
    op(a, "add", bn_gp(R15), bn_imm(hd * es), NONE);
    op(a, "cmp", bn_gp(R14), bn_gp(RAX), NONE);
    op(a, "jb", bn_label(yl), NONE, NONE);
    op(a, "cmp", bn_mem(RSP, BHI, 8), bn_gp(R13), NONE);
    op(a, "jne", bn_label(store), NONE, NONE);
    sums_at(a);
    for (int i = 0; i < Qo; i++) {
      op(a, "vbroadcastss", bn_vec(B, 64), bn_mem(RAX, 4 * (s * Qo + i), 4), NONE);
      for (int v = 0; v < nv; v++) op(a, "vmulps", bn_vec(i * nv + v, 64), bn_vec(i * nv + v, 64), bn_vec(B, 64));
    }
    bn_asm_bind(a, store);
    for (int i = 0; i < Qo; i++)
      for (int v = 0; v < nv; v++) op(a, "vmovups", YV(i, v), bn_vec(i * nv + v, 64), NONE);
#undef YV
  }
}

/* For tile16 r10 of head r11: rbx, r12 (head_offsets), r13 = n = pos + t + 16, rbp = its transposed
 * score rows (scores + t n_ctx floats). */
static void tile16_at(bn_asm *a, int64_t hd, int64_t H, int64_t kvh, int es) {
  head_offsets(a, hd, H, kvh, es, AR + 24);
  op(a, "mov", bn_gp(R13), bn_mem(RSP, AR, 8), NONE);
  op(a, "lea", bn_gp(R13), bn_memx(R13, R10, 1, 16, 0), NONE);
  op(a, "mov", bn_gp(RBP), bn_gp(R10), NONE);
  op(a, "imul", bn_gp(RBP), bn_mem(RSP, 0, 8), NONE);
  op(a, "add", bn_gp(RBP), bn_gp(R8), NONE);
}

typedef void tile_body(bn_asm *a, int64_t hd, int64_t H, int es, int tiles);

/* body() on every tile16 (r10 = t = 0, 16, .. while t + 16 <= T; from32: from T rounded down to 32) or, tiles
 * = 2, on every pair of them (t = 0, 32, .. while t + 32 <= T; r13 then the second's n), that sees keys of the
 * block [BLO, BLO + KB) (BLO < n), with BHI = min(BLO + KB, n); or, blocks 0, on every tile. */
static void tiles16(bn_asm *a, int64_t hd, int64_t H, int64_t kvh, int es, int blocks, int tiles, int from32, tile_body *body) {
  int tl = bn_asm_new_label(a), next = bn_asm_new_label(a), lo = bn_asm_new_label(a), end = bn_asm_new_label(a);
  if (from32) {
    op(a, "mov", bn_gp(R10), bn_mem(RSP, 64, 8), NONE);
    op(a, "and", bn_gp(R10), bn_imm(-32), NONE);
  } else op(a, "xor", bn_gpd(R10), bn_gpd(R10), NONE);
  bn_asm_bind(a, tl);
  op(a, "lea", bn_gp(RAX), bn_mem(R10, 16 * tiles, 0), NONE);
  op(a, "cmp", bn_gp(RAX), bn_mem(RSP, 64, 8), NONE);
  op(a, "jg", bn_label(end), NONE, NONE);
  tile16_at(a, hd, H, kvh, es);
  if (tiles > 1) op(a, "add", bn_gp(R13), bn_imm(16), NONE);
  if (blocks) {
    op(a, "mov", bn_gp(RAX), bn_mem(RSP, BLO, 8), NONE);
    op(a, "cmp", bn_gp(RAX), bn_gp(R13), NONE);
    op(a, "jge", bn_label(next), NONE, NONE);
    op(a, "add", bn_gp(RAX), bn_imm(KB), NONE);
    op(a, "cmp", bn_gp(RAX), bn_gp(R13), NONE);
    op(a, "jle", bn_label(lo), NONE, NONE);
    op(a, "mov", bn_gp(RAX), bn_gp(R13), NONE);
    bn_asm_bind(a, lo);
    op(a, "mov", bn_mem(RSP, BHI, 8), bn_gp(RAX), NONE);
  }
  body(a, hd, H, es, tiles);
  bn_asm_bind(a, next);
  op(a, "add", bn_gp(R10), bn_imm(16 * tiles), NONE);
  op(a, "jmp", bn_label(tl), NONE, NONE);
  bn_asm_bind(a, end);
}

/* The scores of the block's keys for a tile16 (or a pair: tiles = 2): Q^T (the queries transposed into the
 * frame, 16 x 16 blocks, a tile's after the other's), then groups of 16 keys from BLO to BHI, a group never
 * past n (the last one then ends at n, overlapping the one before: the same sums again; a pair's first tile
 * also scores the keys only its second sees, rows that nothing reads). */
static void scores16(bn_asm *a, int64_t hd, int64_t H, int es, int tiles) {
  int gl = bn_asm_new_label(a), full = bn_asm_new_label(a);
  int64_t qrow = H * hd * 4;
  for (int g = 0; g < tiles; g++)
    for (int db = 0; db < hd / 16; db++) {
      for (int i = 0; i < 16; i++)
        op(a, "vmovups", bn_vec(i, 64), bn_memx(RDI, RBX, 1, (int32_t)((16 * g + i) * qrow + 64 * db), 64), NONE);
      transpose16(a);
      for (int j = 0; j < 16; j++)
        op(a, "vmovaps", bn_mem(RSP, (int32_t)(QT + g * hd * 64 + 64 * (16 * db + j)), 64), bn_vec(j, 64), NONE);
    }
  op(a, "mov", bn_gp(R14), bn_mem(RSP, BLO, 8), NONE);
  bn_asm_bind(a, gl);
  op(a, "lea", bn_gp(RAX), bn_mem(R14, 16, 0), NONE);
  op(a, "cmp", bn_gp(RAX), bn_gp(R13), NONE);
  op(a, "jle", bn_label(full), NONE, NONE);
  op(a, "lea", bn_gp(R14), bn_mem(R13, -16, 0), NONE);
  bn_asm_bind(a, full);
  group(a, hd, es, tiles);
  op(a, "add", bn_gp(R14), bn_imm(16), NONE);
  op(a, "cmp", bn_gp(R14), bn_mem(RSP, BHI, 8), NONE);
  op(a, "jl", bn_label(gl), NONE, NONE);
}

/* body() on every tile16 for each block of KB keys, from BLO = 0 while BLO < pos + T; with pairs, on pairs
 * of tiles first, then on the tile left. */
static void blocks16(bn_asm *a, int64_t hd, int64_t H, int64_t kvh, int es, tile_body *body, int pairs) {
  int bl = bn_asm_new_label(a);
  op(a, "mov", bn_mem(RSP, BLO, 8), bn_imm(0), NONE);
  bn_asm_bind(a, bl);
  if (pairs) {
    tiles16(a, hd, H, kvh, es, 1, 2, 0, body);
    tiles16(a, hd, H, kvh, es, 1, 1, 1, body);
  } else tiles16(a, hd, H, kvh, es, 1, 1, 0, body);
  op(a, "mov", bn_gp(RAX), bn_mem(RSP, BLO, 8), NONE);
  op(a, "add", bn_gp(RAX), bn_imm(KB), NONE);
  op(a, "mov", bn_mem(RSP, BLO, 8), bn_gp(RAX), NONE);
  op(a, "sub", bn_gp(RAX), bn_mem(RSP, 64, 8), NONE);
  op(a, "cmp", bn_gp(RAX), bn_mem(RSP, AR, 8), NONE);
  op(a, "jl", bn_label(bl), NONE, NONE);
}

/* Every tile of 16 tokens (t + 16 <= T), tokens in the lanes, for heads h0..h1: each head's scores, a
 * block of KB keys at a time read by every tile before the next (a deep context's K and V rows come from
 * memory once per call, not once per tile), the softmaxes, then the outputs block by block likewise
 * (the partial sums in y between blocks: each sum runs over its keys in order, as without blocks). */
static void heads16(bn_asm *a, int64_t hd, int64_t H, int64_t kvh, int es) {
  int hl = bn_asm_new_label(a), end = bn_asm_new_label(a);
  op(a, "mov", bn_gp(R11), bn_mem(RSP, AR + 8, 8), NONE);
  op(a, "cmp", bn_gp(R11), bn_mem(RSP, AR + 16, 8), NONE);
  op(a, "jge", bn_label(end), NONE, NONE);
  bn_asm_bind(a, hl);
  blocks16(a, hd, H, kvh, es, scores16, 1);
  tiles16(a, hd, H, kvh, es, 0, 1, 0, softmax16);
  blocks16(a, hd, H, kvh, es, output16, 0);
  op(a, "inc", bn_gp(R11), NONE, NONE);
  op(a, "cmp", bn_gp(R11), bn_mem(RSP, AR + 16, 8), NONE);
  op(a, "jl", bn_label(hl), NONE, NONE);
  bn_asm_bind(a, end);
}

static void attention_tiled(bn_asm *a, int64_t hd, int64_t H, int64_t kvh, int es) {
  int t16 = bn_asm_new_label(a), t4 = bn_asm_new_label(a), t1 = bn_asm_new_label(a), done = bn_asm_new_label(a);
  enter(a, 6);
  op(a, "mov", bn_gp(RAX), bn_gp(RSP), NONE); /* the frame 64-byte aligned, the caller's rsp at [rsp + 72] */
  op(a, "sub", bn_gp(RSP), bn_imm(QT + hd * 64 * (es == 2 ? 3 : 2)), NONE);
  op(a, "and", bn_gp(RSP), bn_imm(-64), NONE);
  op(a, "mov", bn_mem(RSP, 72, 8), bn_gp(RAX), NONE);
  for (int k = 0; k < 4; k++) {
    op(a, "mov", bn_gp(R10), bn_mem(RAX, ARGS6 + 8 * k, 8), NONE);
    op(a, "mov", bn_mem(RSP, AR + 8 * k, 8), bn_gp(R10), NONE);
  }
  op(a, "mov", bn_gp(RAX), bn_mem(RSP, AR + 24, 8), NONE);
  op(a, "shl", bn_gp(RAX), bn_imm(2), NONE);
  op(a, "mov", bn_mem(RSP, 0, 8), bn_gp(RAX), NONE);
  op(a, "shl", bn_gp(RAX), bn_imm(4), NONE);
  op(a, "mov", bn_mem(RSP, TB, 8), bn_gp(RAX), NONE); /* a tile's 16 score rows */
  op(a, "mov", bn_mem(RSP, 64, 8), bn_gp(R9), NONE);
  op(a, "cmp", bn_gp(R9), bn_imm(16), NONE);
  op(a, "jl", bn_label(t16), NONE, NONE);
  heads16(a, hd, H, kvh, es);
  bn_asm_bind(a, t16);
  op(a, "mov", bn_gp(R10), bn_mem(RSP, 64, 8), NONE); /* the tokens left: from T rounded down to 16 */
  op(a, "and", bn_gp(R10), bn_imm(-16), NONE);
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
  op(a, "mov", bn_gp(RSP), bn_mem(RSP, 72, 8), NONE);
  leave(a, 6);
}

/* bn_attn_kernel (q rdi, kc rsi, vc rdx, y rcx, scores r8, T r9; pos, h0, h1, n_ctx on the stack): the
 * AVX-512 kernel above, or on AVX2 (16 registers) one token at a time: per head the scores q.k_j /
 * sqrt(hd) of positions j <= pos + t (q read from memory, two chains), their max, e_j = exp(score_j -
 * max) and their sum (8 at a time, the tail by vmaskmovps), then y = sum_j e_j v_j (1 / sum) in slices of 8
 * vectors, each a pass over the positions. Float lanes as the LLVM kernel.
 * Registers: r10 t, r11 h, rbx the row of q and y, r12 the KV head's offset, r13 the positions, r14 j,
 * r15 k_j or v_j; the scale 6, the max 7, the sum 5 (then 1 / sum), y's sums 8..15. */
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
  constant(a, 0, 1.0, 1);
  op(a, "vdivss", bn_vec(5, 16), bn_vec(0, 16), bn_vec(5, 16)); /* 1 / sum */
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
      op(a, "vmulps", bn_vec(QR + v, W), bn_vec(QR + v, W), bn_vec(5, W));
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
