/* The asmjit backend: x86 kernels emitted instruction by instruction through the C shim
 * (shim/shim.h), every shape a constant, for AVX-512 or AVX2. Families it has no emitter for
 * yet are not supported: their nodes run the reference kernels (docs/asmjit.md says which). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ir/clock.h"
#include "../backend.h"
#include "shim/shim.h"

enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };

typedef struct {
  bn_kkey key;
  void *fn;
} emitted;

typedef struct {
  bn_asm_rt *rt;
  int avx512, vnni;
  emitted *done; /* every kernel emitted, by key: a key seen again reuses its code */
  int n_done, cap_done;
  bn_codegen_counts counts;
  int ids[8]; /* instruction ids, looked up once */
} asmjit_be;
enum { I_MOV, I_IMUL, I_LEA, I_MOVSXD, I_VMOVUPS, I_VCVTPH2PS, I_KMOVW, I_VZEROUPPER };
static const char *const INSTS[] = {"mov", "imul", "lea", "movsxd", "vmovups", "vcvtph2ps", "kmovw", "vzeroupper"};

static const bn_asm_op NONE = {0};

static void ins(bn_asm *a, const asmjit_be *b, int i, bn_asm_op o0, bn_asm_op o1, bn_asm_op o2) {
  bn_asm_emit(a, b->ids[i], o0, o1, o2, NONE);
}
static void op(bn_asm *a, const char *name, bn_asm_op o0, bn_asm_op o1, bn_asm_op o2) {
  bn_asm_emit(a, bn_asm_inst(name), o0, o1, o2, NONE);
}

/* The end of a counted loop: reg + 1, back to label while below limit (a register). */
static void loop_end(bn_asm *a, int reg, int limit, int label) {
  op(a, "inc", bn_gp(reg), NONE, NONE);
  op(a, "cmp", bn_gp(reg), bn_gp(limit), NONE);
  op(a, "jl", bn_label(label), NONE, NONE);
}

/* Copies n floats from [src] to [dst] (f16: n halves at src, widened), vectors of `lanes`, the
 * remainder under a mask (AVX-512) or one at a time (AVX2). Uses vector 0, mask 1, rax. */
static void copy_row(bn_asm *a, const asmjit_be *b, int src, int dst, int64_t n, int f16) {
  int lanes = b->avx512 ? 16 : 8, vb = lanes * 4, ib = f16 ? 2 : 4;
  int64_t full = n / lanes * lanes;
  for (int64_t c = 0; c < full; c += lanes) {
    if (f16) ins(a, b, I_VCVTPH2PS, bn_vec(0, vb), bn_mem(src, (int32_t)(c * ib), vb / 2), NONE);
    else ins(a, b, I_VMOVUPS, bn_vec(0, vb), bn_mem(src, (int32_t)(c * ib), vb), NONE);
    ins(a, b, I_VMOVUPS, bn_mem(dst, (int32_t)(c * 4), vb), bn_vec(0, vb), NONE);
  }
  int64_t rem = n - full;
  if (!rem) return;
  if (b->avx512) {
    ins(a, b, I_MOV, bn_gpd(RAX), bn_imm((1 << rem) - 1), NONE);
    ins(a, b, I_KMOVW, bn_kreg(1), bn_gpd(RAX), NONE);
    bn_asm_mask(a, 1, 1);
    if (f16) ins(a, b, I_VCVTPH2PS, bn_vec(0, 64), bn_mem(src, (int32_t)(full * ib), 32), NONE);
    else ins(a, b, I_VMOVUPS, bn_vec(0, 64), bn_mem(src, (int32_t)(full * ib), 64), NONE);
    bn_asm_mask(a, 1, 0);
    ins(a, b, I_VMOVUPS, bn_mem(dst, (int32_t)(full * 4), 64), bn_vec(0, 64), NONE);
    return;
  }
  for (int64_t c = full; c < n; c++) {
    if (f16) {
      op(a, "movzx", bn_gpd(RAX), bn_mem(src, (int32_t)(c * 2), 2), NONE);
      op(a, "vmovd", bn_vec(0, 16), bn_gpd(RAX), NONE);
      ins(a, b, I_VCVTPH2PS, bn_vec(0, 16), bn_vec(0, 16), NONE);
    } else op(a, "vmovss", bn_vec(0, 16), bn_mem(src, (int32_t)(c * 4), 4), NONE);
    op(a, "vmovss", bn_mem(dst, (int32_t)(c * 4), 4), bn_vec(0, 16), NONE);
  }
}

/* A bn_rows_kernel (in: rdi, w: rsi, y: rdx, T: rcx, t0: r8, t1: r9): for rows t0..t1, r10 the
 * source row and r11 the destination row of n floats, then copy_row. embed: the source row is
 * row in[t] of the table w (K wide, f16 or f32); else columns off.. of row t of in (K wide). */
