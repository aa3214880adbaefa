/* The lookup-table ternary matmul (in the style of T-MAC and bitnet.cpp's
 * TL kernels), as LLVM IR with K and N constants, over TL2 weights.
 *
 * Per token, a table per activation pair (a0, a1): for each 4-bit index
 * c0 + 4 c1 (codes c = trit + 1), the exact sum (c0-1) a0 + (c1-1) a1, an
 * int16 in [-254, 254] kept as two 16-byte tables, its low and its high
 * bytes. TL2 puts 16 rows of one pair in each 16-byte lane, so one vpshufb
 * looks up 16 rows x (lanes) pairs; the low and high results interleaved
 * (vpunpck{l,h}bw) are the int16 sums themselves. They are added in int16
 * for 16 chunks (16 x 2 x 254 fits), then widened to int32: the sums are
 * exact, with no offset to subtract. The epilogue dequantizes in double as
 * the reference does, so results are bit-identical to it.
 *
 * Rows are processed in blocks of 16 (n0 and n1 must be multiples of 16),
 * tokens one at a time: the tables are built per token (on the stack) and
 * the weights streamed once per token, which suits decode (one token); the
 * compile-time tuner (bnc compile --tune) measures where it wins. */
#include "../../ir/ir.h"
#include "gen.h"

enum { QA, W, OUT, RESID, T_, N0, N1 };
enum { SEG = 16, PREFETCH_BYTES = 12288 };

typedef struct {
  int V;              /* vector bytes: 64 (AVX-512) or 32 (AVX2) */
  LLVMTypeRef vb, vw; /* <V x i8>, <V/2 x i16> */
} lut;

static LLVMValueRef pshufb(bn_gen *g, LLVMValueRef table, LLVMValueRef idx) {
  LLVMValueRef args[2] = {table, idx};
  return bn_gen_call(g, g->isa == BN_ISA_AVX512_VNNI ? "llvm.x86.avx512.pshuf.b.512" : "llvm.x86.avx2.pshuf.b", NULL, 0,
                     args, 2);
}

/* vpunpck{l,h}bw(lo, hi) as <V/2 x i16>: the int16 values of rows 0..7 (half 0) or 8..15 (half 1) per lane. */
static LLVMValueRef words(bn_gen *g, const lut *k, LLVMValueRef lo, LLVMValueRef hi, int half) {
  LLVMValueRef mask[64];
  for (int l = 0; l < k->V / 16; l++)
    for (int i = 0; i < 8; i++) {
      mask[l * 16 + 2 * i] = LLVMConstInt(g->i32, (unsigned long long)(l * 16 + half * 8 + i), 0);
      mask[l * 16 + 2 * i + 1] = LLVMConstInt(g->i32, (unsigned long long)(k->V + l * 16 + half * 8 + i), 0);
    }
  LLVMValueRef v = LLVMBuildShuffleVector(g->b, lo, hi, LLVMConstVector(mask, (unsigned)k->V), "");
  return LLVMBuildBitCast(g->b, v, k->vw, "");
}

/* Elements [from, from + n) of v. */
static LLVMValueRef part(bn_gen *g, LLVMValueRef v, int from, int n) {
  LLVMValueRef mask[32];
  for (int i = 0; i < n; i++) mask[i] = LLVMConstInt(g->i32, (unsigned long long)(from + i), 0);
  return LLVMBuildShuffleVector(g->b, v, LLVMGetUndef(LLVMTypeOf(v)), LLVMConstVector(mask, (unsigned)n), "");
}

/* The 16 tables (low bytes at tlo, high at thi) of token row arow. */
static void build_tables(bn_gen *g, LLVMValueRef arow, LLVMValueRef tlo, LLVMValueRef thi) {
  LLVMTypeRef v16w = LLVMVectorType(g->i16, 16), v16b = LLVMVectorType(g->i8, 16);
  LLVMValueRef m0[16], m1[16];
  for (int e = 0; e < 16; e++) {
    m0[e] = LLVMConstInt(g->i16, (unsigned long long)((e & 3) == 3 ? 0 : (e & 3) - 1), 1);
    m1[e] = LLVMConstInt(g->i16, (unsigned long long)((e >> 2) == 3 ? 0 : (e >> 2) - 1), 1);
  }
  LLVMValueRef M0 = LLVMConstVector(m0, 16), M1 = LLVMConstVector(m1, 16);
  bn_gen_for l = bn_gen_for_begin(g, bn_gen_c64(g, 0), bn_gen_c64(g, g->K / 2), 1);
  LLVMValueRef off = LLVMBuildMul(g->b, l.i, bn_gen_c64(g, 2), "");
  LLVMValueRef a[2], v = NULL;
  for (int h = 0; h < 2; h++) {
    LLVMValueRef x = LLVMBuildSExt(g->b, bn_gen_load(g, g->i8, arow, LLVMBuildAdd(g->b, off, bn_gen_c64(g, h), "")), g->i16, "");
    a[h] = bn_gen_splat_v(g, v16w, x);
  }
  v = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, a[0], M0, ""), LLVMBuildMul(g->b, a[1], M1, ""), "");
  LLVMValueRef at = LLVMBuildMul(g->b, l.i, bn_gen_c64(g, 16), "");
  bn_gen_store(g, LLVMBuildTrunc(g->b, v, v16b, ""), tlo, at);
  bn_gen_store(g, LLVMBuildTrunc(g->b, LLVMBuildAShr(g->b, v, bn_gen_splat(g->i16, 16, 8), ""), v16b, ""), thi, at);
  bn_gen_for_end(g, &l);
}

