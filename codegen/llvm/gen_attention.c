/* The attention kernel: causal softmax attention with GQA over the KV cache,
 * for heads [h0, h1) of T tokens at positions pos.. (the K/V rows of this step
 * are already in the cache). Tokens go in tiles of Q (a prompt chunk) so that
 * each K and V row read serves Q of them; token t + i of a tile sees the
 * tile's common keys j < pos + t + 1 and i more. Per head, three passes, the
 * first and last over blocks of KEYS keys with every tile reading a block
 * before the next (head()):
 *   scores: s_ij = q_i . k_j * scale (on AVX2 in two chains, even and odd vectors
 *           of head_dim, then added), a block of keys per iteration (a vector's
 *           lanes of dot products in flight: 4 keys x 4 tokens, 16 keys x 1), the
 *           lane sums of the block in one tree (bn_gen_lane_sums); a head's
 *           keys lie one after another in the cache (head-major), read front
 *           to back and prefetched AHEAD keys ahead, the prefetches running
 *           on into the stream read next (this head's V rows after its K rows,
 *           the next head's K rows after its V rows), so that no stream starts
 *           cold;
 *           token t's scores at scores + t * (pos + T) floats;
 *   softmax: per token, p_ij = exp(s_ij - max_i) a vector of keys at a time, the
 *           last under a mask (bn_gen_exp), and 1 / their sum after the T score rows;
 *   output: sum_j p_ij v_j (1 / sum_i), Q x head_dim / lanes accumulators (in y
 *           between key blocks), V rows prefetched likewise.
 * The caches hold F32, or F16 widened as they are loaded (vcvtph2ps).
 * Float lanes (the reference sums in double; agreement ~1e-6 relative). */
#include <math.h>

#include "../../ir/ir.h"
#include "gen.h"

enum { QP, KC, VC, Y, SC, T_, POS, H0, H1, NCTX };
enum { AHEAD = 8, MAXQ = 4, KEYS = 256 }; /* MAXQ: a prompt tile's tokens */

typedef struct {
  int heads, group, hd, nv, lanes;
  int chains;        /* a dot product's chains over head_dim (vector v in chain v mod chains), as asmjit's */
  int es;            /* a cache element's bytes: 4 (F32) or 2 (F16) */
  int64_t row_bytes; /* a key's slice of the cache: head_dim elements */
  double scale;
  LLVMTypeRef vf, ve; /* a vector of floats, and of cache elements */
  /* the current tile and head */
  int q;                    /* tokens in the tile */
  LLVMValueRef kvoff;       /* this head's K/V rows in the cache, in bytes */
  LLVMValueRef kvnext;      /* the next head's */
  LLVMValueRef n0;          /* the keys every token of the tile sees */
  LLVMValueRef h;           /* the head */
  LLVMValueRef stride;      /* bytes from a token's score row to the next: (pos + T) floats */
  LLVMValueRef invs;        /* each token's 1 / sum, after the T score rows */
  LLVMValueRef t;           /* the tile's first token */
  LLVMValueRef qrow[MAXQ];  /* token i's query */
  LLVMValueRef yrow[MAXQ];  /* and output */
  LLVMValueRef sc[MAXQ];    /* token i's scores */
  LLVMValueRef acc[MAXQ][32];
  LLVMValueRef mxv, mx1, sumv; /* allocas of the softmax */
  LLVMValueRef kb0, kb1;    /* the block of keys being read */
} at;

/* The sum of a vector's lanes, bn_gen_lane_sums' halving tree. */
static LLVMValueRef hsum(bn_gen *g, LLVMValueRef v) {
  int at;
  LLVMValueRef s = bn_gen_lane_sums(g, &v, 1, &at);
  return LLVMBuildExtractElement(g->b, s, LLVMConstInt(g->i32, (unsigned)at, 0), "");
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
  for (int64_t off = 0; off < a->row_bytes; off += 64) {
    LLVMValueRef args[4] = {bn_gen_gep(g, p, bn_gen_c64(g, off)), LLVMConstInt(g->i32, 0, 0), LLVMConstInt(g->i32, 3, 0),
                            LLVMConstInt(g->i32, 1, 0)};
    LLVMTypeRef pt = g->ptr;
    bn_gen_call(g, "llvm.prefetch", &pt, 1, args, 4);
  }
}

static LLVMValueRef off4(bn_gen *g, LLVMValueRef j) { return LLVMBuildMul(g->b, j, bn_gen_c64(g, 4), ""); }

