/* The norm-and-quantize kernels: what fuse-norm-quant and fuse-gate make.
 *
 *   NQ:     q = quantize(rmsnorm(x, w))
 *   GATE_*: q = quantize(rmsnorm(act(g) * u, w)), g|u the two halves of a row
 *           (act = relu2 or silu), act(g) * u first written to tmp.
 *   RMSNORM: y = rmsnorm(x, w), float rows (the final norm).
 *   QUANT:  q = quantize(x), a quantize alone (no sub-norm before it: llama, qwen3).
 *   GATE_*_Q: q = quantize(act(g) * u), the gate without the norm (llama's, qwen3's FFN).
 *
 * Per row: the sum of squares in double lanes, inv = (float)(1 / sqrt(ss / K
 * + eps)) in double, y = (x * inv) * w in float, s = 127 / max(max|y|, 1e-5),
 * q = clamp(roundeven(y * s)) — the reference kernels' operations in their
 * order, so the codes agree with them (aside from the double sum's order and
 * silu's exp, bn_gen_exp here and libm's there: either may move a code on a
 * rounding tie, which the tests bound). The
 * row's codes, s and the sum of the codes fill a QA8 row. Rows [t0, t1).
 *
 * The same rows are a ternary matmul's prologue (bn_gen_matmul_begin): the
 * kernel quantizes its T rows into scratch first, then multiplies. */
#include <string.h>

#include "../../ir/ir.h"
#include "../ref/ref.h"
#include "gen.h"

enum { X, WN, QA, TMP, T_, T0, T1 };

enum { MAXC = 4 }; /* independent chains of the max pass */

typedef struct {
  int mode, lanes;
  LLVMValueRef wn;                                   /* the norm weights */
  LLVMValueRef src, qrow, ss, inv, scale, qsum; /* src: the row's floats; the rest: allocas */
  LLVMValueRef mxc[MAXC];                        /* the max pass's chains (allocas) */
  LLVMValueRef grow;                                 /* gate mode: the g|u row */
} row;

/* for (k = 0; k < K; k += lanes) body(k) */
typedef void (*kbody)(bn_gen *g, LLVMValueRef k, row *r);

static void kloop(bn_gen *g, kbody body, row *r) {
  bn_gen_for l = bn_gen_for_begin(g, bn_gen_c64(g, 0), bn_gen_c64(g, g->K), r->lanes);
  body(g, l.i, r);
  bn_gen_for_end(g, &l);
}

static int lanes_of(bn_gen *g) { return g->isa == BN_ISA_AVX512_VNNI ? 16 : 8; }
static LLVMTypeRef vf(bn_gen *g) { return LLVMVectorType(g->f32, (unsigned)lanes_of(g)); }
static LLVMValueRef off4(bn_gen *g, LLVMValueRef k) { return LLVMBuildMul(g->b, k, bn_gen_c64(g, 4), ""); }

/* gate mode: tmp = act(g) * u */
static void gate_body(bn_gen *g, LLVMValueRef k, row *r) {
  LLVMValueRef gv = bn_gen_load(g, vf(g), r->grow, off4(g, k));
  LLVMValueRef uv = bn_gen_load(g, vf(g), r->grow, off4(g, LLVMBuildAdd(g->b, k, bn_gen_c64(g, g->K), "")));
  LLVMValueRef a;
  if (r->mode == BN_NQ_GATE_RELU2 || r->mode == BN_NQ_GATE_RELU2_Q) { /* relu2: g > 0 ? g * g : 0 */
    LLVMValueRef pos = LLVMBuildFCmp(g->b, LLVMRealOGT, gv, bn_gen_constf(vf(g), 0), "");
    a = LLVMBuildSelect(g->b, pos, LLVMBuildFMul(g->b, gv, gv, ""), bn_gen_constf(vf(g), 0), "");
  } else { /* silu: g / (1 + exp(-g)) */
    LLVMValueRef e = bn_gen_exp(g, LLVMBuildFNeg(g->b, gv, "")); /* within an ulp or so of expf: codes may move at ties */
    a = LLVMBuildFDiv(g->b, gv, LLVMBuildFAdd(g->b, bn_gen_constf(vf(g), 1), e, ""), "");
  }
  bn_gen_store(g, LLVMBuildFMul(g->b, a, uv, ""), r->src, off4(g, k));
}

