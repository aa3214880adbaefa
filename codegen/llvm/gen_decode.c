/* Weight blocks decoded to float vectors, exactly as the reference's
 * bn_dequant computes them: f32 as is, f16 by vcvtph2ps, bf16 shifted into an f32's upper half, q8_0 as d * q, q4_0
 * as d * (nibble - 8), q6_k as (d * scale) * q, all in float. Shared by the
 * float matmul and the embedding gather. */
#include "../../ir/ir.h"
#include "gen.h"

int bn_gen_matmul_f_block(bn_dtype wtype, bn_isa isa) {
  int lanes = isa == BN_ISA_AVX512_VNNI ? 16 : 8;
  switch (wtype) {
  case BN_DT_F32:
  case BN_DT_F16:
  case BN_DT_BF16: return lanes;
  case BN_DT_Q8_0:
  case BN_DT_Q4_0: return 32;
  case BN_DT_Q6_K: return 256;
  default: return 0;
  }
}

int64_t bn_gen_block_bytes(bn_dtype t, int lanes) {
  return t == BN_DT_F32 ? 4 * lanes : t == BN_DT_F16 || t == BN_DT_BF16 ? 2 * lanes : bn_dtype_table[t].block_bytes;
}

static LLVMValueRef half_at(bn_gen *g, LLVMValueRef blk, int64_t off) {
  return LLVMBuildFPExt(g->b, bn_gen_load(g, g->f16, blk, bn_gen_c64(g, off)), g->f32, "");
}

/* lanes bytes at blk + off as i32 lanes (zero-extended) */
static LLVMValueRef bytes_at(bn_gen *g, int lanes, LLVMValueRef blk, int64_t off) {
  LLVMValueRef b = bn_gen_load(g, LLVMVectorType(g->i8, (unsigned)lanes), blk, bn_gen_c64(g, off));
  return LLVMBuildZExt(g->b, b, LLVMVectorType(g->i32, (unsigned)lanes), "");
}

static LLVMValueRef ci(bn_gen *g, int lanes, int v) { return bn_gen_splat(g->i32, lanes, v); }

LLVMValueRef bn_gen_decode(bn_gen *g, bn_dtype t, int lanes, LLVMValueRef blk, int v) {
  LLVMTypeRef vf = LLVMVectorType(g->f32, (unsigned)lanes);
  int64_t e = (int64_t)v * lanes;
  switch (t) {
  case BN_DT_F32: return bn_gen_load(g, vf, blk, bn_gen_c64(g, e * 4));
  case BN_DT_F16:
    return LLVMBuildFPExt(g->b, bn_gen_load(g, LLVMVectorType(g->f16, (unsigned)lanes), blk, bn_gen_c64(g, e * 2)), vf, "");
  case BN_DT_BF16: { /* the upper half of an f32: widen, shift up 16 */
    LLVMValueRef h = bn_gen_load(g, LLVMVectorType(g->i16, (unsigned)lanes), blk, bn_gen_c64(g, e * 2));
    h = LLVMBuildShl(g->b, LLVMBuildZExt(g->b, h, LLVMVectorType(g->i32, (unsigned)lanes), ""), ci(g, lanes, 16), "");
    return LLVMBuildBitCast(g->b, h, vf, "");
  }
  case BN_DT_Q8_0: { /* d, 32 int8: d * q */
    LLVMValueRef q = bn_gen_load(g, LLVMVectorType(g->i8, (unsigned)lanes), blk, bn_gen_c64(g, 2 + e));
    return LLVMBuildFMul(g->b, bn_gen_splat_v(g, vf, half_at(g, blk, 0)), LLVMBuildSIToFP(g->b, q, vf, ""), "");
  }
  case BN_DT_Q4_0: { /* d, 16 bytes: elements 0..15 the low nibbles, 16..31 the high: d * (nibble - 8) */
    LLVMValueRef b = bytes_at(g, lanes, blk, 2 + e % 16);
    b = e >= 16 ? LLVMBuildLShr(g->b, b, ci(g, lanes, 4), "") : LLVMBuildAnd(g->b, b, ci(g, lanes, 15), "");
    LLVMValueRef q = LLVMBuildSIToFP(g->b, LLVMBuildSub(g->b, b, ci(g, lanes, 8), ""), vf, "");
    return LLVMBuildFMul(g->b, bn_gen_splat_v(g, vf, half_at(g, blk, 0)), q, "");
  }
  default: { /* Q6_K: ql[128], qh[64], int8 scales[16], d; two halves of 128, each four quarters of 32 */
    int64_t half = e / 128, quarter = e % 128 / 32, l = e % 32;
    LLVMValueRef lo = bytes_at(g, lanes, blk, half * 64 + l + (quarter & 1) * 32);
    lo = quarter >= 2 ? LLVMBuildLShr(g->b, lo, ci(g, lanes, 4), "") : LLVMBuildAnd(g->b, lo, ci(g, lanes, 15), "");
    LLVMValueRef hi = bytes_at(g, lanes, blk, 128 + half * 32 + l);
    hi = LLVMBuildAnd(g->b, LLVMBuildLShr(g->b, hi, ci(g, lanes, (int)(2 * quarter)), ""), ci(g, lanes, 3), "");
    LLVMValueRef q = LLVMBuildSub(g->b, LLVMBuildOr(g->b, lo, LLVMBuildShl(g->b, hi, ci(g, lanes, 4), ""), ""), ci(g, lanes, 32), "");
    LLVMValueRef sc = bn_gen_load(g, g->i8, blk, bn_gen_c64(g, 192 + half * 8 + l / 16 + 2 * quarter));
    LLVMValueRef ds = LLVMBuildFMul(g->b, half_at(g, blk, 208), LLVMBuildSIToFP(g->b, sc, g->f32, ""), "");
    return LLVMBuildFMul(g->b, bn_gen_splat_v(g, vf, ds), LLVMBuildSIToFP(g->b, q, vf, ""), "");
  }
  }
}