/* Vector v of a cache row, as floats. */
static LLVMValueRef load_kv(bn_gen *g, const at *a, LLVMValueRef row, int v) {
  LLVMValueRef x = bn_gen_load(g, a->ve, row, bn_gen_c64(g, (int64_t)v * a->lanes * a->es));
  return a->es == 2 ? LLVMBuildFPExt(g->b, x, a->vf, "") : x;
}

/* Scores of keys j..j+kb for tokens [i0, i1) of the tile (kb x (i1 - i0) <= lanes): each a
 * vector of products summed over head_dim, all their lane sums in one tree (bn_gen_lane_sums,
 * the order of one reduction each), scaled and stored kb at a time per token. */
static void score_keys(bn_gen *g, at *a, LLVMValueRef j, int kb, int i0, int i1, int prefetch_row) {
  LLVMValueRef dot[32];
  int m = kb * (i1 - i0), lane[32];
  for (int kk = 0; kk < kb; kk++) {
    LLVMValueRef jj = LLVMBuildAdd(g->b, j, bn_gen_c64(g, kk), "");
    if (prefetch_row) prefetch(g, a, g->arg[KC], jj, g->arg[VC], a->kvoff);
    LLVMValueRef row = slice(g, a, g->arg[KC], jj), k[32];
    for (int v = 0; v < a->nv; v++) k[v] = load_kv(g, a, row, v);
    for (int i = i0; i < i1; i++) {
      LLVMValueRef d[2] = {NULL, NULL};
      for (int v = 0; v < a->nv; v++) {
        LLVMValueRef q = bn_gen_load(g, a->vf, a->qrow[i], bn_gen_c64(g, v * a->lanes * 4)), *c = &d[v % a->chains];
        if (!*c) *c = LLVMBuildFMul(g->b, q, k[v], "");
        else {
          LLVMValueRef args[3] = {q, k[v], *c};
          LLVMTypeRef vf = a->vf;
          *c = bn_gen_call(g, "llvm.fma", &vf, 1, args, 3);
        }
      }
      dot[(i - i0) * kb + kk] = d[1] ? LLVMBuildFAdd(g->b, d[0], d[1], "") : d[0];
    }
  }
  LLVMValueRef sums = bn_gen_lane_sums(g, dot, m, lane);
  LLVMTypeRef vs = LLVMVectorType(g->f32, (unsigned)kb);
  for (int i = i0; i < i1; i++) {
    int pick[32];
    for (int kk = 0; kk < kb; kk++) pick[kk] = lane[(i - i0) * kb + kk];
    LLVMValueRef s = LLVMBuildFMul(g->b, bn_gen_shuffle(g, sums, NULL, pick, kb), bn_gen_constf(vs, a->scale), "");
    bn_gen_store(g, s, a->sc[i], off4(g, j));
  }
}

/* acc[i] += p_ij v_j for tokens [i0, i1). */
static void value_key(bn_gen *g, at *a, LLVMValueRef j, int i0, int i1, int prefetch_row) {
  if (prefetch_row) prefetch(g, a, g->arg[VC], j, g->arg[KC], a->kvnext);
  LLVMValueRef row = slice(g, a, g->arg[VC], j), p[MAXQ];
  for (int i = i0; i < i1; i++) p[i] = bn_gen_splat_v(g, a->vf, bn_gen_load(g, g->f32, a->sc[i], off4(g, j)));
  for (int v = 0; v < a->nv; v++) {
    LLVMValueRef x = load_kv(g, a, row, v);
    for (int i = i0; i < i1; i++) {
      LLVMValueRef args[3] = {p[i], x, LLVMBuildLoad2(g->b, a->vf, a->acc[i][v], "")};
      LLVMTypeRef vf = a->vf;
      LLVMBuildStore(g->b, bn_gen_call(g, "llvm.fma", &vf, 1, args, 3), a->acc[i][v]);
    }
  }
}

/* Over keys [0, n) of one score row, whole vectors of keys then one at a time: fn(g, a, acc, x,
 * mx, at) folds each x (at its address at) into the allocas acc (a vector's and a float's); mx
 * (NULL or a float) reaches fn as x's type. */
