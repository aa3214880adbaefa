/* The ternary matmul kernel, as LLVM IR with K and N constants.
 *
 * For each output row n in [n0, n1) and token t: sum over K of code * q,
 * where code = trit + 1 in {0, 1, 2} (unsigned) and q the int8 activations
 * (signed) — the operand order of the x86 u8 x s8 dot products — then
 * acc = that sum - sum(q) (stored in each QA8 row), the "offset trick".
 * TP2 gives, per 256-element group, 64 bytes whose 2-bit fields at shifts
 * 0, 2, 4, 6 are the codes of elements [0,64), [64,128), [128,192), [192,256):
 * a shift and a mask turn one load into the codes of 64 consecutive elements.
 *
 *   AVX-512 VNNI: vpdpbusd (64 u8 x s8 products, summed in fours into 16 x i32).
 *   AVX2: vpmaddubsw (32 products, adjacent pairs summed into 16 x i16); the
 *   8 of a group are summed in i16 (|each| <= 2 * 2 * 128 = 512, 8 of them fit)
 *   and widened once with vpmaddwd.
 *
 * Tiles of 4 rows x 4 tokens (AVX2: 2 x 4, and 4 x 1 for one token): a group's codes are unpacked
 * once for four tokens and each activation load feeds every row of the tile
 * (remainders: smaller tiles). TP2 interleaves the groups of each block of
 * 4 rows, so a 4-row tile reads one stream front to back, which the
 * hardware prefetcher follows (4 rows side by side, each its own stream,
 * decode slower: bench/README.md). Row ranges start on a block
 * (threads split rows in multiples of 4). Up to 4 groups a row are unrolled
 * (every offset a constant), more go in a loop. Accumulators
 * live in allocas that mem2reg turns into registers. The epilogue
 * dequantizes in double like the reference kernels, so results agree bit
 * for bit.
 *
 * TG2 (a scale per 256-group; TG2H per 128, a chain each): each group's int32 lanes, less the lanes of the token's own
 * activation sum over the group (the offset trick per group, from a dot product with ones), are
 * summed per row, widened to double and multiplied by the group's scale: every product is exact
 * and so is their sum (ref/ref.h), whatever the order, so the total rounded to float is the
 * reference's. */
#include <string.h>

#include "../../ir/ir.h"
#include "../../ir/quant.h"
#include "gen.h"

enum { TILE = 4 };

typedef struct {
  int64_t row_bytes, meta, groups; /* groups: whole ones (TP1: of 320 elements, then a last of K % 320) */
  bn_mm_mode mode;
  int t1, gs;          /* the weights are TP1; scales a 256-group has: 1 TG2, 2 TG2H (0: a row's) */
  int64_t wrow, scales; /* a row's packed bytes; the row (TG2: group) scales' offset in w */
} mm;

/* the parameters: qa, w, out, resid, T, n0, n1 */
enum { QA, W, OUT, RESID, T_, N0, N1 };

/* The int32 vectors of rows n..n+rr (rr <= ROWS) and tokens t..t+tt, summed
 * over K. Each row's codes are unpacked once per group and each token's
 * activations loaded once per group, feeding rr x tt dot products. Each
 * (row, token) keeps enough independent accumulator chains that the dot
 * products' latency is hidden (4 when alone, fewer when the tile has many),
 * summed at the end. Decode (one token) prefetches the weight stream about
 * PREFETCH_BYTES ahead into L1 (prefetcht0: prefetchnta starved the stream on a
 * Xeon), the distance rounded up to whole blocks of 4 rows; both choices were
 * measured with bench/ab (bench/README.md, "The decode kernel's prefetch distance"). */
enum { ROWS = 4, CHAINS = 4, PREFETCH_BYTES = 6144, BLOCK_BYTES = 16384, UNROLL_GROUPS = 4 };

