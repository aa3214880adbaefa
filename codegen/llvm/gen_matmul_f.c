/* The float matmul kernel (the output projection): y[t][n] = x[t] . W[n]
 * for W of f16 or f32 rows of K, K a constant. Each row's weights are
 * converted (vcvtph2ps for f16) one vector at a time and multiplied into four
 * tokens' accumulators with fused multiply-adds; a loop over K keeps the code
 * small (K is large). Float accumulation in vector lanes differs from the
 * reference's double sums by float rounding only (tested within 1e-5). */
#include "../../ir/ir.h"
#include "gen.h"

enum { TILE = 4 };
enum { X, W, Y, T_, N0, N1 };

typedef struct {
  bn_dtype wtype;
  int lanes;
} mf;

static void tile(bn_gen *g, LLVMValueRef n, int rr, LLVMValueRef t, int tt) {
  (void)rr; /* one row at a time */
  const mf *k = g->ctx;
  LLVMTypeRef vf = LLVMVectorType(g->f32, (unsigned)k->lanes);
  LLVMTypeRef vw = LLVMVectorType(k->wtype == BN_DT_F16 ? g->f16 : g->f32, (unsigned)k->lanes);
  int64_t wsz = k->wtype == BN_DT_F16 ? 2 : 4;
  LLVMValueRef acc[TILE], xrow[TILE];
  LLVMValueRef wrow = bn_gen_gep(g, g->arg[W], LLVMBuildMul(g->b, n, bn_gen_c64(g, g->K * wsz), ""));
  for (int i = 0; i < tt; i++) {
    acc[i] = bn_gen_alloca(g, vf, "acc");
    LLVMBuildStore(g->b, LLVMConstNull(vf), acc[i]);
    LLVMValueRef tok = LLVMBuildAdd(g->b, t, bn_gen_c64(g, i), "");
    xrow[i] = bn_gen_gep(g, g->arg[X], LLVMBuildMul(g->b, tok, bn_gen_c64(g, g->K * 4), ""));
  }
  bn_gen_for lk = bn_gen_for_begin(g, bn_gen_c64(g, 0), bn_gen_c64(g, g->K), k->lanes);
  LLVMValueRef kk = lk.i;
  LLVMValueRef wv = bn_gen_load(g, vw, wrow, LLVMBuildMul(g->b, kk, bn_gen_c64(g, wsz), ""));
  if (k->wtype == BN_DT_F16) wv = LLVMBuildFPExt(g->b, wv, vf, "");
  for (int i = 0; i < tt; i++) {
    LLVMValueRef xv = bn_gen_load(g, vf, xrow[i], LLVMBuildMul(g->b, kk, bn_gen_c64(g, 4), ""));
    LLVMValueRef args[3] = {wv, xv, LLVMBuildLoad2(g->b, vf, acc[i], "")};
    LLVMBuildStore(g->b, bn_gen_call(g, "llvm.fma", &vf, 1, args, 3), acc[i]);
  }
  bn_gen_for_end(g, &lk);
  for (int i = 0; i < tt; i++) {
    LLVMValueRef args[2] = {LLVMConstReal(g->f32, 0.0), LLVMBuildLoad2(g->b, vf, acc[i], "")};
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
  bn_gen_rows_tokens(&g, g.arg[N0], g.arg[N1], g.arg[T_], 1, TILE, 0, tile);
  bn_gen_end(&g);
}
