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
 * Tokens go four at a time: a group's codes are unpacked once and used for
 * four tokens' activations (then one at a time for the rest). The K/256
 * groups of a row are unrolled: every offset is a constant. Accumulators
 * live in allocas that mem2reg turns into registers. The epilogue
 * dequantizes in double like the reference kernels, so results agree bit
 * for bit. */
#include <stdio.h>
#include <string.h>

#include "../../ir/ir.h"
#include "gen.h"

enum { TILE = 4 };

typedef struct {
  LLVMContextRef c;
  LLVMModuleRef m;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMTypeRef i8, i16, i32, i64, f32, f64, ptr;
  bn_isa isa;
  int64_t K, N, row_bytes, meta, groups;
  bn_mm_mode mode;
  LLVMValueRef qa, w, out, resid, T, n0, n1;
} gen;

static LLVMValueRef c64(gen *g, int64_t v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }

static LLVMValueRef splat(LLVMTypeRef elem, int n, long long v) {
  LLVMValueRef e[64];
  for (int i = 0; i < n; i++) e[i] = LLVMConstInt(elem, (unsigned long long)v, 1);
  return LLVMConstVector(e, (unsigned)n);
}

static LLVMValueRef gep(gen *g, LLVMValueRef base, LLVMValueRef off) {
  return LLVMBuildGEP2(g->b, g->i8, base, &off, 1, "");
}

static LLVMValueRef load(gen *g, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef off) {
  LLVMValueRef v = LLVMBuildLoad2(g->b, t, gep(g, base, off), "");
  LLVMSetAlignment(v, 1);
  return v;
}

static LLVMValueRef intrinsic(gen *g, const char *name, LLVMTypeRef *over, int n_over, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(g->m, id, over, (size_t)n_over);
  return LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->c, id, over, (size_t)n_over), f, args, (unsigned)n, "");
}

/* The int32 vector of one tile of `tt` tokens (starting at token t) for row n, summed over K. */
static void dot_tile(gen *g, LLVMValueRef n, LLVMValueRef t, int tt, LLVMValueRef *acc_out) {
  int avx512 = g->isa == BN_ISA_AVX512_VNNI;
  int lanes = avx512 ? 64 : 32;
  LLVMTypeRef vb = LLVMVectorType(g->i8, (unsigned)lanes), vacc = LLVMVectorType(g->i32, avx512 ? 16 : 8);
  LLVMTypeRef v16i16 = LLVMVectorType(g->i16, 16);
  LLVMValueRef acc[TILE], arow[TILE];
  for (int k = 0; k < tt; k++) {
    acc[k] = LLVMConstNull(vacc);
    LLVMValueRef tok = LLVMBuildAdd(g->b, t, c64(g, k), "");
    arow[k] = gep(g, g->qa, LLVMBuildMul(g->b, tok, c64(g, g->row_bytes), ""));
  }
  LLVMValueRef wrow = gep(g, g->w, LLVMBuildMul(g->b, n, c64(g, g->K / 4), ""));
  LLVMValueRef mask = splat(g->i8, lanes, 3);
  for (int64_t grp = 0; grp < g->groups; grp++)
    for (int h = 0; h < 64 / lanes; h++) { /* AVX2: two 32-byte halves of the 64-byte group */
      LLVMValueRef wv = load(g, vb, wrow, c64(g, grp * 64 + h * lanes));
      LLVMValueRef codes[4];
      for (int s = 0; s < 4; s++)
        codes[s] = LLVMBuildAnd(g->b, s ? LLVMBuildLShr(g->b, wv, splat(g->i8, lanes, 2 * s), "") : wv, mask, "");
      for (int k = 0; k < tt; k++) {
        LLVMValueRef sum16 = NULL;
        for (int s = 0; s < 4; s++) {
          LLVMValueRef a = load(g, vb, arow[k], c64(g, grp * 256 + s * 64 + h * lanes));
          if (avx512) {
            LLVMTypeRef v16i32 = LLVMVectorType(g->i32, 16);
            LLVMValueRef args[3] = {acc[k], LLVMBuildBitCast(g->b, codes[s], v16i32, ""), LLVMBuildBitCast(g->b, a, v16i32, "")};
            acc[k] = intrinsic(g, "llvm.x86.avx512.vpdpbusd.512", NULL, 0, args, 3);
          } else {
            LLVMValueRef args[2] = {codes[s], a};
            LLVMValueRef p = intrinsic(g, "llvm.x86.avx2.pmadd.ub.sw", NULL, 0, args, 2);
            sum16 = sum16 ? LLVMBuildAdd(g->b, sum16, p, "") : p;
          }
        }
        if (!avx512) {
          LLVMValueRef args[2] = {sum16, splat(g->i16, 16, 1)};
          acc[k] = LLVMBuildAdd(g->b, acc[k], intrinsic(g, "llvm.x86.avx2.pmadd.wd", NULL, 0, args, 2), "");
        }
      }
      (void)v16i16;
    }
  for (int k = 0; k < tt; k++) acc_out[k] = acc[k];
}

