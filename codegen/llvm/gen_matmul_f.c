/* The float matmul kernel (the output projection): y[t][n] = x[t] . W[n]
 * for W of f16 or f32 rows of K, K a constant. Each row's weights are
 * converted (vcvtph2ps for f16) one vector at a time and multiplied into up
 * to four tokens' accumulators with fused multiply-adds; a loop over K keeps the code
 * small (K is large). Float accumulation in vector lanes differs from the
 * reference's double sums by float rounding only (tested within 1e-5). */
#include "../../ir/ir.h"
#include "gen.h"

enum { X, W, Y, T_, N0, N1 };
enum { PREFETCH = 12288 }; /* bytes ahead in the weight stream (the hardware prefetcher alone reaches about 2/3 of the bandwidth) */

typedef struct {
  bn_dtype wtype;
  int lanes;
} mf;

/* One row for tt tokens. Rows are read one after another (the hardware
 * prefetcher follows one stream; rows read side by side each break off after
 * K elements and halve the bandwidth), so a token's accumulator is split in U
 * over consecutive vectors of K: U * tt independent fused multiply-add chains
 * (a single chain is latency-bound below the memory bandwidth). */
static void tile(bn_gen *g, LLVMValueRef n, int rr, LLVMValueRef t, int tt) {
  (void)rr;
  const mf *k = g->ctx;
  LLVMTypeRef vf = LLVMVectorType(g->f32, (unsigned)k->lanes);
  LLVMTypeRef vw = LLVMVectorType(k->wtype == BN_DT_F16 ? g->f16 : g->f32, (unsigned)k->lanes);
  int64_t wsz = k->wtype == BN_DT_F16 ? 2 : 4, U = tt >= 4 ? 1 : 4 / tt, step = U * k->lanes;
  LLVMValueRef acc[4][4], xrow[4], wrow = bn_gen_gep(g, g->arg[W], LLVMBuildMul(g->b, n, bn_gen_c64(g, g->K * wsz), ""));
  for (int i = 0; i < tt; i++) {
    LLVMValueRef tok = LLVMBuildAdd(g->b, t, bn_gen_c64(g, i), "");
    xrow[i] = bn_gen_gep(g, g->arg[X], LLVMBuildMul(g->b, tok, bn_gen_c64(g, g->K * 4), ""));
    for (int u = 0; u < U; u++) {
      acc[i][u] = bn_gen_alloca(g, vf, "acc");
      LLVMBuildStore(g->b, LLVMConstNull(vf), acc[i][u]);
    }
  }
  for (int pass = 0; pass < 2; pass++) { /* whole steps of U vectors, then the vectors left one at a time */
    int64_t from = pass ? g->K / step * step : 0, to = pass ? g->K : g->K / step * step, uu = pass ? 1 : U;
    if (from == to) continue;
    bn_gen_for lk = bn_gen_for_begin(g, bn_gen_c64(g, from), bn_gen_c64(g, to), pass ? k->lanes : step);
    for (int u = 0; u < uu; u++) {
      LLVMValueRef kk = LLVMBuildAdd(g->b, lk.i, bn_gen_c64(g, u * k->lanes), "");
      LLVMValueRef woff = LLVMBuildMul(g->b, kk, bn_gen_c64(g, wsz), "");
      if (u * k->lanes * wsz % 64 == 0 || step * wsz < 64) { /* one prefetch per cache line of the stream */
        LLVMValueRef args[4] = {bn_gen_gep(g, wrow, LLVMBuildAdd(g->b, woff, bn_gen_c64(g, PREFETCH), "")),
                                LLVMConstInt(g->i32, 0, 0), LLVMConstInt(g->i32, 3, 0), LLVMConstInt(g->i32, 1, 0)};
        LLVMTypeRef pt = g->ptr;
        bn_gen_call(g, "llvm.prefetch", &pt, 1, args, 4);
      }
      LLVMValueRef wv = bn_gen_load(g, vw, wrow, woff);
      if (k->wtype == BN_DT_F16) wv = LLVMBuildFPExt(g->b, wv, vf, "");
      for (int i = 0; i < tt; i++) {
        LLVMValueRef xv = bn_gen_load(g, vf, xrow[i], LLVMBuildMul(g->b, kk, bn_gen_c64(g, 4), ""));
        LLVMValueRef args[3] = {wv, xv, LLVMBuildLoad2(g->b, vf, acc[i][u], "")};
        LLVMBuildStore(g->b, bn_gen_call(g, "llvm.fma", &vf, 1, args, 3), acc[i][u]);
      }
    }
    bn_gen_for_end(g, &lk);
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

void bn_gen_matmul_f(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t N, bn_dtype wtype,
                     bn_isa isa) {
  mf k = {wtype, isa == BN_ISA_AVX512_VNNI ? 16 : 8};
  bn_gen g = {.ctx = &k};
  bn_gen_begin(&g, c, m, name, 3, 3, isa, K, N);
  bn_gen_rows_tokens(&g, g.arg[N0], g.arg[N1], g.arg[T_], 1, 4, 0, tile);
  bn_gen_end(&g);
}