typedef struct {
  int rr, tt, chains, lanes, avx512;
  LLVMValueRef arow[TILE], wrow[ROWS], acc[ROWS][TILE][CHAINS];
  LLVMValueRef sbase, sstride, dacc[TILE]; /* TG2: the tile's rows' scales of group 0, bytes to the next group;
                                             * per token its rows' double sums */
  LLVMValueRef qacc[TILE][2];               /* TG2: the group's (TG2H: each half's) activation sums per token */
  LLVMValueRef gstride; /* bytes from a row's group to its next: 64 x the rows of its block of 4 */
  int64_t ahead;        /* decode: prefetch distance in bytes, a whole number of blocks */
} dt;

/* TG2: the group's int32 lanes of every (row, token) of the tile, less the token's activation sums,
 * summed per row in one lane-sum tree, widened to double and multiplied by the rows' scales of the
 * group (side by side in TG2) into one double vector per token; the chains start the next group at 0. */
static void fold_group(bn_gen *g, dt *d, LLVMValueRef gi) {
  const mm *k = g->ctx;
  LLVMTypeRef vacc = LLVMVectorType(g->i32, d->avx512 ? 16 : 8), vd = LLVMVectorType(g->f64, (unsigned)d->rr);
  for (int h = 0; h < k->gs; h++) { /* TG2: the group; TG2H: each half, chain h */
    LLVMValueRef v[ROWS * TILE];
    int lane[ROWS * TILE];
    for (int r = 0; r < d->rr; r++)
      for (int i = 0; i < d->tt; i++) {
        LLVMValueRef sum = d->acc[r][i][k->gs == 2 ? h : 0];
        for (int c = 1; c < d->chains && k->gs == 1; c++) sum = LLVMBuildAdd(g->b, sum, d->acc[r][i][c], "");
        v[r * d->tt + i] = LLVMBuildSub(g->b, sum, d->qacc[i][h], "");
      }
    LLVMValueRef sums = bn_gen_lane_sums(g, v, d->rr * d->tt, lane);
    LLVMValueRef at = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, gi, bn_gen_c64(g, k->gs), ""), bn_gen_c64(g, h), ""), d->sstride, "");
    LLVMValueRef sc = LLVMBuildFPExt(g->b, bn_gen_load(g, LLVMVectorType(g->f16, (unsigned)d->rr), d->sbase, at), vd, "");
    for (int i = 0; i < d->tt; i++) {
      int pick[ROWS];
      for (int r = 0; r < d->rr; r++) pick[r] = lane[r * d->tt + i];
      LLVMValueRef row = LLVMBuildSIToFP(g->b, bn_gen_shuffle(g, sums, NULL, pick, d->rr), vd, "");
      d->dacc[i] = LLVMBuildFAdd(g->b, d->dacc[i], LLVMBuildFMul(g->b, row, sc, ""), ""); /* exact: any order */
      d->qacc[i][h] = NULL;
    }
  }
  for (int r = 0; r < d->rr; r++)
    for (int i = 0; i < d->tt; i++)
      for (int c = 0; c < d->chains; c++) d->acc[r][i][c] = LLVMConstNull(vacc);
}

/* One group at index gi of pos chunks of 64 elements (grp: its number when constant, for the AVX2 chain
 * choice): TP2's 256 elements, or TP1's 320 (or the last group's K % 320), whose codes are
 * c = (x > 85) + (x > 170) of the bytes x_p, x_(p+1) = 3 x_p (ir/quant.h). */