/* Writes the result of token t, row n from its int32 vector. */
static void epilogue(gen *g, LLVMValueRef n, LLVMValueRef t, LLVMValueRef vacc) {
  LLVMTypeRef vt = LLVMTypeOf(vacc);
  LLVMValueRef tot = intrinsic(g, "llvm.vector.reduce.add", &vt, 1, &vacc, 1);
  LLVMValueRef arow = gep(g, g->qa, LLVMBuildMul(g->b, t, c64(g, g->row_bytes), ""));
  LLVMValueRef sumq = load(g, g->i32, arow, c64(g, g->meta + 4));
  tot = LLVMBuildSub(g->b, tot, sumq, "acc");
  LLVMValueRef idx = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, t, c64(g, g->N), ""), n, "");
  LLVMValueRef off4 = LLVMBuildMul(g->b, idx, c64(g, 4), "");
  if (g->mode == BN_MM_ACC) {
    LLVMBuildStore(g->b, tot, gep(g, g->out, off4));
    return;
  }
  LLVMValueRef s = LLVMBuildFPExt(g->b, load(g, g->f32, arow, c64(g, g->meta)), g->f64, "");
  LLVMValueRef rs_off = LLVMBuildAdd(g->b, c64(g, g->N * g->K / 4), LLVMBuildMul(g->b, n, c64(g, 4), ""), "");
  LLVMValueRef rs = LLVMBuildFPExt(g->b, load(g, g->f32, g->w, rs_off), g->f64, "");
  LLVMValueRef y = LLVMBuildSIToFP(g->b, tot, g->f64, "");
  y = LLVMBuildFDiv(g->b, LLVMBuildFMul(g->b, y, rs, ""), s, ""); /* (double)acc * rs / s, as bn_ref_dequant */
  y = LLVMBuildFPTrunc(g->b, y, g->f32, "y");
  if (g->mode == BN_MM_DQ_ADD) y = LLVMBuildFAdd(g->b, load(g, g->f32, g->resid, off4), y, "");
  LLVMBuildStore(g->b, y, gep(g, g->out, off4));
}

/* for (var = from; var + step <= limit; var += step) body(var) — with an alloca'd counter. */
typedef void (*body_fn)(gen *g, LLVMValueRef n, LLVMValueRef t, int tt);

static LLVMBasicBlockRef block(gen *g, const char *name) { return LLVMAppendBasicBlockInContext(g->c, g->fn, name); }

static void token_tile(gen *g, LLVMValueRef n, LLVMValueRef t, int tt) {
  LLVMValueRef acc[TILE];
  dot_tile(g, n, t, tt, acc);
  for (int k = 0; k < tt; k++) epilogue(g, n, LLVMBuildAdd(g->b, t, c64(g, k), ""), acc[k]);
}

