/* The ternary matmul and the norm + quantize kernels (its prologue), AVX-512 (VNNI) or AVX2. */
#include "../../ir/quant.h"
#include "emit.h"

/* The ternary matmul (bn_mm_kernel: qa rdi, w rsi, out rdx, resid rcx, T r8, n0 r9, n1 on the stack), AVX-512
 * VNNI. A TP2 group's 64 bytes shifted by 0, 2, 4, 6 and masked are the codes (trit + 1) of 64
 * elements each, multiplied with the 64 activations by vpdpbusd; the lane sum less the token's sum of
 * codes (qa8's "offset trick") is the exact int32 sum, dequantized as the reference does:
 * (float)((double)acc * row_scale / s), plus the residual. A whole block of 4 rows, whose groups TP2
 * interleaves (bn_tp2_group), is a tile read front to back: per group four activation vectors loaded
 * once feed the 16 products of its rows, two chains a row; a short last block goes row by row, a
 * row's groups then 64 x its rows apart. */
enum { AHEAD_T1 = 12288 }; /* the same over TP1, whose bytes take longer each (bench/README.md) */
enum { BLOCK = 24 };   /* prefill: rows a token tile's activations serve from L1 (bench/README.md) */

/* What a matmul kernel's pieces share: vector bytes W (64 AVX-512 VNNI, 32 AVX2), the shape, the
 * bn_mm_mode; the weights' layout (t1: TP1, else TP2), the byte offset of their row scales in w and
 * of one block of 4 rows. */
typedef struct {
  int W, t1, mode, scratch; /* scratch: the weights are TP1 unpacked into TP2 at rsp from row rbp on (unpack_t1) */
  int gs;                   /* TG2: a scale per 256-group (1) or per 128 (2, TG2H); 0: a row's */
  int qimg;                 /* TG2 decode: the token's group sums are at rsp + the group's offset (g_token_sums) */
  int64_t K, N, block;
  int32_t scales, ahead; /* ahead: bytes of the weight stream a TP2/TG2 decode tile prefetches ahead */
  int lanes;             /* a prompt over TP2/TP1 with K <= PR_MAXK may put rows in the lanes (prefill_r) */
  const uint8_t *lut;    /* TP1's lookup tables (AVX-512 VBMI: unpack_lut), or NULL */
} mmk;

/* Row r9 + r of token r13 + t (its QA8 row at r14 + t row_bytes) from its lane sum in eax; r11 = r13 N + r9.
 * Scratch: vectors s0 and s1. */
static void epilogue(bn_asm *a, const mmk *m, int r, int t, int s0, int s1) {
  int64_t K = m->K, N = m->N;
  int mode = m->mode;
  int32_t meta = (int32_t)((K + 63) / 64 * 64), row = (int32_t)(meta + 64) * t, at = (int32_t)(4 * (t * N + r));
  op(a, "sub", bn_gpd(RAX), bn_mem(R14, row + meta + 4, 4), NONE); /* less the sum of the codes */
  if (mode == BN_MM_ACC) {
    op(a, "mov", bn_memx(RDX, R11, 4, at, 4), bn_gpd(RAX), NONE);
    return;
  }
  op(a, "vcvtsi2sd", bn_vec(s0, 16), bn_vec(s0, 16), bn_gpd(RAX));
  op(a, "vcvtss2sd", bn_vec(s1, 16), bn_vec(s1, 16), bn_memx(RSI, R9, 4, m->scales + 4 * r, 4)); /* row scale */
  op(a, "vmulsd", bn_vec(s0, 16), bn_vec(s0, 16), bn_vec(s1, 16));
  op(a, "vcvtss2sd", bn_vec(s1, 16), bn_vec(s1, 16), bn_mem(R14, row + meta, 4)); /* the token's scale */
  op(a, "vdivsd", bn_vec(s0, 16), bn_vec(s0, 16), bn_vec(s1, 16));
  op(a, "vcvtsd2ss", bn_vec(s0, 16), bn_vec(s0, 16), bn_vec(s0, 16));
  if (mode == BN_MM_DQ_ADD) op(a, "vaddss", bn_vec(s0, 16), bn_vec(s0, 16), bn_memx(RCX, R11, 4, at, 4));
  op(a, "vmovss", bn_memx(RDX, R11, 4, at, 4), bn_vec(s0, 16), NONE);
}

/* The 4 x 4 tile's epilogue on vectors: the 16 accumulators (row r, token t in vector 4 r + t) reduced
 * by tree16 into one vector whose lane 4 t + r holds their sum; then the same operations per lane as the
 * scalar epilogue, in double for 8 lanes at a time, so the same bits. Uses every vector but 31. */
static void tile_epilogue(bn_asm *a, const mmk *m) {
  int64_t K = m->K, N = m->N;
  int mode = m->mode;
  int32_t rb = (int32_t)((K + 63) / 64 * 64 + 64), meta = rb - 64, nb = (int32_t)(4 * N);
  tree16(a, "vpaddd");
  for (int t = 0; t < 4; t++) /* less each token's sum of codes */
    op(a, "vpbroadcastd", bn_vec(20 + t, 16), bn_mem(R14, rb * t + meta + 4, 4), NONE);
  for (int t = 1; t < 4; t++)
    bn_asm_emit(a, bn_asm_inst("vinserti32x4"), bn_vec(7, 64), bn_vec(t == 1 ? 20 : 7, 64), bn_vec(20 + t, 16), bn_imm(t));
  op(a, "vpsubd", bn_vec(6, 64), bn_vec(6, 64), bn_vec(7, 64));
  if (mode == BN_MM_ACC) {
    for (int t = 0; t < 4; t++)
      op(a, "vextracti32x4", bn_memx(RDX, R11, 4, nb * t, 16), bn_vec(6, 64), bn_imm(t));
    return;
  }
  op(a, "vcvtps2pd", bn_vec(8, 32), bn_memx(RSI, R9, 4, m->scales, 16), NONE); /* rows' scales */
  bn_asm_emit(a, bn_asm_inst("vinsertf64x4"), bn_vec(8, 64), bn_vec(8, 64), bn_vec(8, 32), bn_imm(1));
  for (int h = 0; h < 2; h++) { /* tokens 2 h and 2 h + 1: 8 lanes */
    for (int i = 0; i < 2; i++) {
      op(a, "vcvtss2sd", bn_vec(9 + i, 16), bn_vec(9 + i, 16), bn_mem(R14, rb * (2 * h + i) + meta, 4));
      op(a, "vbroadcastsd", bn_vec(9 + i, 32), bn_vec(9 + i, 16), NONE);
    }
    bn_asm_emit(a, bn_asm_inst("vinsertf64x4"), bn_vec(9, 64), bn_vec(9, 64), bn_vec(10, 32), bn_imm(1));
    if (h) bn_asm_emit(a, bn_asm_inst("vextracti64x4"), bn_vec(12, 32), bn_vec(6, 64), bn_imm(1), NONE);
    op(a, "vcvtdq2pd", bn_vec(11, 64), bn_vec(h ? 12 : 6, 32), NONE);
    op(a, "vmulpd", bn_vec(11, 64), bn_vec(11, 64), bn_vec(8, 64));
    op(a, "vdivpd", bn_vec(11, 64), bn_vec(11, 64), bn_vec(9, 64));
    op(a, "vcvtpd2ps", bn_vec(11, 32), bn_vec(11, 64), NONE);
    bn_asm_emit(a, bn_asm_inst("vextractf32x4"), bn_vec(13, 16), bn_vec(11, 32), bn_imm(1), NONE);
    for (int i = 0; i < 2; i++) {
      int v = i ? 13 : 11, t = 2 * h + i;
      if (mode == BN_MM_DQ_ADD) op(a, "vaddps", bn_vec(v, 16), bn_vec(v, 16), bn_memx(RCX, R11, 4, nb * t, 16));
      op(a, "vmovups", bn_memx(RDX, R11, 4, nb * t, 16), bn_vec(v, 16), NONE);
    }
  }
}

/* r11 = the tile's first output's index, r13 N + r9. */
static void out_index(bn_asm *a, int64_t N) {
  op(a, "mov", bn_gp(R11), bn_gp(R13), NONE);
  op(a, "imul", bn_gp(R11), bn_gp(R11), bn_imm(N));
  op(a, "add", bn_gp(R11), bn_gp(R9), NONE);
}

/* A tile's group loop: the next group (256 bytes on in a block, r12 for one row) back to grp while K
 * lasts; then out_index. */
static void group_end(bn_asm *a, const mmk *m, int rows, int grp) {
  if (rows > 1) op(a, "add", bn_gp(R15), bn_imm(256), NONE);
  else op(a, "add", bn_gp(R15), bn_gp(R12), NONE);
  op(a, "add", bn_gp(R11), bn_imm(256), NONE);
  op(a, "cmp", bn_gp(R11), bn_imm(m->K), NONE);
  op(a, "jl", bn_label(grp), NONE, NONE);
  out_index(a, m->N);
}

/* One tile: `rows` rows (from rbx; 2 or 4 in a block, whose groups are 256 bytes apart, or 1 row, its
 * groups r12 bytes apart) by tt tokens (from r13, its QA8 row at r14): r15 the group, r11 the
 * activations' offset. A group's codes are unpacked once for the tile's tokens and each activation
 * vector loaded once for its rows; each (row, token) accumulates in `chains` vectors (two when alone,
 * to hide vpdpbusd's latency). Up to 16 accumulators leave CV, WV, QV as they are; 24 (2 x 12) put the
 * codes in 24..27 and the activations in 30. */
