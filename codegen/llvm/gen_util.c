#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

void bn_gen_begin(bn_gen *g, LLVMContextRef c, LLVMModuleRef m, const char *name, int n_ptr, int n_i64, bn_isa isa,
                  int64_t K, int64_t N) {
  void *ctx = g->ctx;
  memset(g, 0, sizeof *g);
  g->ctx = ctx;
  g->c = c, g->m = m, g->isa = isa, g->K = K, g->N = N;
  g->b = LLVMCreateBuilderInContext(c);
  g->i8 = LLVMInt8TypeInContext(c), g->i16 = LLVMInt16TypeInContext(c), g->i32 = LLVMInt32TypeInContext(c);
  g->i64 = LLVMInt64TypeInContext(c), g->f16 = LLVMHalfTypeInContext(c), g->f32 = LLVMFloatTypeInContext(c);
  g->f64 = LLVMDoubleTypeInContext(c), g->ptr = LLVMPointerTypeInContext(c, 0);
  LLVMTypeRef params[12];
  for (int i = 0; i < n_ptr + n_i64; i++) params[i] = i < n_ptr ? g->ptr : g->i64;
  g->fn = LLVMAddFunction(m, name, LLVMFunctionType(LLVMVoidTypeInContext(c), params, (unsigned)(n_ptr + n_i64), 0));
  for (int i = 0; i < n_ptr + n_i64; i++) g->arg[i] = LLVMGetParam(g->fn, (unsigned)i);
  unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
  for (int i = 0; i < n_ptr; i++) /* buffers never alias */
    LLVMAddAttributeAtIndex(g->fn, (unsigned)i + 1, LLVMCreateEnumAttribute(c, noalias, 0));
  LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(c, g->fn, "entry"));
}

void bn_gen_end(bn_gen *g) {
  LLVMBuildRetVoid(g->b);
  LLVMDisposeBuilder(g->b);
}

LLVMValueRef bn_gen_c64(bn_gen *g, int64_t v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }

LLVMValueRef bn_gen_splat(LLVMTypeRef elem, int n, long long v) {
  LLVMValueRef e[64];
  for (int i = 0; i < n; i++) e[i] = LLVMConstInt(elem, (unsigned long long)v, 1);
  return LLVMConstVector(e, (unsigned)n);
}

LLVMValueRef bn_gen_gep(bn_gen *g, LLVMValueRef base, LLVMValueRef off) {
  return LLVMBuildGEP2(g->b, g->i8, base, &off, 1, "");
}

LLVMValueRef bn_gen_load(bn_gen *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef off) {
  LLVMValueRef v = LLVMBuildLoad2(g->b, t, bn_gen_gep(g, base, off), "");
  LLVMSetAlignment(v, 1);
  return v;
}

void bn_gen_store(bn_gen *g, LLVMValueRef v, LLVMValueRef base, LLVMValueRef off) {
  LLVMSetAlignment(LLVMBuildStore(g->b, v, bn_gen_gep(g, base, off)), 1);
}

LLVMValueRef bn_gen_call(bn_gen *g, const char *name, LLVMTypeRef *over, int n_over, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(g->m, id, over, (size_t)n_over);
  return LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->c, id, over, (size_t)n_over), f, args, (unsigned)n, "");
}

static LLVMBasicBlockRef block(bn_gen *g, const char *name) { return LLVMAppendBasicBlockInContext(g->c, g->fn, name); }

/* while (i + step <= limit): bn_gen_for over i < limit - step + 1, continuing from `from`;
 * returns where the counter stopped. */
static LLVMValueRef tiles(bn_gen *g, LLVMValueRef from, LLVMValueRef limit, int step, void (*body)(bn_gen *, LLVMValueRef, int, void *),
                          void *ctx) {
  LLVMValueRef last = LLVMBuildSub(g->b, limit, bn_gen_c64(g, step - 1), "");
  bn_gen_for l = bn_gen_for_begin(g, from, last, step);
  body(g, l.i, step, ctx);
  bn_gen_for_end(g, &l);
  return LLVMBuildLoad2(g->b, g->i64, l.var, "");
}