static void rows_kernel(bn_asm *a, const asmjit_be *b, int embed, int64_t K, int64_t n, int64_t off, int f16) {
  int loop = bn_asm_new_label(a), done = bn_asm_new_label(a);
  op(a, "cmp", bn_gp(R8), bn_gp(R9), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  bn_asm_bind(a, loop);
  if (embed) {
    ins(a, b, I_MOVSXD, bn_gp(RAX), bn_memx(RDI, R8, 4, 0, 4), NONE); /* the token id */
    ins(a, b, I_IMUL, bn_gp(RAX), bn_gp(RAX), bn_imm(K * (f16 ? 2 : 4)));
    ins(a, b, I_LEA, bn_gp(R10), bn_memx(RSI, RAX, 1, 0, 0), NONE);
  } else {
    ins(a, b, I_IMUL, bn_gp(RAX), bn_gp(R8), bn_imm(K * 4));
    ins(a, b, I_LEA, bn_gp(R10), bn_memx(RDI, RAX, 1, (int32_t)(off * 4), 0), NONE);
  }
  ins(a, b, I_IMUL, bn_gp(RAX), bn_gp(R8), bn_imm(n * 4));
  ins(a, b, I_LEA, bn_gp(R11), bn_memx(RDX, RAX, 1, 0, 0), NONE);
  copy_row(a, b, R10, R11, n, f16);
  loop_end(a, R8, R9, loop);
  bn_asm_bind(a, done);
  ins(a, b, I_VZEROUPPER, NONE, NONE, NONE);
  op(a, "ret", NONE, NONE, NONE);
}


/* The ternary matmul (bn_mm_kernel: qa rdi, w rsi, out rdx, resid rcx, T r8, n0 r9, n1 on the stack), AVX-512
 * VNNI. A TP2 group's 64 bytes shifted by 0, 2, 4, 6 and masked are the codes (trit + 1) of 64
 * elements each, multiplied with the 64 activations by vpdpbusd; the lane sum less the token's sum of
 * codes (qa8's "offset trick") is the exact int32 sum, dequantized as the reference does:
 * (float)((double)acc * row_scale / s), plus the residual. A whole block of 4 rows, whose groups TP2
 * interleaves (bn_tp2_group), is a tile read front to back: per group four activation vectors loaded
 * once feed the 16 products of its rows, two chains a row; a short last block goes row by row, a
 * row's groups then 64 x its rows apart. */
enum { CV = 16, WV = 20, QV = 24, S0 = 28, S1 = 29, MASK = 31 }; /* vector registers; accumulators from 0 */
enum { AHEAD = 6144 }; /* bytes of the weight stream a decode tile prefetches ahead, as the LLVM kernel does */

/* eax = the lane sum of int32 vector v (scratch S0). */
static void hsum(bn_asm *a, int v) {
  op(a, "vextracti64x4", bn_vec(S0, 32), bn_vec(v, 64), bn_imm(1));
  op(a, "vpaddd", bn_vec(v, 32), bn_vec(v, 32), bn_vec(S0, 32));
  op(a, "vextracti32x4", bn_vec(S0, 16), bn_vec(v, 32), bn_imm(1));
  op(a, "vpaddd", bn_vec(v, 16), bn_vec(v, 16), bn_vec(S0, 16));
  op(a, "vpshufd", bn_vec(S0, 16), bn_vec(v, 16), bn_imm(0x4e));
  op(a, "vpaddd", bn_vec(v, 16), bn_vec(v, 16), bn_vec(S0, 16));
  op(a, "vpshufd", bn_vec(S0, 16), bn_vec(v, 16), bn_imm(0xb1));
  op(a, "vpaddd", bn_vec(v, 16), bn_vec(v, 16), bn_vec(S0, 16));
  op(a, "vmovd", bn_gpd(RAX), bn_vec(v, 16), NONE);
}

/* Row r9 + r of token r13 + t (its QA8 row at r14 + t row_bytes) from its lane sum in eax; r11 = r13 N + r9. */
static void epilogue(bn_asm *a, int64_t K, int64_t N, int mode, int r, int t) {
  int32_t meta = (int32_t)((K + 63) / 64 * 64), row = (int32_t)(meta + 64) * t, at = (int32_t)(4 * (t * N + r));
  op(a, "sub", bn_gpd(RAX), bn_mem(R14, row + meta + 4, 4), NONE); /* less the sum of the codes */
  if (mode == BN_MM_ACC) {
    op(a, "mov", bn_memx(RDX, R11, 4, at, 4), bn_gpd(RAX), NONE);
    return;
  }
  op(a, "vcvtsi2sd", bn_vec(S0, 16), bn_vec(S0, 16), bn_gpd(RAX));
  op(a, "vcvtss2sd", bn_vec(S1, 16), bn_vec(S1, 16), bn_memx(RSI, R9, 4, (int32_t)(N * K / 4 + 4 * r), 4)); /* row scale */
  op(a, "vmulsd", bn_vec(S0, 16), bn_vec(S0, 16), bn_vec(S1, 16));
  op(a, "vcvtss2sd", bn_vec(S1, 16), bn_vec(S1, 16), bn_mem(R14, row + meta, 4)); /* the token's scale */
  op(a, "vdivsd", bn_vec(S0, 16), bn_vec(S0, 16), bn_vec(S1, 16));
  op(a, "vcvtsd2ss", bn_vec(S0, 16), bn_vec(S0, 16), bn_vec(S0, 16));
  if (mode == BN_MM_DQ_ADD) op(a, "vaddss", bn_vec(S0, 16), bn_vec(S0, 16), bn_memx(RCX, R11, 4, at, 4));
  op(a, "vmovss", bn_memx(RDX, R11, 4, at, 4), bn_vec(S0, 16), NONE);
}

/* The 4 x 4 tile's epilogue on vectors: the 16 accumulators (row r, token t in vector 4 r + t) reduced
 * by a transposing tree in registers (folding 512-bit halves, then 128-bit lanes, then qwords, then
 * dwords) into one vector whose lane 4 t + r holds their sum; then the same operations per lane as the
 * scalar epilogue, in double for 8 lanes at a time, so the same bits. Uses every vector but 31. */
static void shuf(bn_asm *a, const char *inst, int d, int x, int y, int imm) {
  bn_asm_emit(a, bn_asm_inst(inst), bn_vec(d, 64), bn_vec(x, 64), bn_vec(y, 64), bn_imm(imm));
}

static void tile_epilogue(bn_asm *a, int64_t K, int64_t N, int mode) {
  int32_t rb = (int32_t)((K + 63) / 64 * 64 + 64), meta = rb - 64, nb = (int32_t)(4 * N);
  for (int i = 0; i < 8; i++) {
    shuf(a, "vshufi64x2", 16 + i, 2 * i, 2 * i + 1, 0x44);
    shuf(a, "vshufi64x2", 24, 2 * i, 2 * i + 1, 0xee);
    op(a, "vpaddd", bn_vec(16 + i, 64), bn_vec(16 + i, 64), bn_vec(24, 64));
  }
  for (int j = 0; j < 4; j++) {
    shuf(a, "vshufi32x4", 24, 16 + 2 * j, 17 + 2 * j, 0x88);
    shuf(a, "vshufi32x4", 25, 16 + 2 * j, 17 + 2 * j, 0xdd);
    op(a, "vpaddd", bn_vec(j, 64), bn_vec(24, 64), bn_vec(25, 64));
  }
  for (int k = 0; k < 2; k++) {
    op(a, "vpunpcklqdq", bn_vec(24, 64), bn_vec(2 * k, 64), bn_vec(2 * k + 1, 64));
    op(a, "vpunpckhqdq", bn_vec(25, 64), bn_vec(2 * k, 64), bn_vec(2 * k + 1, 64));
    op(a, "vpaddd", bn_vec(4 + k, 64), bn_vec(24, 64), bn_vec(25, 64));
  }
  shuf(a, "vshufps", 24, 4, 5, 0x88);
  shuf(a, "vshufps", 25, 4, 5, 0xdd);
  op(a, "vpaddd", bn_vec(6, 64), bn_vec(24, 64), bn_vec(25, 64));
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
  op(a, "vcvtps2pd", bn_vec(8, 32), bn_memx(RSI, R9, 4, (int32_t)(N * K / 4), 16), NONE); /* rows' scales */
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

/* Tiles of `rows` rows (4: a block's, from rbx; 1: one row from rbx, its groups r12 bytes apart) by
 * tt tokens, from token r13 while tt more remain: r14 the first token's QA8 row, r15 the group, r11
 * the activations' offset. A group's codes are unpacked once for the tile's tokens; each (row, token)
 * accumulates in `chains` vectors (two when alone, to hide vpdpbusd's latency). */
static void token_tiles(bn_asm *a, int64_t K, int64_t N, int mode, int rows, int tt) {
  int64_t row_bytes = (K + 63) / 64 * 64 + 64;
  int chains = tt == 1 ? 2 : 1, n_acc = rows * tt * chains;
  int tok = bn_asm_new_label(a), grp = bn_asm_new_label(a), end = bn_asm_new_label(a);
  op(a, "lea", bn_gp(RAX), bn_mem(R13, tt, 0), NONE);
  op(a, "cmp", bn_gp(RAX), bn_gp(R8), NONE);
  op(a, "jg", bn_label(end), NONE, NONE);
  bn_asm_bind(a, tok);
  for (int c = 0; c < n_acc; c++) op(a, "vpxord", bn_vec(c, 64), bn_vec(c, 64), bn_vec(c, 64));
  op(a, "mov", bn_gp(R15), bn_gp(RBX), NONE);
  op(a, "xor", bn_gpd(R11), bn_gpd(R11), NONE);
  bn_asm_bind(a, grp);
  for (int r = 0; r < rows; r++) {
    if (rows == 4 && tt == 1) op(a, "prefetcht0", bn_mem(R15, AHEAD + 64 * r, 64), NONE, NONE); /* decode's stream */
    op(a, "vmovdqu64", bn_vec(WV + r, 64), bn_mem(R15, 64 * r, 64), NONE);
  }
  for (int c = 0; c < 4; c++) { /* elements 64 c .. 64 c + 63 of the group: bits 2 c of each byte */
    for (int r = 0; r < rows; r++) {
      if (c) op(a, "vpsrlw", bn_vec(CV + r, 64), bn_vec(WV + r, 64), bn_imm(2 * c));
      op(a, "vpandd", bn_vec(CV + r, 64), bn_vec(c ? CV + r : WV + r, 64), bn_vec(MASK, 64));
    }
    for (int t = 0; t < tt; t++) {
      if (tt == 1) op(a, "vmovdqu64", bn_vec(QV, 64), bn_memx(R14, R11, 1, 64 * c, 64), NONE);
      for (int r = 0; r < rows; r++)
        op(a, "vpdpbusd", bn_vec((r * tt + t) * chains + c % chains, 64), bn_vec(CV + r, 64),
           tt == 1 ? bn_vec(QV, 64) : bn_memx(R14, R11, 1, (int32_t)(row_bytes * t + 64 * c), 64));
    }
  }
  if (rows == 4) op(a, "add", bn_gp(R15), bn_imm(256), NONE);
  else op(a, "add", bn_gp(R15), bn_gp(R12), NONE);
  op(a, "add", bn_gp(R11), bn_imm(256), NONE);
  op(a, "cmp", bn_gp(R11), bn_imm(K), NONE);
  op(a, "jl", bn_label(grp), NONE, NONE);
  op(a, "mov", bn_gp(R11), bn_gp(R13), NONE); /* out index t N + n */
  op(a, "imul", bn_gp(R11), bn_gp(R11), bn_imm(N));
  op(a, "add", bn_gp(R11), bn_gp(R9), NONE);
  if (rows == 4 && tt == 4) tile_epilogue(a, K, N, mode);
  else
    for (int r = 0; r < rows; r++)
      for (int t = 0; t < tt; t++) {
        int v = (r * tt + t) * chains;
        if (chains == 2) op(a, "vpaddd", bn_vec(v, 64), bn_vec(v, 64), bn_vec(v + 1, 64));
        hsum(a, v);
        epilogue(a, K, N, mode, r, t);
      }
  op(a, "add", bn_gp(R14), bn_imm(row_bytes * tt), NONE);
  op(a, "add", bn_gp(R13), bn_imm(tt), NONE);
  op(a, "lea", bn_gp(RAX), bn_mem(R13, tt, 0), NONE);
  op(a, "cmp", bn_gp(RAX), bn_gp(R8), NONE);
  op(a, "jle", bn_label(tok), NONE, NONE);
  bn_asm_bind(a, end);
}

/* Every token for the rows at rbx: tiles of 4 tokens, then one at a time. */
static void token_loop(bn_asm *a, int64_t K, int64_t N, int mode, int rows) {
  op(a, "xor", bn_gpd(R13), bn_gpd(R13), NONE);
  op(a, "mov", bn_gp(R14), bn_gp(RDI), NONE);
  token_tiles(a, K, N, mode, rows, 4);
  token_tiles(a, K, N, mode, rows, 1);
}

/* A double or float constant into xmm d (through rax). */
static void constant(bn_asm *a, int d, double v, int is_float) {
  int64_t bits = 0;
  if (is_float) {
    float f = (float)v;
    memcpy(&bits, &f, 4);
  } else memcpy(&bits, &v, 8);
  op(a, "mov", bn_gp(RAX), bn_imm(bits), NONE);
  op(a, "vmovq", bn_vec(d, 16), bn_gp(RAX), NONE);
}

/* One row's RMSNorm (+ quantize), AVX-512, bit for bit as bn_ref_rmsnorm and bn_ref_quantize: the sum of
 * squares in 16 double lanes (element i in lane i % 16, each square exact) added lane by lane in order;
 * inv = (float)(1 / sqrt(ss / K + eps)); y = x inv w rounded twice. RMSNORM: y to [q]. Else y to [tmp],
 * then s = 127 / max(max |y|, 1e-5), the codes round-half-even(y s) (in range: |y s| <= 127), their sum,
 * s and the sum after the codes (QA8). x, w, q, tmp: pointer registers; vectors 0..7, rax, the red zone. */
static void nq_row(bn_asm *a, int64_t K, float eps, int rmsnorm_only, int x, int w, int q, int tmp) {
  int32_t meta = (int32_t)((K + 63) / 64 * 64);
  op(a, "vpxord", bn_vec(0, 64), bn_vec(0, 64), bn_vec(0, 64));
  op(a, "vpxord", bn_vec(1, 64), bn_vec(1, 64), bn_vec(1, 64));
  for (int64_t c = 0; c < K; c += 16)
    for (int h = 0; h < 2; h++) {
      op(a, "vcvtps2pd", bn_vec(2, 64), bn_mem(x, (int32_t)(4 * c + 32 * h), 32), NONE);
      op(a, "vmulpd", bn_vec(2, 64), bn_vec(2, 64), bn_vec(2, 64));
      op(a, "vaddpd", bn_vec(h, 64), bn_vec(h, 64), bn_vec(2, 64));
    }
  op(a, "vmovupd", bn_mem(RSP, -128, 64), bn_vec(0, 64), NONE);
  op(a, "vmovupd", bn_mem(RSP, -64, 64), bn_vec(1, 64), NONE);
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
  op(a, "vbroadcastss", bn_vec(3, 64), bn_vec(3, 16), NONE); /* inv */
  op(a, "vpxord", bn_vec(5, 64), bn_vec(5, 64), bn_vec(5, 64)); /* max |y| */
  op(a, "mov", bn_gpd(RAX), bn_imm(0x7fffffff), NONE);
  op(a, "vpbroadcastd", bn_vec(6, 64), bn_gpd(RAX), NONE); /* |.| mask */
  for (int64_t c = 0; c < K; c += 16) {
    op(a, "vmulps", bn_vec(2, 64), bn_vec(3, 64), bn_mem(x, (int32_t)(4 * c), 64));
    op(a, "vmulps", bn_vec(2, 64), bn_vec(2, 64), bn_mem(w, (int32_t)(4 * c), 64));
    op(a, "vmovups", bn_mem(rmsnorm_only ? q : tmp, (int32_t)(4 * c), 64), bn_vec(2, 64), NONE);
    if (!rmsnorm_only) {
      op(a, "vpandd", bn_vec(2, 64), bn_vec(2, 64), bn_vec(6, 64));
      op(a, "vmaxps", bn_vec(5, 64), bn_vec(5, 64), bn_vec(2, 64));
    }
  }
  if (rmsnorm_only) return;
  op(a, "vextractf64x4", bn_vec(2, 32), bn_vec(5, 64), bn_imm(1)); /* the row's max: exact in any order */
  op(a, "vmaxps", bn_vec(5, 32), bn_vec(5, 32), bn_vec(2, 32));
  op(a, "vextractf32x4", bn_vec(2, 16), bn_vec(5, 32), bn_imm(1));
  op(a, "vmaxps", bn_vec(5, 16), bn_vec(5, 16), bn_vec(2, 16));
  op(a, "vpermilps", bn_vec(2, 16), bn_vec(5, 16), bn_imm(0x4e));
  op(a, "vmaxps", bn_vec(5, 16), bn_vec(5, 16), bn_vec(2, 16));
  op(a, "vpermilps", bn_vec(2, 16), bn_vec(5, 16), bn_imm(0xb1));
  op(a, "vmaxps", bn_vec(5, 16), bn_vec(5, 16), bn_vec(2, 16));
  constant(a, 4, 1e-5, 1);
  op(a, "vmaxss", bn_vec(5, 16), bn_vec(5, 16), bn_vec(4, 16));
  constant(a, 4, 127.0, 1);
  op(a, "vdivss", bn_vec(4, 16), bn_vec(4, 16), bn_vec(5, 16)); /* s */
  op(a, "vmovss", bn_mem(q, meta, 4), bn_vec(4, 16), NONE);
  op(a, "vbroadcastss", bn_vec(4, 64), bn_vec(4, 16), NONE);
  op(a, "vpxord", bn_vec(7, 64), bn_vec(7, 64), bn_vec(7, 64)); /* the sum of the codes */
  for (int64_t c = 0; c < K; c += 16) {
    op(a, "vmulps", bn_vec(2, 64), bn_vec(4, 64), bn_mem(tmp, (int32_t)(4 * c), 64));
    bn_asm_emit(a, bn_asm_inst("vrndscaleps"), bn_vec(2, 64), bn_vec(2, 64), bn_imm(0), NONE); /* half to even */
    op(a, "vcvtps2dq", bn_vec(2, 64), bn_vec(2, 64), NONE);
    op(a, "vpaddd", bn_vec(7, 64), bn_vec(7, 64), bn_vec(2, 64));
    op(a, "vpmovsdb", bn_mem(q, (int32_t)c, 16), bn_vec(2, 64), NONE);
  }
  hsum(a, 7);
  op(a, "mov", bn_mem(q, meta + 4, 4), bn_gpd(RAX), NONE);
}

/* zmm d = exp(zmm x), float: n = round(x log2 e), r = x - n ln 2 (in two parts), a degree-6 polynomial
 * of r, scaled by 2^n (vscalefps: inf past the float range); x is clamped below at -87 (the result there
 * ~1e-38) and is changed. Uses vectors 24..27 and rax. */
static void vexp(bn_asm *a, int d, int x) {
  static const float C[] = {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
  int n = 24, r = 25, c = 26;
  constant(a, c, -87.0, 1);
  op(a, "vbroadcastss", bn_vec(c, 64), bn_vec(c, 16), NONE);
  op(a, "vmaxps", bn_vec(x, 64), bn_vec(x, 64), bn_vec(c, 64));
  constant(a, c, 1.44269504088896341, 1);
  op(a, "vbroadcastss", bn_vec(c, 64), bn_vec(c, 16), NONE);
  op(a, "vmulps", bn_vec(n, 64), bn_vec(x, 64), bn_vec(c, 64));
  bn_asm_emit(a, bn_asm_inst("vrndscaleps"), bn_vec(n, 64), bn_vec(n, 64), bn_imm(0), NONE);
  constant(a, c, 0.693359375, 1); /* ln 2, high part (exact in float) */
  op(a, "vbroadcastss", bn_vec(c, 64), bn_vec(c, 16), NONE);
  op(a, "vmovaps", bn_vec(r, 64), bn_vec(x, 64), NONE);
  op(a, "vfnmadd231ps", bn_vec(r, 64), bn_vec(n, 64), bn_vec(c, 64));
  constant(a, c, -2.12194440e-4, 1); /* ln 2 - the high part */
  op(a, "vbroadcastss", bn_vec(c, 64), bn_vec(c, 16), NONE);
  op(a, "vfnmadd231ps", bn_vec(r, 64), bn_vec(n, 64), bn_vec(c, 64));
  constant(a, d, C[0], 1);
  op(a, "vbroadcastss", bn_vec(d, 64), bn_vec(d, 16), NONE);
  for (int i = 1; i < 7; i++) { /* Horner: p = p r + C[i] */
    constant(a, c, C[i], 1);
    op(a, "vbroadcastss", bn_vec(c, 64), bn_vec(c, 16), NONE);
    op(a, "vfmadd213ps", bn_vec(d, 64), bn_vec(r, 64), bn_vec(c, 64));
  }
  op(a, "vscalefps", bn_vec(d, 64), bn_vec(d, 64), bn_vec(n, 64));
}

/* The FFN gate's middle, act(g) * u of the row x = g | u (2K floats) into [tmp], as the reference
 * computes it: relu2(g) = g > 0 ? g g : 0, exactly; silu(g) = g / (1 + exp(-g)), with vexp's exp for
 * libm's (a code may then move by one on a rounding tie, as with the LLVM kernel). Vectors 2..4, 8, 9,
 * 24..27; mask 2. */
static void gate_row(bn_asm *a, int64_t K, int silu, int x, int tmp) {
  op(a, "vpxord", bn_vec(8, 64), bn_vec(8, 64), bn_vec(8, 64));
  if (silu) {
    constant(a, 9, 1.0, 1);
    op(a, "vbroadcastss", bn_vec(9, 64), bn_vec(9, 16), NONE);
  }
  for (int64_t c = 0; c < K; c += 16) {
    op(a, "vmovups", bn_vec(2, 64), bn_mem(x, (int32_t)(4 * c), 64), NONE);
    if (silu) {
      op(a, "vsubps", bn_vec(3, 64), bn_vec(8, 64), bn_vec(2, 64)); /* -g */
      vexp(a, 4, 3);
      op(a, "vaddps", bn_vec(4, 64), bn_vec(4, 64), bn_vec(9, 64));
      op(a, "vdivps", bn_vec(2, 64), bn_vec(2, 64), bn_vec(4, 64));
    } else {
      bn_asm_emit(a, bn_asm_inst("vcmpps"), bn_kreg(2), bn_vec(2, 64), bn_vec(8, 64), bn_imm(0x1e)); /* g > 0 */
      bn_asm_mask(a, 2, 1);
      op(a, "vmulps", bn_vec(2, 64), bn_vec(2, 64), bn_vec(2, 64));
    }
    op(a, "vmulps", bn_vec(2, 64), bn_vec(2, 64), bn_mem(x, (int32_t)(4 * (K + c)), 64));
    op(a, "vmovups", bn_mem(tmp, (int32_t)(4 * c), 64), bn_vec(2, 64), NONE);
  }
}

/* One row of a norm + quantize kernel: the gate first (into tmp, then normalized in place) or not. */
static void nq_any(bn_asm *a, int64_t K, float eps, int mode, int x, int w, int q, int tmp) {
  if (mode == BN_NQ_GATE_RELU2 || mode == BN_NQ_GATE_SILU) {
    gate_row(a, K, mode == BN_NQ_GATE_SILU, x, tmp);
    x = tmp;
  }
  nq_row(a, K, eps, mode == BN_NQ_RMSNORM, x, w, q, tmp);
}

/* bn_nq_kernel (x rdi, w rsi, qa rdx, tmp rcx, T r8, t0 r9, t1 on the stack), every mode. */
static void nq_kernel(bn_asm *a, int64_t K, int mode, float eps) {
  int64_t out_row = mode == BN_NQ_RMSNORM ? 4 * K : (K + 63) / 64 * 64 + 64, in_row = mode == BN_NQ_GATE_RELU2 || mode == BN_NQ_GATE_SILU ? 8 * K : 4 * K;
  int loop = bn_asm_new_label(a), done = bn_asm_new_label(a);
  op(a, "mov", bn_gp(R10), bn_mem(RSP, 8, 8), NONE); /* t1 */
  op(a, "cmp", bn_gp(R9), bn_gp(R10), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  op(a, "imul", bn_gp(R11), bn_gp(R9), bn_imm(in_row));
  op(a, "add", bn_gp(RDI), bn_gp(R11), NONE); /* row t0 of x and of the output */
  op(a, "imul", bn_gp(R11), bn_gp(R9), bn_imm(out_row));
  op(a, "add", bn_gp(RDX), bn_gp(R11), NONE);
  bn_asm_bind(a, loop);
  nq_any(a, K, eps, mode, RDI, RSI, RDX, RCX);
  op(a, "add", bn_gp(RDI), bn_imm(in_row), NONE);
  op(a, "add", bn_gp(RDX), bn_imm(out_row), NONE);
  loop_end(a, R9, R10, loop);
  bn_asm_bind(a, done);
  op(a, "vzeroupper", NONE, NONE, NONE);
  op(a, "ret", NONE, NONE, NONE);
}

/* The matmul over rows r9..r10, T r8 tokens of QA8 at rdi (w rsi, out rdx, resid rcx), callee-saved
 * registers pushed already. */
static void matmul_rows(bn_asm *a, int64_t K, int64_t N, int mode) {
  int64_t full = N / 4 * 4;
  int row_loop = bn_asm_new_label(a), single = bn_asm_new_label(a), next = bn_asm_new_label(a);
  int done = bn_asm_new_label(a), block4 = bn_asm_new_label(a);
  op(a, "mov", bn_gpd(RAX), bn_imm(0x03030303), NONE);
  op(a, "vpbroadcastd", bn_vec(MASK, 64), bn_gpd(RAX), NONE);
  op(a, "cmp", bn_gp(R9), bn_gp(R10), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  bn_asm_bind(a, row_loop);
  op(a, "mov", bn_gp(RAX), bn_gp(R9), NONE); /* rbx: the row's first group, w + (n / 4) K + (n % 4) 64 */
  op(a, "shr", bn_gp(RAX), bn_imm(2), NONE);
  op(a, "imul", bn_gp(RAX), bn_gp(RAX), bn_imm(K));
  op(a, "mov", bn_gp(RBX), bn_gp(R9), NONE);
  op(a, "and", bn_gp(RBX), bn_imm(3), NONE);
  op(a, "shl", bn_gp(RBX), bn_imm(6), NONE);
  op(a, "add", bn_gp(RBX), bn_gp(RAX), NONE);
  op(a, "add", bn_gp(RBX), bn_gp(RSI), NONE);
  if (full) { /* a whole block of 4 within n0..n1: the tile */
    op(a, "test", bn_gp(R9), bn_imm(3), NONE);
    op(a, "jnz", bn_label(single), NONE, NONE);
    op(a, "lea", bn_gp(RAX), bn_mem(R9, 4, 0), NONE);
    op(a, "cmp", bn_gp(RAX), bn_gp(R10), NONE);
    op(a, "jg", bn_label(single), NONE, NONE);
    op(a, "cmp", bn_gp(RAX), bn_imm(full), NONE);
    op(a, "jg", bn_label(single), NONE, NONE);
    token_loop(a, K, N, mode, 4);
    op(a, "add", bn_gp(R9), bn_imm(4), NONE);
    op(a, "jmp", bn_label(next), NONE, NONE);
  }
  bn_asm_bind(a, single);
  op(a, "mov", bn_gp(R12), bn_imm(256), NONE);
  if (N % 4) { /* the last, short block */
    op(a, "cmp", bn_gp(R9), bn_imm(full), NONE);
    op(a, "jl", bn_label(block4), NONE, NONE);
    op(a, "mov", bn_gp(R12), bn_imm(N % 4 * 64), NONE);
  }
  bn_asm_bind(a, block4);
  token_loop(a, K, N, mode, 1);
  op(a, "inc", bn_gp(R9), NONE, NONE);
  bn_asm_bind(a, next);
  op(a, "cmp", bn_gp(R9), bn_gp(R10), NONE);
  op(a, "jl", bn_label(row_loop), NONE, NONE);
  bn_asm_bind(a, done);
}

static const int SAVED[5] = {RBX, R12, R13, R14, R15};

/* bn_mm_kernel (n1 the 7th argument, on the stack); with pro (1 + BN_NQ_PLAIN or a gate's mode) a
 * bn_mmp_kernel: qa rdi is scratch it first fills with the T rows of x r8 normalized by wn r9 (tmp, T, n0,
 * n1 on the stack). */
static void matmul_kernel(bn_asm *a, int64_t K, int64_t N, int mode, int pro, float eps) {
  for (int i = 0; i < 5; i++) op(a, "push", bn_gp(SAVED[i]), NONE, NONE);
  enum { ARGS = 8 + 5 * 8 }; /* the stack arguments, above the return address and the saves */
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
    nq_any(a, K, eps, pro - 1, RBX, R12, R14, R13);
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
  matmul_rows(a, K, N, mode);
  for (int i = 4; i >= 0; i--) op(a, "pop", bn_gp(SAVED[i]), NONE, NONE);
  op(a, "vzeroupper", NONE, NONE, NONE);
  op(a, "ret", NONE, NONE, NONE);
}

/* bn_rope_kernel (x rdi, y rsi, table rdx, T rcx, pos r8, h0 r9; h1 and n_ctx on the stack), AVX-512, NeoX
 * style over whole heads: o[i] = a c - b s, o[i + half] = a s + b c with a = x[i], b = x[i + half], each
 * product rounded as the reference rounds it; c and s from the executor's table (bn_rope_table). */
static void rope_kernel(bn_asm *a, int64_t hd, int64_t heads) {
  int64_t half = hd / 2;
  int tl = bn_asm_new_label(a), hl = bn_asm_new_label(a), hnext = bn_asm_new_label(a), tnext = bn_asm_new_label(a);
  int done = bn_asm_new_label(a);
  const int saved[3] = {RBX, R12, R13};
  for (int i = 0; i < 3; i++) op(a, "push", bn_gp(saved[i]), NONE, NONE);
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
  for (int64_t i = 0; i < half; i += 16) {
    int32_t lo = (int32_t)(4 * i), hi = (int32_t)(4 * (i + half));
    op(a, "vmovups", bn_vec(0, 64), bn_memx(RDI, RAX, 1, lo, 64), NONE);
    op(a, "vmovups", bn_vec(1, 64), bn_memx(RDI, RAX, 1, hi, 64), NONE);
    op(a, "vmovups", bn_vec(2, 64), bn_mem(R13, lo, 64), NONE);
    op(a, "vmovups", bn_vec(3, 64), bn_memx(R13, R11, 1, lo, 64), NONE);
    op(a, "vmulps", bn_vec(4, 64), bn_vec(0, 64), bn_vec(2, 64));
    op(a, "vmulps", bn_vec(5, 64), bn_vec(1, 64), bn_vec(3, 64));
    op(a, "vsubps", bn_vec(4, 64), bn_vec(4, 64), bn_vec(5, 64));
    op(a, "vmovups", bn_memx(RSI, RAX, 1, lo, 64), bn_vec(4, 64), NONE);
    op(a, "vmulps", bn_vec(4, 64), bn_vec(0, 64), bn_vec(3, 64));
    op(a, "vmulps", bn_vec(5, 64), bn_vec(1, 64), bn_vec(2, 64));
    op(a, "vaddps", bn_vec(4, 64), bn_vec(4, 64), bn_vec(5, 64));
    op(a, "vmovups", bn_memx(RSI, RAX, 1, hi, 64), bn_vec(4, 64), NONE);
  }
  bn_asm_bind(a, hnext);
  loop_end(a, R12, R10, hl);
  bn_asm_bind(a, tnext);
  loop_end(a, RBX, RCX, tl);
  bn_asm_bind(a, done);
  for (int i = 2; i >= 0; i--) op(a, "pop", bn_gp(saved[i]), NONE, NONE);
  op(a, "vzeroupper", NONE, NONE, NONE);
  op(a, "ret", NONE, NONE, NONE);
}

/* bn_mf_kernel (x rdi, w rsi, y rdx, T rcx, n0 r8, n1 r9), AVX-512, F16 or F32 weights: for each row n and
 * token t the dot product in float lanes (widened halves, fused multiply-adds, four chains, then a tree),
 * as the LLVM kernel does: within 1e-5 of the largest output of the reference, which sums in double.
 * Decode streams each row once, prefetching ahead. */
static void mf_kernel(bn_asm *a, int64_t K, int64_t N, int f16) {
  int64_t wb = f16 ? 2 : 4;
  int nl = bn_asm_new_label(a), tl = bn_asm_new_label(a), tdone = bn_asm_new_label(a), done = bn_asm_new_label(a);
  op(a, "push", bn_gp(RBX), NONE, NONE);
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
  for (int c = 0; c < 4; c++) op(a, "vpxord", bn_vec(c, 64), bn_vec(c, 64), bn_vec(c, 64));
  for (int64_t c = 0; c < K; c += 16) {
    if (c % 32 == 0) op(a, "prefetcht0", bn_mem(R10, (int32_t)(c * wb + 4096), 64), NONE, NONE);
    if (f16) op(a, "vcvtph2ps", bn_vec(4, 64), bn_mem(R10, (int32_t)(c * 2), 32), NONE);
    else op(a, "vmovups", bn_vec(4, 64), bn_mem(R10, (int32_t)(c * 4), 64), NONE);
    op(a, "vfmadd231ps", bn_vec((int)(c / 16 % 4), 64), bn_vec(4, 64), bn_mem(RAX, (int32_t)(c * 4), 64));
  }
  op(a, "vaddps", bn_vec(0, 64), bn_vec(0, 64), bn_vec(1, 64));
  op(a, "vaddps", bn_vec(2, 64), bn_vec(2, 64), bn_vec(3, 64));
  op(a, "vaddps", bn_vec(0, 64), bn_vec(0, 64), bn_vec(2, 64));
  op(a, "vextractf64x4", bn_vec(1, 32), bn_vec(0, 64), bn_imm(1));
  op(a, "vaddps", bn_vec(0, 32), bn_vec(0, 32), bn_vec(1, 32));
  op(a, "vextractf32x4", bn_vec(1, 16), bn_vec(0, 32), bn_imm(1));
  op(a, "vaddps", bn_vec(0, 16), bn_vec(0, 16), bn_vec(1, 16));
  op(a, "vpermilps", bn_vec(1, 16), bn_vec(0, 16), bn_imm(0x4e));
  op(a, "vaddps", bn_vec(0, 16), bn_vec(0, 16), bn_vec(1, 16));
  op(a, "vpermilps", bn_vec(1, 16), bn_vec(0, 16), bn_imm(0xb1));
  op(a, "vaddss", bn_vec(0, 16), bn_vec(0, 16), bn_vec(1, 16));
  op(a, "imul", bn_gp(RBX), bn_gp(R11), bn_imm(N)); /* y[t N + n] */
  op(a, "add", bn_gp(RBX), bn_gp(R8), NONE);
  op(a, "vmovss", bn_memx(RDX, RBX, 4, 0, 4), bn_vec(0, 16), NONE);
  op(a, "add", bn_gp(RAX), bn_imm(K * 4), NONE);
  loop_end(a, R11, RCX, tl);
  bn_asm_bind(a, tdone);
  loop_end(a, R8, R9, nl);
  bn_asm_bind(a, done);
  op(a, "pop", bn_gp(RBX), NONE, NONE);
  op(a, "vzeroupper", NONE, NONE, NONE);
  op(a, "ret", NONE, NONE, NONE);
}

/* xmm v = the lane sum of float vector v (scratch 1; any order: a float kernel's). */
static void fsum(bn_asm *a, int v) {
  op(a, "vextractf64x4", bn_vec(1, 32), bn_vec(v, 64), bn_imm(1));
  op(a, "vaddps", bn_vec(v, 32), bn_vec(v, 32), bn_vec(1, 32));
  op(a, "vextractf32x4", bn_vec(1, 16), bn_vec(v, 32), bn_imm(1));
  op(a, "vaddps", bn_vec(v, 16), bn_vec(v, 16), bn_vec(1, 16));
  op(a, "vpermilps", bn_vec(1, 16), bn_vec(v, 16), bn_imm(0x4e));
  op(a, "vaddps", bn_vec(v, 16), bn_vec(v, 16), bn_vec(1, 16));
  op(a, "vpermilps", bn_vec(1, 16), bn_vec(v, 16), bn_imm(0xb1));
  op(a, "vaddss", bn_vec(v, 16), bn_vec(v, 16), bn_vec(1, 16));
}

/* exp(x - max) of scores [r8 + r14 4] in place, 16 at a time (under mask 1 when masked), added to vector 5. */
static void exp_chunk(bn_asm *a, int masked) {
  if (masked) bn_asm_mask(a, 1, 1);
  op(a, "vmovups", bn_vec(0, 64), bn_memx(R8, R14, 4, 0, 64), NONE);
  op(a, "vsubps", bn_vec(0, 64), bn_vec(0, 64), bn_vec(7, 64));
  vexp(a, 2, 0);
  if (masked) bn_asm_mask(a, 1, 0);
  op(a, "vmovups", bn_memx(R8, R14, 4, 0, 64), bn_vec(2, 64), NONE);
  if (masked) bn_asm_mask(a, 1, 0);
  op(a, "vaddps", bn_vec(5, 64), bn_vec(5, 64), bn_vec(2, 64));
}

/* bn_attn_kernel (q rdi, kc rsi, vc rdx, y rcx, scores r8, T r9; pos, h0, h1, n_ctx on the stack), AVX-512,
 * float lanes as the LLVM kernel: for each token t and head h (its KV head h / group), the scores
 * q.k_j / sqrt(hd) of positions j <= pos + t, their max, e_j = exp(score_j - max) and their sum (16 at
 * a time, the tail under a mask), then y = sum_j e_j v_j / sum, the head's hd floats in registers.
 * Registers: r10 t, r11 h, rbx the row of q and y, r12 the KV head's offset, r13 the positions, r14 j,
 * r15 k_j or v_j; q, then y's sums, in vectors 8..; the scale 6, the max 7, the sum 5. */
static void attn_kernel(bn_asm *a, int64_t hd, int64_t H, int64_t kvh) {
  int64_t nv = hd / 16, group = H / kvh;
  enum { ARGS = 8 + 5 * 8, QR = 8 };
  int tl = bn_asm_new_label(a), hl = bn_asm_new_label(a), hend = bn_asm_new_label(a), done = bn_asm_new_label(a);
  int s1 = bn_asm_new_label(a), s2 = bn_asm_new_label(a), tail = bn_asm_new_label(a), s2end = bn_asm_new_label(a);
  int s3 = bn_asm_new_label(a);
  for (int i = 0; i < 5; i++) op(a, "push", bn_gp(SAVED[i]), NONE, NONE);
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
  op(a, "vmulps", bn_vec(0, 64), bn_vec(QR, 64), bn_mem(R15, 0, 64));
  for (int v = 1; v < nv; v++) op(a, "vfmadd231ps", bn_vec(0, 64), bn_vec(QR + v, 64), bn_mem(R15, 64 * v, 64));
  fsum(a, 0);
  op(a, "vmulss", bn_vec(0, 16), bn_vec(0, 16), bn_vec(6, 16));
  op(a, "vmovss", bn_memx(R8, R14, 4, 0, 4), bn_vec(0, 16), NONE);
  op(a, "vmaxss", bn_vec(7, 16), bn_vec(7, 16), bn_vec(0, 16));
  op(a, "add", bn_gp(R15), bn_imm(hd * 4), NONE);
  loop_end(a, R14, R13, s1);
  op(a, "vbroadcastss", bn_vec(7, 64), bn_vec(7, 16), NONE);
  op(a, "vpxord", bn_vec(5, 64), bn_vec(5, 64), bn_vec(5, 64));
  op(a, "xor", bn_gpd(R14), bn_gpd(R14), NONE);
  bn_asm_bind(a, s2); /* e_j in place of the scores, and their sum */
  op(a, "lea", bn_gp(RAX), bn_mem(R14, 16, 0), NONE);
  op(a, "cmp", bn_gp(RAX), bn_gp(R13), NONE);
  op(a, "jg", bn_label(tail), NONE, NONE);
  exp_chunk(a, 0);
  op(a, "add", bn_gp(R14), bn_imm(16), NONE);
  op(a, "jmp", bn_label(s2), NONE, NONE);
  bn_asm_bind(a, tail);
  op(a, "mov", bn_gp(R15), bn_gp(R13), NONE);
  op(a, "sub", bn_gp(R15), bn_gp(R14), NONE);
  op(a, "jz", bn_label(s2end), NONE, NONE);
  op(a, "mov", bn_gpd(RAX), bn_imm(1), NONE);
  op(a, "shlx", bn_gpd(RAX), bn_gpd(RAX), bn_gpd(R15));
  op(a, "dec", bn_gpd(RAX), NONE, NONE);
  op(a, "kmovw", bn_kreg(1), bn_gpd(RAX), NONE);
  exp_chunk(a, 1);
  bn_asm_bind(a, s2end);
  fsum(a, 5);
  op(a, "vbroadcastss", bn_vec(5, 64), bn_vec(5, 16), NONE);
  for (int v = 0; v < nv; v++) op(a, "vpxord", bn_vec(QR + v, 64), bn_vec(QR + v, 64), bn_vec(QR + v, 64));
  op(a, "xor", bn_gpd(R14), bn_gpd(R14), NONE);
  op(a, "lea", bn_gp(R15), bn_memx(RDX, R12, 1, 0, 0), NONE);
  bn_asm_bind(a, s3); /* sum_j e_j v_j */
  op(a, "vbroadcastss", bn_vec(0, 64), bn_memx(R8, R14, 4, 0, 4), NONE);
  for (int v = 0; v < nv; v++) op(a, "vfmadd231ps", bn_vec(QR + v, 64), bn_vec(0, 64), bn_mem(R15, 64 * v, 64));
  op(a, "add", bn_gp(R15), bn_imm(hd * 4), NONE);
  loop_end(a, R14, R13, s3);
  for (int v = 0; v < nv; v++) {
    op(a, "vdivps", bn_vec(QR + v, 64), bn_vec(QR + v, 64), bn_vec(5, 64));
    op(a, "vmovups", bn_memx(RCX, RBX, 1, 64 * v, 64), bn_vec(QR + v, 64), NONE);
  }
  op(a, "inc", bn_gp(R11), NONE, NONE);
  op(a, "cmp", bn_gp(R11), bn_mem(RSP, ARGS + 16, 8), NONE);
  op(a, "jl", bn_label(hl), NONE, NONE);
  bn_asm_bind(a, hend);
  loop_end(a, R10, R9, tl);
  bn_asm_bind(a, done);
  for (int i = 4; i >= 0; i--) op(a, "pop", bn_gp(SAVED[i]), NONE, NONE);
  op(a, "vzeroupper", NONE, NONE, NONE);
  op(a, "ret", NONE, NONE, NONE);
}

/* Whole rows of unrolled copies stay small below this many floats a row. */
enum { MAX_ROW = 1 << 16 };

static int be_supports(void *self, const bn_kkey *key) {
  switch (key->family) {
  case BN_K_SLICE: return key->k > 0 && key->n > 0 && key->variant >= 0 && key->variant + key->n <= key->k && key->n <= MAX_ROW &&
                          key->k * 4 < (1LL << 31);
  case BN_K_EMBED:
    return (key->variant == BN_DT_F32 || key->variant == BN_DT_F16) && key->k > 0 && key->k <= MAX_ROW;
  case BN_K_MATMUL: /* AVX-512 VNNI; a prologue of RMSNorm + quantize, or of a gate first */
    return ((asmjit_be *)self)->vnni && key->pro >= 0 && key->pro <= 1 + BN_NQ_GATE_SILU &&
           key->k > 0 && key->k % 256 == 0 &&
           key->n > 0 &&
           key->variant >= BN_MM_ACC && key->variant <= BN_MM_DQ_ADD && key->n * key->k / 4 < (1LL << 31);
  case BN_K_NORM_QUANT: /* AVX-512: RMSNorm + quantize, RMSNorm alone, a gate first */
    return ((asmjit_be *)self)->avx512 && key->variant >= BN_NQ_PLAIN && key->variant <= BN_NQ_RMSNORM &&
           key->k > 0 && key->k % (key->variant == BN_NQ_RMSNORM ? 16 : 64) == 0 && key->k <= MAX_ROW;
  case BN_K_ROPE: /* AVX-512, half a head a whole number of vectors */
    return ((asmjit_be *)self)->avx512 && key->k > 0 && key->k % 32 == 0 && key->k <= 4096 && key->n > 0 && key->n < 65536;
  case BN_K_MATMUL_F: /* AVX-512, F16 or F32 rows of whole vectors */
    return ((asmjit_be *)self)->avx512 && (key->variant == BN_DT_F16 || key->variant == BN_DT_F32) && key->k > 0 &&
           key->k % 16 == 0 && key->k <= MAX_ROW && key->n > 0 && key->n * key->k * 4 < (1LL << 40);
  case BN_K_ATTENTION: /* AVX-512, heads of whole vectors up to 256 (q, then y, in registers) */
    return ((asmjit_be *)self)->avx512 && key->k > 0 && key->k % 16 == 0 && key->k <= 256 && key->n > 0 &&
           key->variant > 0 && key->n % key->variant == 0;
  case BN_K_PEAK:
  case BN_K_MATMUL_LUT:
  case BN_K_COUNT: return 0; /* not emitted yet: the reference kernels run them */
  }
  return 0;
}

static void *emit(asmjit_be *b, const bn_kkey *key, char **listing, char *msg, size_t cap) {
  bn_asm *a = bn_asm_new(b->rt, listing != NULL);
  if (!a) return snprintf(msg, cap, "asmjit: out of memory"), NULL;
  switch (key->family) { /* what be_supports says yes to */
  case BN_K_MATMUL: matmul_kernel(a, key->k, key->n, key->variant, key->pro, key->eps); break;
  case BN_K_NORM_QUANT: nq_kernel(a, key->k, key->variant, key->eps); break;
  case BN_K_SLICE: rows_kernel(a, b, 0, key->k, key->n, key->variant, 0); break;
  case BN_K_EMBED: rows_kernel(a, b, 1, key->k, key->k, 0, key->variant == BN_DT_F16); break;
  case BN_K_ROPE: rope_kernel(a, key->k, key->n); break;
  case BN_K_MATMUL_F: mf_kernel(a, key->k, key->n, key->variant == BN_DT_F16); break;
  case BN_K_ATTENTION: attn_kernel(a, key->k, key->n, key->variant); break;
  case BN_K_PEAK:
  case BN_K_MATMUL_LUT:
  case BN_K_COUNT: bn_asm_free(a); return snprintf(msg, cap, "asmjit: no emitter for this family"), NULL;
  }
  void *fn = bn_asm_finish(a, msg, cap);
  if (listing) *listing = strdup(bn_asm_listing(a));
  bn_asm_free(a);
  return fn;
}

static bn_status be_open(const bn_backend_opts *o, void **self, bn_error *err) {
  int host512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  if (!__builtin_cpu_supports("avx2")) return bn_fail(err, BN_E_UNSUPPORTED, "asmjit: this CPU has no AVX2");
  if (o->isa && strcmp(o->isa, "avx2") && strcmp(o->isa, "avx512"))
    return bn_fail(err, BN_E_INVALID, "asmjit: instruction set '%s' is unknown (avx2, avx512)", o->isa);
  if (o->isa && !strcmp(o->isa, "avx512") && !host512)
    return bn_fail(err, BN_E_UNSUPPORTED, "asmjit: this CPU has no AVX-512");
  if (o->target && strcmp(o->target, "native"))
    return bn_fail(err, BN_E_UNSUPPORTED, "asmjit: target '%s' (the asmjit backend emits for this CPU: native)", o->target);
  asmjit_be *b = calloc(1, sizeof *b);
  if (!b || !(b->rt = bn_asm_rt_new())) return free(b), bn_fail(err, BN_E_NOMEM, "out of memory");
  b->avx512 = o->isa ? !strcmp(o->isa, "avx512") : host512;
  b->vnni = b->avx512 && __builtin_cpu_supports("avx512vnni");
  for (int i = 0; i < (int)(sizeof INSTS / sizeof *INSTS); i++) b->ids[i] = bn_asm_inst(INSTS[i]);
  *self = b;
  return BN_OK;
}

static bn_status be_prepare(void *self, const bn_kkey *keys, int n, void **fns, bn_error *err) {
  asmjit_be *b = self;
  double t0 = bn_clock_s();
  for (int i = 0; i < n; i++) {
    int k = 0;
    while (k < b->n_done && !bn_kkey_eq(&b->done[k].key, &keys[i])) k++;
    if (k < b->n_done) {
      fns[i] = b->done[k].fn;
      continue;
    }
    char msg[200];
    if (!(fns[i] = emit(b, &keys[i], NULL, msg, sizeof msg))) return bn_fail(err, BN_E_UNSUPPORTED, "%s", msg);
    b->counts.built++;
    if (b->n_done == b->cap_done) {
      int cap = b->cap_done ? 2 * b->cap_done : 32;
      emitted *d = realloc(b->done, (size_t)cap * sizeof *d);
      if (!d) return bn_fail(err, BN_E_NOMEM, "out of memory");
      b->done = d, b->cap_done = cap;
    }
    b->done[b->n_done++] = (emitted){keys[i], fns[i]};
  }
  b->counts.seconds += bn_clock_s() - t0;
  return BN_OK;
}

static char *be_text(void *self, const bn_kkey *key, const char *emit_as, bn_error *err) {
  char *text = NULL, msg[200];
  if (strcmp(emit_as, "asm")) return bn_fail(err, BN_E_INVALID, "asmjit: --emit=%s (asm)", emit_as), NULL;
  if (!emit(self, key, &text, msg, sizeof msg)) bn_fail(err, BN_E_UNSUPPORTED, "%s", msg);
  return text;
}

static bn_codegen_info be_info(void *self) {
  asmjit_be *b = self;
  return (bn_codegen_info){.isa = b->avx512 ? "avx512" : "avx2", .cpu = "host", .features = "", .lanes = b->avx512 ? 16 : 8};
}

static bn_codegen_counts be_counts(void *self) { return ((asmjit_be *)self)->counts; }

static void be_close(void *self) {
  asmjit_be *b = self;
  bn_asm_rt_free(b->rt);
  free(b->done), free(b);
}

const bn_backend bn_backend_asmjit = {
    .name = "asmjit",
    .about = "x86 kernels emitted through asmjit (in progress: docs/asmjit.md says which; the rest on the reference)",
    .targets = "native",
    .open = be_open,
    .supports = be_supports,
    .prepare = be_prepare,
    .text = be_text,
    .emits = "asm",
    .info = be_info,
    .counts = be_counts,
    .close = be_close,
};
