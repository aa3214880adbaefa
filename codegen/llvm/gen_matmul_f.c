/* The float matmul kernel (the output projection): y[t][n] = x[t] . W[n]
 * for W rows of K, K a constant, in f32, f16 or a block format (q8_0, q4_0,
 * q6_k). A row is read block by block (f32/f16: a vector is a block); each
 * block is decoded to float vectors exactly as the reference dequantizes it
 * (vcvtph2ps for f16; d * q, or (d * scale) * q for q6_k, in float) and
 * multiplied into up to four tokens' accumulators with fused multiply-adds; a
 * loop over K keeps the code small. Float accumulation in vector lanes
 * differs from the reference's double sums by float rounding only (tested
 * within 1e-5). */
#include "../../ir/ir.h"
#include "gen.h"

enum { X, W, Y, T_, N0, N1 };
enum { PREFETCH = 12288 }; /* bytes ahead in the weight stream (the hardware prefetcher alone reaches about 2/3 of the bandwidth) */

typedef struct {
  bn_dtype wtype;
  int lanes;
  int64_t elems, bytes; /* per block */
  LLVMTypeRef vf;
} mf;

static LLVMValueRef splat(bn_gen *g, LLVMTypeRef vf, LLVMValueRef x) {
  unsigned n = LLVMGetVectorSize(vf);
  LLVMValueRef zero[64];
  for (unsigned i = 0; i < n; i++) zero[i] = LLVMConstInt(g->i32, 0, 0);
  LLVMValueRef v = LLVMBuildInsertElement(g->b, LLVMGetUndef(vf), x, LLVMConstInt(g->i32, 0, 0), "");
  return LLVMBuildShuffleVector(g->b, v, LLVMGetUndef(vf), LLVMConstVector(zero, n), "");
}

static LLVMValueRef half_at(bn_gen *g, LLVMValueRef blk, int64_t off) {
  return LLVMBuildFPExt(g->b, bn_gen_load(g, g->f16, blk, bn_gen_c64(g, off)), g->f32, "");
}

/* lanes bytes at blk + off as i32 lanes (zero-extended) */
static LLVMValueRef bytes_at(bn_gen *g, const mf *k, LLVMValueRef blk, int64_t off) {
  LLVMValueRef b = bn_gen_load(g, LLVMVectorType(g->i8, (unsigned)k->lanes), blk, bn_gen_c64(g, off));
  return LLVMBuildZExt(g->b, b, LLVMVectorType(g->i32, (unsigned)k->lanes), "");
}

static LLVMValueRef ci(bn_gen *g, const mf *k, int v) { return bn_gen_splat(g->i32, k->lanes, v); }

