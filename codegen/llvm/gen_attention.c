/* The attention kernel: causal softmax attention with GQA over the KV cache,
 * for heads [h0, h1) of T tokens at positions pos.. (the K/V rows of this step
 * are already in the cache). Tokens go in tiles of Q (a prompt chunk) so that
 * each K and V row read serves Q of them; token t + i of a tile sees the
 * tile's common keys j < pos + t + 1 and i more. Per tile and head:
 *   scores: s_ij = q_i . k_j * scale, a block of keys per iteration (a vector's
 *           lanes of dot products in flight: 4 keys x 4 tokens, 16 keys x 1), the
 *           lane sums of the block in one tree (bn_gen_lane_sums); a head's
 *           keys lie one after another in the cache (head-major), read front
 *           to back and prefetched AHEAD keys ahead, the prefetches running
 *           on into the stream read next (this head's V rows after its K rows,
 *           the next head's K rows after its V rows), so that no stream starts
 *           cold;
 *           token i's scores at scores + i * (pos + T) floats;
 *   softmax: p_ij = exp(s_ij - max_i) a vector of keys at a time (bn_gen_exp),
 *           and their sums;
 *   output: sum_j p_ij v_j / sum_i, Q x head_dim / lanes accumulators, V rows
 *           prefetched likewise.
 * Float lanes (the reference sums in double; agreement ~1e-6 relative). */
#include <math.h>

#include "../../ir/ir.h"
#include "gen.h"

enum { QP, KC, VC, Y, SC, T_, POS, H0, H1, NCTX };
enum { AHEAD = 8, MAXQ = BN_ATTN_SCORE_ROWS };

typedef struct {
  int heads, group, hd, nv, lanes;
  int64_t row_bytes; /* a key's slice of the cache: head_dim floats */
  double scale;
  LLVMTypeRef vf;
  /* the current tile and head */
  int q;                    /* tokens in the tile */
  LLVMValueRef kvoff;       /* this head's K/V rows in the cache, in bytes */
  LLVMValueRef kvnext;      /* the next head's */
  LLVMValueRef n0;          /* the keys every token of the tile sees */
  LLVMValueRef qrow[MAXQ];  /* token i's query */
  LLVMValueRef yrow[MAXQ];  /* and output */
  LLVMValueRef sc[MAXQ];    /* token i's scores */
  LLVMValueRef mx[MAXQ];    /* allocas: running max, then the sums */
  LLVMValueRef acc[MAXQ][32];
} at;

/* The sum of a vector's lanes as a tree (reassociation allowed). */
static LLVMValueRef hsum(bn_gen *g, LLVMTypeRef vf, LLVMValueRef v) {
  LLVMValueRef args[2] = {LLVMConstReal(g->f32, 0.0), v};
  LLVMValueRef s = bn_gen_call(g, "llvm.vector.reduce.fadd", &vf, 1, args, 2);
  LLVMSetFastMathFlags(s, LLVMFastMathAllowReassoc);
  return s;
}

/* The address of key/value j for this head in cache c ([kv_heads][n_ctx][head_dim]). */
static LLVMValueRef slice(bn_gen *g, const at *a, LLVMValueRef c, LLVMValueRef j) {
  return bn_gen_gep(g, c, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, j, bn_gen_c64(g, a->row_bytes), ""), a->kvoff, ""));
}

/* Prefetches row j + AHEAD of the rows of cache c, or once past the tile's n0 keys, row
 * j + AHEAD - n0 of the stream read next: cache c2's rows at byte offset off2. (A row past
 * the end of the cache is harmless: a prefetch never faults.) */
static void prefetch(bn_gen *g, const at *a, LLVMValueRef c, LLVMValueRef j, LLVMValueRef c2, LLVMValueRef off2) {
  LLVMValueRef jj = LLVMBuildAdd(g->b, j, bn_gen_c64(g, AHEAD), "");
  LLVMValueRef on = LLVMBuildICmp(g->b, LLVMIntSLT, jj, a->n0, "");
  LLVMValueRef here = slice(g, a, c, jj);
  LLVMValueRef next = bn_gen_gep(g, c2, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, LLVMBuildSub(g->b, jj, a->n0, ""),
                                                                        bn_gen_c64(g, a->row_bytes), ""), off2, ""));
  LLVMValueRef p = LLVMBuildSelect(g->b, on, here, next, "");
  for (int64_t off = 0; off < (int64_t)a->nv * a->lanes * 4; off += 64) {
    LLVMValueRef args[4] = {bn_gen_gep(g, p, bn_gen_c64(g, off)), LLVMConstInt(g->i32, 0, 0), LLVMConstInt(g->i32, 3, 0),
                            LLVMConstInt(g->i32, 1, 0)};
    LLVMTypeRef pt = g->ptr;
    bn_gen_call(g, "llvm.prefetch", &pt, 1, args, 4);
  }
}

