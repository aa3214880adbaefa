/* The float matmul kernel (the output projection): y[t][n] = x[t] . W[n]
 * for W rows of K, K a constant, in f32, f16 or a block format (q8_0, q4_0,
 * q6_k). A row is read block by block (f32/f16: a vector is a block); each
 * block is decoded to float vectors exactly as the reference dequantizes it
 * (bn_gen_decode) and
 * multiplied into up to four tokens' accumulators with fused multiply-adds; a
 * loop over K keeps the code small. A token's four chains end as (a0 + a1) +
 * (a2 + a3), then the halving tree of bn_gen_lane_sums: asmjit's kernel sums in
 * this order too, so the two give the same bits. Float accumulation in vector
 * lanes differs from the reference's double sums by float rounding only
 * (tested within 1e-5). */
#include "../../ir/ir.h"
#include "gen.h"

enum { X, W, Y, T_, N0, N1 };
enum { PREFETCH = 12288 }; /* bytes ahead in the weight stream (the hardware prefetcher alone reaches about 2/3 of the bandwidth) */

typedef struct {
  bn_dtype wtype;
  int lanes;
  int64_t elems, bytes; /* per block */
  LLVMTypeRef vf;
} mf;

/* One row for tt tokens. Rows are read one after another (the hardware
 * prefetcher follows one stream; rows read side by side each break off after
 * K elements and halve the bandwidth), so a token's accumulator is split in U
 * over consecutive vectors of K: U * tt independent fused multiply-add chains
 * (a single chain is latency-bound below the memory bandwidth). U is the same
 * for every tile, so a token's sums, and its bits, do not depend on the tokens
 * beside it (a step of several sequences gives each its own run's logits). */
static void tile(bn_gen *g, LLVMValueRef n, int rr, LLVMValueRef t, int tt) {
  (void)rr;
  const mf *k = g->ctx;
  LLVMTypeRef vf = k->vf;
  int U = 4, per_block = (int)(k->elems / k->lanes);
  int64_t nb = g->K / k->elems, sb = k->lanes * U > k->elems ? k->lanes * U / k->elems : 1; /* blocks per step */
  LLVMValueRef acc[4][4], xrow[4];
  LLVMValueRef wrow = bn_gen_gep(g, g->arg[W], LLVMBuildMul(g->b, n, bn_gen_c64(g, nb * k->bytes), ""));
  for (int i = 0; i < tt; i++) {
    LLVMValueRef tok = LLVMBuildAdd(g->b, t, bn_gen_c64(g, i), "");
    xrow[i] = bn_gen_gep(g, g->arg[X], LLVMBuildMul(g->b, tok, bn_gen_c64(g, g->K * 4), ""));
    for (int u = 0; u < U; u++) {
      acc[i][u] = bn_gen_alloca(g, vf, "acc");
      LLVMBuildStore(g->b, LLVMConstNull(vf), acc[i][u]);
    }
  }
  /* whole steps of sb blocks (U vectors or a multiple), then the blocks left, unrolled: vector v of the row (v
   * counted from its start) in chain v mod U, as asmjit's kernel has it */
  for (int64_t pass = 0, v = 0; pass < 2; pass++) {
    int64_t from = pass ? nb / sb * sb : 0, to = pass ? nb : nb / sb * sb, step = pass ? to - from : sb;
    if (from == to) continue;
    bn_gen_for lb = bn_gen_for_begin(g, bn_gen_c64(g, from), bn_gen_c64(g, to), step);
    LLVMValueRef woff = LLVMBuildMul(g->b, lb.i, bn_gen_c64(g, k->bytes), "");
    for (int64_t off = 0; off < (step * k->bytes + 63) / 64 * 64; off += 64) { /* each cache line of the step, ahead */
      LLVMValueRef args[4] = {bn_gen_gep(g, wrow, LLVMBuildAdd(g->b, woff, bn_gen_c64(g, PREFETCH + off), "")),
                              LLVMConstInt(g->i32, 0, 0), LLVMConstInt(g->i32, 3, 0), LLVMConstInt(g->i32, 1, 0)};
      LLVMTypeRef pt = g->ptr;
      bn_gen_call(g, "llvm.prefetch", &pt, 1, args, 4);
    }
    for (int64_t b = 0; b < step; b++) {
      LLVMValueRef blk = bn_gen_gep(g, wrow, LLVMBuildAdd(g->b, woff, bn_gen_c64(g, b * k->bytes), ""));
      LLVMValueRef e0 = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, lb.i, bn_gen_c64(g, b), ""), bn_gen_c64(g, k->elems), "");
      for (int p = 0; p < per_block; p++, v++) {
        LLVMValueRef wv = bn_gen_decode(g, k->wtype, k->lanes, blk, p);
        LLVMValueRef xoff = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, e0, bn_gen_c64(g, p * k->lanes), ""), bn_gen_c64(g, 4), "");
        for (int i = 0; i < tt; i++) {
          LLVMValueRef xv = bn_gen_load(g, vf, xrow[i], xoff);
          LLVMValueRef args[3] = {wv, xv, LLVMBuildLoad2(g->b, vf, acc[i][v % U], "")};
          LLVMBuildStore(g->b, bn_gen_call(g, "llvm.fma", &vf, 1, args, 3), acc[i][v % U]);
        }
      }
    }
    bn_gen_for_end(g, &lb);
  }
  for (int i = 0; i < tt; i++) {
    LLVMValueRef a4[4], lane[1];
    for (int u = 0; u < U; u++) a4[u] = LLVMBuildLoad2(g->b, vf, acc[i][u], "");
    LLVMValueRef v = LLVMBuildFAdd(g->b, LLVMBuildFAdd(g->b, a4[0], a4[1], ""), LLVMBuildFAdd(g->b, a4[2], a4[3], ""), "");
    int at;
    lane[0] = bn_gen_lane_sums(g, &v, 1, &at);
    LLVMValueRef sum = LLVMBuildExtractElement(g->b, lane[0], LLVMConstInt(g->i32, (unsigned)at, 0), "");
    LLVMValueRef tok = LLVMBuildAdd(g->b, t, bn_gen_c64(g, i), "");
    LLVMValueRef off = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, tok, bn_gen_c64(g, g->N), ""), n, ""),
                                    bn_gen_c64(g, 4), "");
    bn_gen_store(g, sum, g->arg[Y], off);
  }
}

void bn_gen_matmul_f(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t N, bn_dtype wtype,
                     bn_isa isa) {
  int lanes = isa == BN_ISA_AVX512_VNNI ? 16 : 8;
  int64_t elems = bn_gen_matmul_f_block(wtype, isa);
  mf k = {wtype, lanes, elems, bn_gen_block_bytes(wtype, lanes), NULL};
  bn_gen g = {.ctx = &k};
  bn_gen_begin(&g, c, m, name, 3, 3, isa, K, N);
  k.vf = LLVMVectorType(g.f32, (unsigned)lanes);
  /* 4 x tt chains; rows in blocks of 64 KiB with the token tiles outside them, so a tile's x stays in L1 across a
   * block's rows and the block in L2 across the tiles (rows outside read every token's x from L2 for each row) */
  int64_t block = 65536 / (K / elems * k.bytes);
  bn_gen_rows_tokens(&g, g.arg[N0], g.arg[N1], g.arg[T_], 1, lanes == 16 ? 4 : 2, block > 1 ? (int)block : 0, tile);
  bn_gen_end(&g);
}