static void group(bn_gen *g, dt *d, LLVMValueRef gi, int64_t grp, int pos) {
  const mm *k = g->ctx;
  LLVMTypeRef vb = LLVMVectorType(g->i8, (unsigned)d->lanes), v16i32 = LLVMVectorType(g->i32, 16);
  LLVMValueRef mask = bn_gen_splat(g->i8, d->lanes, 3);
  LLVMValueRef woff = LLVMBuildMul(g->b, gi, d->gstride, ""), aoff = LLVMBuildMul(g->b, gi, bn_gen_c64(g, k->t1 ? 320 : 256), "");
  for (int h = 0; h < 64 / d->lanes; h++) { /* AVX2: the two 32-byte halves of a 64-byte group */
    LLVMValueRef codes[ROWS][5];
    for (int r = 0; r < d->rr; r++) {
      if (h == 0 && d->tt == 1) {
        LLVMValueRef args[4] = {bn_gen_gep(g, d->wrow[r], LLVMBuildAdd(g->b, woff, bn_gen_c64(g, d->ahead), "")),
                                LLVMConstInt(g->i32, 0, 0), LLVMConstInt(g->i32, 3, 0), LLVMConstInt(g->i32, 1, 0)};
        LLVMTypeRef pt = g->ptr;
        bn_gen_call(g, "llvm.prefetch", &pt, 1, args, 4);
      }
      LLVMValueRef wv = bn_gen_load(g, vb, d->wrow[r], LLVMBuildAdd(g->b, woff, bn_gen_c64(g, h * d->lanes), ""));
      for (int s = 0; s < pos; s++) {
        if (!k->t1) {
          codes[r][s] = LLVMBuildAnd(g->b, s ? LLVMBuildLShr(g->b, wv, bn_gen_splat(g->i8, d->lanes, 2 * s), "") : wv, mask, "");
          continue;
        }
        LLVMValueRef c1 = LLVMBuildICmp(g->b, LLVMIntUGT, wv, bn_gen_splat(g->i8, d->lanes, 85), "");
        LLVMValueRef c2 = LLVMBuildICmp(g->b, LLVMIntUGT, wv, bn_gen_splat(g->i8, d->lanes, 170), "");
        codes[r][s] = LLVMBuildAdd(g->b, LLVMBuildZExt(g->b, c1, vb, ""), LLVMBuildZExt(g->b, c2, vb, ""), "");
        wv = LLVMBuildMul(g->b, wv, bn_gen_splat(g->i8, d->lanes, 3), "");
      }
    }
    for (int i = 0; i < d->tt; i++) {
      LLVMValueRef sum16[ROWS][2] = {{NULL}}, q16[2] = {NULL};
      for (int s = 0; s < pos; s++) {
        int j = k->gs == 2 ? s / 2 : 0; /* TG2H: positions 0, 1 are the first 128, 2, 3 the second */
        LLVMValueRef a = bn_gen_load(g, vb, d->arow[i], LLVMBuildAdd(g->b, aoff, bn_gen_c64(g, s * 64 + h * d->lanes), ""));
        LLVMValueRef a32 = d->avx512 ? LLVMBuildBitCast(g->b, a, v16i32, "") : a;
        if (k->gs) { /* the token's activations summed in the code sums' lanes: a dot product with ones */
          LLVMValueRef one = bn_gen_splat(g->i8, d->lanes, 1);
          if (d->avx512) {
            LLVMValueRef args[3] = {d->qacc[i][j] ? d->qacc[i][j] : LLVMConstNull(v16i32), LLVMBuildBitCast(g->b, one, v16i32, ""), a32};
            d->qacc[i][j] = bn_gen_call(g, "llvm.x86.avx512.vpdpbusd.512", NULL, 0, args, 3);
          } else {
            LLVMValueRef args[2] = {one, a}, p = bn_gen_call(g, "llvm.x86.avx2.pmadd.ub.sw", NULL, 0, args, 2);
            q16[j] = q16[j] ? LLVMBuildAdd(g->b, q16[j], p, "") : p;
          }
        }
        for (int r = 0; r < d->rr; r++) {
          if (d->avx512) {
            int c = k->gs == 2 ? j : s % d->chains; /* TG2H: a chain per half */
            LLVMValueRef args[3] = {d->acc[r][i][c], LLVMBuildBitCast(g->b, codes[r][s], v16i32, ""), a32};
            d->acc[r][i][c] = bn_gen_call(g, "llvm.x86.avx512.vpdpbusd.512", NULL, 0, args, 3);
          } else {
            LLVMValueRef args[2] = {codes[r][s], a}, p = bn_gen_call(g, "llvm.x86.avx2.pmadd.ub.sw", NULL, 0, args, 2);
            sum16[r][j] = sum16[r][j] ? LLVMBuildAdd(g->b, sum16[r][j], p, "") : p;
          }
        }
      }
      for (int r = 0; r < d->rr && !d->avx512; r++)
        for (int j = 0; j < 2 && sum16[r][j]; j++) {
          int c = k->gs == 2 ? j : (int)((grp * 2 + h) % d->chains);
          LLVMValueRef args[2] = {sum16[r][j], bn_gen_splat(g->i16, 16, 1)};
          d->acc[r][i][c] = LLVMBuildAdd(g->b, d->acc[r][i][c], bn_gen_call(g, "llvm.x86.avx2.pmadd.wd", NULL, 0, args, 2), "");
        }
      for (int j = 0; j < 2 && q16[j]; j++) {
        LLVMValueRef args[2] = {q16[j], bn_gen_splat(g->i16, 16, 1)}, w = bn_gen_call(g, "llvm.x86.avx2.pmadd.wd", NULL, 0, args, 2);
        d->qacc[i][j] = d->qacc[i][j] ? LLVMBuildAdd(g->b, d->qacc[i][j], w, "") : w;
      }
    }
  }
  if (k->gs) fold_group(g, d, gi);
}

