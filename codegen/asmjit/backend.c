/* The asmjit backend: x86 kernels emitted instruction by instruction through the C shim
 * (shim/shim.h), every shape a constant, for AVX-512 (VNNI) or AVX2. The lookup-table matmul is not
 * emitted: under auto LLVM builds it, under asmjit its nodes run the reference kernels. */
#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ir/clock.h"
#include "../backend.h"
#include "emit.h"

typedef struct {
  bn_kkey key;
  void *fn;
} emitted;

typedef struct {
  bn_asm_rt *rt;
  int avx512, vnni;
  bn_asmjit_tuning tune; /* tuning's */
  uint8_t t1_lut[512];    /* tune.t1_lut's tables, which the kernels read */
  emitted *done; /* every kernel emitted, by key: a key seen again reuses its code */
  int n_done, cap_done;
  bn_codegen_counts counts;
} asmjit_be;
/* Whole rows of unrolled copies stay small below this many floats a row. */
enum { MAX_ROW = 1 << 16 };

static int be_supports(void *self, const bn_kkey *key) {
  asmjit_be *b = self;
  int lanes = b->avx512 ? 16 : 8; /* float lanes of a vector */
  switch (key->family) {
  case BN_K_SLICE: return key->k > 0 && key->n > 0 && key->variant >= 0 && key->variant + key->n <= key->k && key->n <= MAX_ROW &&
                          key->k * 4 < (1LL << 31);
  case BN_K_EMBED:
    return (key->variant == BN_DT_F32 || key->variant == BN_DT_F16 || key->variant == BN_DT_BF16) && key->k > 0 &&
           key->k <= MAX_ROW;
  case BN_K_MATMUL: /* AVX-512 VNNI or AVX2; a prologue of RMSNorm + quantize, or of a gate first */
    return (b->vnni || !b->avx512) && key->pro >= 0 && key->pro <= 1 + BN_NQ_GATE_SILU && key->k > 0 && key->k % 256 == 0 &&
           key->k <= MAX_ROW && key->n > 0 && key->variant >= BN_MM_ACC && key->variant <= BN_MM_DQ_ADD &&
           key->n * key->k / 4 < (1LL << 31);
  case BN_K_MATMUL_G: { /* TG2 or TG2H, TP2's shapes */
    bn_kkey packed = *key;
    packed.family = BN_K_MATMUL;
    return (key->cache == BN_DT_TG2 || key->cache == BN_DT_TG2H) && be_supports(self, &packed);
  }
  case BN_K_MATMUL_T1: { /* K bounds the decode chains (3 x K x 255 x 128 < 2^31) and the stack used; AVX2 whole blocks */
    bn_kkey packed = *key;
    packed.family = BN_K_MATMUL;
    return (b->avx512 || key->n % 4 == 0) && key->k <= 16384 && be_supports(self, &packed);
  }
  case BN_K_NORM_QUANT: /* RMSNorm + quantize, RMSNorm alone, a gate first, a quantize alone (or after a gate) */
    return key->variant >= BN_NQ_PLAIN && key->variant <= BN_NQ_GATE_SILU_Q &&
           key->k > 0 && key->k % (key->variant == BN_NQ_RMSNORM ? 16 : 64) == 0 && key->k <= MAX_ROW &&
           (!key->n || (key->variant == BN_NQ_RMSNORM && key->n > 0 && key->n % 16 == 0 && key->k % key->n == 0));
  case BN_K_ROPE: /* half a head a whole number of vectors */
    return key->k > 0 && key->k % (2 * lanes) == 0 && key->k <= 4096 && key->n > 0 && key->n < 65536;
  case BN_K_MATMUL_F: { /* rows of whole vectors (F32, F16, BF16) or blocks (Q8_0, Q4_0, Q6_K) */
    int v = key->variant, block = v == BN_DT_F32 || v == BN_DT_F16 || v == BN_DT_BF16 ? lanes : v == BN_DT_Q8_0 || v == BN_DT_Q4_0 ? 32
                                                                        : v == BN_DT_Q6_K                  ? 256
                                                                                                           : 0;
    return block && key->k > 0 && key->k % block == 0 && key->k <= MAX_ROW && key->n > 0 && key->n * key->k * 4 < (1LL << 40);
  }
  case BN_K_ATTENTION: /* heads of whole vectors up to 256 floats; caches of F32 or F16 */
    return key->k > 0 && key->k % lanes == 0 && key->k <= 256 && key->n > 0 && key->variant > 0 && key->n % key->variant == 0 &&
           (key->cache == BN_DT_F32 || key->cache == BN_DT_F16);
  case BN_K_PEAK: return b->vnni || !b->avx512; /* the ISA's dot product */
  case BN_K_MATMUL_LUT:
  case BN_K_COUNT: return 0; /* not emitted: LLVM's kernel (auto) or the reference's */
  }
  return 0;
}