static void row_pass(bn_gen *g, at *a, LLVMValueRef sc, LLVMValueRef n, LLVMValueRef accv, LLVMValueRef acc1,
                     LLVMValueRef (*fn)(bn_gen *, at *, LLVMValueRef, LLVMValueRef, LLVMValueRef, LLVMValueRef),
                     LLVMValueRef mx) {
  LLVMValueRef whole = LLVMBuildMul(g->b, LLVMBuildSDiv(g->b, n, bn_gen_c64(g, a->lanes), ""), bn_gen_c64(g, a->lanes), "");
  for (int pass = 0; pass < 2; pass++) {
    LLVMTypeRef t = pass ? g->f32 : a->vf;
    LLVMValueRef into = pass ? acc1 : accv;
    bn_gen_for l = bn_gen_for_begin(g, pass ? whole : bn_gen_c64(g, 0), pass ? n : whole, pass ? 1 : a->lanes);
    LLVMValueRef at_ = bn_gen_gep(g, sc, off4(g, l.i)), m = mx && !pass ? bn_gen_splat_v(g, t, mx) : mx;
    LLVMBuildStore(g->b, fn(g, a, LLVMBuildLoad2(g->b, t, into, ""), bn_gen_load(g, t, at_, bn_gen_c64(g, 0)), m, at_), into);
    bn_gen_for_end(g, &l);
  }
}

static LLVMValueRef fold_max(bn_gen *g, at *a, LLVMValueRef m, LLVMValueRef x, LLVMValueRef mx, LLVMValueRef at_) {
  LLVMTypeRef t = LLVMTypeOf(x);
  LLVMValueRef args[2] = {m, x};
  return bn_gen_call(g, "llvm.maxnum", &t, 1, args, 2);
}

/* p = exp(s - mx) stored in place, added to the sum. */
static LLVMValueRef fold_exp(bn_gen *g, at *a, LLVMValueRef sum, LLVMValueRef x, LLVMValueRef mx, LLVMValueRef at_) {
  LLVMValueRef p = bn_gen_exp(g, LLVMBuildFSub(g->b, x, mx, ""));
  bn_gen_store(g, p, at_, bn_gen_c64(g, 0));
  return LLVMBuildFAdd(g->b, sum, p, "");
}

/* The keys [whole, n) of score row sc (fewer than a vector) as one vector under a mask: p = exp(s - mx) stored
 * in place and added to the sum (lanes past n read and write nothing and add zero). */
static void exp_tail(bn_gen *g, at *a, LLVMValueRef sc, LLVMValueRef whole, LLVMValueRef n, LLVMValueRef mx) {
  LLVMTypeRef over[2] = {a->vf, g->ptr};
  LLVMValueRef idx[16], zero = LLVMConstNull(a->vf), at_ = bn_gen_gep(g, sc, off4(g, whole));
  for (int i = 0; i < a->lanes; i++) idx[i] = LLVMConstInt(g->i32, (unsigned)i, 0);
  LLVMValueRef rem = LLVMBuildTrunc(g->b, LLVMBuildSub(g->b, n, whole, ""), g->i32, "");
  LLVMValueRef mask = LLVMBuildICmp(g->b, LLVMIntULT, LLVMConstVector(idx, (unsigned)a->lanes), bn_gen_splat_v(g, LLVMVectorType(g->i32, (unsigned)a->lanes), rem), "");
  LLVMValueRef align = LLVMConstInt(g->i32, 4, 0), la[4] = {at_, align, mask, zero};
  LLVMValueRef x = bn_gen_call(g, "llvm.masked.load", over, 2, la, 4);
  LLVMValueRef p = LLVMBuildSelect(g->b, mask, bn_gen_exp(g, LLVMBuildFSub(g->b, x, bn_gen_splat_v(g, a->vf, mx), "")), zero, "");
  LLVMValueRef sa[4] = {p, at_, align, mask};
  bn_gen_call(g, "llvm.masked.store", over, 2, sa, 4);
  LLVMBuildStore(g->b, LLVMBuildFAdd(g->b, LLVMBuildLoad2(g->b, a->vf, a->sumv, ""), p, ""), a->sumv);
}

/* p_j = exp(s_j - max) over keys [0, n) of one score row, in place; returns their sum: key j in lane j mod
 * lanes (the last ones under a mask), then the halving tree, as asmjit's kernels sum them. */