/* The accumulators through allocas (a loop over groups carries them; mem2reg makes them registers):
 * the int32 chains, and TG2's double lanes after them. */
static void acc_io(bn_gen *g, dt *d, LLVMValueRef slot[ROWS][TILE][CHAINS + 1], int store) {
  LLVMTypeRef vacc = LLVMVectorType(g->i32, d->avx512 ? 16 : 8), vd = LLVMVectorType(g->f64, (unsigned)d->rr);
  const mm *k = g->ctx;
  for (int r = 0; r < d->rr; r++)
    for (int i = 0; i < d->tt; i++) {
      for (int c = 0; c < d->chains; c++) {
        if (store) LLVMBuildStore(g->b, d->acc[r][i][c], slot[r][i][c]);
        else d->acc[r][i][c] = LLVMBuildLoad2(g->b, vacc, slot[r][i][c], "");
      }
      if (k->gs && r == 0) { /* the token's double sums ride in row 0's spare slot */
        if (store) LLVMBuildStore(g->b, d->dacc[i], slot[0][i][CHAINS]);
        else d->dacc[i] = LLVMBuildLoad2(g->b, vd, slot[0][i][CHAINS], "");
      }
    }
}

/* out: per (row, token) the int32 lanes summed over K, or for TG2 the double lanes (two halves). */
static void dot_tile(bn_gen *g, LLVMValueRef n, int rr, LLVMValueRef t, int tt, LLVMValueRef out[ROWS][TILE]) {
  const mm *k = g->ctx;
  dt d = {.rr = rr, .tt = tt, .chains = k->gs == 2 ? 2 : rr * tt >= 8 ? 1 : rr * tt >= 4 ? 2 : 4, /* TG2H: one a half */
          .lanes = g->isa == BN_ISA_AVX512_VNNI ? 64 : 32, .avx512 = g->isa == BN_ISA_AVX512_VNNI};
  LLVMTypeRef vacc = LLVMVectorType(g->i32, d.avx512 ? 16 : 8), vd = LLVMVectorType(g->f64, (unsigned)rr);
  for (int i = 0; i < tt; i++) {
    LLVMValueRef tok = LLVMBuildAdd(g->b, t, bn_gen_c64(g, i), "");
    d.arow[i] = bn_gen_gep(g, g->arg[QA], LLVMBuildMul(g->b, tok, bn_gen_c64(g, k->row_bytes), ""));
  }
  /* TP2 (bn_tp2_group): the tile's rows lie in one block of m <= 4 rows (tiles of 4 rows start on
   * a block, of 2 on an even row), whose groups are interleaved: row 4b + i's group j at
   * b K + (j m + i) 64. m is 4 but in a last block of N % 4 rows. */
  LLVMValueRef blk = LLVMBuildSDiv(g->b, n, bn_gen_c64(g, 4), "");
  LLVMValueRef within = LLVMBuildSub(g->b, n, LLVMBuildMul(g->b, blk, bn_gen_c64(g, 4), ""), "");
  LLVMValueRef left = LLVMBuildSub(g->b, bn_gen_c64(g, g->N), LLVMBuildMul(g->b, blk, bn_gen_c64(g, 4), ""), "");
  LLVMValueRef m = g->N % 4 == 0 ? bn_gen_c64(g, 4)
                                 : LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, left, bn_gen_c64(g, 4), ""),
                                                   left, bn_gen_c64(g, 4), "");
  d.gstride = LLVMBuildMul(g->b, m, bn_gen_c64(g, 64), "");
  LLVMValueRef base = LLVMBuildMul(g->b, blk, bn_gen_c64(g, 4 * k->wrow), "");
  for (int r = 0; r < rr; r++) {
    LLVMValueRef at = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, within, bn_gen_c64(g, r), ""), bn_gen_c64(g, 64), "");
    d.wrow[r] = bn_gen_gep(g, g->arg[W], LLVMBuildAdd(g->b, base, at, ""));
    for (int i = 0; i < tt; i++)
      for (int c = 0; c < CHAINS; c++) d.acc[r][i][c] = LLVMConstNull(vacc);
  }
  for (int i = 0; i < tt; i++) d.dacc[i] = LLVMConstNull(vd);
  if (k->gs) { /* TG2 (bn_tg2_scale): block b's scales of group j at b 4 G + j m, a row's after the block's first */
    LLVMValueRef at = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, blk, bn_gen_c64(g, 4 * k->groups * k->gs), ""), within, "");
    d.sbase = bn_gen_gep(g, g->arg[W], LLVMBuildAdd(g->b, bn_gen_c64(g, k->scales), LLVMBuildMul(g->b, at, bn_gen_c64(g, 2), ""), ""));
    d.sstride = LLVMBuildMul(g->b, m, bn_gen_c64(g, 2), ""); /* f16 scales */
  }
  d.ahead = (PREFETCH_BYTES + 4 * k->wrow - 1) / (4 * k->wrow) * (4 * k->wrow);
  int pos = k->t1 ? 5 : 4;
  if (k->groups <= UNROLL_GROUPS) /* every offset a constant */
    for (int64_t grp = 0; grp < k->groups; grp++) group(g, &d, bn_gen_c64(g, grp), grp, pos);
  else { /* a loop over runs of u groups: the fully unrolled row outgrows the op cache (measured on K = 6912) */
    int u = k->groups % 2 == 0 ? 2 : 1;
    LLVMValueRef slot[ROWS][TILE][CHAINS + 1];
    for (int r = 0; r < rr; r++)
      for (int i = 0; i < tt; i++) {
        for (int c = 0; c < d.chains; c++) slot[r][i][c] = bn_gen_alloca(g, vacc, "acc");
        if (k->gs && r == 0) slot[0][i][CHAINS] = bn_gen_alloca(g, vd, "dacc");
      }
    acc_io(g, &d, slot, 1);
    bn_gen_for lg = bn_gen_for_begin(g, bn_gen_c64(g, 0), bn_gen_c64(g, k->groups), u);
    acc_io(g, &d, slot, 0);
    for (int q = 0; q < u; q++) group(g, &d, LLVMBuildAdd(g->b, lg.i, bn_gen_c64(g, q), ""), q, pos);
    acc_io(g, &d, slot, 1);
    bn_gen_for_end(g, &lg);
    acc_io(g, &d, slot, 0);
  }
  if (k->t1 && g->K % 320) group(g, &d, bn_gen_c64(g, k->groups), k->groups, (int)(g->K % 320 / 64)); /* the last */
  for (int r = 0; r < rr; r++)
    for (int i = 0; i < tt; i++) {
      LLVMValueRef sum = d.acc[r][i][0];
      for (int c = 1; c < d.chains; c++) sum = LLVMBuildAdd(g->b, sum, d.acc[r][i][c], "");
      out[r][i] = k->gs ? d.dacc[i] : sum; /* TG2: each token's rows' double sums */
    }
}

