/* The attention kernel: causal softmax attention with GQA over the KV cache,
 * for heads [h0, h1) of T tokens at positions pos.. (the K/V rows of this step
 * are already in the cache). Per token and head: scores q . k_j * scale for
 * j <= pos + t, their max, exp and sum, then the p-weighted sum of the v_j.
 * Float lanes (the reference sums in double; agreement ~1e-6 relative). */
#include <math.h>

#include "../../ir/ir.h"
#include "gen.h"

enum { Q, KC, VC, Y, SC, T_, POS, H0, H1 };

typedef struct {
  int heads, kv_heads, hd, lanes;
} at;

void bn_gen_attention(LLVMContextRef c, LLVMModuleRef m, const char *name, int heads, int kv_heads, int hd, bn_isa isa) {
  at a = {heads, kv_heads, hd, isa == BN_ISA_AVX512_VNNI ? 16 : 8};
  bn_gen g = {.ctx = &a};
  bn_gen_begin(&g, c, m, name, 5, 4, isa, hd, heads);
  int nv = hd / a.lanes, group = heads / kv_heads;
  int64_t kvw = (int64_t)kv_heads * hd;
  LLVMTypeRef vf = LLVMVectorType(g.f32, (unsigned)a.lanes);
  LLVMValueRef mxv = bn_gen_alloca(&g, g.f32, "mx"), sumv = bn_gen_alloca(&g, g.f32, "sum");
  LLVMValueRef acc[32];
  for (int i = 0; i < nv; i++) acc[i] = bn_gen_alloca(&g, vf, "acc");
  bn_gen_for lt = bn_gen_for_begin(&g, bn_gen_c64(&g, 0), g.arg[T_], 1);
  LLVMValueRef n = LLVMBuildAdd(g.b, LLVMBuildAdd(g.b, g.arg[POS], lt.i, ""), bn_gen_c64(&g, 1), "n");
  bn_gen_for lh = bn_gen_for_begin(&g, g.arg[H0], g.arg[H1], 1);
  LLVMValueRef h = lh.i, kvh = LLVMBuildSDiv(g.b, h, bn_gen_c64(&g, group), "");
  LLVMValueRef qoff = LLVMBuildMul(g.b, LLVMBuildAdd(g.b, LLVMBuildMul(g.b, lt.i, bn_gen_c64(&g, heads), ""), h, ""),
                                   bn_gen_c64(&g, hd * 4), "");
  LLVMValueRef qv[32];
  for (int i = 0; i < nv; i++) qv[i] = bn_gen_load(&g, vf, bn_gen_gep(&g, g.arg[Q], qoff), bn_gen_c64(&g, i * a.lanes * 4));
  LLVMValueRef kvoff = LLVMBuildMul(g.b, kvh, bn_gen_c64(&g, hd * 4), "");
  /* scores and their max */
  LLVMBuildStore(g.b, LLVMConstReal(g.f32, -INFINITY), mxv);
  bn_gen_for lj = bn_gen_for_begin(&g, bn_gen_c64(&g, 0), n, 1);
  LLVMValueRef row = LLVMBuildAdd(g.b, LLVMBuildMul(g.b, lj.i, bn_gen_c64(&g, kvw * 4), ""), kvoff, "");
  LLVMValueRef d = NULL;
  for (int i = 0; i < nv; i++) {
    LLVMValueRef k = bn_gen_load(&g, vf, bn_gen_gep(&g, g.arg[KC], row), bn_gen_c64(&g, i * a.lanes * 4));
    d = d ? LLVMBuildFAdd(g.b, d, LLVMBuildFMul(g.b, qv[i], k, ""), "") : LLVMBuildFMul(g.b, qv[i], k, "");
  }
  LLVMValueRef rargs[2] = {LLVMConstReal(g.f32, 0.0), d};
  LLVMValueRef s = LLVMBuildFMul(g.b, bn_gen_call(&g, "llvm.vector.reduce.fadd", &vf, 1, rargs, 2),
                                 LLVMConstReal(g.f32, 1.0 / sqrt((double)hd)), "");
  bn_gen_store(&g, s, g.arg[SC], LLVMBuildMul(g.b, lj.i, bn_gen_c64(&g, 4), ""));
  LLVMValueRef margs[2] = {LLVMBuildLoad2(g.b, g.f32, mxv, ""), s};
  LLVMBuildStore(g.b, bn_gen_call(&g, "llvm.maxnum", &g.f32, 1, margs, 2), mxv);
  bn_gen_for_end(&g, &lj);
  /* exp and sum */
  LLVMValueRef mx = LLVMBuildLoad2(g.b, g.f32, mxv, "");
  LLVMBuildStore(g.b, LLVMConstReal(g.f32, 0.0), sumv);
  bn_gen_for le = bn_gen_for_begin(&g, bn_gen_c64(&g, 0), n, 1);
  LLVMValueRef soff = LLVMBuildMul(g.b, le.i, bn_gen_c64(&g, 4), "");
  LLVMValueRef x = LLVMBuildFSub(g.b, bn_gen_load(&g, g.f32, g.arg[SC], soff), mx, "");
  LLVMValueRef p = bn_gen_call(&g, "llvm.exp", &g.f32, 1, &x, 1);
  bn_gen_store(&g, p, g.arg[SC], soff);
  LLVMBuildStore(g.b, LLVMBuildFAdd(g.b, LLVMBuildLoad2(g.b, g.f32, sumv, ""), p, ""), sumv);
  bn_gen_for_end(&g, &le);
  /* the weighted sum of v */
  for (int i = 0; i < nv; i++) LLVMBuildStore(g.b, LLVMConstNull(vf), acc[i]);
  bn_gen_for lv = bn_gen_for_begin(&g, bn_gen_c64(&g, 0), n, 1);
  LLVMValueRef pj = bn_gen_load(&g, g.f32, g.arg[SC], LLVMBuildMul(g.b, lv.i, bn_gen_c64(&g, 4), ""));
  LLVMValueRef e[64];
  for (int i = 0; i < a.lanes; i++) e[i] = LLVMConstInt(g.i32, 0, 0);
  LLVMValueRef ps = LLVMBuildShuffleVector(g.b, LLVMBuildInsertElement(g.b, LLVMGetUndef(vf), pj, LLVMConstInt(g.i32, 0, 0), ""),
                                           LLVMGetUndef(vf), LLVMConstVector(e, (unsigned)a.lanes), "");
  LLVMValueRef vrow = LLVMBuildAdd(g.b, LLVMBuildMul(g.b, lv.i, bn_gen_c64(&g, kvw * 4), ""), kvoff, "");
  for (int i = 0; i < nv; i++) {
    LLVMValueRef v = bn_gen_load(&g, vf, bn_gen_gep(&g, g.arg[VC], vrow), bn_gen_c64(&g, i * a.lanes * 4));
    LLVMValueRef args[3] = {ps, v, LLVMBuildLoad2(g.b, vf, acc[i], "")};
    LLVMBuildStore(g.b, bn_gen_call(&g, "llvm.fma", &vf, 1, args, 3), acc[i]);
  }
  bn_gen_for_end(&g, &lv);
  LLVMValueRef inv = LLVMBuildFDiv(g.b, LLVMConstReal(g.f32, 1.0), LLVMBuildLoad2(g.b, g.f32, sumv, ""), "");
  LLVMValueRef invs = LLVMBuildShuffleVector(g.b, LLVMBuildInsertElement(g.b, LLVMGetUndef(vf), inv, LLVMConstInt(g.i32, 0, 0), ""),
                                             LLVMGetUndef(vf), LLVMConstVector(e, (unsigned)a.lanes), "");
  for (int i = 0; i < nv; i++)
    bn_gen_store(&g, LLVMBuildFMul(g.b, LLVMBuildLoad2(g.b, vf, acc[i], ""), invs, ""), bn_gen_gep(&g, g.arg[Y], qoff),
                 bn_gen_c64(&g, i * a.lanes * 4));
  bn_gen_for_end(&g, &lh);
  bn_gen_for_end(&g, &lt);
  bn_gen_end(&g);
}
