/* The attention kernel: causal softmax attention with GQA over the KV cache,
 * for heads [h0, h1) of T tokens at positions pos.. (the K/V rows of this step
 * are already in the cache). Per token and head:
 *   scores: s_j = q . k_j * scale for j <= pos + t, KEYS keys at a time (their
 *           dot products are independent chains; each summed as a tree), the
 *           K rows prefetched AHEAD keys ahead (a head's slice of a cache row
 *           is a few lines, a row apart: the hardware prefetcher misses them);
 *   softmax: p_j = exp(s_j - max) a vector of keys at a time (bn_gen_exp), and
 *           their sum;
 *   output: sum_j p_j v_j / sum, head_dim / lanes accumulators, V rows
 *           prefetched likewise.
 * Float lanes (the reference sums in double; agreement ~1e-6 relative). */
#include <math.h>

#include "../../ir/ir.h"
#include "gen.h"

enum { Q, KC, VC, Y, SC, T_, POS, H0, H1 };
enum { KEYS = 4, AHEAD = 8 };

typedef struct {
  int nv, lanes;
  int64_t row_bytes; /* a cache row: kv_heads * head_dim floats */
  LLVMTypeRef vf;
  LLVMValueRef kvoff; /* this head's K/V slice in a row, in bytes */
} at;

/* The sum of a vector's lanes as a tree (reassociation allowed). */
static LLVMValueRef hsum(bn_gen *g, LLVMTypeRef vf, LLVMValueRef v) {
  LLVMValueRef args[2] = {LLVMConstReal(g->f32, 0.0), v};
  LLVMValueRef s = bn_gen_call(g, "llvm.vector.reduce.fadd", &vf, 1, args, 2);
  LLVMSetFastMathFlags(s, LLVMFastMathAllowReassoc);
  return s;
}

/* The address of key/value j's slice for this head in cache c. */
static LLVMValueRef slice(bn_gen *g, const at *a, LLVMValueRef c, LLVMValueRef j) {
  return bn_gen_gep(g, c, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, j, bn_gen_c64(g, a->row_bytes), ""), a->kvoff, ""));
}

/* Prefetches the head's slice of row j + AHEAD (past the end of the cache: harmless, a prefetch never faults). */
static void prefetch(bn_gen *g, const at *a, LLVMValueRef c, LLVMValueRef j) {
  LLVMValueRef p = slice(g, a, c, LLVMBuildAdd(g->b, j, bn_gen_c64(g, AHEAD), ""));
  for (int64_t off = 0; off < (int64_t)a->nv * a->lanes * 4; off += 64) {
    LLVMValueRef args[4] = {bn_gen_gep(g, p, bn_gen_c64(g, off)), LLVMConstInt(g->i32, 0, 0), LLVMConstInt(g->i32, 3, 0),
                            LLVMConstInt(g->i32, 1, 0)};
    LLVMTypeRef pt = g->ptr;
    bn_gen_call(g, "llvm.prefetch", &pt, 1, args, 4);
  }
}

/* Scores of keys [j, j + nk): stored, and the running max updated. */
static void scores(bn_gen *g, const at *a, LLVMValueRef *qv, LLVMValueRef j, int nk, LLVMValueRef mxv, double scale) {
  LLVMValueRef mx = LLVMBuildLoad2(g->b, g->f32, mxv, "");
  for (int kk = 0; kk < nk; kk++) {
    LLVMValueRef jj = LLVMBuildAdd(g->b, j, bn_gen_c64(g, kk), "");
    prefetch(g, a, g->arg[KC], jj);
    LLVMValueRef row = slice(g, a, g->arg[KC], jj), d = NULL;
    for (int i = 0; i < a->nv; i++) {
      LLVMValueRef k = bn_gen_load(g, a->vf, row, bn_gen_c64(g, i * a->lanes * 4));
      if (!d) d = LLVMBuildFMul(g->b, qv[i], k, "");
      else {
        LLVMValueRef args[3] = {qv[i], k, d};
        LLVMTypeRef vf = a->vf;
        d = bn_gen_call(g, "llvm.fma", &vf, 1, args, 3);
      }
    }
    LLVMValueRef s = LLVMBuildFMul(g->b, hsum(g, a->vf, d), LLVMConstReal(g->f32, scale), "");
    bn_gen_store(g, s, g->arg[SC], LLVMBuildMul(g->b, jj, bn_gen_c64(g, 4), ""));
    LLVMValueRef margs[2] = {mx, s};
    mx = bn_gen_call(g, "llvm.maxnum", &g->f32, 1, margs, 2);
  }
  LLVMBuildStore(g->b, mx, mxv);
}

/* p_j = exp(s_j - mx) in place for one vector (t = vf) or one key (t = f32) at j; sum += p. */
static void softmax_part(bn_gen *g, LLVMTypeRef t, LLVMValueRef j, LLVMValueRef mx, LLVMValueRef sumv) {
  LLVMValueRef off = LLVMBuildMul(g->b, j, bn_gen_c64(g, 4), "");
  LLVMValueRef m = LLVMGetTypeKind(t) == LLVMVectorTypeKind ? bn_gen_splat_v(g, t, mx) : mx;
  LLVMValueRef p = bn_gen_exp(g, LLVMBuildFSub(g->b, bn_gen_load(g, t, g->arg[SC], off), m, ""));
  bn_gen_store(g, p, g->arg[SC], off);
  LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, t, sumv, ""), p, ""), sumv);
}