/* TG2's epilogue: each token's rows' double sums rounded to float: the ACC mode stores those, the DQ
 * modes (double)f / s as bn_ref_dequant with row scale 1 (and the residual added). */
static void epilogue_g(bn_gen *g, LLVMValueRef n, int rr, LLVMValueRef t, int tt, LLVMValueRef acc[ROWS][TILE]) {
  const mm *k = g->ctx;
  LLVMTypeRef vf = LLVMVectorType(g->f32, (unsigned)rr), vd = LLVMVectorType(g->f64, (unsigned)rr);
  for (int i = 0; i < tt; i++) {
    LLVMValueRef tok = LLVMBuildAdd(g->b, t, bn_gen_c64(g, i), "");
    LLVMValueRef arow = bn_gen_gep(g, g->arg[QA], LLVMBuildMul(g->b, tok, bn_gen_c64(g, k->row_bytes), ""));
    LLVMValueRef off4 = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, tok, bn_gen_c64(g, g->N), ""), n, ""),
                                     bn_gen_c64(g, 4), "");
    LLVMValueRef f = LLVMBuildFPTrunc(g->b, acc[0][i], vf, "");
    if (k->mode != BN_MM_ACC) {
      LLVMValueRef s = bn_gen_splat_v(g, vd, LLVMBuildFPExt(g->b, bn_gen_load(g, g->f32, arow, bn_gen_c64(g, k->meta)), g->f64, ""));
      f = LLVMBuildFPTrunc(g->b, LLVMBuildFDiv(g->b, LLVMBuildFPExt(g->b, f, vd, ""), s, ""), vf, "y");
      if (k->mode == BN_MM_DQ_ADD) f = LLVMBuildFAdd(g->b, bn_gen_load(g, vf, g->arg[RESID], off4), f, "");
    }
    bn_gen_store(g, f, g->arg[OUT], off4);
  }
}