static LLVMValueRef off4(bn_gen *g, LLVMValueRef j) { return LLVMBuildMul(g->b, j, bn_gen_c64(g, 4), ""); }

/* Scores of keys j..j+kb for tokens [i0, i1) of the tile (kb x (i1 - i0) <= lanes): each a
 * vector of products summed over head_dim, all their lane sums in one tree (bn_gen_lane_sums,
 * the order of one reduction each), scaled and stored kb at a time per token, running maxima
 * updated. */
static void score_keys(bn_gen *g, at *a, LLVMValueRef j, int kb, int i0, int i1, int prefetch_row) {
  LLVMValueRef dot[32];
  int m = kb * (i1 - i0), lane[32];
  for (int kk = 0; kk < kb; kk++) {
    LLVMValueRef jj = LLVMBuildAdd(g->b, j, bn_gen_c64(g, kk), "");
    if (prefetch_row) prefetch(g, a, g->arg[KC], jj, g->arg[VC], a->kvoff);
    LLVMValueRef row = slice(g, a, g->arg[KC], jj), k[32];
    for (int v = 0; v < a->nv; v++) k[v] = bn_gen_load(g, a->vf, row, bn_gen_c64(g, v * a->lanes * 4));
    for (int i = i0; i < i1; i++) {
      LLVMValueRef d = NULL;
      for (int v = 0; v < a->nv; v++) {
        LLVMValueRef q = bn_gen_load(g, a->vf, a->qrow[i], bn_gen_c64(g, v * a->lanes * 4));
        if (!d) d = LLVMBuildFMul(g->b, q, k[v], "");
        else {
          LLVMValueRef args[3] = {q, k[v], d};
          LLVMTypeRef vf = a->vf;
          d = bn_gen_call(g, "llvm.fma", &vf, 1, args, 3);
        }
      }
      dot[(i - i0) * kb + kk] = d;
    }
  }
  LLVMValueRef sums = bn_gen_lane_sums(g, dot, m, lane);
  LLVMTypeRef vs = LLVMVectorType(g->f32, (unsigned)kb);
  for (int i = i0; i < i1; i++) {
    int pick[32];
    for (int kk = 0; kk < kb; kk++) pick[kk] = lane[(i - i0) * kb + kk];
    LLVMValueRef s = LLVMBuildFMul(g->b, bn_gen_shuffle(g, sums, NULL, pick, kb), bn_gen_constf(vs, a->scale), "");
    bn_gen_store(g, s, a->sc[i], off4(g, j));
    LLVMValueRef mx = bn_gen_call(g, "llvm.vector.reduce.fmax", &vs, 1, &s, 1);
    LLVMValueRef margs[2] = {LLVMBuildLoad2(g->b, g->f32, a->mx[i], ""), mx};
    LLVMBuildStore(g->b, bn_gen_call(g, "llvm.maxnum", &g->f32, 1, margs, 2), a->mx[i]);
  }
}

/* acc[i] += p_ij v_j for tokens [i0, i1). */
static void value_key(bn_gen *g, at *a, LLVMValueRef j, int i0, int i1, int prefetch_row) {
  if (prefetch_row) prefetch(g, a, g->arg[VC], j, g->arg[KC], a->kvnext);
  LLVMValueRef row = slice(g, a, g->arg[VC], j), p[MAXQ];
  for (int i = i0; i < i1; i++) p[i] = bn_gen_splat_v(g, a->vf, bn_gen_load(g, g->f32, a->sc[i], off4(g, j)));
  for (int v = 0; v < a->nv; v++) {
    LLVMValueRef x = bn_gen_load(g, a->vf, row, bn_gen_c64(g, v * a->lanes * 4));
    for (int i = i0; i < i1; i++) {
      LLVMValueRef args[3] = {p[i], x, LLVMBuildLoad2(g->b, a->vf, a->acc[i][v], "")};
      LLVMTypeRef vf = a->vf;
      LLVMBuildStore(g->b, bn_gen_call(g, "llvm.fma", &vf, 1, args, 3), a->acc[i][v]);
    }
  }
}