/* The int32 sums of rows n..n+15 against the tables: <16 x i32>. */
static LLVMValueRef block_sums(bn_gen *g, const lut *k, LLVMValueRef n, LLVMValueRef tlo, LLVMValueRef thi, int prefetch) {
  int V = k->V, W2 = V / 2;
  LLVMTypeRef vd = LLVMVectorType(g->i32, (unsigned)W2);
  LLVMValueRef acc[2] = {bn_gen_alloca(g, vd, "acc_a"), bn_gen_alloca(g, vd, "acc_b")};
  for (int s = 0; s < 2; s++) LLVMBuildStore(g->b, LLVMConstNull(vd), acc[s]);
  LLVMValueRef wblk = bn_gen_gep(g, g->arg[W], LLVMBuildMul(g->b, n, bn_gen_c64(g, g->K / 4), ""));
  LLVMValueRef m15 = bn_gen_splat(g->i8, V, 15), four = bn_gen_splat(g->i8, V, 4);
  bn_gen_for seg = bn_gen_for_begin(g, bn_gen_c64(g, 0), bn_gen_c64(g, g->K / 16 / SEG), 1);
  LLVMValueRef j0 = LLVMBuildMul(g->b, seg.i, bn_gen_c64(g, SEG), "");
  LLVMValueRef w16[2] = {LLVMConstNull(k->vw), LLVMConstNull(k->vw)};
  for (int c = 0; c < SEG; c++) {
    LLVMValueRef j = LLVMBuildAdd(g->b, j0, bn_gen_c64(g, c), "");
    LLVMValueRef wo = LLVMBuildMul(g->b, j, bn_gen_c64(g, 64), ""), po = LLVMBuildMul(g->b, j, bn_gen_c64(g, 8 * 16), "");
    if (prefetch) {
      LLVMValueRef args[4] = {bn_gen_gep(g, wblk, LLVMBuildAdd(g->b, wo, bn_gen_c64(g, PREFETCH_BYTES), "")),
                              LLVMConstInt(g->i32, 0, 0), LLVMConstInt(g->i32, 3, 0), LLVMConstInt(g->i32, 1, 0)};
      LLVMTypeRef pt = g->ptr;
      bn_gen_call(g, "llvm.prefetch", &pt, 1, args, 4);
    }
    for (int h = 0; h < 64 / V; h++) {
      LLVMValueRef wv = bn_gen_load(g, k->vb, wblk, LLVMBuildAdd(g->b, wo, bn_gen_c64(g, h * V), ""));
      LLVMValueRef idx[2] = {LLVMBuildAnd(g->b, wv, m15, ""), LLVMBuildAnd(g->b, LLVMBuildLShr(g->b, wv, four, ""), m15, "")};
      for (int nib = 0; nib < 2; nib++) { /* pairs 8j + 4 nib + L, L = h V/16 .. */
        LLVMValueRef to = LLVMBuildAdd(g->b, po, bn_gen_c64(g, (4 * nib + h * V / 16) * 16), "");
        LLVMValueRef lo = pshufb(g, bn_gen_load(g, k->vb, tlo, to), idx[nib]);
        LLVMValueRef hi = pshufb(g, bn_gen_load(g, k->vb, thi, to), idx[nib]);
        for (int half = 0; half < 2; half++) w16[half] = LLVMBuildAdd(g->b, w16[half], words(g, k, lo, hi, half), "");
      }
    }
  }
  for (int s = 0; s < 2; s++) {
    LLVMValueRef a = LLVMBuildLoad2(g->b, vd, acc[s], "");
    LLVMBuildStore(g->b, LLVMBuildAdd(g->b, a, LLVMBuildSExt(g->b, w16[s], vd, ""), ""), acc[s]);
  }
  bn_gen_for_end(g, &seg);
  /* element l * 8 + i of acc[half] is row 8 half + i of lane l: sum the lanes */
  LLVMValueRef rows[2];
  for (int s = 0; s < 2; s++) {
    LLVMValueRef a = LLVMBuildLoad2(g->b, vd, acc[s], "");
    for (int w = W2; w > 8; w /= 2) a = LLVMBuildAdd(g->b, part(g, a, 0, w / 2), part(g, a, w / 2, w / 2), "");
    rows[s] = a;
  }
  LLVMValueRef mask[16];
  for (int i = 0; i < 16; i++) mask[i] = LLVMConstInt(g->i32, (unsigned long long)i, 0);
  return LLVMBuildShuffleVector(g->b, rows[0], rows[1], LLVMConstVector(mask, 16), "");
}