/* Writes rows n..n+rr of tokens t..t+tt from their int32 vectors: the lane sums in one vector,
 * then per token the rr results side by side, dequantized as (double)acc * rs / s like
 * bn_ref_dequant (the same operations per element, so the same bits) and stored together. */
static void epilogue(bn_gen *g, LLVMValueRef n, int rr, LLVMValueRef t, int tt, LLVMValueRef acc[ROWS][TILE]) {
  const mm *k = g->ctx;
  LLVMValueRef v[ROWS * TILE];
  int lane[ROWS * TILE];
  if (k->gs) {
    epilogue_g(g, n, rr, t, tt, acc);
    return;
  }
  for (int r = 0; r < rr; r++)
    for (int i = 0; i < tt; i++) v[r * tt + i] = acc[r][i];
  LLVMValueRef sum = bn_gen_lane_sums(g, v, rr * tt, lane);
  LLVMTypeRef vi = LLVMVectorType(g->i32, (unsigned)rr), vf = LLVMVectorType(g->f32, (unsigned)rr);
  LLVMTypeRef vd = LLVMVectorType(g->f64, (unsigned)rr);
  LLVMValueRef rs = NULL;
  if (k->mode != BN_MM_ACC) {
    LLVMValueRef rs_off = LLVMBuildAdd(g->b, bn_gen_c64(g, k->scales), LLVMBuildMul(g->b, n, bn_gen_c64(g, 4), ""), "");
    rs = LLVMBuildFPExt(g->b, bn_gen_load(g, vf, g->arg[W], rs_off), vd, "");
  }
  for (int i = 0; i < tt; i++) {
    int pick[ROWS];
    for (int r = 0; r < rr; r++) pick[r] = lane[r * tt + i];
    LLVMValueRef tok = LLVMBuildAdd(g->b, t, bn_gen_c64(g, i), "");
    LLVMValueRef arow = bn_gen_gep(g, g->arg[QA], LLVMBuildMul(g->b, tok, bn_gen_c64(g, k->row_bytes), ""));
    LLVMValueRef sq = bn_gen_splat_v(g, vi, bn_gen_load(g, g->i32, arow, bn_gen_c64(g, k->meta + 4)));
    LLVMValueRef tot = LLVMBuildSub(g->b, bn_gen_shuffle(g, sum, NULL, pick, rr), sq, "acc"); /* - sum(q) */
    LLVMValueRef off4 = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, tok, bn_gen_c64(g, g->N), ""), n, ""),
                                     bn_gen_c64(g, 4), "");
    if (k->mode == BN_MM_ACC) {
      bn_gen_store(g, tot, g->arg[OUT], off4);
      continue;
    }
    LLVMValueRef s = bn_gen_splat_v(g, vd, LLVMBuildFPExt(g->b, bn_gen_load(g, g->f32, arow, bn_gen_c64(g, k->meta)), g->f64, ""));
    LLVMValueRef y = LLVMBuildFDiv(g->b, LLVMBuildFMul(g->b, LLVMBuildSIToFP(g->b, tot, vd, ""), rs, ""), s, "");
    y = LLVMBuildFPTrunc(g->b, y, vf, "y"); /* (double)acc * rs / s, as bn_ref_dequant */
    if (k->mode == BN_MM_DQ_ADD) y = LLVMBuildFAdd(g->b, bn_gen_load(g, vf, g->arg[RESID], off4), y, "");
    bn_gen_store(g, y, g->arg[OUT], off4);
  }
}