/* Loops t over [t_var, T) in steps of tt while a whole step fits. */
static void token_loop(gen *g, LLVMValueRef n, LLVMValueRef t_var, int tt) {
  LLVMBasicBlockRef head = block(g, "t.head"), body = block(g, "t.body"), done = block(g, "t.done");
  LLVMBuildBr(g->b, head);
  LLVMPositionBuilderAtEnd(g->b, head);
  LLVMValueRef t = LLVMBuildLoad2(g->b, g->i64, t_var, "t");
  LLVMValueRef fits = LLVMBuildICmp(g->b, LLVMIntSLE, LLVMBuildAdd(g->b, t, c64(g, tt), ""), g->T, "");
  LLVMBuildCondBr(g->b, fits, body, done);
  LLVMPositionBuilderAtEnd(g->b, body);
  token_tile(g, n, t, tt);
  LLVMBuildStore(g->b, LLVMBuildAdd(g->b, t, c64(g, tt), ""), t_var);
  LLVMBuildBr(g->b, head);
  LLVMPositionBuilderAtEnd(g->b, done);
}

void bn_gen_matmul(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t N, bn_mm_mode mode,
                   bn_isa isa) {
  gen g = {.c = c, .m = m, .isa = isa, .K = K, .N = N, .mode = mode};
  g.b = LLVMCreateBuilderInContext(c);
  g.i8 = LLVMInt8TypeInContext(c), g.i16 = LLVMInt16TypeInContext(c), g.i32 = LLVMInt32TypeInContext(c);
  g.i64 = LLVMInt64TypeInContext(c), g.f32 = LLVMFloatTypeInContext(c), g.f64 = LLVMDoubleTypeInContext(c);
  g.ptr = LLVMPointerTypeInContext(c, 0);
  g.row_bytes = bn_qa8_row_bytes(K);
  g.meta = g.row_bytes - 64;
  g.groups = K / 256;
  LLVMTypeRef params[7] = {g.ptr, g.ptr, g.ptr, g.ptr, g.i64, g.i64, g.i64};
  g.fn = LLVMAddFunction(m, name, LLVMFunctionType(LLVMVoidTypeInContext(c), params, 7, 0));
  LLVMValueRef *args[7] = {&g.qa, &g.w, &g.out, &g.resid, &g.T, &g.n0, &g.n1};
  for (int i = 0; i < 7; i++) *args[i] = LLVMGetParam(g.fn, (unsigned)i);
  for (int i = 0; i < 4; i++) /* the buffers never alias */
    LLVMAddAttributeAtIndex(g.fn, (unsigned)i + 1, LLVMCreateEnumAttribute(c, LLVMGetEnumAttributeKindForName("noalias", 7), 0));

  LLVMBasicBlockRef entry = block(&g, "entry"), nhead = block(&g, "n.head"), nbody = block(&g, "n.body"),
                    exit = block(&g, "exit");
  LLVMPositionBuilderAtEnd(g.b, entry);
  LLVMValueRef n_var = LLVMBuildAlloca(g.b, g.i64, "n.var"), t_var = LLVMBuildAlloca(g.b, g.i64, "t.var");
  LLVMBuildStore(g.b, g.n0, n_var);
  LLVMBuildBr(g.b, nhead);
  LLVMPositionBuilderAtEnd(g.b, nhead);
  LLVMValueRef n = LLVMBuildLoad2(g.b, g.i64, n_var, "n");
  LLVMBuildCondBr(g.b, LLVMBuildICmp(g.b, LLVMIntSLT, n, g.n1, ""), nbody, exit);
  LLVMPositionBuilderAtEnd(g.b, nbody);
  LLVMBuildStore(g.b, c64(&g, 0), t_var);
  token_loop(&g, n, t_var, TILE);
  token_loop(&g, n, t_var, 1);
  LLVMBuildStore(g.b, LLVMBuildAdd(g.b, n, c64(&g, 1), ""), n_var);
  LLVMBuildBr(g.b, nhead);
  LLVMPositionBuilderAtEnd(g.b, exit);
  LLVMBuildRetVoid(g.b);
  LLVMDisposeBuilder(g.b);
}