/* p_j = exp(s_j - mx) over keys [0, n) of one score row, in place; returns their sum. */
static LLVMValueRef softmax_row(bn_gen *g, at *a, LLVMValueRef sc, LLVMValueRef n, LLVMValueRef mx, LLVMValueRef sumv,
                                LLVMValueRef sum1) {
  LLVMBuildStore(g->b, LLVMConstNull(a->vf), sumv);
  LLVMBuildStore(g->b, LLVMConstReal(g->f32, 0.0), sum1);
  LLVMValueRef whole = LLVMBuildMul(g->b, LLVMBuildSDiv(g->b, n, bn_gen_c64(g, a->lanes), ""), bn_gen_c64(g, a->lanes), "");
  for (int pass = 0; pass < 2; pass++) { /* whole vectors of keys, then one at a time */
    LLVMTypeRef t = pass ? g->f32 : a->vf;
    LLVMValueRef into = pass ? sum1 : sumv;
    bn_gen_for l = bn_gen_for_begin(g, pass ? whole : bn_gen_c64(g, 0), pass ? n : whole, pass ? 1 : a->lanes);
    LLVMValueRef m = pass ? mx : bn_gen_splat_v(g, t, mx);
    LLVMValueRef p = bn_gen_exp(g, LLVMBuildFSub(g->b, bn_gen_load(g, t, sc, off4(g, l.i)), m, ""));
    bn_gen_store(g, p, sc, off4(g, l.i));
    LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, t, into, ""), p, ""), into);
    bn_gen_for_end(g, &l);
  }
  return LLVMBuildFAdd(g->b, hsum(g, a->vf, LLVMBuildLoad2(g->b, a->vf, sumv, "")), LLVMBuildLoad2(g->b, g->f32, sum1, ""), "");
}

/* The scores of keys [from, to) in blocks of kb keys. */
static void score_loop(bn_gen *g, at *a, LLVMValueRef from, LLVMValueRef to, int kb, int i0, int i1) {
  bn_gen_for l = bn_gen_for_begin(g, from, to, kb);
  score_keys(g, a, l.i, kb, i0, i1, 1);
  bn_gen_for_end(g, &l);
}

/* One tile of a->q tokens from t, head h. */
static void tile(bn_gen *g, at *a, LLVMValueRef t, LLVMValueRef h, LLVMValueRef sumv, LLVMValueRef sum1) {
  int q = a->q, kb = q < a->lanes ? a->lanes / q : 1; /* keys per block: q x kb dot products in flight, their sums one vector */
  LLVMValueRef stride = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, g->arg[POS], g->arg[T_], ""), bn_gen_c64(g, 4), "");
  LLVMValueRef kvh = LLVMBuildSDiv(g->b, h, bn_gen_c64(g, a->group), "");
  LLVMValueRef kvh1 = LLVMBuildSDiv(g->b, LLVMBuildAdd(g->b, h, bn_gen_c64(g, 1), ""), bn_gen_c64(g, a->group), "");
  a->kvoff = LLVMBuildMul(g->b, LLVMBuildMul(g->b, kvh, g->arg[NCTX], ""), bn_gen_c64(g, a->hd * 4), "");
  a->kvnext = LLVMBuildMul(g->b, LLVMBuildMul(g->b, kvh1, g->arg[NCTX], ""), bn_gen_c64(g, a->hd * 4), "");
  for (int i = 0; i < q; i++) {
    LLVMValueRef tok = LLVMBuildAdd(g->b, t, bn_gen_c64(g, i), "");
    LLVMValueRef qoff = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, tok, bn_gen_c64(g, a->heads), ""), h, ""),
                                     bn_gen_c64(g, a->hd * 4), "");
    a->qrow[i] = bn_gen_gep(g, g->arg[QP], qoff);
    a->yrow[i] = bn_gen_gep(g, g->arg[Y], qoff);
    a->sc[i] = bn_gen_gep(g, g->arg[SC], LLVMBuildMul(g->b, stride, bn_gen_c64(g, i), ""));
    LLVMBuildStore(g->b, LLVMConstReal(g->f32, -INFINITY), a->mx[i]);
  }
  /* the keys every token of the tile sees: n0 = pos + t + 1; token i also sees n0 .. n0 + i - 1 */
  LLVMValueRef n0 = a->n0 = LLVMBuildAdd(g->b, LLVMBuildAdd(g->b, g->arg[POS], t, ""), bn_gen_c64(g, 1), "");
  LLVMValueRef whole = LLVMBuildMul(g->b, LLVMBuildSDiv(g->b, n0, bn_gen_c64(g, kb), ""), bn_gen_c64(g, kb), "");
  score_loop(g, a, bn_gen_c64(g, 0), whole, kb, 0, q);
  score_loop(g, a, whole, n0, 1, 0, q);
  for (int e = 0; e + 1 < q; e++) score_keys(g, a, LLVMBuildAdd(g->b, n0, bn_gen_c64(g, e), ""), 1, e + 1, q, 0);
  LLVMValueRef inv[MAXQ];
  for (int i = 0; i < q; i++) {
    LLVMValueRef n = LLVMBuildAdd(g->b, n0, bn_gen_c64(g, i), "");
    LLVMValueRef sum = softmax_row(g, a, a->sc[i], n, LLVMBuildLoad2(g->b, g->f32, a->mx[i], ""), sumv, sum1);
    inv[i] = bn_gen_splat_v(g, a->vf, LLVMBuildFDiv(g->b, LLVMConstReal(g->f32, 1.0), sum, ""));
    for (int v = 0; v < a->nv; v++) LLVMBuildStore(g->b, LLVMConstNull(a->vf), a->acc[i][v]);
  }
  bn_gen_for lv = bn_gen_for_begin(g, bn_gen_c64(g, 0), n0, 1);
  value_key(g, a, lv.i, 0, q, 1);
  bn_gen_for_end(g, &lv);
  for (int e = 0; e + 1 < q; e++) value_key(g, a, LLVMBuildAdd(g->b, n0, bn_gen_c64(g, e), ""), e + 1, q, 0);
  for (int i = 0; i < q; i++)
    for (int v = 0; v < a->nv; v++)
      bn_gen_store(g, LLVMBuildFMul(g->b, LLVMBuildLoad2(g->b, a->vf, a->acc[i][v], ""), inv[i], ""), a->yrow[i],
                   bn_gen_c64(g, v * a->lanes * 4));
}

