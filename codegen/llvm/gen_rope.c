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
  LLVMValueRef tv = bn_gen_alloca(&g, g.i64, "t"), hv = bn_gen_alloca(&g, g.i64, "h");
  /* for t in [0, T) */
  LLVMBasicBlockRef th = LLVMAppendBasicBlockInContext(c, g.fn, "t.head"), tb = LLVMAppendBasicBlockInContext(c, g.fn, "t.body"),
                    td = LLVMAppendBasicBlockInContext(c, g.fn, "t.done");
  LLVMBuildStore(g.b, bn_gen_c64(&g, 0), tv);
  LLVMBuildBr(g.b, th);
  LLVMPositionBuilderAtEnd(g.b, th);
  LLVMValueRef t = LLVMBuildLoad2(g.b, g.i64, tv, "");
  LLVMBuildCondBr(g.b, LLVMBuildICmp(g.b, LLVMIntSLT, t, g.arg[T_], ""), tb, td);
  LLVMPositionBuilderAtEnd(g.b, tb);
  LLVMValueRef p = LLVMBuildAdd(g.b, g.arg[POS], t, "");
  LLVMValueRef crow = LLVMBuildMul(g.b, p, bn_gen_c64(&g, half * 4), "");
  LLVMValueRef srow = LLVMBuildAdd(g.b, crow, LLVMBuildMul(g.b, g.arg[NCTX], bn_gen_c64(&g, half * 4), ""), "");
  /* for h in [h0, h1) */
  LLVMBasicBlockRef hh = LLVMAppendBasicBlockInContext(c, g.fn, "h.head"), hb = LLVMAppendBasicBlockInContext(c, g.fn, "h.body"),
                    hd_ = LLVMAppendBasicBlockInContext(c, g.fn, "h.done");
  LLVMBuildStore(g.b, g.arg[H0], hv);
  LLVMBuildBr(g.b, hh);
  LLVMPositionBuilderAtEnd(g.b, hh);
  LLVMValueRef h = LLVMBuildLoad2(g.b, g.i64, hv, "");
  LLVMBuildCondBr(g.b, LLVMBuildICmp(g.b, LLVMIntSLT, h, g.arg[H1], ""), hb, hd_);
  LLVMPositionBuilderAtEnd(g.b, hb);
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
  LLVMBuildStore(g.b, LLVMBuildAdd(g.b, h, bn_gen_c64(&g, 1), ""), hv);
  LLVMBuildBr(g.b, hh);
  LLVMPositionBuilderAtEnd(g.b, hd_);
  LLVMBuildStore(g.b, LLVMBuildAdd(g.b, t, bn_gen_c64(&g, 1), ""), tv);
  LLVMBuildBr(g.b, th);
  LLVMPositionBuilderAtEnd(g.b, td);
  bn_gen_end(&g);
}