typedef struct {
  LLVMValueRef T;
  int tile, rows, block;
  bn_gen_tile_fn fn;
  LLVMValueRef n; /* the current row tile (or block) */
  int rr;
  LLVMValueRef t; /* the current token tile */
  int tt;
} rt_ctx;

static void token_tile(bn_gen *g, LLVMValueRef t, int tt, void *ctx) {
  rt_ctx *c = ctx;
  c->fn(g, c->n, c->rr, t, tt);
}

static void row_tile(bn_gen *g, LLVMValueRef n, int rr, void *ctx) {
  rt_ctx *c = ctx;
  c->n = n, c->rr = rr;
  LLVMValueRef t = bn_gen_c64(g, 0);
  for (int tt = c->tile; tt >= 1; tt /= 2) /* e.g. 4, 2, 1: every remainder gets the widest tile that fits */
    t = tiles(g, t, c->T, tt, token_tile, c);
}

/* Inside a block: the row tiles of the block for the current token tile. */
static void block_row(bn_gen *g, LLVMValueRef n, int rr, void *ctx) {
  rt_ctx *c = ctx;
  c->fn(g, n, rr, c->t, c->tt);
}

static void block_token(bn_gen *g, LLVMValueRef t, int tt, void *ctx) {
  rt_ctx *c = ctx;
  c->t = t, c->tt = tt;
  LLVMValueRef end = LLVMBuildAdd(g->b, c->n, bn_gen_c64(g, c->block), "");
  tiles(g, c->n, end, c->rows, block_row, c);
}

static void row_block(bn_gen *g, LLVMValueRef n, int rr, void *ctx) {
  rt_ctx *c = ctx;
  (void)rr;
  c->n = n;
  LLVMValueRef t = bn_gen_c64(g, 0);
  for (int tt = c->tile; tt >= 1; tt /= 2) t = tiles(g, t, c->T, tt, block_token, c);
}

void bn_gen_rows_tokens(bn_gen *g, LLVMValueRef n0, LLVMValueRef n1, LLVMValueRef T, int rows, int tile, int block,
                        bn_gen_tile_fn tile_fn) {
  rt_ctx c = {T, tile, rows, block, tile_fn, NULL, 0, NULL, 0};
  LLVMValueRef n = n0;
  if (block > rows) n = tiles(g, n, n1, block, row_block, &c); /* whole blocks: token tiles outside, row tiles inside */
  n = tiles(g, n, n1, rows, row_tile, &c);
  if (rows > 1) tiles(g, n, n1, 1, row_tile, &c);
}

LLVMValueRef bn_gen_splat_v(bn_gen *g, LLVMTypeRef vf, LLVMValueRef x) {
  unsigned n = LLVMGetVectorSize(vf);
  LLVMValueRef zero[64];
  for (unsigned i = 0; i < n; i++) zero[i] = LLVMConstInt(g->i32, 0, 0);
  LLVMValueRef v = LLVMBuildInsertElement(g->b, LLVMGetUndef(vf), x, LLVMConstInt(g->i32, 0, 0), "");
  return LLVMBuildShuffleVector(g->b, v, LLVMGetUndef(vf), LLVMConstVector(zero, n), "");
}

/* v (a float or a vector of floats) filled with c. */
LLVMValueRef bn_gen_constf(LLVMTypeRef t, double c) {
  if (LLVMGetTypeKind(t) != LLVMVectorTypeKind) return LLVMConstReal(t, c);
  LLVMValueRef e[64];
  unsigned n = LLVMGetVectorSize(t);
  for (unsigned i = 0; i < n; i++) e[i] = LLVMConstReal(LLVMGetElementType(t), c);
  return LLVMConstVector(e, n);
}