static LLVMValueRef softmax_row(bn_gen *g, at *a, LLVMValueRef sc, LLVMValueRef n) {
  LLVMBuildStore(g->b, bn_gen_constf(a->vf, -INFINITY), a->mxv);
  LLVMBuildStore(g->b, LLVMConstReal(g->f32, -INFINITY), a->mx1);
  row_pass(g, a, sc, n, a->mxv, a->mx1, fold_max, NULL);
  LLVMTypeRef vf = a->vf;
  LLVMValueRef mv = LLVMBuildLoad2(g->b, vf, a->mxv, "");
  LLVMValueRef margs[2] = {bn_gen_call(g, "llvm.vector.reduce.fmax", &vf, 1, &mv, 1), LLVMBuildLoad2(g->b, g->f32, a->mx1, "")};
  LLVMValueRef mx = bn_gen_call(g, "llvm.maxnum", &g->f32, 1, margs, 2);
  LLVMBuildStore(g->b, LLVMConstNull(a->vf), a->sumv);
  LLVMValueRef whole = LLVMBuildMul(g->b, LLVMBuildSDiv(g->b, n, bn_gen_c64(g, a->lanes), ""), bn_gen_c64(g, a->lanes), "");
  bn_gen_for l = bn_gen_for_begin(g, bn_gen_c64(g, 0), whole, a->lanes);
  LLVMValueRef at_ = bn_gen_gep(g, sc, off4(g, l.i));
  LLVMBuildStore(g->b, fold_exp(g, a, LLVMBuildLoad2(g->b, a->vf, a->sumv, ""), bn_gen_load(g, a->vf, at_, bn_gen_c64(g, 0)),
                                bn_gen_splat_v(g, a->vf, mx), at_), a->sumv);
  bn_gen_for_end(g, &l);
  exp_tail(g, a, sc, whole, n, mx);
  return hsum(g, LLVMBuildLoad2(g->b, a->vf, a->sumv, ""));
}

/* The scores of keys [from, to) in blocks of kb keys. */
static void score_loop(bn_gen *g, at *a, LLVMValueRef from, LLVMValueRef to, int kb, int i0, int i1) {
  bn_gen_for l = bn_gen_for_begin(g, from, to, kb);
  score_keys(g, a, l.i, kb, i0, i1, 1);
  bn_gen_for_end(g, &l);
}

/* Tile state for tokens t..t+q of head a->h: query, output and score rows, n0. */
static void set_tile(bn_gen *g, at *a, LLVMValueRef t) {
  a->t = t;
  for (int i = 0; i < a->q; i++) {
    LLVMValueRef tok = LLVMBuildAdd(g->b, t, bn_gen_c64(g, i), "");
    LLVMValueRef qoff = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, tok, bn_gen_c64(g, a->heads), ""), a->h, ""),
                                     bn_gen_c64(g, a->hd * 4), "");
    a->qrow[i] = bn_gen_gep(g, g->arg[QP], qoff);
    a->yrow[i] = bn_gen_gep(g, g->arg[Y], qoff);
    a->sc[i] = bn_gen_gep(g, g->arg[SC], LLVMBuildMul(g->b, a->stride, tok, ""));
  }
  /* the keys every token of the tile sees: n0 = pos + t + 1; token i also sees n0 .. n0 + i - 1 */
  a->n0 = LLVMBuildAdd(g->b, LLVMBuildAdd(g->b, g->arg[POS], t, ""), bn_gen_c64(g, 1), "");
}

typedef void (*tile_fn)(bn_gen *g, at *a);

/* fn on every tile of the T tokens: tiles of qmax tokens, then smaller (4 2 1, 3 1). */
static void for_tiles(bn_gen *g, at *a, int qmax, tile_fn fn) {
  LLVMValueRef t = bn_gen_c64(g, 0);
  for (int q = qmax;; q = q / 2 > 0 ? q / 2 : 1) {
    a->q = q;
    bn_gen_for lt = bn_gen_for_begin(g, t, LLVMBuildSub(g->b, g->arg[T_], bn_gen_c64(g, q - 1), ""), q);
    set_tile(g, a, lt.i);
    fn(g, a);
    bn_gen_for_end(g, &lt);
    t = LLVMBuildLoad2(g->b, g->i64, lt.var, "");
    if (q == 1) break;
  }
}

/* The keys of the block [kb0, kb1) that every token of the tile sees: [lo, hi). */
static void block_keys(bn_gen *g, at *a, LLVMValueRef *lo, LLVMValueRef *hi) {
  LLVMValueRef h = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, a->kb1, a->n0, ""), a->kb1, a->n0, "");
  *lo = a->kb0;
  *hi = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, h, a->kb0, ""), a->kb0, h, "");
}