/* The sum of squares in bn_ss_lanes(K) double lanes, the reference's order (ref.h). */
static LLVMTypeRef vss(bn_gen *g) { return LLVMVectorType(g->f64, (unsigned)bn_ss_lanes(g->K)); }

static void ss_body(bn_gen *g, LLVMValueRef k, row *r) {
  LLVMTypeRef t = vss(g), tf = LLVMVectorType(g->f32, LLVMGetVectorSize(t));
  LLVMValueRef x = LLVMBuildFPExt(g->b, bn_gen_load(g, tf, r->src, off4(g, k)), t, "");
  LLVMValueRef args[3] = {x, x, LLVMBuildLoad2(g->b, t, r->ss, "")};
  LLVMBuildStore(g->b, bn_gen_call(g, "llvm.fma", &t, 1, args, 3), r->ss); /* x * x is exact: fma == add */
}

/* y = (x * inv) * w; without a norm (QUANT, GATE_*_Q): x */
static LLVMValueRef norm(bn_gen *g, row *r, LLVMValueRef k) {
  LLVMValueRef x = bn_gen_load(g, vf(g), r->src, off4(g, k));
  if (!bn_nq_normed(r->mode)) return x;
  LLVMValueRef w = bn_gen_load(g, vf(g), r->wn, off4(g, k));
  return LLVMBuildFMul(g->b, LLVMBuildFMul(g->b, x, r->inv, ""), w, "");
}

/* rmsnorm alone: the float row */
static void store_body(bn_gen *g, LLVMValueRef k, row *r) {
  bn_gen_store(g, norm(g, r, k), r->qrow, off4(g, k));
}

static LLVMValueRef vmax(bn_gen *g, LLVMValueRef a, LLVMValueRef b) {
  LLVMTypeRef t = vf(g);
  LLVMValueRef args[2] = {a, b};
  return bn_gen_call(g, "llvm.maxnum", &t, 1, args, 2);
}

/* The largest |normalized x| so far, MAXC vectors at a time into as many maxima (a maximum
 * does not depend on the order it is taken in, so the chains change no bit). */
static void max_body(bn_gen *g, LLVMValueRef k, row *r) {
  LLVMTypeRef t = vf(g);
  for (int c = 0; c < MAXC; c++) {
    LLVMValueRef y = norm(g, r, LLVMBuildAdd(g->b, k, bn_gen_c64(g, c * r->lanes), ""));
    LLVMValueRef ay = bn_gen_call(g, "llvm.fabs", &t, 1, &y, 1);
    LLVMBuildStore(g->b, vmax(g, LLVMBuildLoad2(g->b, t, r->mxc[c], ""), ay), r->mxc[c]);
  }
}

static void quant_body(bn_gen *g, LLVMValueRef k, row *r) {
  int n = r->lanes;
  LLVMTypeRef t = vf(g), vi = LLVMVectorType(g->i32, (unsigned)n), vb = LLVMVectorType(g->i8, (unsigned)n);
  LLVMValueRef y = LLVMBuildFMul(g->b, norm(g, r, k), r->scale, "");
  LLVMValueRef q = bn_gen_call(g, "llvm.roundeven", &t, 1, &y, 1);
  LLVMValueRef lo[2] = {q, bn_gen_constf(vf(g), -128)}, hi[2];
  q = bn_gen_call(g, "llvm.maxnum", &t, 1, lo, 2);
  hi[0] = q, hi[1] = bn_gen_constf(vf(g), 127);
  q = LLVMBuildFPToSI(g->b, bn_gen_call(g, "llvm.minnum", &t, 1, hi, 2), vi, "");
  bn_gen_store(g, LLVMBuildTrunc(g->b, q, vb, ""), r->qrow, k);
  LLVMBuildStore(g->b, LLVMBuildAdd(g->b, LLVMBuildLoad2(g->b, vi, r->qsum, ""), q, ""), r->qsum);
}