void bn_gen_attention(LLVMContextRef c, LLVMModuleRef m, const char *name, int heads, int kv_heads, int hd, bn_isa isa) {
  int lanes = isa == BN_ISA_AVX512_VNNI ? 16 : 8;
  at a = {hd / lanes, lanes, (int64_t)kv_heads * hd * 4, NULL, NULL};
  bn_gen g = {.ctx = &a};
  bn_gen_begin(&g, c, m, name, 5, 4, isa, hd, heads);
  int group = heads / kv_heads;
  LLVMTypeRef vf = a.vf = LLVMVectorType(g.f32, (unsigned)lanes);
  LLVMValueRef mxv = bn_gen_alloca(&g, g.f32, "mx"), sumv = bn_gen_alloca(&g, vf, "sum"), sum1 = bn_gen_alloca(&g, g.f32, "sum1");
  LLVMValueRef acc[32];
  for (int i = 0; i < a.nv; i++) acc[i] = bn_gen_alloca(&g, vf, "acc");
  bn_gen_for lt = bn_gen_for_begin(&g, bn_gen_c64(&g, 0), g.arg[T_], 1);
  LLVMValueRef n = LLVMBuildAdd(g.b, LLVMBuildAdd(g.b, g.arg[POS], lt.i, ""), bn_gen_c64(&g, 1), "n");
  bn_gen_for lh = bn_gen_for_begin(&g, g.arg[H0], g.arg[H1], 1);
  LLVMValueRef h = lh.i, kvh = LLVMBuildSDiv(g.b, h, bn_gen_c64(&g, group), "");
  a.kvoff = LLVMBuildMul(g.b, kvh, bn_gen_c64(&g, hd * 4), "");
  LLVMValueRef qoff = LLVMBuildMul(g.b, LLVMBuildAdd(g.b, LLVMBuildMul(g.b, lt.i, bn_gen_c64(&g, heads), ""), h, ""),
                                   bn_gen_c64(&g, hd * 4), "");
  LLVMValueRef qv[32];
  for (int i = 0; i < a.nv; i++) qv[i] = bn_gen_load(&g, vf, bn_gen_gep(&g, g.arg[Q], qoff), bn_gen_c64(&g, i * lanes * 4));
  /* scores and their max: KEYS keys at a time, then one at a time */
  LLVMBuildStore(g.b, LLVMConstReal(g.f32, -INFINITY), mxv);
  double scale = 1.0 / sqrt((double)hd);
  LLVMValueRef whole = LLVMBuildMul(g.b, LLVMBuildSDiv(g.b, n, bn_gen_c64(&g, KEYS), ""), bn_gen_c64(&g, KEYS), "");
  bn_gen_for lj = bn_gen_for_begin(&g, bn_gen_c64(&g, 0), whole, KEYS);
  scores(&g, &a, qv, lj.i, KEYS, mxv, scale);
  bn_gen_for_end(&g, &lj);
  bn_gen_for lj1 = bn_gen_for_begin(&g, whole, n, 1);
  scores(&g, &a, qv, lj1.i, 1, mxv, scale);
  bn_gen_for_end(&g, &lj1);
  /* exp and sum: whole vectors of keys, then one at a time */
  LLVMValueRef mx = LLVMBuildLoad2(g.b, g.f32, mxv, "");
  LLVMBuildStore(g.b, LLVMConstNull(vf), sumv);
  LLVMBuildStore(g.b, LLVMConstReal(g.f32, 0.0), sum1);
  whole = LLVMBuildMul(g.b, LLVMBuildSDiv(g.b, n, bn_gen_c64(&g, lanes), ""), bn_gen_c64(&g, lanes), "");
  bn_gen_for le = bn_gen_for_begin(&g, bn_gen_c64(&g, 0), whole, lanes);
  softmax_part(&g, vf, le.i, mx, sumv);
  bn_gen_for_end(&g, &le);
  bn_gen_for le1 = bn_gen_for_begin(&g, whole, n, 1);
  softmax_part(&g, g.f32, le1.i, mx, sum1);
  bn_gen_for_end(&g, &le1);
  LLVMValueRef sum = LLVMBuildFAdd(g.b, hsum(&g, vf, LLVMBuildLoad2(g.b, vf, sumv, "")), LLVMBuildLoad2(g.b, g.f32, sum1, ""), "");
  /* the weighted sum of v */
  for (int i = 0; i < a.nv; i++) LLVMBuildStore(g.b, LLVMConstNull(vf), acc[i]);
  bn_gen_for lv = bn_gen_for_begin(&g, bn_gen_c64(&g, 0), n, 1);
  prefetch(&g, &a, g.arg[VC], lv.i);
  LLVMValueRef ps = bn_gen_splat_v(&g, vf, bn_gen_load(&g, g.f32, g.arg[SC], LLVMBuildMul(g.b, lv.i, bn_gen_c64(&g, 4), "")));
  LLVMValueRef vrow = slice(&g, &a, g.arg[VC], lv.i);
  for (int i = 0; i < a.nv; i++) {
    LLVMValueRef v = bn_gen_load(&g, vf, vrow, bn_gen_c64(&g, i * lanes * 4));
    LLVMValueRef args[3] = {ps, v, LLVMBuildLoad2(g.b, vf, acc[i], "")};
    LLVMBuildStore(g.b, bn_gen_call(&g, "llvm.fma", &vf, 1, args, 3), acc[i]);
  }
  bn_gen_for_end(&g, &lv);
  LLVMValueRef invs = bn_gen_splat_v(&g, vf, LLVMBuildFDiv(g.b, LLVMConstReal(g.f32, 1.0), sum, ""));
  for (int i = 0; i < a.nv; i++)
    bn_gen_store(&g, LLVMBuildFMul(g.b, LLVMBuildLoad2(g.b, vf, acc[i], ""), invs, ""), bn_gen_gep(&g, g.arg[Y], qoff),
                 bn_gen_c64(&g, i * lanes * 4));
  bn_gen_for_end(&g, &lh);
  bn_gen_for_end(&g, &lt);
  bn_gen_end(&g);
}