/* Scores of the tile's common keys in the block: kb keys at a time (q x kb dot products in
 * flight, their sums one vector), then one at a time. */
static void score_block(bn_gen *g, at *a) {
  int kb = a->q < a->lanes ? a->lanes / a->q : 1;
  LLVMValueRef lo, hi;
  block_keys(g, a, &lo, &hi);
  LLVMValueRef whole = LLVMBuildAdd(
      g->b, lo, LLVMBuildMul(g->b, LLVMBuildSDiv(g->b, LLVMBuildSub(g->b, hi, lo, ""), bn_gen_c64(g, kb), ""), bn_gen_c64(g, kb), ""), "");
  score_loop(g, a, lo, whole, kb, 0, a->q);
  score_loop(g, a, whole, hi, 1, 0, a->q);
}

/* The keys only some tokens of the tile see: n0 + e for tokens e + 1.. */
static void score_diagonal(bn_gen *g, at *a) {
  for (int e = 0; e + 1 < a->q; e++) score_keys(g, a, LLVMBuildAdd(g->b, a->n0, bn_gen_c64(g, e), ""), 1, e + 1, a->q, 0);
}

static void acc_io(bn_gen *g, at *a, int store) {
  for (int i = 0; i < a->q; i++)
    for (int v = 0; v < a->nv; v++) {
      if (store) bn_gen_store(g, LLVMBuildLoad2(g->b, a->vf, a->acc[i][v], ""), a->yrow[i], bn_gen_c64(g, v * a->lanes * 4));
      else LLVMBuildStore(g->b, bn_gen_load(g, a->vf, a->yrow[i], bn_gen_c64(g, v * a->lanes * 4)), a->acc[i][v]);
    }
}

/* acc += p v over the tile's common keys in the block, the accumulators kept in y between blocks. */
static void value_block(bn_gen *g, at *a) {
  LLVMValueRef lo, hi;
  block_keys(g, a, &lo, &hi);
  acc_io(g, a, 0);
  bn_gen_for lv = bn_gen_for_begin(g, lo, hi, 1);
  value_key(g, a, lv.i, 0, a->q, 1);
  bn_gen_for_end(g, &lv);
  acc_io(g, a, 1);
}

/* The diagonal keys' values, then y = acc (1 / sum) (the inverse sums after the score rows). */
static void value_diagonal(bn_gen *g, at *a) {
  acc_io(g, a, 0);
  for (int e = 0; e + 1 < a->q; e++) value_key(g, a, LLVMBuildAdd(g->b, a->n0, bn_gen_c64(g, e), ""), e + 1, a->q, 0);
  for (int i = 0; i < a->q; i++) {
    LLVMValueRef r = LLVMBuildAdd(g->b, a->t, bn_gen_c64(g, i), "");
    LLVMValueRef inv = bn_gen_splat_v(g, a->vf, bn_gen_load(g, g->f32, a->invs, off4(g, r)));
    for (int v = 0; v < a->nv; v++)
      bn_gen_store(g, LLVMBuildFMul(g->b, LLVMBuildLoad2(g->b, a->vf, a->acc[i][v], ""), inv, ""), a->yrow[i],
                   bn_gen_c64(g, v * a->lanes * 4));
  }
}

/* fn on every tile, for each block of KEYS keys in order. */
static void blocks(bn_gen *g, at *a, int qmax, tile_fn fn) {
  LLVMValueRef n = LLVMBuildAdd(g->b, g->arg[POS], g->arg[T_], "");
  bn_gen_for lb = bn_gen_for_begin(g, bn_gen_c64(g, 0), n, KEYS);
  a->kb0 = lb.i;
  a->kb1 = LLVMBuildAdd(g->b, lb.i, bn_gen_c64(g, KEYS), "");
  for_tiles(g, a, qmax, fn);
  bn_gen_for_end(g, &lb);
}

/* Head h, in three passes over its keys, each key block read by every query tile before the
 * next (so a deep context's K/V rows come from memory once per chunk, not once per tile):
 * the scores, each token's softmax (its inverse sum stored after the T score rows), then the
 * values with the accumulators kept in y between blocks. Every token's sums run over its keys
 * in order, as a tile at a time did, so the results are the same bits. */