static void tile(bn_gen *g, LLVMValueRef n, int rr, LLVMValueRef t, int tt) {
  LLVMValueRef acc[ROWS][TILE];
  dot_tile(g, n, rr, t, tt, acc);
  epilogue(g, n, rr, t, tt, acc);
}

void bn_gen_matmul(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t N, bn_mm_mode mode, int pro,
                   float eps, bn_dtype wt, bn_isa isa) {
  int t1 = wt == BN_DT_TP1;
  int64_t wrow = t1 ? (int64_t)bn_tp1_row_bytes((uint64_t)K) : K / 4;
  mm k = {bn_qa8_row_bytes(K), bn_qa8_row_bytes(K) - 64, K / (t1 ? 320 : 256), mode, t1,
          wt == BN_DT_TG2 ? 1 : wt == BN_DT_TG2H ? 2 : 0, wrow, N * wrow};
  bn_gen g = {.ctx = &k};
  bn_gen_matmul_begin(&g, c, m, name, K, N, pro, eps, isa);
  /* blocks of rows whose weights take about BLOCK_BYTES (a multiple of ROWS), while a token
   * tile's activations are small enough to share L1 with them (measured: a gain up to K = 2560,
   * neutral at 4096, a loss at 6912) */
  int rows = isa == BN_ISA_AVX512_VNNI ? ROWS : 2; /* AVX2's 16 registers hold a 2 x 4 tile */
  int64_t block = K <= 4096 ? BLOCK_BYTES / wrow / rows * rows : 0;
  if (rows == ROWS) {
    bn_gen_rows_tokens(&g, g.arg[N0], g.arg[N1], g.arg[T_], rows, TILE, (int)(block > 32 ? 32 : block), tile);
    bn_gen_end(&g);
    return;
  }
  /* AVX2: one token in tiles of 4 rows (a whole block of TP2, one stream), more in 2 x 4 tiles */
  LLVMBasicBlockRef one = LLVMAppendBasicBlockInContext(c, g.fn, "decode"), many = LLVMAppendBasicBlockInContext(c, g.fn, "prefill");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c, g.fn, "done");
  LLVMBuildCondBr(g.b, LLVMBuildICmp(g.b, LLVMIntEQ, g.arg[T_], bn_gen_c64(&g, 1), ""), one, many);
  LLVMPositionBuilderAtEnd(g.b, one);
  bn_gen_rows_tokens(&g, g.arg[N0], g.arg[N1], g.arg[T_], ROWS, 1, 0, tile);
  LLVMBuildBr(g.b, done);
  LLVMPositionBuilderAtEnd(g.b, many);
  bn_gen_rows_tokens(&g, g.arg[N0], g.arg[N1], g.arg[T_], rows, TILE, (int)(block > 32 ? 32 : block), tile);
  LLVMBuildBr(g.b, done);
  LLVMPositionBuilderAtEnd(g.b, done);
  bn_gen_end(&g);
}
