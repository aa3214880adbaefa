/* The RoPE kernel (NeoX: dimension i turns with i + dims/2), for T tokens at
 * positions pos.. and heads [h0, h1), with the angles' cosines and sines
 * from a table the executor fills once per context (rows of dims/2 floats,
 * cosines then, n_ctx rows later, sines). Only whole heads (dims = head_dim). */
#include "../../ir/ir.h"
#include "gen.h"

enum { X, Y, TAB, T_, POS, H0, H1, NCTX };

void bn_gen_rope(LLVMContextRef c, LLVMModuleRef m, const char *name, int heads, int hd, bn_isa isa) {
  bn_gen g = {0};
  bn_gen_begin(&g, c, m, name, 3, 5, isa, hd, heads);
  int lanes = isa == BN_ISA_AVX512_VNNI ? 16 : 8, half = hd / 2;
  if (half < lanes) lanes = half; /* small heads: fewer lanes */
  LLVMTypeRef vf = LLVMVectorType(g.f32, (unsigned)lanes);
  bn_gen_for lt = bn_gen_for_begin(&g, bn_gen_c64(&g, 0), g.arg[T_], 1);
  LLVMValueRef t = lt.i;
  LLVMValueRef p = LLVMBuildAdd(g.b, g.arg[POS], t, "");
  LLVMValueRef crow = LLVMBuildMul(g.b, p, bn_gen_c64(&g, half * 4), "");
  LLVMValueRef srow = LLVMBuildAdd(g.b, crow, LLVMBuildMul(g.b, g.arg[NCTX], bn_gen_c64(&g, half * 4), ""), "");
  bn_gen_for lh = bn_gen_for_begin(&g, g.arg[H0], g.arg[H1], 1);
  LLVMValueRef h = lh.i;
  LLVMValueRef off = LLVMBuildMul(g.b, LLVMBuildAdd(g.b, LLVMBuildMul(g.b, t, bn_gen_c64(&g, heads), ""), h, ""),
                                  bn_gen_c64(&g, hd * 4), "");
  LLVMValueRef xr = bn_gen_gep(&g, g.arg[X], off), yr = bn_gen_gep(&g, g.arg[Y], off);
  for (int i = 0; i < half; i += lanes) {
    LLVMValueRef a = bn_gen_load(&g, vf, xr, bn_gen_c64(&g, i * 4)), b = bn_gen_load(&g, vf, xr, bn_gen_c64(&g, (i + half) * 4));
    LLVMValueRef cs = bn_gen_load(&g, vf, bn_gen_gep(&g, g.arg[TAB], crow), bn_gen_c64(&g, i * 4));
    LLVMValueRef sn = bn_gen_load(&g, vf, bn_gen_gep(&g, g.arg[TAB], srow), bn_gen_c64(&g, i * 4));
    bn_gen_store(&g, LLVMBuildFSub(g.b, LLVMBuildFMul(g.b, a, cs, ""), LLVMBuildFMul(g.b, b, sn, ""), ""), yr, bn_gen_c64(&g, i * 4));
    bn_gen_store(&g, LLVMBuildFAdd(g.b, LLVMBuildFMul(g.b, a, sn, ""), LLVMBuildFMul(g.b, b, cs, ""), ""), yr,
                 bn_gen_c64(&g, (i + half) * 4));
  }
  bn_gen_for_end(&g, &lh);
  bn_gen_for_end(&g, &lt);
  bn_gen_end(&g);
}