/* The normalized row's QA8 codes: absmax scale, the codes, zero padding, the scale and the codes' sum. */
static void quantize_row(bn_gen *g, row *r) {
  int64_t meta = bn_qa8_row_bytes(g->K) - 64;
  LLVMTypeRef tvf = vf(g), vi = LLVMVectorType(g->i32, (unsigned)r->lanes);
  int64_t whole = g->K / (MAXC * r->lanes) * (MAXC * r->lanes);
  for (int c = 0; c < MAXC; c++) LLVMBuildStore(g->b, LLVMConstNull(tvf), r->mxc[c]);
  if (whole) {
    bn_gen_for l = bn_gen_for_begin(g, bn_gen_c64(g, 0), bn_gen_c64(g, whole), MAXC * r->lanes);
    max_body(g, l.i, r);
    bn_gen_for_end(g, &l);
  }
  LLVMValueRef mxv = LLVMBuildLoad2(g->b, tvf, r->mxc[0], "");
  for (int c = 1; c < MAXC; c++) mxv = vmax(g, mxv, LLVMBuildLoad2(g->b, tvf, r->mxc[c], ""));
  for (int64_t k = whole; k < g->K; k += r->lanes) { /* the vectors left over */
    LLVMValueRef y = norm(g, r, bn_gen_c64(g, k));
    mxv = vmax(g, mxv, bn_gen_call(g, "llvm.fabs", &tvf, 1, &y, 1));
  }
  LLVMValueRef mx = bn_gen_call(g, "llvm.vector.reduce.fmax", &tvf, 1, &mxv, 1);
  LLVMValueRef margs[2] = {mx, LLVMConstReal(g->f32, 1e-5)};
  LLVMValueRef s = LLVMBuildFDiv(g->b, LLVMConstReal(g->f32, 127.0), bn_gen_call(g, "llvm.maxnum", &g->f32, 1, margs, 2), "s");
  r->scale = bn_gen_splat_v(g, tvf, s);
  LLVMBuildStore(g->b, LLVMConstNull(vi), r->qsum);
  kloop(g, quant_body, r);
  LLVMValueRef qs = LLVMBuildLoad2(g->b, vi, r->qsum, "");
  qs = bn_gen_call(g, "llvm.vector.reduce.add", &vi, 1, &qs, 1);
  for (int64_t i = g->K; i < meta; i++) /* the padding after the codes is zero, as bn_ref_quantize leaves it */
    bn_gen_store(g, LLVMConstInt(g->i8, 0, 0), r->qrow, bn_gen_c64(g, i));
  bn_gen_store(g, s, r->qrow, bn_gen_c64(g, meta));
  bn_gen_store(g, qs, r->qrow, bn_gen_c64(g, meta + 4));
}