/* Elements [v lanes, (v + 1) lanes) of the block at blk as floats: the reference's bn_dequant. */
static LLVMValueRef decode(bn_gen *g, const mf *k, LLVMValueRef blk, int v) {
  LLVMTypeRef vf = k->vf;
  int64_t e = (int64_t)v * k->lanes;
  switch (k->wtype) {
  case BN_DT_F32: return bn_gen_load(g, vf, blk, bn_gen_c64(g, e * 4));
  case BN_DT_F16:
    return LLVMBuildFPExt(g->b, bn_gen_load(g, LLVMVectorType(g->f16, (unsigned)k->lanes), blk, bn_gen_c64(g, e * 2)), vf, "");
  case BN_DT_Q8_0: { /* d, 32 int8: d * q */
    LLVMValueRef q = bn_gen_load(g, LLVMVectorType(g->i8, (unsigned)k->lanes), blk, bn_gen_c64(g, 2 + e));
    return LLVMBuildFMul(g->b, splat(g, vf, half_at(g, blk, 0)), LLVMBuildSIToFP(g->b, q, vf, ""), "");
  }
  case BN_DT_Q4_0: { /* d, 16 bytes: elements 0..15 the low nibbles, 16..31 the high: d * (nibble - 8) */
    LLVMValueRef b = bytes_at(g, k, blk, 2 + e % 16);
    b = e >= 16 ? LLVMBuildLShr(g->b, b, ci(g, k, 4), "") : LLVMBuildAnd(g->b, b, ci(g, k, 15), "");
    LLVMValueRef q = LLVMBuildSIToFP(g->b, LLVMBuildSub(g->b, b, ci(g, k, 8), ""), vf, "");
    return LLVMBuildFMul(g->b, splat(g, vf, half_at(g, blk, 0)), q, "");
  }
  default: { /* Q6_K: ql[128], qh[64], int8 scales[16], d; two halves of 128, each four quarters of 32 */
    int64_t half = e / 128, quarter = e % 128 / 32, l = e % 32;
    LLVMValueRef lo = bytes_at(g, k, blk, half * 64 + l + (quarter & 1) * 32);
    lo = quarter >= 2 ? LLVMBuildLShr(g->b, lo, ci(g, k, 4), "") : LLVMBuildAnd(g->b, lo, ci(g, k, 15), "");
    LLVMValueRef hi = bytes_at(g, k, blk, 128 + half * 32 + l);
    hi = LLVMBuildAnd(g->b, LLVMBuildLShr(g->b, hi, ci(g, k, (int)(2 * quarter)), ""), ci(g, k, 3), "");
    LLVMValueRef q = LLVMBuildSub(g->b, LLVMBuildOr(g->b, lo, LLVMBuildShl(g->b, hi, ci(g, k, 4), ""), ""), ci(g, k, 32), "");
    LLVMValueRef sc = bn_gen_load(g, g->i8, blk, bn_gen_c64(g, 192 + half * 8 + l / 16 + 2 * quarter));
    LLVMValueRef ds = LLVMBuildFMul(g->b, half_at(g, blk, 208), LLVMBuildSIToFP(g->b, sc, g->f32, ""), "");
    return LLVMBuildFMul(g->b, splat(g, vf, ds), LLVMBuildSIToFP(g->b, q, vf, ""), "");
  }
  }
}

/* One row for tt tokens. Rows are read one after another (the hardware
 * prefetcher follows one stream; rows read side by side each break off after
 * K elements and halve the bandwidth), so a token's accumulator is split in U
 * over consecutive vectors of K: U * tt independent fused multiply-add chains
 * (a single chain is latency-bound below the memory bandwidth). */