void bn_gen_attention(LLVMContextRef c, LLVMModuleRef m, const char *name, int heads, int kv_heads, int hd, bn_isa isa) {
  int lanes = isa == BN_ISA_AVX512_VNNI ? 16 : 8, nv = hd / lanes;
  at a = {.heads = heads, .group = heads / kv_heads, .hd = hd, .nv = nv, .lanes = lanes,
          .row_bytes = (int64_t)hd * 4, .scale = 1.0 / sqrt((double)hd), .q = 1};
  bn_gen g = {.ctx = &a};
  bn_gen_begin(&g, c, m, name, 5, 5, isa, hd, heads);
  a.vf = LLVMVectorType(g.f32, (unsigned)lanes);
  /* tokens per tile: the value pass holds q x nv accumulators (up to 24 of AVX-512's 32 registers, 10 of AVX2's 16) */
  int qmax = (isa == BN_ISA_AVX512_VNNI ? 24 : 10) / nv;
  qmax = qmax < 1 ? 1 : qmax > MAXQ ? MAXQ : qmax;
  LLVMValueRef sumv = bn_gen_alloca(&g, a.vf, "sum"), sum1 = bn_gen_alloca(&g, g.f32, "sum1");
  for (int i = 0; i < MAXQ; i++) {
    a.mx[i] = bn_gen_alloca(&g, g.f32, "mx");
    for (int v = 0; v < nv; v++) a.acc[i][v] = bn_gen_alloca(&g, a.vf, "acc");
  }
  LLVMValueRef t = bn_gen_c64(&g, 0);
  for (int q = qmax;; q = q / 2 > 0 ? q / 2 : 1) { /* tiles of qmax tokens, then smaller (4 2 1, 3 1) */
    a.q = q;
    LLVMValueRef last = LLVMBuildSub(g.b, g.arg[T_], bn_gen_c64(&g, q - 1), "");
    bn_gen_for lt = bn_gen_for_begin(&g, t, last, q);
    bn_gen_for lh = bn_gen_for_begin(&g, g.arg[H0], g.arg[H1], 1);
    tile(&g, &a, lt.i, lh.i, sumv, sum1);
    bn_gen_for_end(&g, &lh);
    bn_gen_for_end(&g, &lt);
    t = LLVMBuildLoad2(g.b, g.i64, lt.var, "");
    if (q == 1) break;
  }
  bn_gen_end(&g);
}