/* exp(x) in float lanes, without a call: x clamped to [-87.3, 88] (so 2^n
 * below stays a normal float: exp there is 0 or overflows anyway), n =
 * rint(x / ln 2), r = x - n ln 2 in two parts, exp(r) by Cephes' degree-6
 * polynomial, times 2^n built in the exponent bits. About 1 ulp from expf. */
LLVMValueRef bn_gen_exp(bn_gen *g, LLVMValueRef x) {
  LLVMTypeRef t = LLVMTypeOf(x);
  int vec = LLVMGetTypeKind(t) == LLVMVectorTypeKind;
  unsigned lanes = vec ? LLVMGetVectorSize(t) : 1;
  LLVMTypeRef ti = vec ? LLVMVectorType(g->i32, lanes) : g->i32;
  LLVMValueRef a2[2] = {x, bn_gen_constf(t, -87.3)};
  x = bn_gen_call(g, "llvm.maxnum", &t, 1, a2, 2);
  a2[0] = x, a2[1] = bn_gen_constf(t, 88.0);
  x = bn_gen_call(g, "llvm.minnum", &t, 1, a2, 2);
  LLVMValueRef nf = LLVMBuildFMul(g->b, x, bn_gen_constf(t, 1.44269504088896341), "");
  nf = bn_gen_call(g, "llvm.rint", &t, 1, &nf, 1);
  LLVMValueRef a3[3] = {nf, bn_gen_constf(t, -0.693359375), x};
  LLVMValueRef r = bn_gen_call(g, "llvm.fma", &t, 1, a3, 3);
  a3[0] = nf, a3[1] = bn_gen_constf(t, 2.12194440e-4), a3[2] = r;
  r = bn_gen_call(g, "llvm.fma", &t, 1, a3, 3);
  static const double c[] = {1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
                             5.0000001201e-1};
  LLVMValueRef p = bn_gen_constf(t, c[0]);
  for (int i = 1; i < 6; i++) {
    a3[0] = p, a3[1] = r, a3[2] = bn_gen_constf(t, c[i]);
    p = bn_gen_call(g, "llvm.fma", &t, 1, a3, 3);
  }
  a3[0] = p, a3[1] = LLVMBuildFMul(g->b, r, r, ""), a3[2] = LLVMBuildFAdd(g->b, r, bn_gen_constf(t, 1.0), "");
  p = bn_gen_call(g, "llvm.fma", &t, 1, a3, 3); /* 1 + r + r^2 p(r) */
  LLVMValueRef n = LLVMBuildFPToSI(g->b, nf, ti, "");
  LLVMValueRef bias = vec ? bn_gen_splat(g->i32, (int)lanes, 127) : LLVMConstInt(g->i32, 127, 0);
  LLVMValueRef sh = vec ? bn_gen_splat(g->i32, (int)lanes, 23) : LLVMConstInt(g->i32, 23, 0);
  LLVMValueRef two_n = LLVMBuildBitCast(g->b, LLVMBuildShl(g->b, LLVMBuildAdd(g->b, n, bias, ""), sh, ""), t, "");
  return LLVMBuildFMul(g->b, p, two_n, "");
}

LLVMValueRef bn_gen_alloca(bn_gen *g, LLVMTypeRef t, const char *name) {
  LLVMBuilderRef b = LLVMCreateBuilderInContext(g->c);
  LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(g->fn);
  LLVMValueRef first = LLVMGetFirstInstruction(entry);
  if (first) LLVMPositionBuilderBefore(b, first);
  else LLVMPositionBuilderAtEnd(b, entry);
  LLVMValueRef a = LLVMBuildAlloca(b, t, name); /* in the entry block, where mem2reg promotes it */
  LLVMDisposeBuilder(b);
  return a;
}

/* The int8 multiply-add peak: 8 independent vpdpbusd (or vpmaddubsw +
 * vpmaddwd) chains on registers, iters times; MACs = iters * 8 * lanes. */
