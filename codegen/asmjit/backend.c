/* The asmjit backend: x86 kernels emitted instruction by instruction through the C shim
 * (shim/shim.h), every shape a constant, for AVX-512 or AVX2. Families it has no emitter for
 * yet are not supported: their nodes run the reference kernels (docs/asmjit.md says which). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ir/clock.h"
#include "../backend.h"
#include "shim/shim.h"

enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11 };

typedef struct {
  bn_asm_rt *rt;
  int avx512;
  bn_codegen_counts counts;
  int ids[8]; /* instruction ids, looked up once */
} asmjit_be;
enum { I_MOV, I_IMUL, I_LEA, I_MOVSXD, I_VMOVUPS, I_VCVTPH2PS, I_KMOVW, I_VZEROUPPER };
static const char *const INSTS[] = {"mov", "imul", "lea", "movsxd", "vmovups", "vcvtph2ps", "kmovw", "vzeroupper"};

static const bn_asm_op NONE = {0};

static void ins(bn_asm *a, const asmjit_be *b, int i, bn_asm_op o0, bn_asm_op o1, bn_asm_op o2) {
  bn_asm_emit(a, b->ids[i], o0, o1, o2, NONE);
}
static void op(bn_asm *a, const char *name, bn_asm_op o0, bn_asm_op o1, bn_asm_op o2) {
  bn_asm_emit(a, bn_asm_inst(name), o0, o1, o2, NONE);
}

/* Copies n floats from [src] to [dst] (f16: n halves at src, widened), vectors of `lanes`, the
 * remainder under a mask (AVX-512) or one at a time (AVX2). Uses vector 0, mask 1, rax. */
static void copy_row(bn_asm *a, const asmjit_be *b, int src, int dst, int64_t n, int f16) {
  int lanes = b->avx512 ? 16 : 8, vb = lanes * 4, ib = f16 ? 2 : 4;
  int64_t full = n / lanes * lanes;
  for (int64_t c = 0; c < full; c += lanes) {
    if (f16) ins(a, b, I_VCVTPH2PS, bn_vec(0, vb), bn_mem(src, (int32_t)(c * ib), vb / 2), NONE);
    else ins(a, b, I_VMOVUPS, bn_vec(0, vb), bn_mem(src, (int32_t)(c * ib), vb), NONE);
    ins(a, b, I_VMOVUPS, bn_mem(dst, (int32_t)(c * 4), vb), bn_vec(0, vb), NONE);
  }
  int64_t rem = n - full;
  if (!rem) return;
  if (b->avx512) {
    ins(a, b, I_MOV, bn_gpd(RAX), bn_imm((1 << rem) - 1), NONE);
    ins(a, b, I_KMOVW, bn_kreg(1), bn_gpd(RAX), NONE);
    bn_asm_mask(a, 1, 1);
    if (f16) ins(a, b, I_VCVTPH2PS, bn_vec(0, 64), bn_mem(src, (int32_t)(full * ib), 32), NONE);
    else ins(a, b, I_VMOVUPS, bn_vec(0, 64), bn_mem(src, (int32_t)(full * ib), 64), NONE);
    bn_asm_mask(a, 1, 0);
    ins(a, b, I_VMOVUPS, bn_mem(dst, (int32_t)(full * 4), 64), bn_vec(0, 64), NONE);
    return;
  }
  for (int64_t c = full; c < n; c++) {
    if (f16) {
      op(a, "movzx", bn_gpd(RAX), bn_mem(src, (int32_t)(c * 2), 2), NONE);
      op(a, "vmovd", bn_vec(0, 16), bn_gpd(RAX), NONE);
      ins(a, b, I_VCVTPH2PS, bn_vec(0, 16), bn_vec(0, 16), NONE);
    } else op(a, "vmovss", bn_vec(0, 16), bn_mem(src, (int32_t)(c * 4), 4), NONE);
    op(a, "vmovss", bn_mem(dst, (int32_t)(c * 4), 4), bn_vec(0, 16), NONE);
  }
}

/* A bn_rows_kernel (in: rdi, w: rsi, y: rdx, T: rcx, t0: r8, t1: r9): for rows t0..t1, r10 the
 * source row and r11 the destination row of n floats, then copy_row. embed: the source row is
 * row in[t] of the table w (K wide, f16 or f32); else columns off.. of row t of in (K wide). */
static void rows_kernel(bn_asm *a, const asmjit_be *b, int embed, int64_t K, int64_t n, int64_t off, int f16) {
  int loop = bn_asm_new_label(a), done = bn_asm_new_label(a);
  op(a, "cmp", bn_gp(R8), bn_gp(R9), NONE);
  op(a, "jge", bn_label(done), NONE, NONE);
  bn_asm_bind(a, loop);
  if (embed) {
    ins(a, b, I_MOVSXD, bn_gp(RAX), bn_memx(RDI, R8, 4, 0, 4), NONE); /* the token id */
    ins(a, b, I_IMUL, bn_gp(RAX), bn_gp(RAX), bn_imm(K * (f16 ? 2 : 4)));
    ins(a, b, I_LEA, bn_gp(R10), bn_memx(RSI, RAX, 1, 0, 0), NONE);
  } else {
    ins(a, b, I_IMUL, bn_gp(RAX), bn_gp(R8), bn_imm(K * 4));
    ins(a, b, I_LEA, bn_gp(R10), bn_memx(RDI, RAX, 1, (int32_t)(off * 4), 0), NONE);
  }
  ins(a, b, I_IMUL, bn_gp(RAX), bn_gp(R8), bn_imm(n * 4));
  ins(a, b, I_LEA, bn_gp(R11), bn_memx(RDX, RAX, 1, 0, 0), NONE);
  copy_row(a, b, R10, R11, n, f16);
  op(a, "inc", bn_gp(R8), NONE, NONE);
  op(a, "cmp", bn_gp(R8), bn_gp(R9), NONE);
  op(a, "jl", bn_label(loop), NONE, NONE);
  bn_asm_bind(a, done);
  ins(a, b, I_VZEROUPPER, NONE, NONE, NONE);
  op(a, "ret", NONE, NONE, NONE);
}

