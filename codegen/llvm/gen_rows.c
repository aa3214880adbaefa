/* Row kernels that move data, rows [t0, t1) of T:
 *   embed: y[t] = the table's row tokens[t], decoded to floats block by block
 *          as bn_dequant does (bn_gen_decode);
 *   slice: y[t] = x[t][off .. off + n) (whole vectors, then one at a time). */
#include "../../ir/ir.h"
#include "gen.h"

enum { IN, W, Y, T_, T0, T1 };

void bn_gen_embed(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t width, bn_dtype t, bn_isa isa) {
  int lanes = isa == BN_ISA_AVX512_VNNI ? 16 : 8;
  int64_t elems = bn_gen_matmul_f_block(t, isa), bytes = bn_gen_block_bytes(t, lanes), nb = width / elems;
  bn_gen g = {0};
  bn_gen_begin(&g, c, m, name, 3, 3, isa, width, 0);
  bn_gen_for lt = bn_gen_for_begin(&g, g.arg[T0], g.arg[T1], 1);
  LLVMValueRef tok = LLVMBuildSExt(g.b, bn_gen_load(&g, g.i32, g.arg[IN], LLVMBuildMul(g.b, lt.i, bn_gen_c64(&g, 4), "")), g.i64, "");
  LLVMValueRef src = bn_gen_gep(&g, g.arg[W], LLVMBuildMul(g.b, tok, bn_gen_c64(&g, nb * bytes), ""));
  LLVMValueRef dst = bn_gen_gep(&g, g.arg[Y], LLVMBuildMul(g.b, lt.i, bn_gen_c64(&g, width * 4), ""));
  bn_gen_for lb = bn_gen_for_begin(&g, bn_gen_c64(&g, 0), bn_gen_c64(&g, nb), 1);
  LLVMValueRef blk = bn_gen_gep(&g, src, LLVMBuildMul(g.b, lb.i, bn_gen_c64(&g, bytes), ""));
  LLVMValueRef out = bn_gen_gep(&g, dst, LLVMBuildMul(g.b, lb.i, bn_gen_c64(&g, elems * 4), ""));
  for (int v = 0; v < elems / lanes; v++) bn_gen_store(&g, bn_gen_decode(&g, t, lanes, blk, v), out, bn_gen_c64(&g, v * lanes * 4));
  bn_gen_for_end(&g, &lb);
  bn_gen_for_end(&g, &lt);
  bn_gen_end(&g);
}

void bn_gen_slice(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t n, int64_t off, bn_isa isa) {
  int lanes = isa == BN_ISA_AVX512_VNNI ? 16 : 8;
  bn_gen g = {0};
  bn_gen_begin(&g, c, m, name, 3, 3, isa, K, n);
  LLVMTypeRef vf = LLVMVectorType(g.f32, (unsigned)lanes);
  bn_gen_for lt = bn_gen_for_begin(&g, g.arg[T0], g.arg[T1], 1);
  LLVMValueRef src = bn_gen_gep(&g, g.arg[IN], LLVMBuildMul(g.b, LLVMBuildAdd(g.b, LLVMBuildMul(g.b, lt.i, bn_gen_c64(&g, K), ""),
                                                                               bn_gen_c64(&g, off), ""), bn_gen_c64(&g, 4), ""));
  LLVMValueRef dst = bn_gen_gep(&g, g.arg[Y], LLVMBuildMul(g.b, lt.i, bn_gen_c64(&g, n * 4), ""));
  for (int pass = 0; pass < 2; pass++) {
    int64_t from = pass ? n / lanes * lanes : 0, to = pass ? n : n / lanes * lanes;
    if (from == to) continue;
    LLVMTypeRef t = pass ? g.f32 : vf;
    bn_gen_for lk = bn_gen_for_begin(&g, bn_gen_c64(&g, from), bn_gen_c64(&g, to), pass ? 1 : lanes);
    LLVMValueRef o = LLVMBuildMul(g.b, lk.i, bn_gen_c64(&g, 4), "");
    bn_gen_store(&g, bn_gen_load(&g, t, src, o), dst, o);
    bn_gen_for_end(&g, &lk);
  }
  bn_gen_for_end(&g, &lt);
  bn_gen_end(&g);
}