static void head(bn_gen *g, at *a, int qmax) {
  LLVMValueRef kvh = LLVMBuildSDiv(g->b, a->h, bn_gen_c64(g, a->group), "");
  LLVMValueRef kvh1 = LLVMBuildSDiv(g->b, LLVMBuildAdd(g->b, a->h, bn_gen_c64(g, 1), ""), bn_gen_c64(g, a->group), "");
  a->kvoff = LLVMBuildMul(g->b, LLVMBuildMul(g->b, kvh, g->arg[NCTX], ""), bn_gen_c64(g, a->row_bytes), "");
  a->kvnext = LLVMBuildMul(g->b, LLVMBuildMul(g->b, kvh1, g->arg[NCTX], ""), bn_gen_c64(g, a->row_bytes), "");
  blocks(g, a, qmax, score_block);
  for_tiles(g, a, qmax, score_diagonal);
  bn_gen_for lr = bn_gen_for_begin(g, bn_gen_c64(g, 0), g->arg[T_], 1);
  LLVMValueRef sc = bn_gen_gep(g, g->arg[SC], LLVMBuildMul(g->b, a->stride, lr.i, ""));
  LLVMValueRef sum = softmax_row(g, a, sc, LLVMBuildAdd(g->b, LLVMBuildAdd(g->b, g->arg[POS], lr.i, ""), bn_gen_c64(g, 1), ""));
  bn_gen_store(g, LLVMBuildFDiv(g->b, LLVMConstReal(g->f32, 1.0), sum, ""), a->invs, off4(g, lr.i));
  LLVMValueRef qoff = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, lr.i, bn_gen_c64(g, a->heads), ""), a->h, ""),
                                   bn_gen_c64(g, a->hd * 4), "");
  for (int v = 0; v < a->nv; v++) bn_gen_store(g, LLVMConstNull(a->vf), g->arg[Y], LLVMBuildAdd(g->b, qoff, bn_gen_c64(g, v * a->lanes * 4), ""));
  bn_gen_for_end(g, &lr);
  blocks(g, a, qmax, value_block);
  for_tiles(g, a, qmax, value_diagonal);
}

void bn_gen_attention(LLVMContextRef c, LLVMModuleRef m, const char *name, int heads, int kv_heads, int hd, bn_dtype cache,
                      bn_isa isa) {
  int lanes = isa == BN_ISA_AVX512_VNNI ? 16 : 8, nv = hd / lanes, es = cache == BN_DT_F16 ? 2 : 4;
  at a = {.heads = heads, .group = heads / kv_heads, .hd = hd, .nv = nv, .lanes = lanes, .es = es,
          .row_bytes = (int64_t)hd * es, .scale = 1.0 / sqrt((double)hd), .q = 1, .chains = lanes == 8 ? 2 : 1};
  bn_gen g = {.ctx = &a};
  bn_gen_begin(&g, c, m, name, 5, 5, isa, hd, heads);
  a.vf = LLVMVectorType(g.f32, (unsigned)lanes);
  a.ve = es == 2 ? LLVMVectorType(g.f16, (unsigned)lanes) : a.vf;
  /* tokens per tile: the value pass holds q x nv accumulators (up to 24 of AVX-512's 32 registers, 10 of AVX2's 16) */
  int qmax = (isa == BN_ISA_AVX512_VNNI ? 24 : 10) / nv;
  qmax = qmax < 1 ? 1 : qmax > MAXQ ? MAXQ : qmax;
  a.sumv = bn_gen_alloca(&g, a.vf, "sum");
  a.mxv = bn_gen_alloca(&g, a.vf, "mx"), a.mx1 = bn_gen_alloca(&g, g.f32, "mx1");
  for (int i = 0; i < MAXQ; i++)
    for (int v = 0; v < nv; v++) a.acc[i][v] = bn_gen_alloca(&g, a.vf, "acc");
  a.stride = LLVMBuildMul(g.b, LLVMBuildAdd(g.b, g.arg[POS], g.arg[T_], ""), bn_gen_c64(&g, 4), "");
  a.invs = bn_gen_gep(&g, g.arg[SC], LLVMBuildMul(g.b, a.stride, g.arg[T_], ""));
  bn_gen_for lh = bn_gen_for_begin(&g, g.arg[H0], g.arg[H1], 1);
  a.h = lh.i;
  head(&g, &a, qmax);
  bn_gen_for_end(&g, &lh);
  bn_gen_end(&g);
}