static void *emit(asmjit_be *b, const bn_kkey *key, char **listing, char *msg, size_t cap) {
  bn_asm *a = bn_asm_new(b->rt, listing != NULL);
  if (!a) return snprintf(msg, cap, "asmjit: out of memory"), NULL;
  switch (key->family) { /* what be_supports says yes to */
  case BN_K_MATMUL:
  case BN_K_MATMUL_T1:
  case BN_K_MATMUL_G:
    bn_asmjit_matmul(a, b->avx512, &b->tune, key->family == BN_K_MATMUL_T1 ? BN_DT_TP1 : key->family == BN_K_MATMUL_G ? (bn_dtype)key->cache : BN_DT_TP2, key->k, key->n, key->variant, key->pro, key->eps);
    break;
  case BN_K_NORM_QUANT: bn_asmjit_norm_quant(a, b->avx512, key->k, key->n, key->variant, key->eps); break;
  case BN_K_SLICE: bn_asmjit_rows(a, b->avx512, 0, key->k, key->n, key->variant, BN_DT_F32); break;
  case BN_K_EMBED: bn_asmjit_rows(a, b->avx512, 1, key->k, key->k, 0, (bn_dtype)key->variant); break;
  case BN_K_ROPE: bn_asmjit_rope(a, b->avx512, key->k, key->n); break;
  case BN_K_MATMUL_F: bn_asmjit_matmul_f(a, b->avx512, key->k, key->n, (bn_dtype)key->variant); break;
  case BN_K_ATTENTION: bn_asmjit_attention(a, b->avx512, key->k, key->n, key->variant, key->cache == BN_DT_F16); break;
  case BN_K_PEAK: bn_asmjit_peak(a, b->avx512); break;
  case BN_K_MATMUL_LUT:
  case BN_K_COUNT: bn_asm_free(a); return snprintf(msg, cap, "asmjit: no emitter for this family"), NULL;
  }
  void *fn = bn_asm_finish(a, msg, cap);
  if (listing) *listing = strdup(bn_asm_listing(a));
  bn_asm_free(a);
  return fn;
}

/* The matmul emitter's choices for this CPU: on AMD's family 1Ah (Zen 5: two 512-bit vpdpbusd a cycle) decode
 * prefetches 12 KiB ahead and prompts keep the 4 x 4 tiles at every K; elsewhere, and for a portable target,
 * 6 KiB and rows in the lanes at K <= 2048 (bench/README.md has both CPUs' pairings). With AVX-512 VBMI
 * (native only: x86-64-v4 lacks it) prompts unpack TP1 by the tables it fills into lut. */