void bn_gen_peak(LLVMContextRef c, LLVMModuleRef m, const char *name, bn_isa isa) {
  bn_gen g = {0};
  bn_gen_begin(&g, c, m, name, 2, 1, isa, 0, 0);
  int avx512 = isa == BN_ISA_AVX512_VNNI;
  LLVMTypeRef vb = LLVMVectorType(g.i8, avx512 ? 64 : 32), vacc = LLVMVectorType(g.i32, avx512 ? 16 : 8);
  LLVMTypeRef v16i32 = LLVMVectorType(g.i32, 16);
  LLVMValueRef a = bn_gen_load(&g, vb, g.arg[0], bn_gen_c64(&g, 0)), b = bn_gen_load(&g, vb, g.arg[0], bn_gen_c64(&g, 64));
  LLVMValueRef acc[8];
  for (int k = 0; k < 8; k++) {
    acc[k] = bn_gen_alloca(&g, vacc, "acc");
    LLVMBuildStore(g.b, LLVMConstNull(vacc), acc[k]);
  }
  bn_gen_for li = bn_gen_for_begin(&g, bn_gen_c64(&g, 0), g.arg[2], 1);
  for (int k = 0; k < 8; k++) {
    LLVMValueRef cur = LLVMBuildLoad2(g.b, vacc, acc[k], ""), next;
    if (avx512) {
      LLVMValueRef args[3] = {cur, LLVMBuildBitCast(g.b, a, v16i32, ""), LLVMBuildBitCast(g.b, b, v16i32, "")};
      next = bn_gen_call(&g, "llvm.x86.avx512.vpdpbusd.512", NULL, 0, args, 3);
    } else {
      LLVMValueRef args[2] = {a, b}, p = bn_gen_call(&g, "llvm.x86.avx2.pmadd.ub.sw", NULL, 0, args, 2);
      LLVMValueRef args2[2] = {p, bn_gen_splat(g.i16, 16, 1)};
      next = LLVMBuildAdd(g.b, cur, bn_gen_call(&g, "llvm.x86.avx2.pmadd.wd", NULL, 0, args2, 2), "");
    }
    LLVMBuildStore(g.b, next, acc[k]);
  }
  bn_gen_for_end(&g, &li);
  LLVMValueRef sum = LLVMBuildLoad2(g.b, vacc, acc[0], "");
  for (int k = 1; k < 8; k++) sum = LLVMBuildAdd(g.b, sum, LLVMBuildLoad2(g.b, vacc, acc[k], ""), "");
  LLVMSetAlignment(LLVMBuildStore(g.b, sum, g.arg[1]), 1);
  bn_gen_end(&g);
}

bn_gen_for bn_gen_for_begin(bn_gen *g, LLVMValueRef from, LLVMValueRef limit, int64_t step) {
  bn_gen_for l = {block(g, "for.head"), block(g, "for.body"), block(g, "for.done"), bn_gen_alloca(g, g->i64, "i"), NULL, step};
  LLVMBuildStore(g->b, from, l.var);
  LLVMBuildBr(g->b, l.head);
  LLVMPositionBuilderAtEnd(g->b, l.head);
  l.i = LLVMBuildLoad2(g->b, g->i64, l.var, "");
  LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, l.i, limit, ""), l.body, l.done);
  LLVMPositionBuilderAtEnd(g->b, l.body);
  return l;
}

void bn_gen_for_end(bn_gen *g, bn_gen_for *l) {
  LLVMBuildStore(g->b, LLVMBuildAdd(g->b, l->i, bn_gen_c64(g, l->step), ""), l->var);
  LLVMBuildBr(g->b, l->head);
  LLVMPositionBuilderAtEnd(g->b, l->done);
}

/* A shuffle of a (and b, or a alone when b is NULL) by the lanes in mask[0..n). */
LLVMValueRef bn_gen_shuffle(bn_gen *g, LLVMValueRef a, LLVMValueRef b, const int *mask, int n) {
  LLVMValueRef m[32];
  for (int i = 0; i < n; i++) m[i] = LLVMConstInt(g->i32, (unsigned long long)mask[i], 0);
  return LLVMBuildShuffleVector(g->b, a, b ? b : LLVMGetUndef(LLVMTypeOf(a)), LLVMConstVector(m, (unsigned)n), "");
}