void bn_gen_nq_rows(bn_gen *g, int mode, float eps, LLVMValueRef x, LLVMValueRef wn, LLVMValueRef qa, LLVMValueRef tmp,
                    LLVMValueRef t0, LLVMValueRef t1) {
  int64_t K = g->K;
  int gate = bn_nq_gated(mode);
  int64_t rb = mode == BN_NQ_RMSNORM ? 4 * K : bn_qa8_row_bytes(K), in_w = gate ? 2 * K : K;
  row r = {.mode = mode, .lanes = lanes_of(g), .wn = wn};
  LLVMTypeRef vi = LLVMVectorType(g->i32, (unsigned)r.lanes);
  r.ss = bn_gen_alloca(g, vss(g), "ss");
  for (int c = 0; c < MAXC; c++) r.mxc[c] = bn_gen_alloca(g, vf(g), "mx");
  r.qsum = bn_gen_alloca(g, vi, "qsum");
  bn_gen_for lt = bn_gen_for_begin(g, t0, t1, 1);
  LLVMValueRef t = lt.i;
  LLVMValueRef xrow = bn_gen_gep(g, x, LLVMBuildMul(g->b, t, bn_gen_c64(g, in_w * 4), ""));
  r.qrow = bn_gen_gep(g, qa, LLVMBuildMul(g->b, t, bn_gen_c64(g, rb), ""));
  if (gate) { /* act(g) * u into this thread's tmp row */
    r.grow = xrow;
    r.src = tmp;
    kloop(g, gate_body, &r);
  } else r.src = xrow;
  if (!bn_nq_normed(mode)) { /* no norm: the codes of x (or of the gate's product) itself */
    quantize_row(g, &r);
    bn_gen_for_end(g, &lt);
    return;
  }
  LLVMBuildStore(g->b, LLVMConstNull(vss(g)), r.ss);
  bn_gen_for ls = bn_gen_for_begin(g, bn_gen_c64(g, 0), bn_gen_c64(g, K), bn_ss_lanes(K));
  ss_body(g, ls.i, &r);
  bn_gen_for_end(g, &ls);
  LLVMTypeRef tvd = vss(g);
  LLVMValueRef rargs[2] = {LLVMConstReal(g->f64, 0.0), LLVMBuildLoad2(g->b, tvd, r.ss, "")}; /* in lane order */
  LLVMValueRef ss = bn_gen_call(g, "llvm.vector.reduce.fadd", &tvd, 1, rargs, 2);
  LLVMValueRef mean = LLVMBuildFAdd(g->b, LLVMBuildFDiv(g->b, ss, LLVMConstReal(g->f64, (double)K), ""),
                                    LLVMConstReal(g->f64, (double)eps), "");
  LLVMValueRef sq = bn_gen_call(g, "llvm.sqrt", &g->f64, 1, &mean, 1);
  LLVMValueRef inv = LLVMBuildFPTrunc(g->b, LLVMBuildFDiv(g->b, LLVMConstReal(g->f64, 1.0), sq, ""), g->f32, "inv");
  r.inv = bn_gen_splat_v(g, vf(g), inv);
  if (mode == BN_NQ_RMSNORM) kloop(g, store_body, &r);
  else quantize_row(g, &r);
  bn_gen_for_end(g, &lt);
}

void bn_gen_norm_quant(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t group, int mode, float eps,
                       bn_isa isa) {
  bn_gen g = {0};
  bn_gen_begin(&g, c, m, name, 4, 3, isa, group ? group : K, 0);
  LLVMValueRef t0 = g.arg[T0], t1 = g.arg[T1];
  if (group) { /* tokens t0..t1 are rows t0 K / group.. of group floats */
    t0 = LLVMBuildMul(g.b, t0, bn_gen_c64(&g, K / group), "");
    t1 = LLVMBuildMul(g.b, t1, bn_gen_c64(&g, K / group), "");
  }
  bn_gen_nq_rows(&g, mode, eps, g.arg[X], g.arg[WN], g.arg[QA], g.arg[TMP], t0, t1);
  bn_gen_end(&g);
}

void bn_gen_matmul_begin(bn_gen *g, LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t N, int pro,
                         float eps, bn_isa isa) {
  bn_gen_begin(g, c, m, name, pro ? 7 : 4, 3, isa, K, N);
  if (!pro) return;
  LLVMValueRef p[10]; /* qa w out resid x wn tmp T n0 n1 -> qa w out resid T n0 n1 x wn tmp */
  memcpy(p, g->arg, sizeof p);
  static const int from[10] = {0, 1, 2, 3, 7, 8, 9, 4, 5, 6};
  for (int i = 0; i < 10; i++) g->arg[i] = p[from[i]];
  bn_gen_nq_rows(g, pro - 1, eps, g->arg[7], g->arg[8], g->arg[0], g->arg[9], bn_gen_c64(g, 0), g->arg[4]);
}