static bn_asmjit_tuning tuning(int native, int avx512, uint8_t lut[512]) {
  unsigned a, b, c, d;
  int zen5 = native && __get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541 /* "Auth" */ &&
             __get_cpuid(1, &a, &b, &c, &d) && (a >> 8 & 0xf) + (a >> 20 & 0xff) >= 0x1a;
  bn_asmjit_tuning t = zen5 ? (bn_asmjit_tuning){.ahead = 12288, .rows_in_lanes = 0} : (bn_asmjit_tuning){.ahead = 6144, .rows_in_lanes = 1};
  if (native && avx512 && __builtin_cpu_supports("avx512vbmi")) {
    bn_asmjit_t1_tables(lut);
    t.t1_lut = lut;
  }
  return t;
}

static bn_status be_open(const bn_backend_opts *o, void **self, bn_error *err) {
  int host512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  if (!__builtin_cpu_supports("avx2")) return bn_fail(err, BN_E_UNSUPPORTED, "asmjit: this CPU has no AVX2");
  if (o->isa && strcmp(o->isa, "avx2") && strcmp(o->isa, "avx512"))
    return bn_fail(err, BN_E_INVALID, "asmjit: instruction set '%s' is unknown (avx2, avx512)", o->isa);
  if (o->isa && !strcmp(o->isa, "avx512") && !host512)
    return bn_fail(err, BN_E_UNSUPPORTED, "asmjit: this CPU has no AVX-512");
  const char *isa = o->isa; /* a portable target names the instruction set: x86-64-v3 AVX2, x86-64-v4 AVX-512 */
  if (o->target && strcmp(o->target, "native")) {
    if (strcmp(o->target, "x86-64-v3") && strcmp(o->target, "x86-64-v4"))
      return bn_fail(err, BN_E_UNSUPPORTED, "asmjit: target '%s' (native, x86-64-v3, x86-64-v4)", o->target);
    if (!strcmp(o->target, "x86-64-v4") && !host512) return bn_fail(err, BN_E_UNSUPPORTED, "asmjit: this CPU has no AVX-512");
    isa = !strcmp(o->target, "x86-64-v3") ? "avx2" : "avx512";
  }
  asmjit_be *b = calloc(1, sizeof *b);
  if (!b || !(b->rt = bn_asm_rt_new())) return free(b), bn_fail(err, BN_E_NOMEM, "out of memory");
  b->avx512 = isa ? !strcmp(isa, "avx512") : host512;
  b->vnni = b->avx512 && __builtin_cpu_supports("avx512vnni");
  b->tune = tuning(!o->target || !strcmp(o->target, "native"), b->avx512, b->t1_lut);
  *self = b;
  return BN_OK;
}

static bn_status be_prepare(void *self, const bn_kkey *keys, int n, void **fns, bn_error *err) {
  asmjit_be *b = self;
  double t0 = bn_clock_s();
  for (int i = 0; i < n; i++) {
    int k = 0;
    while (k < b->n_done && !bn_kkey_eq(&b->done[k].key, &keys[i])) k++;
    if (k < b->n_done) {
      fns[i] = b->done[k].fn;
      continue;
    }
    char msg[200];
    if (!(fns[i] = emit(b, &keys[i], NULL, msg, sizeof msg))) return bn_fail(err, BN_E_UNSUPPORTED, "%s", msg);
    b->counts.built++;
    if (b->n_done == b->cap_done) {
      int cap = b->cap_done ? 2 * b->cap_done : 32;
      emitted *d = realloc(b->done, (size_t)cap * sizeof *d);
      if (!d) return bn_fail(err, BN_E_NOMEM, "out of memory");
      b->done = d, b->cap_done = cap;
    }
    b->done[b->n_done++] = (emitted){keys[i], fns[i]};
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
  free(b->done), free(b);
}

const bn_backend bn_backend_asmjit = {
    .name = "asmjit",
    .about = "x86 kernels (AVX-512 VNNI, AVX2) emitted through asmjit in milliseconds",
    .targets = "native x86-64-v3 x86-64-v4",
    .open = be_open,
    .supports = be_supports,
    .prepare = be_prepare,
    .text = be_text,
    .emits = "asm",
    .info = be_info,
    .counts = be_counts,
    .close = be_close,
};