static void tile(bn_asm *a, const mmk *m, int rows, int tt) {
  int64_t K = m->K, row_bytes = (K + 63) / 64 * 64 + 64;
  int chains = tt == 1 ? 2 : 1, n_acc = rows * tt * chains;
  int wv = n_acc > 16 ? 24 : WV, cv = n_acc > 16 ? 24 + rows : CV, qv = n_acc > 16 ? 30 : QV;
  int grp = bn_asm_new_label(a);
  for (int c = 0; c < n_acc; c++) op(a, "vpxord", bn_vec(c, 64), bn_vec(c, 64), bn_vec(c, 64));
  op(a, "mov", bn_gp(R15), bn_gp(RBX), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  bn_asm_bind(a, grp);
  for (int r = 0; r < rows; r++) {
    if (rows == 4) op(a, "prefetcht0", bn_mem(R15, m->ahead + 64 * r, 64), NONE, NONE); /* the weight stream (decode, a few tokens) */
    op(a, "vmovdqu64", bn_vec(wv + r, 64), bn_mem(R15, 64 * r, 64), NONE);
  }
  for (int c = 0; c < 4; c++) { /* elements 64 c .. 64 c + 63 of the group: bits 2 c of each byte */
    for (int r = 0; r < rows; r++) {
      if (c) op(a, "vpsrlw", bn_vec(cv + r, 64), bn_vec(wv + r, 64), bn_imm(2 * c));
      op(a, "vpandd", bn_vec(cv + r, 64), bn_vec(c ? cv + r : wv + r, 64), bn_vec(MASK, 64));
    }
    for (int t = 0; t < tt; t++) {
      op(a, "vmovdqu64", bn_vec(qv, 64), bn_memx(R14, R11, 1, (int32_t)(row_bytes * t + 64 * c), 64), NONE);
      for (int r = 0; r < rows; r++)
        op(a, "vpdpbusd", bn_vec((r * tt + t) * chains + c % chains, 64), bn_vec(cv + r, 64), bn_vec(qv, 64));
    }
  }
  group_end(a, m, rows, grp);
  if (rows == 4 && tt == 4) tile_epilogue(a, m);
  else
    for (int r = 0; r < rows; r++)
      for (int t = 0; t < tt; t++) {
        int v = (r * tt + t) * chains;
        if (chains == 2) op(a, "vpaddd", bn_vec(v, 64), bn_vec(v, 64), bn_vec(v + 1, 64));
        hsum(a, v, S0, 64);
        epilogue(a, m, r, t, S0, S1);
      }
}

/* TP1's constants (AVX-512): bytes of 1, 85 and 170 (the codes' thresholds). AVX2 keeps its own in the
 * red zone (RED: 0x80, 85 - 128, 170 - 128, int16 ones, 32 bytes each; matmul_rows stores them). */
enum { ONE = 26, T85 = 30, T170 = 27, RED = -128 };

/* AVX-512: masks k (x > 85) and k + 1 (x > 170) of TP1's bytes x; c = their sum is the code. */
static void thresholds(bn_asm *a, int k, int x) {
  bn_asm_emit(a, bn_asm_inst("vpcmpub"), bn_kreg(k), bn_vec(x, 64), bn_vec(T85, 64), bn_imm(6)); /* > */
  bn_asm_emit(a, bn_asm_inst("vpcmpub"), bn_kreg(k + 1), bn_vec(x, 64), bn_vec(T170, 64), bn_imm(6));
}

/* AVX2: c = the codes of TP1's bytes x, |(x ^ 0x80 > 85 - 128) + (x ^ 0x80 > 170 - 128)| by signed
 * compares; scratch t. */
static void codes_avx2(bn_asm *a, int c, int x, int t) {
  op(a, "vpxor", bn_vec(t, 32), bn_vec(x, 32), bn_mem(RSP, RED, 32));
  op(a, "vpcmpgtb", bn_vec(c, 32), bn_vec(t, 32), bn_mem(RSP, RED + 32, 32));
  op(a, "vpcmpgtb", bn_vec(t, 32), bn_vec(t, 32), bn_mem(RSP, RED + 64, 32));
  op(a, "vpaddb", bn_vec(c, 32), bn_vec(c, 32), bn_vec(t, 32));
  op(a, "vpabsb", bn_vec(c, 32), bn_vec(c, 32), NONE);
}

/* x = 3 x mod 256, byte by byte (the next position's bytes); scratch t. */
static void triple(bn_asm *a, int x, int t, int W) {
  op(a, "vpaddb", bn_vec(t, W), bn_vec(x, W), bn_vec(x, W));
  op(a, "vpaddb", bn_vec(x, W), bn_vec(t, W), bn_vec(x, W));
}

/* One TP1 group of m positions (64 x m elements; r15 its bytes, r11 its activations): the rows' bytes
 * x0 loaded once, x_(p+1) = 3 x_p by two byte adds. Decode (one token) multiplies the bytes themselves:
 * chain 0 sums x_p a_p, chain 1 x_(p+1) a_p, and 256 c_p = 3 x_p - x_(p+1) makes 3 chain 0 - chain 1
 * = 256 x the sum of codes times activations (every term's carry out of the byte is the code): two
 * vpdpbusd and two adds a row and position, no unpacking. A token tile unpacks the codes once for its
 * tokens instead: c = (x > 85) + (x > 170) by two compares into masks. */
static void group_t1(bn_asm *a, const mmk *m, int rows, int tt, int pos) {
  int64_t row_bytes = (m->K + 63) / 64 * 64 + 64;
  int chains = tt == 1 ? 2 : 1;
  for (int r = 0; r < rows; r++) {
    if (rows == 4 && tt == 1) op(a, "prefetcht0", bn_mem(R15, AHEAD_T1 + 64 * r, 64), NONE, NONE); /* decode's stream */
    op(a, "vmovdqu64", bn_vec(WV + r, 64), bn_mem(R15, 64 * r, 64), NONE);
  }
  for (int p = 0; p < pos; p++) {
    if (tt == 1) {
      op(a, "vmovdqu64", bn_vec(QV, 64), bn_memx(R14, R11, 1, 64 * p, 64), NONE);
      for (int r = 0; r < rows; r++) op(a, "vpdpbusd", bn_vec(2 * r, 64), bn_vec(WV + r, 64), bn_vec(QV, 64));
      for (int r = 0; r < rows; r++) triple(a, WV + r, CV + r, 64);
      for (int r = 0; r < rows; r++) op(a, "vpdpbusd", bn_vec(2 * r + 1, 64), bn_vec(WV + r, 64), bn_vec(QV, 64));
      continue;
    }
    for (int r = 0; r < rows; r++) {
      int k = 1 + 2 * (r % 3);
      thresholds(a, k, WV + r);
      bn_asm_mask(a, k, 1);
      op(a, "vmovdqu8", bn_vec(CV + r, 64), bn_vec(ONE, 64), NONE);
      bn_asm_mask(a, k + 1, 0);
      op(a, "vpaddb", bn_vec(CV + r, 64), bn_vec(CV + r, 64), bn_vec(ONE, 64));
      if (p + 1 < pos) triple(a, WV + r, S0, 64);
    }
    for (int t = 0; t < tt; t++) {
      op(a, "vmovdqu64", bn_vec(QV, 64), bn_memx(R14, R11, 1, (int32_t)(row_bytes * t + 64 * p), 64), NONE);
      for (int r = 0; r < rows; r++) op(a, "vpdpbusd", bn_vec((r * tt + t) * chains, 64), bn_vec(CV + r, 64), bn_vec(QV, 64));
    }
  }
}

/* A TP1 tile's groups (its accumulators zeroed): r15 from rbx, r11 from 0; whole groups of 5 positions in a
 * loop (r15 on by 64 x the block's rows: 256, or r12 for one row), then a last group of K % 320; then
 * out_index. */
typedef void t1_group(bn_asm *a, const mmk *m, int rows, int tt, int pos);
static void t1_groups(bn_asm *a, const mmk *m, int rows, int tt, t1_group *group) {
  int64_t full = m->K / 320 * 320;
  int grp = bn_asm_new_label(a);
  op(a, "mov", bn_gp(R15), bn_gp(RBX), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  if (full) {
    bn_asm_bind(a, grp);
    group(a, m, rows, tt, 5);
    if (rows > 1) op(a, "add", bn_gp(R15), bn_imm(256), NONE);
    else op(a, "add", bn_gp(R15), bn_gp(R12), NONE);
    op(a, "add", bn_gp(R11), bn_imm(320), NONE);
    op(a, "cmp", bn_gp(R11), bn_imm(full), NONE);
    op(a, "jl", bn_label(grp), NONE, NONE);
  }
  if (m->K > full) group(a, m, rows, tt, (int)(m->K - full) / 64);
  out_index(a, m->N);
}

/* The TP1 tile (AVX-512 VNNI), as tile: 4 x 4, 4 x 1 (decode), 1 x 4, 1 x 1. */
static void tile_t1(bn_asm *a, const mmk *m, int rows, int tt) {
  int chains = tt == 1 ? 2 : 1, n_acc = rows * tt * chains;
  for (int c = 0; c < n_acc; c++) op(a, "vpxord", bn_vec(c, 64), bn_vec(c, 64), bn_vec(c, 64));
  t1_groups(a, m, rows, tt, group_t1);
  if (rows == 4 && tt == 4) return tile_epilogue(a, m);
  for (int r = 0; r < rows; r++)
    for (int t = 0; t < tt; t++) {
      int v = (r * tt + t) * chains;
      if (chains == 2) { /* (3 chain 0 - chain 1) / 256, exact once summed */
        op(a, "vpaddd", bn_vec(S0, 64), bn_vec(v, 64), bn_vec(v, 64));
        op(a, "vpaddd", bn_vec(v, 64), bn_vec(S0, 64), bn_vec(v, 64));
        op(a, "vpsubd", bn_vec(v, 64), bn_vec(v, 64), bn_vec(v + 1, 64));
      }
      hsum(a, v, S0, 64);
      if (chains == 2) op(a, "sar", bn_gpd(RAX), bn_imm(8), NONE);
      epilogue(a, m, r, t, S0, S1);
    }
}

/* The AVX2 decode tile over TP1 (4 rows x 1 token; gp registers as tile's): per group, each 32-byte half
 * of the rows' bytes loaded once into ymm8..11; per position the codes (codes_avx2) times the activations
 * by vpmaddubsw, summed in int16 (10 products of at most 2 x 2 x 127 a group), widened by vpmaddwd with
 * ones; then x <- 3x. Accumulators ymm0..3, int16 sums 4..7, codes 12, scratch 13, activations 14. */
static void group_t1_avx2(bn_asm *a, const mmk *m, int rows, int tt, int pos) {
  (void)m, (void)rows, (void)tt; /* 4 x 1 */
  for (int h = 0; h < 2; h++) {
    if (h == 0)
      for (int r = 0; r < 4; r++) op(a, "prefetcht0", bn_mem(R15, AHEAD_T1 + 64 * r, 64), NONE, NONE);
    for (int r = 0; r < 4; r++) op(a, "vmovdqu", bn_vec(8 + r, 32), bn_mem(R15, 64 * r + 32 * h, 32), NONE);
    for (int p = 0; p < pos; p++) {
      op(a, "vmovdqu", bn_vec(14, 32), bn_memx(R14, R11, 1, 64 * p + 32 * h, 32), NONE);
      for (int r = 0; r < 4; r++) {
        codes_avx2(a, 12, 8 + r, 13);
        op(a, "vpmaddubsw", bn_vec(12, 32), bn_vec(12, 32), bn_vec(14, 32));
        op(a, "vpaddw", bn_vec(4 + r, 32), bn_vec(4 + r, 32), bn_vec(12, 32));
        if (p + 1 < pos) triple(a, 8 + r, 13, 32);
      }
    }
  }
  for (int r = 0; r < 4; r++) {
    op(a, "vpmaddwd", bn_vec(12, 32), bn_vec(4 + r, 32), bn_mem(RSP, RED + 96, 32));
    op(a, "vpaddd", bn_vec(r, 32), bn_vec(r, 32), bn_vec(12, 32));
    op(a, "vpxor", bn_vec(4 + r, 32), bn_vec(4 + r, 32), bn_vec(4 + r, 32));
  }
}

static void tile_t1_avx2(bn_asm *a, const mmk *m) {
  for (int i = 0; i < 8; i++) op(a, "vpxor", bn_vec(i, 32), bn_vec(i, 32), bn_vec(i, 32));
  t1_groups(a, m, 4, 1, group_t1_avx2);
  for (int r = 0; r < 4; r++) {
    hsum(a, r, 13, 32);
    epilogue(a, m, r, 0, 12, 13);
  }
}

/* TG2 (a scale per 256-group, TG2H per 128; codegen/llvm/gen_matmul.c has the story): each group's
 * int32 lanes, less the token's activation sums over the group (a vpdpbusd / vpmaddubsw with ones),
 * are reduced per (row, token), widened to double and multiplied by the group's scale into a double
 * sum: every product and partial sum is exact (ref/ref.h), so any order gives the reference's bits.
 * The red zone holds the tile's scale pointer (SPTR: row r9's scale of the group, 2 m bytes on a group,
 * m the block's rows), the scalar tiles' double sums (DSUM, four) and AVX2's int16 ones (ONES16). */
enum { SPTR = -8, DSUM = -48, ONES16 = -96, ONES = 26, IDXLO = 25, IDXHI = 27, D0 = 28 };

/* The tile's start: SPTR = w + scales + 2 ((r9 / 4) 4 G + r9 % 4), G the row's scales; the sums zeroed. */
static void g_start(bn_asm *a, const mmk *m, int n) {
  int64_t G = m->K / 256 * m->gs;
  op(a, "mov", bn_gp(RAX), bn_gp(R9), NONE);
  op(a, "shr", bn_gp(RAX), bn_imm(2), NONE);
  op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(8 * G - 8)); /* 8 G b + 2 (r9 % 4) = (8 G - 8) b + 2 r9 */
  op(a, "lea", bn_gp(RAX), bn_memx(RAX, R9, 2, m->scales, 0), NONE);
  op(a, "add", bn_gp(RAX), bn_gp(RSI), NONE);
  op(a, "mov", bn_mem(RSP, SPTR, 8), bn_gp(RAX), NONE);
  op(a, "xor", bn_gpd(RAX), bn_gpd(RAX), NONE);
  for (int k = 0; k < 4 && k < n; k++) op(a, "mov", bn_mem(RSP, DSUM + 8 * k, 8), bn_gp(RAX), NONE);
}

/* The next group's scales: 2 m bytes on (m = 4 within whole blocks; r12 / 32 for a single row). */
static void g_next(bn_asm *a, int rows) {
  if (rows > 1) op(a, "add", bn_mem(RSP, SPTR, 8), bn_imm(8), NONE);
  else {
    op(a, "mov", bn_gp(RAX), bn_gp(R12), NONE);
    op(a, "shr", bn_gp(RAX), bn_imm(5), NONE);
    op(a, "add", bn_mem(RSP, SPTR, 8), bn_gp(RAX), NONE);
  }
}

/* DSUM slot k += eax (a group's exact sum of row r) times row r's scale; vectors s0, s1 (xmm). */
static void g_scalar(bn_asm *a, int r, int k, int s0, int s1) {
  op(a, "vcvtsi2sd", bn_vec(s0, 16), bn_vec(s0, 16), bn_gpd(RAX));
  op(a, "mov", bn_gp(RAX), bn_mem(RSP, SPTR, 8), NONE);
  bn_asm_emit(a, bn_asm_inst("vpinsrw"), bn_vec(s1, 16), bn_vec(s1, 16), bn_mem(RAX, 2 * r, 2), bn_imm(0));
  op(a, "vcvtph2ps", bn_vec(s1, 16), bn_vec(s1, 16), NONE);
  op(a, "vcvtss2sd", bn_vec(s1, 16), bn_vec(s1, 16), bn_vec(s1, 16));
  op(a, "vmulsd", bn_vec(s0, 16), bn_vec(s0, 16), bn_vec(s1, 16));
  op(a, "vaddsd", bn_vec(s0, 16), bn_vec(s0, 16), bn_mem(RSP, DSUM + 8 * k, 8));
  op(a, "vmovsd", bn_mem(RSP, DSUM + 8 * k, 8), bn_vec(s0, 16), NONE);
}

/* Row r9 + r of token t from its double sum in xmm s0: (float)sum (ACC: its bits), or (float)((double)f / s)
 * as bn_ref_dequant with row scale 1, plus the residual. */
static void g_epilogue(bn_asm *a, const mmk *m, int r, int t, int s0, int s1) {
  int32_t meta = (int32_t)((m->K + 63) / 64 * 64), row = (int32_t)(meta + 64) * t, at = (int32_t)(4 * (t * m->N + r));
  op(a, "vcvtsd2ss", bn_vec(s0, 16), bn_vec(s0, 16), bn_vec(s0, 16));
  if (m->mode != BN_MM_ACC) {
    op(a, "vcvtss2sd", bn_vec(s0, 16), bn_vec(s0, 16), bn_vec(s0, 16));
    op(a, "vcvtss2sd", bn_vec(s1, 16), bn_vec(s1, 16), bn_mem(R14, row + meta, 4)); /* the token's scale */
    op(a, "vdivsd", bn_vec(s0, 16), bn_vec(s0, 16), bn_vec(s1, 16));
    op(a, "vcvtsd2ss", bn_vec(s0, 16), bn_vec(s0, 16), bn_vec(s0, 16));
    if (m->mode == BN_MM_DQ_ADD) op(a, "vaddss", bn_vec(s0, 16), bn_vec(s0, 16), bn_memx(RCX, R11, 4, at, 4));
  }
  op(a, "vmovss", bn_memx(RDX, R11, 4, at, 4), bn_vec(s0, 16), NONE);
}

/* The 4 x 4 tile's fold: tree16's lane 4 t + r (accumulators less the tokens' sums q0..q0+3), widened,
 * times the rows' scales [s0..s3 s0..s3] into D0 (tokens 0, 1) and D0 + 1 (2, 3). */
static void fold16(bn_asm *a, int q0) {
  for (int v = 0; v < 16; v++) op(a, "vpsubd", bn_vec(v, 64), bn_vec(v, 64), bn_vec(q0 + v % 4, 64));
  tree16(a, "vpaddd");
  op(a, "mov", bn_gp(RAX), bn_mem(RSP, SPTR, 8), NONE);
  op(a, "vcvtph2ps", bn_vec(8, 16), bn_mem(RAX, 0, 8), NONE);
  op(a, "vcvtps2pd", bn_vec(8, 32), bn_vec(8, 16), NONE);
  bn_asm_emit(a, bn_asm_inst("vinsertf64x4"), bn_vec(8, 64), bn_vec(8, 64), bn_vec(8, 32), bn_imm(1));
  bn_asm_emit(a, bn_asm_inst("vextracti64x4"), bn_vec(7, 32), bn_vec(6, 64), bn_imm(1), NONE);
  op(a, "vcvtdq2pd", bn_vec(6, 64), bn_vec(6, 32), NONE);
  op(a, "vcvtdq2pd", bn_vec(7, 64), bn_vec(7, 32), NONE);
  op(a, "vfmadd231pd", bn_vec(D0, 64), bn_vec(6, 64), bn_vec(8, 64));
  op(a, "vfmadd231pd", bn_vec(D0 + 1, 64), bn_vec(7, 64), bn_vec(8, 64));
}

/* The 4 x 1 tile's fold: accumulators 0..3 less the token's sum q0 folded to one vector whose 128-bit lane r
 * sums to row r's group sum; widened (rows 0, 1 and 2, 3), times each row's scale four times (IDXLO, IDXHI
 * pick them) into D0, D0 + 1. Vectors 10..15. */
static void fold4(bn_asm *a, int q0) {
  for (int r = 0; r < 4; r++) op(a, "vpsubd", bn_vec(r, 64), bn_vec(r, 64), bn_vec(q0, 64));
  for (int p = 0; p < 2; p++) { /* 512-bit halves folded: [A0+A2 A1+A3 B0+B2 B1+B3] */
    bn_asm_emit(a, bn_asm_inst("vshufi64x2"), bn_vec(10 + 2 * p, 64), bn_vec(2 * p, 64), bn_vec(2 * p + 1, 64), bn_imm(0x44));
    bn_asm_emit(a, bn_asm_inst("vshufi64x2"), bn_vec(11 + 2 * p, 64), bn_vec(2 * p, 64), bn_vec(2 * p + 1, 64), bn_imm(0xee));
    op(a, "vpaddd", bn_vec(10 + 2 * p, 64), bn_vec(10 + 2 * p, 64), bn_vec(11 + 2 * p, 64));
  }
  bn_asm_emit(a, bn_asm_inst("vshufi32x4"), bn_vec(11, 64), bn_vec(10, 64), bn_vec(12, 64), bn_imm(0x88));
  bn_asm_emit(a, bn_asm_inst("vshufi32x4"), bn_vec(13, 64), bn_vec(10, 64), bn_vec(12, 64), bn_imm(0xdd));
  op(a, "vpaddd", bn_vec(10, 64), bn_vec(11, 64), bn_vec(13, 64));
  bn_asm_emit(a, bn_asm_inst("vextracti64x4"), bn_vec(11, 32), bn_vec(10, 64), bn_imm(1), NONE);
  op(a, "vcvtdq2pd", bn_vec(10, 64), bn_vec(10, 32), NONE);
  op(a, "vcvtdq2pd", bn_vec(11, 64), bn_vec(11, 32), NONE);
  op(a, "mov", bn_gp(RAX), bn_mem(RSP, SPTR, 8), NONE);
  op(a, "vcvtph2ps", bn_vec(12, 16), bn_mem(RAX, 0, 8), NONE);
  op(a, "vcvtps2pd", bn_vec(12, 32), bn_vec(12, 16), NONE);
  op(a, "vpermpd", bn_vec(13, 64), bn_vec(IDXLO, 64), bn_vec(12, 64));
  op(a, "vpermpd", bn_vec(14, 64), bn_vec(IDXHI, 64), bn_vec(12, 64));
  op(a, "vfmadd231pd", bn_vec(D0, 64), bn_vec(10, 64), bn_vec(13, 64));
  op(a, "vfmadd231pd", bn_vec(D0 + 1, 64), bn_vec(11, 64), bn_vec(14, 64));
}

/* The 4 x 1 tiles' outputs: D0 holds rows 0, 1 in its 256-bit halves, D0 + 1 rows 2, 3; each half summed
 * into all its lanes (exact), then stored as g_epilogue does. */
static void g_rows4_epilogue(bn_asm *a, const mmk *m) {
  for (int d = 0; d < 2; d++) {
    op(a, "vpermilpd", bn_vec(9, 64), bn_vec(D0 + d, 64), bn_imm(0x55));
    op(a, "vaddpd", bn_vec(D0 + d, 64), bn_vec(D0 + d, 64), bn_vec(9, 64));
    bn_asm_emit(a, bn_asm_inst("vshuff64x2"), bn_vec(9, 64), bn_vec(D0 + d, 64), bn_vec(D0 + d, 64), bn_imm(0xb1));
    op(a, "vaddpd", bn_vec(D0 + d, 64), bn_vec(D0 + d, 64), bn_vec(9, 64));
    op(a, "vmovapd", bn_vec(10, 16), bn_vec(D0 + d, 16), NONE);
    bn_asm_emit(a, bn_asm_inst("vextractf64x4"), bn_vec(11, 32), bn_vec(D0 + d, 64), bn_imm(1), NONE);
    g_epilogue(a, m, 2 * d, 0, 10, 12);
    g_epilogue(a, m, 2 * d + 1, 0, 11, 12);
  }
}

/* Vectors d, d + 1: the 128-bit lanes of x, y folded (tree4's first two steps, pairs (x, y) of rows):
 * d = [x0 + x2, x1 + x3, y0 + y2, y1 + y3], d + 1 scratch. */
static void fold_halves(bn_asm *a, int d, int x, int y) {
  bn_asm_emit(a, bn_asm_inst("vshufi64x2"), bn_vec(d, 64), bn_vec(x, 64), bn_vec(y, 64), bn_imm(0x44));
  bn_asm_emit(a, bn_asm_inst("vshufi64x2"), bn_vec(d + 1, 64), bn_vec(x, 64), bn_vec(y, 64), bn_imm(0xee));
  op(a, "vpaddd", bn_vec(d, 64), bn_vec(d, 64), bn_vec(d + 1, 64));
}

/* d = [a's 4 lanes | b's | c's | d's] from fold_halves' [a, b] in p and [c, d] in q (scratch d + 1). */
static void fold_rows(bn_asm *a, int d, int p, int q) {
  bn_asm_emit(a, bn_asm_inst("vshufi32x4"), bn_vec(d, 64), bn_vec(p, 64), bn_vec(q, 64), bn_imm(0x88));
  bn_asm_emit(a, bn_asm_inst("vshufi32x4"), bn_vec(d + 1, 64), bn_vec(p, 64), bn_vec(q, 64), bn_imm(0xdd));
  op(a, "vpaddd", bn_vec(d, 64), bn_vec(d, 64), bn_vec(d + 1, 64));
}

/* The token's activation sums of every group of the call's one token (QA8 at rdi), in the lanes the decode
 * tile's fold leaves its sums in, each 64-byte vector at rsp + the group's offset in the row: TG2, the 16
 * lanes' sums folded as fold_halves and fold_rows fold a row (4 lanes), in each 128-bit lane; TG2H, the two
 * halves' folded once more, [h0: 2 lanes, h1: 2 lanes]. Vectors 0..3, QV, ONES. */
static void g_token_sums(bn_asm *a, const mmk *m) {
  int grp = bn_asm_new_label(a);
  splat_i(a, ONES, 0x01010101, 64);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  bn_asm_bind(a, grp);
  for (int h = 0; h < 2; h++) op(a, "vpxord", bn_vec(h, 64), bn_vec(h, 64), bn_vec(h, 64));
  for (int c = 0; c < 4; c++) {
    op(a, "vmovdqu64", bn_vec(QV, 64), bn_memx(RDI, R11, 1, 64 * c, 64), NONE);
    op(a, "vpdpbusd", bn_vec(m->gs == 2 ? c / 2 : 0, 64), bn_vec(ONES, 64), bn_vec(QV, 64));
  }
  for (int h = 0; h < m->gs; h++) { /* each to 4 lanes: j = the sum of lanes j, j + 4, j + 8, j + 12 */
    bn_asm_emit(a, bn_asm_inst("vextracti64x4"), bn_vec(2, 32), bn_vec(h, 64), bn_imm(1), NONE);
    op(a, "vpaddd", bn_vec(h, 32), bn_vec(h, 32), bn_vec(2, 32));
    op(a, "vextracti128", bn_vec(2, 16), bn_vec(h, 32), bn_imm(1));
    op(a, "vpaddd", bn_vec(h, 16), bn_vec(h, 16), bn_vec(2, 16));
  }
  if (m->gs == 2) {
    op(a, "vpunpcklqdq", bn_vec(2, 16), bn_vec(0, 16), bn_vec(1, 16));
    op(a, "vpunpckhqdq", bn_vec(3, 16), bn_vec(0, 16), bn_vec(1, 16));
    op(a, "vpaddd", bn_vec(0, 16), bn_vec(2, 16), bn_vec(3, 16));
  }
  bn_asm_emit(a, bn_asm_inst("vshufi32x4"), bn_vec(0, 64), bn_vec(0, 64), bn_vec(0, 64), bn_imm(0)); /* to every lane */
  op(a, "vmovdqa64", bn_memx(RSP, R11, 1, 0, 64), bn_vec(0, 64), NONE);
  op(a, "add", bn_gp(R11), bn_imm(256), NONE);
  op(a, "cmp", bn_gp(R11), bn_imm(m->K), NONE);
  op(a, "jl", bn_label(grp), NONE, NONE);
}

/* The decode tile over TG2 (4 rows, the call's one token): the rows' bytes in WV, accumulators 0..3 (TG2H:
 * 4..7 the second half); a group's fold is one tree (TG2H: of 8, the halves side by side, 2 lanes each),
 * less the token's sums of g_token_sums in one subtraction, widened and times the rows' scales (picked by
 * IDXLO, IDXHI) into D0, D0 + 1. */
static void tile_g_decode(bn_asm *a, const mmk *m) {
  int grp = bn_asm_new_label(a), h2 = m->gs == 2, nacc = h2 ? 8 : 4;
  static const int64_t PICK[2][2] = {{0x0101010100000000LL, 0x0303030302020202LL}, {0x0505010104040000LL, 0x0707030306060202LL}};
  g_start(a, m, 4);
  for (int v = 0; v < nacc; v++) op(a, "vpxord", bn_vec(v, 64), bn_vec(v, 64), bn_vec(v, 64));
  for (int d = 0; d < 2; d++) op(a, "vpxord", bn_vec(D0 + d, 64), bn_vec(D0 + d, 64), bn_vec(D0 + d, 64));
  for (int h = 0; h < 2; h++) { /* the scales' picks for lanes of rows 0, 1 and of rows 2, 3 */
    op(a, "mov", bn_gp(RAX), bn_imm(PICK[h2][h]), NONE);
    op(a, "vmovq", bn_vec(h ? IDXHI : IDXLO, 16), bn_gp(RAX), NONE);
    op(a, "vpmovzxbq", bn_vec(h ? IDXHI : IDXLO, 64), bn_vec(h ? IDXHI : IDXLO, 16), NONE);
  }
  op(a, "mov", bn_gp(R15), bn_gp(RBX), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  bn_asm_bind(a, grp);
  for (int r = 0; r < 4; r++) {
    op(a, "prefetcht0", bn_mem(R15, m->ahead + 64 * r, 64), NONE, NONE);
    op(a, "vmovdqu64", bn_vec(WV + r, 64), bn_mem(R15, 64 * r, 64), NONE);
  }
  for (int c = 0; c < 4; c++) {
    for (int r = 0; r < 4; r++) {
      if (c) op(a, "vpsrlw", bn_vec(CV + r, 64), bn_vec(WV + r, 64), bn_imm(2 * c));
      op(a, "vpandd", bn_vec(CV + r, 64), bn_vec(MASK, 64), bn_vec(c ? CV + r : WV + r, 64));
    }
    op(a, "vmovdqu64", bn_vec(QV, 64), bn_memx(R14, R11, 1, 64 * c, 64), NONE);
    for (int r = 0; r < 4; r++) op(a, "vpdpbusd", bn_vec(r + (h2 && c >= 2 ? 4 : 0), 64), bn_vec(CV + r, 64), bn_vec(QV, 64));
  }
  fold_halves(a, 8, 0, 1), fold_halves(a, 10, 2, 3); /* V in 8: row r's lanes in 128-bit lane r */
  fold_rows(a, 12, 8, 10);
  if (h2) { /* and the second half's, then [h0 h0 h1 h1] a row */
    fold_halves(a, 8, 4, 5), fold_halves(a, 10, 6, 7);
    fold_rows(a, 14, 8, 10);
    op(a, "vpunpcklqdq", bn_vec(8, 64), bn_vec(12, 64), bn_vec(14, 64));
    op(a, "vpunpckhqdq", bn_vec(9, 64), bn_vec(12, 64), bn_vec(14, 64));
    op(a, "vpaddd", bn_vec(12, 64), bn_vec(8, 64), bn_vec(9, 64));
  }
  op(a, "vpsubd", bn_vec(12, 64), bn_vec(12, 64), bn_memx(RSP, R11, 1, 0, 64)); /* less the token's sums */
  bn_asm_emit(a, bn_asm_inst("vextracti64x4"), bn_vec(13, 32), bn_vec(12, 64), bn_imm(1), NONE);
  op(a, "vcvtdq2pd", bn_vec(12, 64), bn_vec(12, 32), NONE);
  op(a, "vcvtdq2pd", bn_vec(13, 64), bn_vec(13, 32), NONE);
  op(a, "mov", bn_gp(RAX), bn_mem(RSP, SPTR, 8), NONE); /* the 4 rows' scales (TG2H: of each half) */
  op(a, "vcvtph2ps", bn_vec(14, 16 * (1 + h2)), bn_mem(RAX, 0, 8 * (1 + h2)), NONE);
  op(a, "vcvtps2pd", bn_vec(14, 32 * (1 + h2)), bn_vec(14, 16 * (1 + h2)), NONE);
  op(a, "vpermpd", bn_vec(15, 64), bn_vec(IDXLO, 64), bn_vec(14, 64));
  op(a, "vpermpd", bn_vec(14, 64), bn_vec(IDXHI, 64), bn_vec(14, 64));
  op(a, "vfmadd231pd", bn_vec(D0, 64), bn_vec(12, 64), bn_vec(15, 64));
  op(a, "vfmadd231pd", bn_vec(D0 + 1, 64), bn_vec(13, 64), bn_vec(14, 64));
  op(a, "add", bn_mem(RSP, SPTR, 8), bn_imm(8 * (1 + h2)), NONE);
  for (int v = 0; v < nacc; v++) op(a, "vpxord", bn_vec(v, 64), bn_vec(v, 64), bn_vec(v, 64));
  group_end(a, m, 4, grp);
  g_rows4_epilogue(a, m);
}

/* Prefill over TG2 (AVX-512 VNNI, 8 tokens or more, K <= PG_MAXK), tokens in the lanes instead of K: 16
 * rows' code bytes are transposed once (pg_unpack) so that a shift and a mask give a chunk of 64 bytes, row
 * r's 4 codes of elements 4i..4i+3 in dword r of chunk i, and each vpdpbusd multiplies a chunk by one
 * token's 4 activations broadcast ({1to16}) from its QA8 row: a row's sum over a group lands in its own
 * lane, so a group's fold is per token one subtraction of the token's group sum (pg_token_sums, once per
 * chunk of tokens), a widening and two multiply-adds by the rows' scales in double: no lane-sum tree.
 * Tiles of 16 rows x 8 tokens taking two folds a pass (pg_pass); the frame (below) on the stack. */
enum { PG_TT = 8, PG_PASS = 2, PG_TC = 256, PG_MAXK = 16384 }; /* a tile's tokens, folds a pass (pg_pass: 16
                                                                   accumulators), a chunk's tokens, K's limit */
enum { SC = 16, QX = 24, QY = 25, PW = 27, PX = 28, PY = 29, PP = 30 }; /* SC..: the folds' scales; PW: a chunk, PP (and
                                                                      PP - 4): 4; PX, PY, QX, QY: scratch */

/* The frame's parts, bytes from rsp: the codes (4 K), the scales (as doubles, 16 rows of fold f at f x its
 * elements, K bytes), the token sums (of fold f and chunk token j at 8 f x its elements + 4 j, 8 K), a tile's
 * double sums (token t's 16 at 128 t), slots. */
typedef struct {
  int32_t ss, qs, ds, slot, size;
} pg_frame;

static pg_frame pg_layout(const mmk *m) {
  int32_t K = (int32_t)m->K;
  int32_t slot = 13 * K + 128 * PG_TT;
  return (pg_frame){.ss = 4 * K, .qs = 5 * K, .ds = 13 * K, .slot = slot, .size = slot + 64};
}

/* The sums of the activations of each fold (a group; TG2H: half one) of tokens r13.. of this chunk (slot + 16
 * of them): at rbx + r11 x 8, rbx = the frame's sums + 4 j. Vectors 0..2, ONES; rbp, r14, rbx, r11, rax. */
static void pg_token_sums(bn_asm *a, const mmk *m, const pg_frame *f) {
  int64_t rb = (m->K + 63) / 64 * 64 + 64, gsz = 256 / m->gs;
  int tok = bn_asm_new_label(a), fold = bn_asm_new_label(a);
  splat_i(a, ONES, 0x01010101, 64); /* the tiles use its register */
  op(a, "mov", bn_gp(R14), bn_gp(R13), NONE);
  op(a, "imul", bn_gp(R14), bn_gp(R14), bn_imm(rb));
  op(a, "add", bn_gp(R14), bn_gp(RDI), NONE);
  op(a, "xor", bn_gpd(RBP), bn_gpd(RBP), NONE);
  bn_asm_bind(a, tok);
  op(a, "lea", bn_gp(RBX), bn_memx(RSP, RBP, 4, f->qs, 0), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  bn_asm_bind(a, fold);
  op(a, "vpxord", bn_vec(0, 64), bn_vec(0, 64), bn_vec(0, 64));
  for (int c = 0; c < gsz / 64; c++) {
    op(a, "vmovdqu64", bn_vec(1, 64), bn_memx(R14, R11, 1, 64 * c, 64), NONE);
    op(a, "vpdpbusd", bn_vec(0, 64), bn_vec(ONES, 64), bn_vec(1, 64));
  }
  hsum(a, 0, 2, 64);
  op(a, "mov", bn_memx(RBX, R11, 8, 0, 4), bn_gpd(RAX), NONE);
  op(a, "add", bn_gp(R11), bn_imm(gsz), NONE);
  op(a, "cmp", bn_gp(R11), bn_imm(m->K), NONE);
  op(a, "jl", bn_label(fold), NONE, NONE);
  op(a, "add", bn_gp(R14), bn_imm(rb), NONE);
  op(a, "inc", bn_gp(RBP), NONE, NONE);
  op(a, "cmp", bn_gp(RBP), bn_mem(RSP, f->slot + 16, 8), NONE);
  op(a, "jl", bn_label(tok), NONE, NONE);
}

/* Rows r9..r9+15's codes (4 whole blocks of w; with m->scratch, TP1's rows unpacked into TP2 at the stack
 * pointer lanes_loops saved in f's slot) to rsp: per 256-group, the 16 rows' 64 bytes transposed by dwords
 * (row r's bytes 4d..4d+3 to dword r of vector d: unpacks of dwords, qwords, then 128-bit lanes twice),
 * vector d shifted by 2c and masked being chunk 16 c + d of the group (elements 64 c + 4 d..). Every
 * vector; rbx, r11, r15. pg_unpack adds every fold's 16 scales as doubles (rax). */
static void pg_codes(bn_asm *a, const mmk *m, const pg_frame *f) {
  int32_t K = (int32_t)m->K;
  int grp = bn_asm_new_label(a);
  if (m->scratch) op(a, "mov", bn_gp(R15), bn_mem(RSP, f->slot, 8), NONE);
  else {
    op(a, "mov", bn_gp(R15), bn_gp(R9), NONE);
    op(a, "shr", bn_gp(R15), bn_imm(2), NONE);
    op(a, "imul", bn_gp(R15), bn_gp(R15), bn_imm(K)); /* block r9 / 4: K bytes */
    op(a, "add", bn_gp(R15), bn_gp(RSI), NONE);
  }
  op(a, "mov", bn_gp(RBX), bn_gp(RSP), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  bn_asm_bind(a, grp);
  for (int r = 0; r < 16; r++) {
    if (!m->scratch) /* the next 16 rows' (TP1's are unpack_t1's to fetch) */
      op(a, "prefetcht0", bn_memx(R15, R11, 1, (r / 4 + 4) * K + 64 * (r % 4), 64), NONE, NONE);
    op(a, "vmovdqu64", bn_vec(r, 64), bn_memx(R15, R11, 1, (r / 4) * K + 64 * (r % 4), 64), NONE);
  }
  for (int p = 0; p < 8; p++) {
    op(a, "vpunpckldq", bn_vec(16 + 2 * p, 64), bn_vec(2 * p, 64), bn_vec(2 * p + 1, 64));
    op(a, "vpunpckhdq", bn_vec(17 + 2 * p, 64), bn_vec(2 * p, 64), bn_vec(2 * p + 1, 64));
  }
  for (int q = 0; q < 4; q++) /* 4 q + e: rows 4 q.. of elements d = 4 L + e in lane L */
    for (int e = 0; e < 4; e++)
      op(a, e % 2 ? "vpunpckhqdq" : "vpunpcklqdq", bn_vec(4 * q + e, 64), bn_vec(16 + 4 * q + e / 2, 64),
         bn_vec(18 + 4 * q + e / 2, 64));
  for (int e = 0; e < 4; e++)
    for (int h = 0; h < 4; h++)
      bn_asm_emit(a, bn_asm_inst("vshufi32x4"), bn_vec(16 + 4 * e + h, 64), bn_vec(h < 2 ? e : 8 + e, 64),
                  bn_vec(h < 2 ? 4 + e : 12 + e, 64), bn_imm(h % 2 ? 0xee : 0x44));
  for (int e = 0; e < 4; e++)
    for (int L = 0; L < 4; L++) /* vector d = 4 L + e: rows 0..15 */
      bn_asm_emit(a, bn_asm_inst("vshufi32x4"), bn_vec(4 * L + e, 64), bn_vec(16 + 4 * e + L / 2, 64),
                  bn_vec(18 + 4 * e + L / 2, 64), bn_imm(L % 2 ? 0xdd : 0x88));
  for (int d = 0; d < 16; d++) op(a, "vmovdqa64", bn_mem(RBX, 64 * d, 64), bn_vec(d, 64), NONE);
  op(a, "add", bn_gp(RBX), bn_imm(16 * 64), NONE);
  op(a, "add", bn_gp(R11), bn_imm(256), NONE);
  op(a, "cmp", bn_gp(R11), bn_imm(K), NONE);
  op(a, "jl", bn_label(grp), NONE, NONE);
}

static void pg_unpack(bn_asm *a, const mmk *m, const pg_frame *f) {
  int32_t K = (int32_t)m->K, G = (int32_t)(m->K / 256 * m->gs), gsz = 256 / m->gs;
  int fold = bn_asm_new_label(a);
  pg_codes(a, m, f);
  /* the scales: block q's 4 rows of fold j at w + scales + 2 ((r9 / 4 + q) 4 G + 4 j) */
  op(a, "mov", bn_gp(RAX), bn_gp(R9), NONE);
  op(a, "shr", bn_gp(RAX), bn_imm(2), NONE);
  op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(8 * G));
  op(a, "add", bn_gp(RAX), bn_gp(RSI), NONE);
  op(a, "add", bn_gp(RAX), bn_imm(m->scales), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  bn_asm_bind(a, fold);
  for (int h = 0; h < 2; h++) {
    op(a, "vmovq", bn_vec(h, 16), bn_mem(RAX, 16 * G * h, 8), NONE);
    bn_asm_emit(a, bn_asm_inst("vpinsrq"), bn_vec(h, 16), bn_vec(h, 16), bn_mem(RAX, 16 * G * h + 8 * G, 8), bn_imm(1));
  }
  bn_asm_emit(a, bn_asm_inst("vinserti128"), bn_vec(0, 32), bn_vec(0, 32), bn_vec(1, 16), bn_imm(1));
  op(a, "vcvtph2ps", bn_vec(0, 64), bn_vec(0, 32), NONE);
  bn_asm_emit(a, bn_asm_inst("vextractf64x4"), bn_vec(1, 32), bn_vec(0, 64), bn_imm(1), NONE);
  op(a, "vcvtps2pd", bn_vec(0, 64), bn_vec(0, 32), NONE);
  op(a, "vcvtps2pd", bn_vec(1, 64), bn_vec(1, 32), NONE);
  op(a, "vmovapd", bn_memx(RSP, R11, 1, f->ss, 64), bn_vec(0, 64), NONE);
  op(a, "vmovapd", bn_memx(RSP, R11, 1, f->ss + 64, 64), bn_vec(1, 64), NONE);
  op(a, "add", bn_gp(RAX), bn_imm(8), NONE);
  op(a, "add", bn_gp(R11), bn_imm(gsz), NONE);
  op(a, "cmp", bn_gp(R11), bn_imm(K), NONE);
  op(a, "jl", bn_label(fold), NONE, NONE);
}

/* One pass of a tile (below) over `groups` 256-groups from r11 (their codes at r15): nf = groups x gs folds
 * at once, accumulators h tt + t for fold h and token t (a row a lane); then per token each fold's token sum
 * off, widened, times the scales (an exact product: the reference's multiply-add, in its order) into the
 * double sums, loaded and stored once a pass. */
static void pg_pass(bn_asm *a, const mmk *m, const pg_frame *f, int tt, int groups) {
  int64_t rb = (m->K + 63) / 64 * 64 + 64;
  int nf = groups * m->gs, fs = 256 / m->gs; /* folds, a fold's elements */
  for (int v = 0; v < nf * tt; v++) op(a, "vpxord", bn_vec(v, 64), bn_vec(v, 64), bn_vec(v, 64));
  for (int d = 0; d < 16; d++) { /* chunk 16 c + d: elements 64 c + 4 d.. of group g */
    for (int g = 0; g < groups; g++) op(a, "vmovdqa64", bn_vec(PP - 4 * g, 64), bn_mem(R15, 1024 * g + 64 * d, 64), NONE);
    for (int k = 0; k < 4; k++) /* the folds in turn, so that 16 accumulators hide vpdpbusd's latency */
      for (int g = 0; g < groups; g++) {
        int c = m->gs == 2 ? k % 2 * 2 + k / 2 : k, pp = PP - 4 * g;
        if (c) op(a, "vpsrlw", bn_vec(PW, 64), bn_vec(pp, 64), bn_imm(2 * c));
        op(a, "vpandd", bn_vec(PW, 64), bn_vec(c ? PW : pp, 64), bn_vec(MASK, 64));
        for (int t = 0; t < tt; t++)
          op(a, "vpdpbusd", bn_vec((256 * g + 64 * c) / fs * tt + t, 64), bn_vec(PW, 64),
             bn_bcst(bn_memx(R14, R11, 1, (int32_t)(rb * t + 256 * g + 64 * c + 4 * d), 4), 16));
      }
  }
  for (int h = 0; h < nf; h++) /* fold h's scales, rows 0..7 and 8..15 */
    for (int q = 0; q < 2; q++) op(a, "vmovapd", bn_vec(SC + 2 * h + q, 64), bn_memx(RSP, R11, 1, f->ss + fs * h + 64 * q, 64), NONE);
  for (int t = 0; t < tt; t++) {
    for (int h = 0; h < nf; h++) {
      int v = h * tt + t, lo = h ? QY : PY, hi = h ? QX : PX;
      op(a, "vpsubd", bn_vec(v, 64), bn_vec(v, 64), bn_bcst(bn_memx(RBX, R11, 8, 8 * fs * h + 4 * t, 4), 16));
      bn_asm_emit(a, bn_asm_inst("vextracti64x4"), bn_vec(hi, 32), bn_vec(v, 64), bn_imm(1), NONE);
      op(a, "vcvtdq2pd", bn_vec(lo, 64), bn_vec(v, 32), NONE);
      op(a, "vcvtdq2pd", bn_vec(hi, 64), bn_vec(hi, 32), NONE);
      for (int q = 0; q < 2; q++)
        if (!h) op(a, "vfmadd213pd", bn_vec(q ? PX : PY, 64), bn_vec(SC + q, 64), bn_mem(RSP, f->ds + 128 * t + 64 * q, 64));
        else op(a, "vfmadd231pd", bn_vec(q ? PX : PY, 64), bn_vec(q ? QX : QY, 64), bn_vec(SC + 2 * h + q, 64));
    }
    for (int q = 0; q < 2; q++) op(a, "vmovapd", bn_mem(RSP, f->ds + 128 * t + 64 * q, 64), bn_vec(q ? PX : PY, 64), NONE);
  }
  op(a, "add", bn_gp(R15), bn_imm(1024 * groups), NONE);
  op(a, "add", bn_gp(R11), bn_imm(256 * groups), NONE);
}

/* Rows r9..r9+15 x tokens rbp..rbp+tt-1 of the chunk (r13 its first), the double sums in the frame: passes
 * of PG_PASS folds, the last over the groups left; then as g_epilogue, 16 outputs a token at once. */
static void pg_tile(bn_asm *a, const mmk *m, const pg_frame *f, int tt) {
  int64_t K = m->K, rb = (K + 63) / 64 * 64 + 64, gp = PG_PASS / m->gs, full = K / 256 / gp * gp * 256;
  int32_t meta = (int32_t)rb - 64, nb = (int32_t)(4 * m->N);
  int pass = bn_asm_new_label(a);
  op(a, "lea", bn_gp(RAX), bn_memx(R13, RBP, 1, 0, 0), NONE);
  op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(rb));
  op(a, "lea", bn_gp(R14), bn_memx(RDI, RAX, 1, 0, 0), NONE);
  op(a, "lea", bn_gp(RBX), bn_memx(RSP, RBP, 4, f->qs, 0), NONE);
  op(a, "vpxord", bn_vec(PY, 64), bn_vec(PY, 64), bn_vec(PY, 64));
  for (int v = 0; v < 2 * tt; v++) op(a, "vmovapd", bn_mem(RSP, f->ds + 64 * v, 64), bn_vec(PY, 64), NONE);
  op(a, "mov", bn_gp(R15), bn_gp(RSP), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  if (full) {
    bn_asm_bind(a, pass);
    pg_pass(a, m, f, tt, (int)gp);
    op(a, "cmp", bn_gp(R11), bn_imm(full), NONE);
    op(a, "jl", bn_label(pass), NONE, NONE);
  }
  if (K > full) pg_pass(a, m, f, tt, (int)((K - full) / 256));
  op(a, "lea", bn_gp(RAX), bn_memx(R13, RBP, 1, 0, 0), NONE); /* the first output: (r13 + rbp) N + r9 */
  op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(m->N));
  op(a, "add", bn_gp(RAX), bn_gp(R9), NONE);
  for (int t = 0; t < tt; t++) {
    op(a, "vcvtpd2ps", bn_vec(PY, 32), bn_mem(RSP, f->ds + 128 * t, 64), NONE);
    op(a, "vcvtpd2ps", bn_vec(PX, 32), bn_mem(RSP, f->ds + 128 * t + 64, 64), NONE);
    bn_asm_emit(a, bn_asm_inst("vinsertf64x4"), bn_vec(PY, 64), bn_vec(PY, 64), bn_vec(PX, 32), bn_imm(1));
    /* bn_ref_dequant's (float)((double)f / s) with row scale 1 is the float quotient: a double holds more than
     * twice a float's digits, so rounding the double quotient to float rounds the exact one */
    if (m->mode != BN_MM_ACC) op(a, "vdivps", bn_vec(PY, 64), bn_vec(PY, 64), bn_bcst(bn_mem(R14, (int32_t)rb * t + meta, 4), 16));
    if (m->mode == BN_MM_DQ_ADD) op(a, "vaddps", bn_vec(PY, 64), bn_vec(PY, 64), bn_memx(RCX, RAX, 4, nb * t, 64));
    op(a, "vmovups", bn_memx(RDX, RAX, 4, nb * t, 64), bn_vec(PY, 64), NONE);
  }
}

/* The loops prefill_g and prefill_r share, over rows r9..r12 (16 a tile, whole blocks) and all T tokens:
 * the frame f on the stack (its slots: the old rsp, the first row, the chunk's tokens; two more for
 * `unpack`); chunks of tc tokens, for each `sums` (unless NULL), then per 16 rows `unpack`
 * and tiles of tt tokens while tt remain, one of each half down to 4, then one token at a time. Leaves
 * r9 = r12 and the code mask in MASK. */
static void lanes_loops(bn_asm *a, const mmk *m, const pg_frame *f, int tt0, int tc,
                        void (*sums)(bn_asm *, const mmk *, const pg_frame *),
                        void (*unpack)(bn_asm *, const mmk *, const pg_frame *),
                        void (*tile)(bn_asm *, const mmk *, const pg_frame *, int)) {
  int chunk = bn_asm_new_label(a), rows = bn_asm_new_label(a), full = bn_asm_new_label(a);
  op(a, "mov", bn_gp(RAX), bn_gp(RSP), NONE);
  op(a, "sub", bn_gp(RSP), bn_imm(f->size + 64), NONE);
  op(a, "and", bn_gp(RSP), bn_imm(-64), NONE);
  op(a, "mov", bn_mem(RSP, f->slot, 8), bn_gp(RAX), NONE);
  op(a, "mov", bn_mem(RSP, f->slot + 8, 8), bn_gp(R9), NONE);
  op(a, "xor", bn_gpd(R13), bn_gpd(R13), NONE);
  bn_asm_bind(a, chunk); /* tokens r13.. : min(tc, T - r13) of them */
  op(a, "mov", bn_gp(RAX), bn_gp(R8), NONE);
  op(a, "sub", bn_gp(RAX), bn_gp(R13), NONE);
  op(a, "cmp", bn_gp(RAX), bn_imm(tc), NONE);
  op(a, "jle", bn_label(full), NONE, NONE);
  op(a, "mov", bn_gpd(RAX), bn_imm(tc), NONE);
  bn_asm_bind(a, full);
  op(a, "mov", bn_mem(RSP, f->slot + 16, 8), bn_gp(RAX), NONE);
  if (sums) sums(a, m, f);
  op(a, "mov", bn_gp(R9), bn_mem(RSP, f->slot + 8, 8), NONE);
  bn_asm_bind(a, rows);
  unpack(a, m, f);
  splat_i(a, MASK, 0x03030303, 64);
  op(a, "xor", bn_gpd(RBP), bn_gpd(RBP), NONE);
  for (int tt = tt0; tt >= 1; tt /= 2) {
    if (tt == 2) continue;
    int loop = bn_asm_new_label(a), end = bn_asm_new_label(a);
    bn_asm_bind(a, loop);
    op(a, "lea", bn_gp(RAX), bn_mem(RBP, tt, 0), NONE);
    op(a, "cmp", bn_gp(RAX), bn_mem(RSP, f->slot + 16, 8), NONE);
    op(a, "jg", bn_label(end), NONE, NONE);
    tile(a, m, f, tt);
    op(a, "add", bn_gp(RBP), bn_imm(tt), NONE);
    if (tt == tt0 || tt == 1) op(a, "jmp", bn_label(loop), NONE, NONE);
    bn_asm_bind(a, end);
  }
  op(a, "add", bn_gp(R9), bn_imm(16), NONE);
  op(a, "cmp", bn_gp(R9), bn_gp(R12), NONE);
  op(a, "jl", bn_label(rows), NONE, NONE);
  op(a, "add", bn_gp(R13), bn_imm(tc), NONE);
  op(a, "cmp", bn_gp(R13), bn_gp(R8), NONE);
  op(a, "jl", bn_label(chunk), NONE, NONE);
  op(a, "mov", bn_gp(RSP), bn_mem(RSP, f->slot, 8), NONE);
}

/* TG2's prefill: per chunk of PG_TC tokens their group sums, per 16 rows the codes and scales, tiles of 8. */
static void prefill_g(bn_asm *a, const mmk *m) {
  pg_frame f = pg_layout(m);
  lanes_loops(a, m, &f, PG_TT, PG_TC, pg_token_sums, pg_unpack, pg_tile);
}

/* Prefill over TP2 (AVX-512 VNNI, PR_MINT tokens or more over 16 rows or more, K <= PR_MAXK), rows in the
 * lanes: as prefill_g without folds, each of a tile's tokens sums its 16 rows in one accumulator over the
 * whole row, so the epilogue needs no lane-sum tree (which cost the 4 x 4 tiles about a tenth of large's
 * 1536-wide matmuls) and dequantizes a token's 16 rows at once, in double as the reference. Tiles of 16
 * tokens (then 8, 4, 1) over chunks of PR_TC tokens, whose activations stay in L2 across a chunk's rows;
 * the frame: the 16 rows' codes (4 K bytes), then slots. Fewer tokens or wider rows keep the 4 x 4 tiles,
 * which measured faster there (bench/README.md). */
enum { PR_TT = 16, PR_TC = 128, PR_MINT = 64, PR_MAXK = 2048 };
enum { PR_SC = 22, PR_LO = 24, PR_HI = 25, PR_S = 26 }; /* the rows' scales (2), the epilogue's scratch */

/* Tokens rbp..rbp+tt-1 of the chunk (r13 its first) x rows r9..r9+15, the codes at rsp. */
static void pr_tile(bn_asm *a, const mmk *m, const pg_frame *f, int tt) {
  int64_t K = m->K, rb = (K + 63) / 64 * 64 + 64;
  int32_t meta = (int32_t)rb - 64, nb = (int32_t)(4 * m->N);
  int grp = bn_asm_new_label(a);
  (void)f;
  op(a, "lea", bn_gp(RAX), bn_memx(R13, RBP, 1, 0, 0), NONE);
  op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(rb));
  op(a, "lea", bn_gp(R14), bn_memx(RDI, RAX, 1, 0, 0), NONE);
  for (int t = 0; t < tt; t++) op(a, "vpxord", bn_vec(t, 64), bn_vec(t, 64), bn_vec(t, 64));
  op(a, "mov", bn_gp(R15), bn_gp(RSP), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  bn_asm_bind(a, grp);
  for (int d = 0; d < 16; d++) { /* chunk 16 c + d: elements 64 c + 4 d.. of the group */
    int pp = 16 + d % 2;
    op(a, "vmovdqa64", bn_vec(pp, 64), bn_mem(R15, 64 * d, 64), NONE);
    for (int c = 0; c < 4; c++) {
      int pw = 18 + c;
      if (c) op(a, "vpsrlw", bn_vec(pw, 64), bn_vec(pp, 64), bn_imm(2 * c));
      op(a, "vpandd", bn_vec(pw, 64), bn_vec(c ? pw : pp, 64), bn_vec(MASK, 64));
      for (int t = 0; t < tt; t++)
        op(a, "vpdpbusd", bn_vec(t, 64), bn_vec(pw, 64), bn_bcst(bn_memx(R14, R11, 1, (int32_t)(rb * t + 64 * c + 4 * d), 4), 16));
    }
  }
  op(a, "add", bn_gp(R15), bn_imm(1024), NONE);
  op(a, "add", bn_gp(R11), bn_imm(256), NONE);
  op(a, "cmp", bn_gp(R11), bn_imm(K), NONE);
  op(a, "jl", bn_label(grp), NONE, NONE);
  op(a, "lea", bn_gp(RAX), bn_memx(R13, RBP, 1, 0, 0), NONE); /* the first output: (r13 + rbp) N + r9 */
  op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(m->N));
  op(a, "add", bn_gp(RAX), bn_gp(R9), NONE);
  if (m->mode != BN_MM_ACC)
    for (int h = 0; h < 2; h++) /* the rows' scales as doubles */
      op(a, "vcvtps2pd", bn_vec(PR_SC + h, 64), bn_memx(RSI, R9, 4, m->scales + 32 * h, 32), NONE);
  for (int t = 0; t < tt; t++) {
    int32_t row = (int32_t)rb * t;
    op(a, "vpsubd", bn_vec(t, 64), bn_vec(t, 64), bn_bcst(bn_mem(R14, row + meta + 4, 4), 16)); /* less the sum of the codes */
    if (m->mode == BN_MM_ACC) {
      op(a, "vmovdqu32", bn_memx(RDX, RAX, 4, nb * t, 64), bn_vec(t, 64), NONE);
      continue;
    }
    op(a, "vcvtss2sd", bn_vec(PR_S, 16), bn_vec(PR_S, 16), bn_mem(R14, row + meta, 4)); /* the token's scale */
    op(a, "vbroadcastsd", bn_vec(PR_S, 64), bn_vec(PR_S, 16), NONE);
    bn_asm_emit(a, bn_asm_inst("vextracti64x4"), bn_vec(PR_HI, 32), bn_vec(t, 64), bn_imm(1), NONE);
    op(a, "vcvtdq2pd", bn_vec(PR_LO, 64), bn_vec(t, 32), NONE);
    op(a, "vcvtdq2pd", bn_vec(PR_HI, 64), bn_vec(PR_HI, 32), NONE);
    for (int h = 0; h < 2; h++) {
      op(a, "vmulpd", bn_vec(PR_LO + h, 64), bn_vec(PR_LO + h, 64), bn_vec(PR_SC + h, 64));
      op(a, "vdivpd", bn_vec(PR_LO + h, 64), bn_vec(PR_LO + h, 64), bn_vec(PR_S, 64));
      op(a, "vcvtpd2ps", bn_vec(PR_LO + h, 32), bn_vec(PR_LO + h, 64), NONE);
    }
    bn_asm_emit(a, bn_asm_inst("vinsertf64x4"), bn_vec(PR_LO, 64), bn_vec(PR_LO, 64), bn_vec(PR_HI, 32), bn_imm(1));
    if (m->mode == BN_MM_DQ_ADD) op(a, "vaddps", bn_vec(PR_LO, 64), bn_vec(PR_LO, 64), bn_memx(RCX, RAX, 4, nb * t, 64));
    op(a, "vmovups", bn_memx(RDX, RAX, 4, nb * t, 64), bn_vec(PR_LO, 64), NONE);
  }
}

/* The TG2 tile (AVX-512 VNNI): 4 x 4 (codes unpacked from memory, so 16 accumulators, the tokens' sums
 * and the double sums fit), 4 x 1 (decode: the rows' bytes in WV), 1 x 4, 1 x 1 (a lane sum each). */
static void tile_g(bn_asm *a, const mmk *m, int rows, int tt) {
  int64_t row_bytes = (m->K + 63) / 64 * 64 + 64;
  int n = rows * tt, big = n == 16, q0 = big ? 20 : 8, grp = bn_asm_new_label(a);
  g_start(a, m, n);
  for (int c = 0; c < n; c++) op(a, "vpxord", bn_vec(c, 64), bn_vec(c, 64), bn_vec(c, 64));
  for (int t = 0; t < tt; t++) op(a, "vpxord", bn_vec(q0 + t, 64), bn_vec(q0 + t, 64), bn_vec(q0 + t, 64));
  if (rows == 4)
    for (int d = 0; d < 2; d++) op(a, "vpxord", bn_vec(D0 + d, 64), bn_vec(D0 + d, 64), bn_vec(D0 + d, 64));
  if (n == 4 && tt == 1) { /* fold4's picks: qwords 0,0,0,0,1,1,1,1 and 2,2,2,2,3,3,3,3 */
    for (int h = 0; h < 2; h++) {
      op(a, "mov", bn_gp(RAX), bn_imm(h ? 0x0303030302020202LL : 0x0101010100000000LL), NONE);
      op(a, "vmovq", bn_vec(h ? IDXHI : IDXLO, 16), bn_gp(RAX), NONE);
      op(a, "vpmovzxbq", bn_vec(h ? IDXHI : IDXLO, 64), bn_vec(h ? IDXHI : IDXLO, 16), NONE);
    }
  }
  splat_i(a, ONES, 0x01010101, 64);
  op(a, "mov", bn_gp(R15), bn_gp(RBX), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  bn_asm_bind(a, grp);
  for (int r = 0; r < rows && !big; r++) {
    if (rows == 4) op(a, "prefetcht0", bn_mem(R15, m->ahead + 64 * r, 64), NONE, NONE); /* decode's stream */
    op(a, "vmovdqu64", bn_vec(WV + r, 64), bn_mem(R15, 64 * r, 64), NONE);
  }
  for (int c = 0; c < 4; c++) {
    for (int r = 0; r < rows; r++) {
      bn_asm_op src = big ? bn_mem(R15, 64 * r, 64) : bn_vec(WV + r, 64);
      if (c) op(a, "vpsrlw", bn_vec(CV + r, 64), src, bn_imm(2 * c));
      op(a, "vpandd", bn_vec(CV + r, 64), bn_vec(MASK, 64), c ? bn_vec(CV + r, 64) : src);
    }
    for (int t = 0; t < tt; t++) {
      op(a, "vmovdqu64", bn_vec(QV, 64), bn_memx(R14, R11, 1, (int32_t)(row_bytes * t + 64 * c), 64), NONE);
      op(a, "vpdpbusd", bn_vec(q0 + t, 64), bn_vec(ONES, 64), bn_vec(QV, 64));
      for (int r = 0; r < rows; r++) op(a, "vpdpbusd", bn_vec(r * tt + t, 64), bn_vec(CV + r, 64), bn_vec(QV, 64));
    }
    if ((c + 1) % (4 / m->gs)) continue;
    if (big) fold16(a, q0); /* a group (TG2H: half of one) done */
    else if (rows == 4) fold4(a, q0);
    else
      for (int t = 0; t < tt; t++) {
        op(a, "vpsubd", bn_vec(t, 64), bn_vec(t, 64), bn_vec(q0 + t, 64));
        hsum(a, t, S0, 64);
        g_scalar(a, 0, t, S0, S1);
      }
    g_next(a, rows);
    for (int v = 0; v < n; v++) op(a, "vpxord", bn_vec(v, 64), bn_vec(v, 64), bn_vec(v, 64));
    for (int t = 0; t < tt; t++) op(a, "vpxord", bn_vec(q0 + t, 64), bn_vec(q0 + t, 64), bn_vec(q0 + t, 64));
  }
  group_end(a, m, rows, grp);
  if (rows == 1) {
    for (int t = 0; t < tt; t++) {
      op(a, "vmovsd", bn_vec(S0, 16), bn_mem(RSP, DSUM + 8 * t, 8), NONE);
      g_epilogue(a, m, 0, t, S0, S1);
    }
    return;
  }
  if (tt == 1) {
    g_rows4_epilogue(a, m);
    return;
  }
  int32_t rb = (int32_t)row_bytes, meta = rb - 64, nb = (int32_t)(4 * m->N);
  for (int h = 0; h < 2; h++) { /* tokens 2 h, 2 h + 1: rows 0..3 each */
    op(a, "vcvtpd2ps", bn_vec(7, 32), bn_vec(D0 + h, 64), NONE);
    if (m->mode != BN_MM_ACC) {
      for (int i = 0; i < 2; i++) {
        op(a, "vcvtss2sd", bn_vec(9 + i, 16), bn_vec(9 + i, 16), bn_mem(R14, rb * (2 * h + i) + meta, 4));
        op(a, "vbroadcastsd", bn_vec(9 + i, 32), bn_vec(9 + i, 16), NONE);
      }
      bn_asm_emit(a, bn_asm_inst("vinsertf64x4"), bn_vec(9, 64), bn_vec(9, 64), bn_vec(10, 32), bn_imm(1));
      op(a, "vcvtps2pd", bn_vec(11, 64), bn_vec(7, 32), NONE);
      op(a, "vdivpd", bn_vec(11, 64), bn_vec(11, 64), bn_vec(9, 64));
      op(a, "vcvtpd2ps", bn_vec(7, 32), bn_vec(11, 64), NONE);
    }
    bn_asm_emit(a, bn_asm_inst("vextractf128"), bn_vec(13, 16), bn_vec(7, 32), bn_imm(1), NONE);
    for (int i = 0; i < 2; i++) {
      int v = i ? 13 : 7, t = 2 * h + i;
      if (m->mode == BN_MM_DQ_ADD) op(a, "vaddps", bn_vec(v, 16), bn_vec(v, 16), bn_memx(RCX, R11, 4, nb * t, 16));
      op(a, "vmovups", bn_memx(RDX, R11, 4, nb * t, 16), bn_vec(v, 16), NONE);
    }
  }
}

/* The AVX2 tile (no VNNI, 16 vectors): rows x tt <= 4 (4 x 1 decode, 2 x 2, 1 x 4, 1 x 1), gp registers
 * as tile's. Per group and 32 of its elements, the codes (shifted, masked) times the activations by
 * vpmaddubsw, adjacent pairs summed into int16 lanes; those of a group summed in int16 (8 of at most
 * 2 x 2 x 127 each: no overflow), then widened once by vpmaddwd with ones into the int32 accumulators.
 * Vectors: accumulators 0.., int16 sums 4.., codes 8.., activations 12, product 13, the code mask 14, ones 15.
 * TG2: 0..3 are the tokens' int16 sums of the group instead (vpmaddubsw with byte ones, in 15; int16 ones
 * at ONES16), and each (row, token) is folded by a lane sum into its DSUM slot when its group (TG2H: half)
 * is done. */
static void tile_avx2(bn_asm *a, const mmk *m, int rows, int tt) {
  int64_t K = m->K, row_bytes = (K + 63) / 64 * 64 + 64;
  int n = rows * tt, grp = bn_asm_new_label(a);
  if (m->gs) {
    g_start(a, m, n);
    splat_i(a, 15, 0x00010001, 32);
    op(a, "vmovdqu", bn_mem(RSP, ONES16, 32), bn_vec(15, 32), NONE);
  }
  for (int i = 0; i < (m->gs ? 4 : n); i++) {
    op(a, "vpxor", bn_vec(i, 32), bn_vec(i, 32), bn_vec(i, 32));
    op(a, "vpxor", bn_vec(4 + i, 32), bn_vec(4 + i, 32), bn_vec(4 + i, 32));
  }
  splat_i(a, 15, m->gs ? 0x01010101 : 0x00010001, 32);
  op(a, "mov", bn_gp(R15), bn_gp(RBX), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  bn_asm_bind(a, grp);
  if (rows == 4 && tt == 1)
    for (int r = 0; r < rows; r++) op(a, "prefetcht0", bn_mem(R15, m->ahead + 64 * r, 64), NONE, NONE);
  for (int c = 0; c < 4; c++) {
    for (int h = 0; h < 2; h++) {
      for (int r = 0; r < rows; r++) {
        op(a, "vmovdqu", bn_vec(8 + r, 32), bn_mem(R15, 64 * r + 32 * h, 32), NONE);
        if (c) op(a, "vpsrlw", bn_vec(8 + r, 32), bn_vec(8 + r, 32), bn_imm(2 * c));
        op(a, "vpand", bn_vec(8 + r, 32), bn_vec(8 + r, 32), bn_vec(14, 32));
      }
      for (int t = 0; t < tt; t++) {
        op(a, "vmovdqu", bn_vec(12, 32), bn_memx(R14, R11, 1, (int32_t)(row_bytes * t + 64 * c + 32 * h), 32), NONE);
        if (m->gs) { /* the token's activations summed */
          op(a, "vpmaddubsw", bn_vec(13, 32), bn_vec(15, 32), bn_vec(12, 32));
          op(a, "vpaddw", bn_vec(t, 32), bn_vec(t, 32), bn_vec(13, 32));
        }
        for (int r = 0; r < rows; r++) {
          op(a, "vpmaddubsw", bn_vec(13, 32), bn_vec(8 + r, 32), bn_vec(12, 32));
          op(a, "vpaddw", bn_vec(4 + r * tt + t, 32), bn_vec(4 + r * tt + t, 32), bn_vec(13, 32));
        }
      }
    }
    if (!m->gs || (c + 1) % (4 / m->gs)) continue;
    for (int r = 0; r < rows; r++) /* a group (TG2H: half of one) done */
      for (int t = 0; t < tt; t++) {
        int v = 4 + r * tt + t;
        op(a, "vpmaddwd", bn_vec(13, 32), bn_vec(v, 32), bn_mem(RSP, ONES16, 32));
        op(a, "vpmaddwd", bn_vec(12, 32), bn_vec(t, 32), bn_mem(RSP, ONES16, 32));
        op(a, "vpsubd", bn_vec(13, 32), bn_vec(13, 32), bn_vec(12, 32));
        hsum(a, 13, 12, 32);
        g_scalar(a, r, r * tt + t, 12, 13);
        op(a, "vpxor", bn_vec(v, 32), bn_vec(v, 32), bn_vec(v, 32));
      }
    for (int t = 0; t < tt; t++) op(a, "vpxor", bn_vec(t, 32), bn_vec(t, 32), bn_vec(t, 32));
    g_next(a, rows);
  }
  for (int i = 0; i < n && !m->gs; i++) {
    op(a, "vpmaddwd", bn_vec(13, 32), bn_vec(4 + i, 32), bn_vec(15, 32));
    op(a, "vpaddd", bn_vec(i, 32), bn_vec(i, 32), bn_vec(13, 32));
    op(a, "vpxor", bn_vec(4 + i, 32), bn_vec(4 + i, 32), bn_vec(4 + i, 32));
  }
  group_end(a, m, rows, grp);
  for (int r = 0; r < rows; r++)
    for (int t = 0; t < tt; t++) {
      if (m->gs) {
        op(a, "vmovsd", bn_vec(12, 16), bn_mem(RSP, DSUM + 8 * (r * tt + t), 8), NONE);
        g_epilogue(a, m, r, t, 12, 13);
        continue;
      }
      hsum(a, r * tt + t, 13, 32);
      epilogue(a, m, r, t, 12, 13);
    }
}

/* One tile of rows x tt, for the ISA (W: 64 AVX-512 VNNI, 32 AVX2). */
static void any_tile(bn_asm *a, const mmk *m, int rows, int tt) {
  if (m->qimg) tile_g_decode(a, m);
  else if (m->gs && m->W == 64) tile_g(a, m, rows, tt);
  else if (m->t1 && m->W == 32) tile_t1_avx2(a, m); /* decode's 4 x 1 only: prefill unpacks (matmul_rows) */
  else if (m->t1) tile_t1(a, m, rows, tt);
  else if (m->W == 64) tile(a, m, rows, tt);
  else tile_avx2(a, m, rows, tt);
}

/* Tiles of `rows` x tt for the rows at rbx, from token r13 while tt more remain. */
static void token_tiles(bn_asm *a, const mmk *m, int rows, int tt) {
  int64_t row_bytes = (m->K + 63) / 64 * 64 + 64;
  int tok = bn_asm_new_label(a), end = bn_asm_new_label(a);
  bn_asm_bind(a, tok);
  op(a, "lea", bn_gp(RAX), bn_mem(R13, tt, 0), NONE);
  op(a, "cmp", bn_gp(RAX), bn_gp(R8), NONE);
  op(a, "jg", bn_label(end), NONE, NONE);
  any_tile(a, m, rows, tt);
  op(a, "add", bn_gp(R14), bn_imm(row_bytes * tt), NONE);
  op(a, "add", bn_gp(R13), bn_imm(tt), NONE);
  op(a, "jmp", bn_label(tok), NONE, NONE);
  bn_asm_bind(a, end);
}

/* Every token for the rows at rbx: tiles of 4 tokens (AVX-512 VNNI, or one row on AVX2), then one at a time. */
static void token_loop(bn_asm *a, const mmk *m, int rows) {
  op(a, "xor", bn_gpd(R13), bn_gpd(R13), NONE);
  op(a, "mov", bn_gp(R14), bn_gp(RDI), NONE);
  if (m->W == 64 || rows == 1) token_tiles(a, m, rows, 4);
  token_tiles(a, m, rows, 1);
}

/* rbx = the first group of row r9: w + (r9 / 4) block + (r9 % 4) 64 (a whole block's row); or in the
 * scratch, rsp + ((r9 - rbp) / 4) block + (r9 % 4) 64. */
static void row_base(bn_asm *a, const mmk *m) {
  op(a, "mov", bn_gp(RAX), bn_gp(R9), NONE);
  if (m->scratch) op(a, "sub", bn_gp(RAX), bn_gp(RBP), NONE);
  op(a, "shr", bn_gp(RAX), bn_imm(2), NONE);
  op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(m->block));
  op(a, "mov", bn_gp(RBX), bn_gp(R9), NONE);
  op(a, "and", bn_gp(RBX), bn_imm(3), NONE);
  op(a, "shl", bn_gp(RBX), bn_imm(6), NONE);
  op(a, "add", bn_gp(RBX), bn_gp(RAX), NONE);
  op(a, "add", bn_gp(RBX), bn_gp(m->scratch ? RSP : RSI), NONE);
}

/* Row r's TP1 groups g0..g0+n-1 of a block's 4 rows (at r11, local to a run of 4 groups: 20 chunks of 64
 * elements) unpacked into TP2 at rax (TP2's group h / 4 of chunk h at shift 2 (h % 4), row r's at (4 (h / 4)
 * + r) 64), the last group of pos positions. A byte's code c = (x > 85) + (x > 170); x_(p+1) = 3 x_p by two
 * byte adds. AVX-512: compares into masks, whose masked adds of 1 << shift (vectors 0..3) build the TP2 bytes
 * in a register; AVX2 (two halves of 32 bytes): codes_avx2, shifted and or-ed. */
static void unpack_row(bn_asm *a, int W, int r, int g0, int n, int pos, int32_t ahead) {
  int x = W == 64 ? WV : 8, c = W == 64 ? CV : 9, t = W == 64 ? S0 : 10, acc = W == 64 ? S1 : 15;
  for (int hv = 0; hv < 64 / W; hv++)
    for (int gl = g0; gl < g0 + n; gl++) {
      int m = gl + 1 < g0 + n ? 5 : pos;
      op(a, W == 64 ? "vmovdqu64" : "vmovdqu", bn_vec(x, W), bn_mem(R11, (gl * 4 + r) * 64 + W * hv, W), NONE);
      if (hv == 0) op(a, "prefetcht0", bn_mem(R11, ahead + (gl * 4 + r) * 64, 64), NONE, NONE);
      for (int p = 0; p < m; p++) {
        int h = 5 * gl + p, s = h % 4;
        if (W == 64) {
          thresholds(a, 1, x);
          bn_asm_mask(a, 1, s == 0);
          if (s == 0) op(a, "vmovdqu8", bn_vec(acc, 64), bn_vec(0, 64), NONE);
          else op(a, "vpaddb", bn_vec(acc, 64), bn_vec(acc, 64), bn_vec(s, 64));
          bn_asm_mask(a, 2, 0);
          op(a, "vpaddb", bn_vec(acc, 64), bn_vec(acc, 64), bn_vec(s, 64));
        } else {
          codes_avx2(a, s ? c : acc, x, t);
          if (s) {
            op(a, "vpsllw", bn_vec(c, 32), bn_vec(c, 32), bn_imm(2 * s)); /* codes < 4: no bit leaves its byte */
            op(a, "vpor", bn_vec(acc, 32), bn_vec(acc, 32), bn_vec(c, 32));
          }
        }
        if (p + 1 < m) triple(a, x, t, W);
        if (s == 3)
          op(a, W == 64 ? "vmovdqu64" : "vmovdqu", bn_mem(RAX, (h / 4 * 4 + r) * 64 + W * hv, W), bn_vec(acc, W), NONE);
      }
    }
}

void bn_asmjit_t1_tables(uint8_t lut[512]) {
  for (int q = 0; q < 256; q++) {
    unsigned x = (unsigned)q, c[5];
    for (int p = 0; p < 5; p++, x = 3 * x & 255) c[p] = (x > 85) + (x > 170);
    lut[q] = (uint8_t)(c[0] | c[1] << 2 | c[2] << 4 | c[3] << 6);
    lut[256 + q] = (uint8_t)(c[1] | c[2] << 2 | c[3] << 4 | c[4] << 6);
  }
}

/* unpack_lut's registers: the tables (A: codes 0..3 of a byte, H: 1..4; 4 vectors each), the masks of TP2
 * vectors 1..3's low codes, the 4 groups' bytes, their A and H bytes. */
enum { LUT_A = 4, LUT_H = 8, LUT_M = 12, LUT_X = 16, LUT_XA = 0, LUT_XH = 21 };

/* Vector d = table t's bytes at the bytes of vector x (k1: their top bits, k2 the rest): two vpermi2b of
 * 128 entries each, merging. */
static void lookup(bn_asm *a, int d, int x, int t) {
  op(a, "vmovdqa64", bn_vec(d, 64), bn_vec(x, 64), NONE);
  bn_asm_mask(a, 1, 0);
  op(a, "vpermi2b", bn_vec(d, 64), bn_vec(t + 2, 64), bn_vec(t + 3, 64));
  bn_asm_mask(a, 2, 0);
  op(a, "vpermi2b", bn_vec(d, 64), bn_vec(t, 64), bn_vec(t + 1, 64));
}

/* unpack_row by lookups (AVX-512 VBMI): row r's nv TP2 vectors (5 from a run of 4 TP1 groups, fewer from a
 * tail) at rax. Chunks 4 v..4 v + 3 are TP1 group v's codes from v on and group v - 1's last 4 - v, so TP2
 * vector v is A(x_v) << 2 v beside H(x_(v-1)) >> (8 - 2 v), bytewise: shifts of words, a bitwise select. */
static void unpack_lut(bn_asm *a, int r, int nv, int32_t ahead) {
  for (int g = 0; g < nv && g < 4; g++) {
    int x = LUT_X + g;
    op(a, "vmovdqu64", bn_vec(x, 64), bn_mem(R11, (g * 4 + r) * 64, 64), NONE);
    op(a, "prefetcht0", bn_mem(R11, ahead + (g * 4 + r) * 64, 64), NONE, NONE);
    op(a, "vpmovb2m", bn_kreg(1), bn_vec(x, 64), NONE);
    op(a, "knotq", bn_kreg(2), bn_kreg(1), NONE);
    lookup(a, LUT_XA + g, x, LUT_A);
    if (g + 1 < nv) lookup(a, LUT_XH + g, x, LUT_H);
  }
  for (int v = 0; v < nv; v++) {
    int d = v == 0 ? LUT_XA : v == 4 ? LUT_XH + 3 : S0;
    if (v % 4) {
      op(a, "vpsrlw", bn_vec(S0, 64), bn_vec(LUT_XH + v - 1, 64), bn_imm(8 - 2 * v));
      op(a, "vpsllw", bn_vec(S1, 64), bn_vec(LUT_XA + v, 64), bn_imm(2 * v));
      bn_asm_emit(a, bn_asm_inst("vpternlogd"), bn_vec(S0, 64), bn_vec(S1, 64), bn_vec(LUT_M + v - 1, 64), bn_imm(0xe4));
    }
    op(a, "vmovdqu64", bn_mem(RAX, (4 * v + r) * 64, 64), bn_vec(d, 64), NONE);
  }
}

/* Prefill over TP1 (on AVX2 from 2 tokens): the whole 4-row blocks of rows r9..r12 unpacked into TP2 at `to`
 * (rsp, or a frame's slot holding the scratch; K bytes a block), once for all the tokens, which TP2's tiles
 * then read: the extraction paid once, not per token tile. Runs of 4 groups (1280 elements, 5 TP2 groups) in
 * a loop, then the groups left (K % 1280, whole TP2 groups). */
static void unpack_t1(bn_asm *a, const mmk *m, bn_asm_op to) {
  int64_t K = m->K, runs = K / 1280, groups = (K + 319) / 320;
  int32_t ahead = (int32_t)(4 * m->block); /* each code byte's place 16 rows on: the next call's */
  int blk = bn_asm_new_label(a), run = bn_asm_new_label(a);
  if (m->lut) { /* the tables, the masks of the low 2, 4, 6 bits */
    op(a, "mov", bn_gp(RAX), bn_imm((int64_t)(intptr_t)m->lut), NONE);
    for (int v = 0; v < 8; v++) op(a, "vmovdqu64", bn_vec(LUT_A + v, 64), bn_mem(RAX, 64 * v, 64), NONE);
    static const int32_t low[3] = {0x03030303, 0x0f0f0f0f, 0x3f3f3f3f};
    for (int v = 0; v < 3; v++) splat_i(a, LUT_M + v, low[v], 64);
  } else if (m->W == 64) /* 1 << shift for the masked adds (the tiles' accumulators) */
    for (int s = 0; s < 4; s++) splat_i(a, s, 0x01010101 << (2 * s), 64);
  row_base(a, m);
  op(a, "mov", bn_gp(R15), bn_gp(RBX), NONE);
  op(a, "mov", bn_gp(R14), to, NONE);
  op(a, "mov", bn_gp(R13), bn_gp(R9), NONE);
  bn_asm_bind(a, blk);
  op(a, "mov", bn_gp(R11), bn_gp(R15), NONE);
  op(a, "mov", bn_gp(RAX), bn_gp(R14), NONE);
  if (runs) {
    op(a, "xor", bn_gpd(RBX), bn_gpd(RBX), NONE);
    bn_asm_bind(a, run);
    for (int r = 0; r < 4; r++) {
      if (m->lut) unpack_lut(a, r, 5, ahead);
      else unpack_row(a, m->W, r, 0, 4, 5, ahead);
    }
    op(a, "add", bn_gp(R11), bn_imm(1024), NONE);
    op(a, "add", bn_gp(RAX), bn_imm(1280), NONE);
    op(a, "inc", bn_gp(RBX), NONE, NONE);
    op(a, "cmp", bn_gp(RBX), bn_imm(runs), NONE);
    op(a, "jl", bn_label(run), NONE, NONE);
  }
  if (groups > runs * 4)
    for (int r = 0; r < 4; r++) {
      if (m->lut) unpack_lut(a, r, (int)(K % 1280 / 256), ahead);
      else unpack_row(a, m->W, r, 0, (int)(groups - runs * 4), K % 320 ? (int)(K % 320) / 64 : 5, ahead);
    }
  op(a, "add", bn_gp(R15), bn_imm(m->block), NONE);
  op(a, "add", bn_gp(R14), bn_imm(K), NONE);
  op(a, "add", bn_gp(R13), bn_imm(4), NONE);
  op(a, "cmp", bn_gp(R13), bn_gp(R12), NONE);
  op(a, "jl", bn_label(blk), NONE, NONE);
}

/* Prefill over the whole blocks of rows r9..r12 (rbp: the first): token tiles outside, tiles of
 * `rows` rows inside, so a token tile's activations stay in L1 across the rows. Leaves r9 = r12. */
static void block_tokens(bn_asm *a, const mmk *m, int rows, int tt) {
  int64_t row_bytes = (m->K + 63) / 64 * 64 + 64;
  int tok = bn_asm_new_label(a), row = bn_asm_new_label(a), end = bn_asm_new_label(a);
  bn_asm_bind(a, tok);
  op(a, "lea", bn_gp(RAX), bn_mem(R13, tt, 0), NONE);
  op(a, "cmp", bn_gp(RAX), bn_gp(R8), NONE);
  op(a, "jg", bn_label(end), NONE, NONE);
  op(a, "mov", bn_gp(R9), bn_gp(RBP), NONE);
  bn_asm_bind(a, row);
  row_base(a, m);
  any_tile(a, m, rows, tt);
  op(a, "add", bn_gp(R9), bn_imm(rows), NONE);
  op(a, "cmp", bn_gp(R9), bn_gp(R12), NONE);
  op(a, "jl", bn_label(row), NONE, NONE);
  op(a, "add", bn_gp(R14), bn_imm(row_bytes * tt), NONE);
  op(a, "add", bn_gp(R13), bn_imm(tt), NONE);
  op(a, "jmp", bn_label(tok), NONE, NONE);
  bn_asm_bind(a, end);
}

/* A norm + quantize row's pointers (registers) and shape; W the vector bytes (64 AVX-512, 32 AVX2). */
typedef struct {
  int W, x, w, q, tmp, silu, rms_only;
  int64_t K;
} nqrow;
typedef void row_step(bn_asm *a, const nqrow *p, int32_t e);

/* Floats e.. of row pointer b, and bytes e.. of the QA8 row, at r11 (row_steps' element). */
static bn_asm_op fl(int b, int32_t e, int bytes) { return bn_memx(b, R11, 4, 4 * e, bytes); }
static bn_asm_op by(int b, int32_t e, int bytes) { return bn_memx(b, R11, 1, e, bytes); }

/* step(e) over the elements e = 0, n, 2 n, .. of a K-wide row in order: a loop of `unroll` steps an
 * iteration, r11 its first element, then the steps past the last whole iteration (r11 at their start). A
 * loop, not K / n copies: 2b4t's FFN row unrolled was 100 KB of code a token, fetched from L2 each time. */
static void row_steps(bn_asm *a, const nqrow *p, int n, int unroll, row_step *step) {
  int64_t per = (int64_t)n * unroll, whole = p->K / per * per;
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  if (whole) {
    int l = bn_asm_new_label(a);
    bn_asm_bind(a, l);
    for (int u = 0; u < unroll; u++) step(a, p, u * n);
    op(a, "add", bn_gp(R11), bn_imm(per), NONE);
    op(a, "cmp", bn_gp(R11), bn_imm(whole), NONE);
    op(a, "jl", bn_label(l), NONE, NONE);
  }
  for (int64_t c = whole; c < p->K; c += n) step(a, p, (int32_t)(c - whole));
}

/* y's codes, scale s in vector 4: round-half-even(y s) to the QA8 row, their sum into vector 7. */
static void code_step(bn_asm *a, const nqrow *p, int32_t e) {
  int W = p->W;
  op(a, "vmulps", bn_vec(2, W), bn_vec(4, W), fl(p->tmp, e, W));
  bn_asm_emit(a, bn_asm_inst(W == 64 ? "vrndscaleps" : "vroundps"), bn_vec(2, W), bn_vec(2, W), bn_imm(W == 64 ? 0 : 8),
              NONE); /* half to even */
  op(a, "vcvtps2dq", bn_vec(2, W), bn_vec(2, W), NONE);
  op(a, "vpaddd", bn_vec(7, W), bn_vec(7, W), bn_vec(2, W));
  if (W == 64) op(a, "vpmovsdb", by(p->q, e, 16), bn_vec(2, 64), NONE);
  else { /* 8 codes: int32 -> int16 -> int8, exact (|code| <= 127) */
    op(a, "vextracti128", bn_vec(8, 16), bn_vec(2, 32), bn_imm(1));
    op(a, "vpackssdw", bn_vec(2, 16), bn_vec(2, 16), bn_vec(8, 16));
    op(a, "vpacksswb", bn_vec(2, 16), bn_vec(2, 16), bn_vec(2, 16));
    op(a, "vmovq", by(p->q, e, 8), bn_vec(2, 16), NONE);
  }
}

/* The codes of the row y at [tmp] (its max |y| in vector 5's lanes, the |.| mask in 6) into the QA8 row at
 * [q]: nq_row's end. */
static void quant_tail(bn_asm *a, const nqrow *p) {
  int W = p->W;
  int32_t meta = (int32_t)((p->K + 63) / 64 * 64);
  fold(a, 5, "vmaxps", W); /* the row's max */
  constant(a, 4, 1e-5, 1);
  op(a, "vmaxss", bn_vec(5, 16), bn_vec(5, 16), bn_vec(4, 16));
  constant(a, 4, 127.0, 1);
  op(a, "vdivss", bn_vec(4, 16), bn_vec(4, 16), bn_vec(5, 16)); /* s */
  op(a, "vmovss", bn_mem(p->q, meta, 4), bn_vec(4, 16), NONE);
  op(a, "vbroadcastss", bn_vec(4, W), bn_vec(4, 16), NONE);
  op(a, "vpxor", bn_vec(7, 32), bn_vec(7, 32), bn_vec(7, 32)); /* the sum of the codes */
  row_steps(a, p, W / 4, 4, code_step);
  hsum(a, 7, 8, W);
  op(a, "mov", bn_mem(p->q, meta + 4, 4), bn_gpd(RAX), NONE);
}

/* Vector 5 = max(vector 5, |x|) (the mask in 6). */
static void max_step(bn_asm *a, const nqrow *p, int32_t e) {
  op(a, p->W == 64 ? "vpandd" : "vpand", bn_vec(2, p->W), bn_vec(6, p->W), fl(p->x, e, p->W));
  op(a, "vmaxps", bn_vec(5, p->W), bn_vec(5, p->W), bn_vec(2, p->W));
}

/* The sum of squares' double accumulators: W / 8 lanes each, 128 / W of them. */
static const int SQ_ACC[4] = {0, 1, 8, 9};

/* 16 squares in double, element i into lane i % 16 of the accumulators. */
static void square_step(bn_asm *a, const nqrow *p, int32_t e) {
  const int *acc = SQ_ACC;
  int W = p->W;
  for (int h = 0; h < 128 / W; h++) {
    op(a, "vcvtps2pd", bn_vec(2, W), fl(p->x, e + W / 8 * h, W / 2), NONE);
    op(a, "vmulpd", bn_vec(2, W), bn_vec(2, W), bn_vec(2, W));
    op(a, "vaddpd", bn_vec(acc[h], W), bn_vec(acc[h], W), bn_vec(2, W));
  }
}

/* y = x inv w (inv in vector 3) to [q] (RMSNORM) or [tmp] with its |y| into vector 5's max. */
static void norm_step(bn_asm *a, const nqrow *p, int32_t e) {
  int W = p->W;
  op(a, "vmulps", bn_vec(2, W), bn_vec(3, W), fl(p->x, e, W));
  op(a, "vmulps", bn_vec(2, W), bn_vec(2, W), fl(p->w, e, W));
  op(a, "vmovups", fl(p->rms_only ? p->q : p->tmp, e, W), bn_vec(2, W), NONE);
  if (!p->rms_only) {
    op(a, W == 64 ? "vpandd" : "vpand", bn_vec(2, W), bn_vec(2, W), bn_vec(6, W));
    op(a, "vmaxps", bn_vec(5, W), bn_vec(5, W), bn_vec(2, W));
  }
}

/* One row's RMSNorm (+ quantize), bit for bit as bn_ref_rmsnorm and bn_ref_quantize: the sum of squares in
 * 16 double lanes (element i in lane i % 16, each square exact; 2 or 4 vectors of them) added lane by lane
 * in order; inv = (float)(1 / sqrt(ss / K + eps)); y = x inv w rounded twice. RMSNORM: y to [q]. Else y to
 * [tmp], then s = 127 / max(max |y|, 1e-5), the codes round-half-even(y s) (in range: |y s| <= 127), their
 * sum, s and the sum after the codes (QA8). QUANT: the same codes of y = x (bn_ref_quantize alone), max |x|
 * first. x, w, q, tmp: pointer registers; vectors 0..9, rax, r11, the red zone. */
static void nq_row(bn_asm *a, nqrow p, float eps, int mode) {
  int W = p.W, nacc = 128 / W;
  const int *acc = SQ_ACC;
  int64_t K = p.K;
  p.rms_only = mode == BN_NQ_RMSNORM;
  op(a, "vxorps", bn_vec(5, 32), bn_vec(5, 32), bn_vec(5, 32)); /* max |y| */
  if (mode == BN_NQ_QUANT) {
    splat_i(a, 6, 0x7fffffff, W);
    row_steps(a, &p, W / 4, 4, max_step);
    p.tmp = p.x;
    quant_tail(a, &p);
    return;
  }
  for (int h = 0; h < nacc; h++) op(a, "vxorpd", bn_vec(acc[h], 32), bn_vec(acc[h], 32), bn_vec(acc[h], 32));
  row_steps(a, &p, 16, 4, square_step);
  for (int h = 0; h < nacc; h++) op(a, "vmovupd", bn_mem(RSP, -128 + W * h, W), bn_vec(acc[h], W), NONE);
  op(a, "vmovsd", bn_vec(3, 16), bn_mem(RSP, -128, 8), NONE);
  for (int l = 1; l < 16; l++) op(a, "vaddsd", bn_vec(3, 16), bn_vec(3, 16), bn_mem(RSP, -128 + 8 * l, 8));
  constant(a, 4, (double)K, 0);
  op(a, "vdivsd", bn_vec(3, 16), bn_vec(3, 16), bn_vec(4, 16));
  constant(a, 4, (double)eps, 0);
  op(a, "vaddsd", bn_vec(3, 16), bn_vec(3, 16), bn_vec(4, 16));
  op(a, "vsqrtsd", bn_vec(3, 16), bn_vec(3, 16), bn_vec(3, 16));
  constant(a, 4, 1.0, 0);
  op(a, "vdivsd", bn_vec(3, 16), bn_vec(4, 16), bn_vec(3, 16));
  op(a, "vcvtsd2ss", bn_vec(3, 16), bn_vec(3, 16), bn_vec(3, 16));
  op(a, "vbroadcastss", bn_vec(3, W), bn_vec(3, 16), NONE); /* inv */
  splat_i(a, 6, 0x7fffffff, W);                             /* |.| mask */
  row_steps(a, &p, W / 4, 4, norm_step);
  if (!p.rms_only) quant_tail(a, &p);
}

/* act(g) * u of one vector (g | u at [x], 2K floats) to [tmp]: relu2(g) = g > 0 ? g g : 0, exactly; silu(g)
 * = g / (1 + exp(-g)), with vexp's exp for libm's. */
static void gate_step(bn_asm *a, const nqrow *p, int32_t e) {
  int W = p->W;
  op(a, "vmovups", bn_vec(2, W), fl(p->x, e, W), NONE);
  if (p->silu) {
    op(a, "vsubps", bn_vec(3, W), bn_vec(8, W), bn_vec(2, W)); /* -g */
    if (W == 64) vexp_pre(a, 4, 3, 24, 25, 12);
    else vexp(a, 4, 3, 10, W);
    op(a, "vaddps", bn_vec(4, W), bn_vec(4, W), bn_vec(9, W));
    op(a, "vdivps", bn_vec(2, W), bn_vec(2, W), bn_vec(4, W));
  } else if (W == 64) {
    bn_asm_emit(a, bn_asm_inst("vcmpps"), bn_kreg(2), bn_vec(2, 64), bn_vec(8, 64), bn_imm(0x1e)); /* g > 0 */
    bn_asm_mask(a, 2, 1);
    op(a, "vmulps", bn_vec(2, 64), bn_vec(2, 64), bn_vec(2, 64));
  } else {
    bn_asm_emit(a, bn_asm_inst("vcmpps"), bn_vec(3, 32), bn_vec(2, 32), bn_vec(8, 32), bn_imm(0x1e)); /* g > 0 */
    op(a, "vmulps", bn_vec(2, 32), bn_vec(2, 32), bn_vec(2, 32));
    op(a, "vandps", bn_vec(2, 32), bn_vec(2, 32), bn_vec(3, 32));
  }
  op(a, "vmulps", bn_vec(2, W), bn_vec(2, W), fl(p->x, (int32_t)p->K + e, W));
  op(a, "vmovups", fl(p->tmp, e, W), bn_vec(2, W), NONE);
}

/* The FFN gate's middle, act(g) * u of the row into [tmp], as the reference computes it (a code may then
 * move by one on a rounding tie of exp against libm's, as with the LLVM kernel). Vectors 2..4, 8, 9, exp's
 * scratch (24, 25 and its constants 12..23 on AVX-512; 10..12 on AVX2); mask 2. */
static void gate_row(bn_asm *a, const nqrow *p) {
  op(a, "vxorps", bn_vec(8, 32), bn_vec(8, 32), bn_vec(8, 32));
  if (p->silu) splat(a, 9, 1.0, p->W);
  if (p->silu && p->W == 64) vexp_consts(a, 12);
  row_steps(a, p, p->W / 4, p->silu ? 2 : 4, gate_step);
}

/* One row of a norm + quantize kernel: the gate first (into tmp, then normalized in place) or not. */
static void nq_any(bn_asm *a, int W, int64_t K, float eps, int mode, int x, int w, int q, int tmp) {
  nqrow p = {.W = W, .x = x, .w = w, .q = q, .tmp = tmp, .K = K,
             .silu = mode == BN_NQ_GATE_SILU || mode == BN_NQ_GATE_SILU_Q};
  if (bn_nq_gated(mode)) {
    gate_row(a, &p);
    p.x = tmp;
  }
  nq_row(a, p, eps, bn_nq_normed(mode) ? mode : BN_NQ_QUANT);
}

/* bn_nq_kernel (x rdi, w rsi, qa rdx, tmp rcx, T r8, t0 r9, t1 on the stack), every mode; group: RMSNORM over
 * each group-wide piece of a row alone (tokens t0..t1 as rows of group floats, K / group a token). */
void bn_asmjit_norm_quant(bn_asm *a, int avx512, int64_t K, int64_t group, int mode, float eps) {
  int64_t per = group ? K / group : 1;
  if (group) K = group;
  int64_t out_row = mode == BN_NQ_RMSNORM ? 4 * K : (K + 63) / 64 * 64 + 64, in_row = bn_nq_gated(mode) ? 8 * K : 4 * K;
  int loop = bn_asm_new_label(a), done = bn_asm_new_label(a);
  op(a, "mov", bn_gp(R10), bn_mem(RSP, 8, 8), NONE); /* t1 */
  if (per > 1) {
    op(a, "imul", bn_gp(R9), bn_gp(R9), bn_imm(per));
    op(a, "imul", bn_gp(R10), bn_gp(R10), bn_imm(per));
  }
  op(a, "cmp", bn_gp(R9), bn_gp(R10), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  op(a, "imul", bn_gp(R11), bn_gp(R9), bn_imm(in_row));
  op(a, "add", bn_gp(RDI), bn_gp(R11), NONE); /* row t0 of x and of the output */
  op(a, "imul", bn_gp(R11), bn_gp(R9), bn_imm(out_row));
  op(a, "add", bn_gp(RDX), bn_gp(R11), NONE);
  bn_asm_bind(a, loop);
  nq_any(a, avx512 ? 64 : 32, K, eps, mode, RDI, RSI, RDX, RCX);
  op(a, "add", bn_gp(RDI), bn_imm(in_row), NONE);
  op(a, "add", bn_gp(RDX), bn_imm(out_row), NONE);
  loop_end(a, R9, R10, loop);
  bn_asm_bind(a, done);
  leave(a, 0);
}

/* Every token over the blocks of rows r9..r12 (block_tokens: 4 x 4 tiles on AVX-512, 2 x 2 on AVX2, then
 * single tokens), then on to `next`. */
static void prefill(bn_asm *a, const mmk *m, int next) {
  op(a, "xor", bn_gpd(R13), bn_gpd(R13), NONE);
  op(a, "mov", bn_gp(R14), bn_gp(RDI), NONE);
  block_tokens(a, m, m->W == 64 ? 4 : 2, m->W == 64 ? 4 : 2);
  block_tokens(a, m, 4, 1);
  op(a, "jmp", bn_label(next), NONE, NONE);
}

/* The TP2 kernel's view of TP1 rows unpacked into the scratch (unpack_t1). */
static mmk unpacked_t1(const mmk *m) {
  mmk tp2 = *m;
  tp2.t1 = 0, tp2.scratch = 1, tp2.block = m->K;
  return tp2;
}

/* TP1's code thresholds (AVX-512): c = (x > 85) + (x > 170). */
static void t1_constants(bn_asm *a) {
  splat_i(a, ONE, 0x01010101, 64);
  splat_i(a, T85, 0x55555555, 64);
  splat_i(a, T170, (int32_t)0xaaaaaaaa, 64);
}

/* lanes_loops' codes over TP1: rows r9..r9+15 unpacked into TP2 in the scratch matmul_rows made (unpack_t1,
 * after its thresholds again: prefill_r's tiles use every vector), then transposed (pg_codes). Per chunk of
 * tokens, as TP2's, so that the chunk's activations stay in L2 across the rows. */
static void pr1_codes(bn_asm *a, const mmk *m, const pg_frame *f) {
  mmk tp2 = unpacked_t1(m);
  op(a, "mov", bn_mem(RSP, f->slot + 24, 8), bn_gp(R12), NONE);
  op(a, "mov", bn_mem(RSP, f->slot + 32, 8), bn_gp(R13), NONE);
  op(a, "lea", bn_gp(R12), bn_mem(R9, 16, 0), NONE);
  t1_constants(a);
  unpack_t1(a, m, bn_mem(RSP, f->slot, 8));
  op(a, "mov", bn_gp(R12), bn_mem(RSP, f->slot + 24, 8), NONE);
  op(a, "mov", bn_gp(R13), bn_mem(RSP, f->slot + 32, 8), NONE);
  pg_codes(a, &tp2, f);
}

/* The rows-in-the-lanes prefill over TP2, or over TP1 unpacked per chunk (pr1_codes; its thresholds set
 * again after). */
static void prefill_r(bn_asm *a, const mmk *m) {
  int32_t codes = (int32_t)(4 * m->K);
  lanes_loops(a, m, &(pg_frame){.slot = codes, .size = codes + 64}, PR_TT, PR_TC, NULL, m->t1 ? pr1_codes : pg_codes,
              pr_tile);
  if (m->t1) t1_constants(a);
}

/* Prefill by 16-row tiles (prefill_r, prefill_g) when T r8 >= min_t and r9..r12 (whole blocks) hold 16 rows
 * or more: over the first multiple of 16 of them, then on to `next` (the rows left go the 4-row way). */
static void lanes16(bn_asm *a, const mmk *m, int min_t, void (*prefill16)(bn_asm *, const mmk *), int next) {
  int small = bn_asm_new_label(a);
  op(a, "cmp", bn_gp(R8), bn_imm(min_t), NONE);
  op(a, "jl", bn_label(small), NONE, NONE);
  op(a, "mov", bn_gp(RAX), bn_gp(R12), NONE);
  op(a, "sub", bn_gp(RAX), bn_gp(R9), NONE);
  op(a, "cmp", bn_gp(RAX), bn_imm(16), NONE);
  op(a, "jl", bn_label(small), NONE, NONE);
  op(a, "and", bn_gp(RAX), bn_imm(-16), NONE);
  op(a, "lea", bn_gp(R12), bn_memx(R9, RAX, 1, 0, 0), NONE);
  prefill16(a, m);
  op(a, "jmp", bn_label(next), NONE, NONE);
  bn_asm_bind(a, small);
}

/* The matmul over rows r9..r10, T r8 tokens of QA8 at rdi (w rsi, out rdx, resid rcx), callee-saved
 * registers pushed already. */
static void matmul_rows(bn_asm *a, const mmk *m) {
  int W = m->W;
  int64_t N = m->N, full = N / 4 * 4;
  int row_loop = bn_asm_new_label(a), single = bn_asm_new_label(a), next = bn_asm_new_label(a);
  int done = bn_asm_new_label(a), block4 = bn_asm_new_label(a);
  if (m->t1) { /* TP1's code thresholds: c = (x > 85) + (x > 170) */
    if (W == 64) t1_constants(a);
    op(a, "mov", bn_gp(RAX), bn_gp(RSP), NONE); /* the scratch, 64-byte aligned, the old rsp after it */
    op(a, "sub", bn_gp(RSP), bn_imm(BLOCK / 4 * m->K + 64), NONE);
    op(a, "and", bn_gp(RSP), bn_imm(-64), NONE);
    op(a, "mov", bn_mem(RSP, (int32_t)(BLOCK / 4 * m->K), 8), bn_gp(RAX), NONE);
    if (W == 32) { /* AVX2's constants (RED), in the red zone below the scratch */
      static const int32_t C[4] = {(int32_t)0x80808080, (int32_t)0xd5d5d5d5, 0x2a2a2a2a, 0x00010001};
      for (int c = 0; c < 4; c++) {
        splat_i(a, 12, C[c], 32);
        op(a, "vmovdqu", bn_mem(RSP, RED + 32 * c, 32), bn_vec(12, 32), NONE);
      }
    }
  }
  int gdec = m->gs && W == 64; /* decode over TG2: the token's group sums once, K bytes at rsp (g_token_sums) */
  if (gdec) {
    int skip = bn_asm_new_label(a);
    op(a, "mov", bn_gp(RAX), bn_gp(RSP), NONE);
    op(a, "sub", bn_gp(RSP), bn_imm(m->K + 64), NONE);
    op(a, "and", bn_gp(RSP), bn_imm(-64), NONE);
    op(a, "mov", bn_mem(RSP, (int32_t)m->K, 8), bn_gp(RAX), NONE);
    op(a, "cmp", bn_gp(R8), bn_imm(1), NONE);
    op(a, "jne", bn_label(skip), NONE, NONE);
    g_token_sums(a, m);
    bn_asm_bind(a, skip);
  }
  splat_i(a, W == 64 ? MASK : 14, 0x03030303, W); /* TP2's code mask (TP1's unpacked too) */
  op(a, "cmp", bn_gp(R9), bn_gp(R10), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  bn_asm_bind(a, row_loop);
  row_base(a, m);
  if (full) { /* a whole block of 4 within n0..n1: the tile */
    op(a, "test", bn_gp(R9), bn_imm(3), NONE);
    op(a, "jnz", bn_label(single), NONE, NONE);
    op(a, "lea", bn_gp(RAX), bn_mem(R9, 4, 0), NONE);
    op(a, "cmp", bn_gp(RAX), bn_gp(R10), NONE);
    op(a, "jg", bn_label(single), NONE, NONE);
    op(a, "cmp", bn_gp(RAX), bn_imm(full), NONE);
    op(a, "jg", bn_label(single), NONE, NONE);
    int many = bn_asm_new_label(a);
    op(a, "cmp", bn_gp(R8), bn_imm(1), NONE);
    op(a, "jg", bn_label(many), NONE, NONE);
    if (gdec) { /* decode: one block, one stream */
      mmk dm = *m;
      dm.qimg = 1;
      op(a, "xor", bn_gpd(R13), bn_gpd(R13), NONE);
      op(a, "mov", bn_gp(R14), bn_gp(RDI), NONE);
      token_tiles(a, &dm, 4, 1);
    } else token_loop(a, m, 4);
    op(a, "add", bn_gp(R9), bn_imm(4), NONE);
    op(a, "jmp", bn_label(next), NONE, NONE);
    bn_asm_bind(a, many); /* prefill: blocks of up to `block` rows, r9..r12 */
    op(a, "mov", bn_gp(RBP), bn_gp(R9), NONE);
    op(a, "mov", bn_gp(R12), bn_gp(R10), NONE);
    op(a, "and", bn_gp(R12), bn_imm(-4), NONE);
    op(a, "mov", bn_gp(RAX), bn_imm(full), NONE);
    op(a, "cmp", bn_gp(R12), bn_gp(RAX), NONE);
    op(a, "cmovg", bn_gp(R12), bn_gp(RAX), NONE);
    if (W == 64 && !m->gs && m->lanes && m->K <= PR_MAXK) lanes16(a, m, PR_MINT, prefill_r, next); /* rows in the lanes */
    if (gdec && m->K <= PG_MAXK) lanes16(a, m, PG_TT, prefill_g, next); /* tokens in the lanes */
    op(a, "lea", bn_gp(RAX), bn_mem(R9, BLOCK, 0), NONE);
    op(a, "cmp", bn_gp(R12), bn_gp(RAX), NONE);
    op(a, "cmovg", bn_gp(R12), bn_gp(RAX), NONE);
    if (m->t1) { /* 8 tokens or more (AVX2: 2), unpacked once into TP2 in the scratch */
      int direct = bn_asm_new_label(a);
      mmk tp2 = unpacked_t1(m);
      if (W == 64) {
        op(a, "cmp", bn_gp(R8), bn_imm(8), NONE);
        op(a, "jl", bn_label(direct), NONE, NONE);
      }
      unpack_t1(a, m, bn_gp(RSP));
      prefill(a, &tp2, next);
      bn_asm_bind(a, direct);
    }
    if (!m->t1 || W == 64) prefill(a, m, next);
  }
  bn_asm_bind(a, single);
  if (m->t1 && W == 32) op(a, "ud2", NONE, NONE, NONE); /* AVX2 over TP1: whole blocks only (be_supports, the executor's shares) */
  else {
    op(a, "mov", bn_gp(R12), bn_imm(256), NONE);
    if (N % 4) { /* the last, short block */
      op(a, "cmp", bn_gp(R9), bn_imm(full), NONE);
      op(a, "jl", bn_label(block4), NONE, NONE);
      op(a, "mov", bn_gp(R12), bn_imm(N % 4 * 64), NONE);
    }
    bn_asm_bind(a, block4);
    token_loop(a, m, 1);
    op(a, "inc", bn_gp(R9), NONE, NONE);
  }
  bn_asm_bind(a, next);
  op(a, "cmp", bn_gp(R9), bn_gp(R10), NONE);
  op(a, "jl", bn_label(row_loop), NONE, NONE);
  bn_asm_bind(a, done);
  if (m->t1) op(a, "mov", bn_gp(RSP), bn_mem(RSP, (int32_t)(BLOCK / 4 * m->K), 8), NONE);
  if (gdec) op(a, "mov", bn_gp(RSP), bn_mem(RSP, (int32_t)m->K, 8), NONE);
}

/* bn_mm_kernel (n1 the 7th argument, on the stack); with pro (1 + BN_NQ_PLAIN or a gate's mode) a
 * bn_mmp_kernel: qa rdi is scratch it first fills with the T rows of x r8 normalized by wn r9 (tmp, T, n0,
 * n1 on the stack). */
void bn_asmjit_matmul(bn_asm *a, int avx512, const bn_asmjit_tuning *tune, bn_dtype wt, int64_t K, int64_t N, int mode,
                      int pro, float eps) {
  int W = avx512 ? 64 : 32, t1 = wt == BN_DT_TP1;
  int64_t rb = t1 ? (int64_t)bn_tp1_row_bytes((uint64_t)K) : K / 4; /* a row's packed bytes */
  mmk m = {.W = W, .t1 = t1, .gs = wt == BN_DT_TG2 ? 1 : wt == BN_DT_TG2H ? 2 : 0, .mode = mode, .K = K, .N = N,
           .block = 4 * rb, .scales = (int32_t)(N * rb), .ahead = tune->ahead,
           .lanes = tune->rows_in_lanes, .lut = avx512 && t1 ? tune->t1_lut : NULL};
  enter(a, 6);
  enum { ARGS = 8 + 6 * 8 }; /* the stack arguments, above the return address and the saves */
  if (!pro) op(a, "mov", bn_gp(R10), bn_mem(RSP, ARGS, 8), NONE);
  else {
    int loop = bn_asm_new_label(a), rows = bn_asm_new_label(a);
    op(a, "mov", bn_gp(RBX), bn_gp(R8), NONE);            /* x */
    op(a, "mov", bn_gp(R12), bn_gp(R9), NONE);            /* the norm weights */
    op(a, "mov", bn_gp(R13), bn_mem(RSP, ARGS, 8), NONE); /* tmp */
    op(a, "mov", bn_gp(R14), bn_gp(RDI), NONE);           /* the token's QA8 row */
    op(a, "xor", bn_gpd(R15), bn_gpd(R15), NONE);
    op(a, "cmp", bn_gp(R15), bn_mem(RSP, ARGS + 8, 8), NONE);
    op(a, "jge", bn_label(rows), NONE, NONE);
    bn_asm_bind(a, loop);
    nq_any(a, W, K, eps, pro - 1, RBX, R12, R14, R13);
    op(a, "add", bn_gp(RBX), bn_imm(pro - 1 == BN_NQ_PLAIN ? 4 * K : 8 * K), NONE);
    op(a, "add", bn_gp(R14), bn_imm((K + 63) / 64 * 64 + 64), NONE);
    op(a, "inc", bn_gp(R15), NONE, NONE);
    op(a, "cmp", bn_gp(R15), bn_mem(RSP, ARGS + 8, 8), NONE);
    op(a, "jl", bn_label(loop), NONE, NONE);
    bn_asm_bind(a, rows);
    op(a, "mov", bn_gp(R8), bn_mem(RSP, ARGS + 8, 8), NONE);
    op(a, "mov", bn_gp(R9), bn_mem(RSP, ARGS + 16, 8), NONE);
    op(a, "mov", bn_gp(R10), bn_mem(RSP, ARGS + 24, 8), NONE);
  }
  matmul_rows(a, &m);
  leave(a, 6);
}

/* bn_peak_kernel (in rdi, out rsi, iters rdx): 8 independent chains of int8 multiply-adds on registers
 * over in's two vectors, as the LLVM backend's peak loop: vpdpbusd (AVX-512 VNNI), or vpmaddubsw,
 * vpmaddwd by ones and vpaddd (AVX2, 8 lanes); their sum to out so no chain is dead. */
void bn_asmjit_peak(bn_asm *a, int avx512) {
  int vb = avx512 ? 64 : 32, loop = bn_asm_new_label(a), done = bn_asm_new_label(a);
  const char *mov = avx512 ? "vmovdqu64" : "vmovdqu";
  op(a, mov, bn_vec(8, vb), bn_mem(RDI, 0, vb), NONE);
  op(a, mov, bn_vec(9, vb), bn_mem(RDI, 64, vb), NONE);
  for (int k = 0; k < 8; k++) op(a, "vpxor", bn_vec(k, 32), bn_vec(k, 32), bn_vec(k, 32));
  if (!avx512) { /* the 16-bit ones of vpmaddwd */
    op(a, "mov", bn_gpd(RAX), bn_imm(0x00010001), NONE);
    op(a, "vmovd", bn_vec(10, 16), bn_gpd(RAX), NONE);
    op(a, "vpbroadcastd", bn_vec(10, 32), bn_vec(10, 16), NONE);
  }
  op(a, "xor", bn_gpd(RAX), bn_gpd(RAX), NONE);
  op(a, "cmp", bn_gp(RAX), bn_gp(RDX), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  bn_asm_bind(a, loop);
  for (int k = 0; k < 8; k++)
    if (avx512) op(a, "vpdpbusd", bn_vec(k, 64), bn_vec(8, 64), bn_vec(9, 64));
    else {
      op(a, "vpmaddubsw", bn_vec(11, 32), bn_vec(8, 32), bn_vec(9, 32));
      op(a, "vpmaddwd", bn_vec(11, 32), bn_vec(11, 32), bn_vec(10, 32));
      op(a, "vpaddd", bn_vec(k, 32), bn_vec(k, 32), bn_vec(11, 32));
    }
  loop_end(a, RAX, RDX, loop);
  bn_asm_bind(a, done);
  for (int k = 1; k < 8; k++) op(a, "vpaddd", bn_vec(0, vb), bn_vec(0, vb), bn_vec(k, vb));
  op(a, mov, bn_mem(RSI, 0, vb), bn_vec(0, vb), NONE);
  leave(a, 0);
}