static LLVMValueRef add(bn_gen *g, int fp, LLVMValueRef a, LLVMValueRef b) {
  return fp ? LLVMBuildFAdd(g->b, a, b, "") : LLVMBuildAdd(g->b, a, b, "");
}

/* The lane sums of m vectors v[0..m) of L lanes (integer or float; m <= L <= 16), as one vector whose
 * lane lane[j] holds v[j]'s sum: a tree that folds two vectors into one per shuffle pair and add
 * (segments of a and b halved side by side), then one vector into half its length, log2 L
 * levels in all: about 3 (m - 1) + 3 log2 L instructions, where a reduction per vector takes
 * about 2 log2 L each. Each sum adds lane i to lane i + L/2, then i + L/4, ...: the order of a
 * reassociated llvm.vector.reduce.fadd on x86, so float sums come out the same. */
LLVMValueRef bn_gen_lane_sums(bn_gen *g, LLVMValueRef *v, int m, int *lane) {
  LLVMTypeRef vt = LLVMTypeOf(v[0]);
  int L = (int)LLVMGetVectorSize(vt), fp = LLVMGetTypeKind(LLVMGetElementType(vt)) != LLVMIntegerTypeKind;
  LLVMValueRef x[17] = {NULL};
  int own[17][16] = {{0}}, n = m, seg = 1, w = L; /* vector k: seg segments of w lanes, segment s summing own[k][s] */
  if (m > L || L > 16) { /* every caller's tile has at most as many vectors as lanes */
    fprintf(stderr, "bn_gen_lane_sums: %d vectors of %d lanes\n", m, L);
    abort();
  }
  for (int k = 0; k < m; k++) x[k] = v[k], own[k][0] = k;
  for (; w > 1; w /= 2) {
    int lo[32], hi[32], len = 0;
    if (n == 1) { /* fold the one vector into half its length */
      for (int s = 0; s < seg; s++)
        for (int i = 0; i < w / 2; i++, len++) lo[len] = s * w + i, hi[len] = s * w + w / 2 + i;
      x[0] = add(g, fp, bn_gen_shuffle(g, x[0], NULL, lo, len), bn_gen_shuffle(g, x[0], NULL, hi, len));
      continue;
    }
    if (n % 2) { /* an odd one out pairs with zeros */
      x[n] = LLVMConstNull(LLVMTypeOf(x[0]));
      for (int s = 0; s < seg; s++) own[n][s] = -1;
      n++;
    }
    for (int s = 0; s < seg; s++)
      for (int h = 0; h < 2; h++)
        for (int i = 0; i < w / 2; i++, len++) lo[len] = h * L + s * w + i, hi[len] = h * L + s * w + w / 2 + i;
    for (int k = 0; k < n / 2; k++) {
      int o[16];
      for (int s = 0; s < seg; s++) o[2 * s] = own[2 * k][s], o[2 * s + 1] = own[2 * k + 1][s];
      x[k] = add(g, fp, bn_gen_shuffle(g, x[2 * k], x[2 * k + 1], lo, len), bn_gen_shuffle(g, x[2 * k], x[2 * k + 1], hi, len));
      memcpy(own[k], o, sizeof o);
    }
    n /= 2, seg *= 2;
  }
  for (int k = 0; k < n; k++) /* n > 1 only when every vector is one lane already (L = 1) */
    x[0] = k ? add(g, fp, x[0], x[k]) : x[0];
  for (int s = 0; s < seg; s++)
    if (own[0][s] >= 0) lane[own[0][s]] = s;
  return x[0];
}

LLVMValueRef bn_gen_hsum_f64(bn_gen *g, LLVMValueRef v) {
  LLVMTypeRef vt = LLVMTypeOf(v);
  LLVMValueRef args[2] = {LLVMConstReal(g->f64, -0.0), v};
  return bn_gen_call(g, "llvm.vector.reduce.fadd", &vt, 1, args, 2);
}