/* Whole rows of unrolled copies stay small below this many floats a row. */
enum { MAX_ROW = 1 << 16 };

static int be_supports(void *self, const bn_kkey *key) {
  switch (key->family) {
  case BN_K_SLICE: return key->k > 0 && key->n > 0 && key->variant >= 0 && key->variant + key->n <= key->k && key->n <= MAX_ROW &&
                          key->k * 4 < (1LL << 31);
  case BN_K_EMBED:
    return (key->variant == BN_DT_F32 || key->variant == BN_DT_F16) && key->k > 0 && key->k <= MAX_ROW;
  case BN_K_MATMUL:
  case BN_K_MATMUL_F:
  case BN_K_PEAK:
  case BN_K_NORM_QUANT:
  case BN_K_ATTENTION:
  case BN_K_ROPE:
  case BN_K_MATMUL_LUT:
  case BN_K_COUNT: return 0; /* not emitted yet: the reference kernels run them */
  }
  return 0;
}

static void *emit(asmjit_be *b, const bn_kkey *key, char **listing, char *msg, size_t cap) {
  bn_asm *a = bn_asm_new(b->rt, listing != NULL);
  if (!a) return snprintf(msg, cap, "asmjit: out of memory"), NULL;
  if (key->family == BN_K_SLICE) rows_kernel(a, b, 0, key->k, key->n, key->variant, 0);
  else rows_kernel(a, b, 1, key->k, key->k, 0, key->variant == BN_DT_F16);
  void *fn = bn_asm_finish(a, msg, cap);
  if (listing) *listing = strdup(bn_asm_listing(a));
  bn_asm_free(a);
  return fn;
}

static bn_status be_open(const bn_backend_opts *o, void **self, bn_error *err) {
  int host512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  if (!__builtin_cpu_supports("avx2")) return bn_fail(err, BN_E_UNSUPPORTED, "asmjit: this CPU has no AVX2");
  if (o->isa && strcmp(o->isa, "avx2") && strcmp(o->isa, "avx512"))
    return bn_fail(err, BN_E_INVALID, "asmjit: instruction set '%s' is unknown (avx2, avx512)", o->isa);
  if (o->isa && !strcmp(o->isa, "avx512") && !host512)
    return bn_fail(err, BN_E_UNSUPPORTED, "asmjit: this CPU has no AVX-512");
  if (o->target && strcmp(o->target, "native"))
    return bn_fail(err, BN_E_UNSUPPORTED, "asmjit: target '%s' (the asmjit backend emits for this CPU: native)", o->target);
  asmjit_be *b = calloc(1, sizeof *b);
  if (!b || !(b->rt = bn_asm_rt_new())) return free(b), bn_fail(err, BN_E_NOMEM, "out of memory");
  b->avx512 = o->isa ? !strcmp(o->isa, "avx512") : host512;
  for (int i = 0; i < (int)(sizeof INSTS / sizeof *INSTS); i++) b->ids[i] = bn_asm_inst(INSTS[i]);
  *self = b;
  return BN_OK;
}

static bn_status be_prepare(void *self, const bn_kkey *keys, int n, void **fns, bn_error *err) {
  asmjit_be *b = self;
  double t0 = bn_clock_s();
  for (int i = 0; i < n; i++) {
    char msg[200];
    if (!(fns[i] = emit(b, &keys[i], NULL, msg, sizeof msg))) return bn_fail(err, BN_E_UNSUPPORTED, "%s", msg);
    b->counts.built++;
  }
  b->counts.seconds += bn_clock_s() - t0;
  return BN_OK;
}

static char *be_text(void *self, const bn_kkey *key, const char *emit_as, bn_error *err) {
  char *text = NULL, msg[200];
  if (strcmp(emit_as, "asm")) return bn_fail(err, BN_E_INVALID, "asmjit: --emit=%s (asm)", emit_as), NULL;
  if (!emit(self, key, &text, msg, sizeof msg)) bn_fail(err, BN_E_UNSUPPORTED, "%s", msg);
  return text;
}

static bn_codegen_info be_info(void *self) {
  asmjit_be *b = self;
  return (bn_codegen_info){.isa = b->avx512 ? "avx512" : "avx2", .cpu = "host", .features = "", .lanes = b->avx512 ? 16 : 8};
}

static bn_codegen_counts be_counts(void *self) { return ((asmjit_be *)self)->counts; }

static void be_close(void *self) {
  asmjit_be *b = self;
  bn_asm_rt_free(b->rt);
  free(b);
}

const bn_backend bn_backend_asmjit = {
    .name = "asmjit",
    .about = "x86 kernels emitted through asmjit (in progress: slices and embedding rows; the rest on the reference)",
    .targets = "native",
    .open = be_open,
    .supports = be_supports,
    .prepare = be_prepare,
    .text = be_text,
    .emits = "asm",
    .info = be_info,
    .counts = be_counts,
    .close = be_close,
};