/* out[t][n..n+15] from the sums, as gen_matmul's epilogue (and bn_ref_dequant) computes them. */
static void epilogue(bn_gen *g, bn_mm_mode mode, LLVMValueRef arow, LLVMValueRef n, LLVMValueRef t, LLVMValueRef sums) {
  LLVMTypeRef v16f = LLVMVectorType(g->f32, 16), v16d = LLVMVectorType(g->f64, 16);
  LLVMValueRef off4 = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, t, bn_gen_c64(g, g->N), ""), n, ""),
                                   bn_gen_c64(g, 4), "");
  if (mode == BN_MM_ACC) {
    bn_gen_store(g, sums, g->arg[OUT], off4);
    return;
  }
  int64_t meta = bn_qa8_row_bytes(g->K) - 64;
  LLVMValueRef s = LLVMBuildFPExt(g->b, bn_gen_load(g, g->f32, arow, bn_gen_c64(g, meta)), g->f64, "");
  LLVMValueRef sv = bn_gen_splat_v(g, v16d, s);
  LLVMValueRef rs_off = LLVMBuildAdd(g->b, bn_gen_c64(g, g->N * g->K / 4), LLVMBuildMul(g->b, n, bn_gen_c64(g, 4), ""), "");
  LLVMValueRef rs = LLVMBuildFPExt(g->b, bn_gen_load(g, v16f, g->arg[W], rs_off), v16d, "");
  LLVMValueRef y = LLVMBuildFDiv(g->b, LLVMBuildFMul(g->b, LLVMBuildSIToFP(g->b, sums, v16d, ""), rs, ""), sv, "");
  y = LLVMBuildFPTrunc(g->b, y, v16f, "y");
  if (mode == BN_MM_DQ_ADD) y = LLVMBuildFAdd(g->b, bn_gen_load(g, v16f, g->arg[RESID], off4), y, "");
  bn_gen_store(g, y, g->arg[OUT], off4);
}

void bn_gen_matmul_lut(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t N, bn_mm_mode mode,
                       int pro, float eps, bn_isa isa) {
  bn_gen g = {0};
  bn_gen_matmul_begin(&g, c, m, name, K, N, pro, eps, isa);
  lut k = {isa == BN_ISA_AVX512_VNNI ? 64 : 32, NULL, NULL};
  k.vb = LLVMVectorType(g.i8, (unsigned)k.V), k.vw = LLVMVectorType(g.i16, (unsigned)k.V / 2);
  LLVMTypeRef tab = LLVMArrayType(g.i8, (unsigned)(K / 2 * 16));
  LLVMValueRef tlo = bn_gen_alloca(&g, tab, "tlo"), thi = bn_gen_alloca(&g, tab, "thi");
  LLVMSetAlignment(tlo, 64), LLVMSetAlignment(thi, 64);
  int64_t row_bytes = bn_qa8_row_bytes(K);
  bn_gen_for tl = bn_gen_for_begin(&g, bn_gen_c64(&g, 0), g.arg[T_], 1);
  LLVMValueRef arow = bn_gen_gep(&g, g.arg[QA], LLVMBuildMul(g.b, tl.i, bn_gen_c64(&g, row_bytes), ""));
  build_tables(&g, arow, tlo, thi);
  bn_gen_for nl = bn_gen_for_begin(&g, g.arg[N0], g.arg[N1], 16);
  LLVMValueRef sums = block_sums(&g, &k, nl.i, tlo, thi, 1);
  epilogue(&g, mode, arow, nl.i, tl.i, sums);
  bn_gen_for_end(&g, &nl);
  bn_gen_for_end(&g, &tl);
  bn_gen_end(&g);
}