static void tile(bn_gen *g, LLVMValueRef n, int rr, LLVMValueRef t, int tt) {
  (void)rr;
  const mf *k = g->ctx;
  LLVMTypeRef vf = k->vf;
  int U = tt >= 4 ? 1 : 4 / tt, per_block = (int)(k->elems / k->lanes);
  int64_t nb = g->K / k->elems, sb = k->lanes * U > k->elems ? k->lanes * U / k->elems : 1; /* blocks per step */
  LLVMValueRef acc[4][4], xrow[4];
  LLVMValueRef wrow = bn_gen_gep(g, g->arg[W], LLVMBuildMul(g->b, n, bn_gen_c64(g, nb * k->bytes), ""));
  for (int i = 0; i < tt; i++) {
    LLVMValueRef tok = LLVMBuildAdd(g->b, t, bn_gen_c64(g, i), "");
    xrow[i] = bn_gen_gep(g, g->arg[X], LLVMBuildMul(g->b, tok, bn_gen_c64(g, g->K * 4), ""));
    for (int u = 0; u < U; u++) {
      acc[i][u] = bn_gen_alloca(g, vf, "acc");
      LLVMBuildStore(g->b, LLVMConstNull(vf), acc[i][u]);
    }
  }
  for (int pass = 0; pass < 2; pass++) { /* whole steps of sb blocks, then the blocks left one at a time */
    int64_t from = pass ? nb / sb * sb : 0, to = pass ? nb : nb / sb * sb, step = pass ? 1 : sb;
    if (from == to) continue;
    bn_gen_for lb = bn_gen_for_begin(g, bn_gen_c64(g, from), bn_gen_c64(g, to), step);
    LLVMValueRef woff = LLVMBuildMul(g->b, lb.i, bn_gen_c64(g, k->bytes), "");
    for (int64_t off = 0; off < (step * k->bytes + 63) / 64 * 64; off += 64) { /* each cache line of the step, ahead */
      LLVMValueRef args[4] = {bn_gen_gep(g, wrow, LLVMBuildAdd(g->b, woff, bn_gen_c64(g, PREFETCH + off), "")),
                              LLVMConstInt(g->i32, 0, 0), LLVMConstInt(g->i32, 3, 0), LLVMConstInt(g->i32, 1, 0)};
      LLVMTypeRef pt = g->ptr;
      bn_gen_call(g, "llvm.prefetch", &pt, 1, args, 4);
    }
    for (int64_t b = 0, v = 0; b < step; b++) {
      LLVMValueRef blk = bn_gen_gep(g, wrow, LLVMBuildAdd(g->b, woff, bn_gen_c64(g, b * k->bytes), ""));
      LLVMValueRef e0 = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, lb.i, bn_gen_c64(g, b), ""), bn_gen_c64(g, k->elems), "");
      for (int p = 0; p < per_block; p++, v++) {
        LLVMValueRef wv = decode(g, k, blk, p);
        LLVMValueRef xoff = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, e0, bn_gen_c64(g, p * k->lanes), ""), bn_gen_c64(g, 4), "");
        for (int i = 0; i < tt; i++) {
          LLVMValueRef xv = bn_gen_load(g, vf, xrow[i], xoff);
          LLVMValueRef args[3] = {wv, xv, LLVMBuildLoad2(g->b, vf, acc[i][v % U], "")};
          LLVMBuildStore(g->b, bn_gen_call(g, "llvm.fma", &vf, 1, args, 3), acc[i][v % U]);
        }
      }
    }
    bn_gen_for_end(g, &lb);
  }
  for (int i = 0; i < tt; i++) {
    LLVMValueRef v = LLVMBuildLoad2(g->b, vf, acc[i][0], "");
    for (int u = 1; u < U; u++) v = LLVMBuildFAdd(g->b, v, LLVMBuildLoad2(g->b, vf, acc[i][u], ""), "");
    LLVMValueRef args[2] = {LLVMConstReal(g->f32, 0.0), v};
    LLVMValueRef sum = bn_gen_call(g, "llvm.vector.reduce.fadd", &vf, 1, args, 2);
    LLVMValueRef tok = LLVMBuildAdd(g->b, t, bn_gen_c64(g, i), "");
    LLVMValueRef off = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, tok, bn_gen_c64(g, g->N), ""), n, ""),
                                    bn_gen_c64(g, 4), "");
    bn_gen_store(g, sum, g->arg[Y], off);
  }
}

int bn_gen_matmul_f_block(bn_dtype wtype, bn_isa isa) {
  int lanes = isa == BN_ISA_AVX512_VNNI ? 16 : 8;
  switch (wtype) {
  case BN_DT_F32:
  case BN_DT_F16: return lanes;
  case BN_DT_Q8_0:
  case BN_DT_Q4_0: return 32;
  case BN_DT_Q6_K: return 256;
  default: return 0;
  }
}

void bn_gen_matmul_f(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t N, bn_dtype wtype,
                     bn_isa isa) {
  int lanes = isa == BN_ISA_AVX512_VNNI ? 16 : 8;
  int64_t elems = bn_gen_matmul_f_block(wtype, isa);
  int64_t bytes = wtype == BN_DT_F32 || wtype == BN_DT_F16 ? elems * (wtype == BN_DT_F32 ? 4 : 2)
                                                           : (int64_t)bn_dtype_table[wtype].block_bytes;
  mf k = {wtype, lanes, elems, bytes, NULL};
  bn_gen g = {.ctx = &k};
  bn_gen_begin(&g, c, m, name, 3, 3, isa, K, N);
  k.vf = LLVMVectorType(g.f32, (unsigned)lanes);
  bn_gen_rows_tokens(&g, g.arg[N0], g.arg[N1], g.arg[T_], 1, 4, 0, tile);
  bn_gen_end(&g);
}
