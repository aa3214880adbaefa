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

static LLVMValueRef counter(bn_gen *g, const char *name) { return bn_gen_alloca(g, g->i64, name); }

/* while (*var < limit) { body; ++*var } with the blocks returned to fill. */
typedef struct {
  LLVMBasicBlockRef head, body, done;
  LLVMValueRef var, i;
} loop;

static loop loop_begin(bn_gen *g, LLVMValueRef var, LLVMValueRef from, LLVMValueRef limit) {
  loop l = {LLVMAppendBasicBlockInContext(g->c, g->fn, "l.head"), LLVMAppendBasicBlockInContext(g->c, g->fn, "l.body"),
            LLVMAppendBasicBlockInContext(g->c, g->fn, "l.done"), var, NULL};
  LLVMBuildStore(g->b, from, var);
  LLVMBuildBr(g->b, l.head);
  LLVMPositionBuilderAtEnd(g->b, l.head);
  l.i = LLVMBuildLoad2(g->b, g->i64, var, "");
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, l.i, limit, ""), l.body, l.done);
  LLVMPositionBuilderAtEnd(g->b, l.body);
  return l;
}

static void loop_end(bn_gen *g, loop *l) {
  LLVMBuildStore(g->b, LLVMBuildAdd(g->b, l->i, bn_gen_c64(g, 1), ""), l->var);
  LLVMBuildBr(g->b, l->head);
  LLVMPositionBuilderAtEnd(g->b, l->done);
}

void bn_gen_attention(LLVMContextRef c, LLVMModuleRef m, const char *name, int heads, int kv_heads, int hd, bn_isa isa) {
  at a = {heads, kv_heads, hd, isa == BN_ISA_AVX512_VNNI ? 16 : 8};
  bn_gen g = {.ctx = &a};
  bn_gen_begin(&g, c, m, name, 5, 4, isa, hd, heads);
  int nv = hd / a.lanes, group = heads / kv_heads;
  int64_t kvw = (int64_t)kv_heads * hd;
  LLVMTypeRef vf = LLVMVectorType(g.f32, (unsigned)a.lanes);
  LLVMValueRef tv = counter(&g, "t"), hv = counter(&g, "h"), jv = counter(&g, "j");
  LLVMValueRef mxv = bn_gen_alloca(&g, g.f32, "mx"), sumv = bn_gen_alloca(&g, g.f32, "sum");
  LLVMValueRef acc[32];
  for (int i = 0; i < nv; i++) acc[i] = bn_gen_alloca(&g, vf, "acc");
  loop lt = loop_begin(&g, tv, bn_gen_c64(&g, 0), g.arg[T_]);
  LLVMValueRef n = LLVMBuildAdd(g.b, LLVMBuildAdd(g.b, g.arg[POS], lt.i, ""), bn_gen_c64(&g, 1), "n");
  loop lh = loop_begin(&g, hv, g.arg[H0], g.arg[H1]);
  LLVMValueRef h = lh.i, kvh = LLVMBuildSDiv(g.b, h, bn_gen_c64(&g, group), "");
  LLVMValueRef qoff = LLVMBuildMul(g.b, LLVMBuildAdd(g.b, LLVMBuildMul(g.b, lt.i, bn_gen_c64(&g, heads), ""), h, ""),
                                   bn_gen_c64(&g, hd * 4), "");
  LLVMValueRef qv[32];
  for (int i = 0; i < nv; i++) qv[i] = bn_gen_load(&g, vf, bn_gen_gep(&g, g.arg[Q], qoff), bn_gen_c64(&g, i * a.lanes * 4));
  LLVMValueRef kvoff = LLVMBuildMul(g.b, kvh, bn_gen_c64(&g, hd * 4), "");
  /* scores and their max */
  LLVMBuildStore(g.b, LLVMConstReal(g.f32, -INFINITY), mxv);
  loop lj = loop_begin(&g, jv, bn_gen_c64(&g, 0), n);
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
  loop_end(&g, &lj);
  /* exp and sum */
  LLVMValueRef mx = LLVMBuildLoad2(g.b, g.f32, mxv, "");
  LLVMBuildStore(g.b, LLVMConstReal(g.f32, 0.0), sumv);
  loop le = loop_begin(&g, jv, bn_gen_c64(&g, 0), n);
  LLVMValueRef soff = LLVMBuildMul(g.b, le.i, bn_gen_c64(&g, 4), "");
  LLVMValueRef x = LLVMBuildFSub(g.b, bn_gen_load(&g, g.f32, g.arg[SC], soff), mx, "");
  LLVMValueRef p = bn_gen_call(&g, "llvm.exp", &g.f32, 1, &x, 1);
  bn_gen_store(&g, p, g.arg[SC], soff);
  LLVMBuildStore(g.b, LLVMBuildFAdd(g.b, LLVMBuildLoad2(g.b, g.f32, sumv, ""), p, ""), sumv);
  loop_end(&g, &le);
  /* the weighted sum of v */
  for (int i = 0; i < nv; i++) LLVMBuildStore(g.b, LLVMConstNull(vf), acc[i]);
  loop lv = loop_begin(&g, jv, bn_gen_c64(&g, 0), n);
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
  loop_end(&g, &lv);
  LLVMValueRef inv = LLVMBuildFDiv(g.b, LLVMConstReal(g.f32, 1.0), LLVMBuildLoad2(g.b, g.f32, sumv, ""), "");
  LLVMValueRef invs = LLVMBuildShuffleVector(g.b, LLVMBuildInsertElement(g.b, LLVMGetUndef(vf), inv, LLVMConstInt(g.i32, 0, 0), ""),
                                             LLVMGetUndef(vf), LLVMConstVector(e, (unsigned)a.lanes), "");
  for (int i = 0; i < nv; i++)
    bn_gen_store(&g, LLVMBuildFMul(g.b, LLVMBuildLoad2(g.b, vf, acc[i], ""), invs, ""), bn_gen_gep(&g, g.arg[Y], qoff),
                 bn_gen_c64(&g, i * a.lanes * 4));
  loop_end(&g, &lh);
  loop_end(&g, &lt);
  bn_gen_end(&g);
}
