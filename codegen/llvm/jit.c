/* ORC LLJIT set-up, the kernel table (one kernel per unique key), where a
 * kernel's object code comes from (the plan's AOT objects, the on-disk
 * cache, or O3 + codegen now), and the ISA choice. */
#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "../../ir/clock.h"
#include "gen.h"
#include "../kcache.h"
#include "llvm.h"

#ifndef BN_GEN_STAMP
#define BN_GEN_STAMP "dev" /* set by CMake: a hash of the generators */
#endif

typedef bn_kkey kkey;

typedef struct {
  kkey key;
  void *fn;
} entry;

struct bn_llvm {
  bn_isa isa;
  LLVMOrcLLJITRef jit;
  LLVMTargetMachineRef tm;
  char cpu[64], *features; /* what the target machine generates for */
  entry *cache;
  int n_cache, cap_cache;
  const bn_kobj *aot;
  int n_aot;
  const bn_kcache *kc; /* the disk cache, or NULL */
  bn_codegen_counts counts;
  pthread_mutex_t lock;
};

/* Is "+name" (n bytes) an item of the comma-separated list? (whole names: +xsave is not +xsavec) */
static int list_has(const char *list, const char *name, size_t n) {
  for (const char *p = list; *p;) {
    size_t len = strcspn(p, ",");
    if (len == n + 1 && p[0] == '+' && !memcmp(p + 1, name, n)) return 1;
    p += len + (p[len] == ',');
  }
  return 0;
}

static int cpu_has(const char *feature) {
  char *host = LLVMGetHostCPUFeatures();
  int has = list_has(host, feature, strlen(feature));
  LLVMDisposeMessage(host);
  return has;
}

bn_isa bn_llvm_host_isa(void) {
  return cpu_has("avx512vnni") && cpu_has("avx512bw") ? BN_ISA_AVX512_VNNI : BN_ISA_AVX2;
}

int bn_llvm_target_isa(const char *target, bn_isa *isa) {
  if (!strcmp(target, "native") || !strcmp(target, "ref")) *isa = bn_llvm_host_isa();
  else if (!strcmp(target, "x86-64-v3")) *isa = BN_ISA_AVX2;
  else if (!strcmp(target, "x86-64-v4")) *isa = BN_ISA_AVX512_VNNI;
  else return -1;
  return 0;
}

const char *bn_isa_name(bn_isa isa) { return isa == BN_ISA_AVX512_VNNI ? "avx512-vnni" : "avx2"; }

static bn_status llvm_fail(bn_error *err, LLVMErrorRef e, const char *what) {
  char *msg = LLVMGetErrorMessage(e);
  for (char *c = msg; *c; c++) /* one line, whatever LLVM says */
    if (*c == '\n' || *c == '\r') *c = c[1] ? ';' : ' ';
  bn_fail(err, BN_E_UNSUPPORTED, "llvm: %s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
  return BN_E_UNSUPPORTED;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void init_llvm(void) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
}

/* A JIT whose target machine generates for cpu/features (NULL: this host). */
static bn_status create(bn_isa isa, const char *cpu, const char *features, bn_llvm **out, bn_error *err) {
  *out = NULL;
  pthread_once(&init_once, init_llvm);
  if (!cpu_has("avx2")) return bn_fail(err, BN_E_UNSUPPORTED, "llvm: this CPU has no AVX2");
  if (isa == BN_ISA_AVX512_VNNI && !(cpu_has("avx512vnni") && cpu_has("avx512bw")))
    return bn_fail(err, BN_E_UNSUPPORTED, "llvm: this CPU has no AVX-512 VNNI");
  bn_llvm *j = calloc(1, sizeof *j);
  if (!j) return bn_fail(err, BN_E_NOMEM, "out of memory");
  j->isa = isa;
  pthread_mutex_init(&j->lock, NULL);
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&j->jit, NULL);
  if (e) {
    free(j);
    return llvm_fail(err, e, "creating the JIT");
  }
  char *host_cpu = LLVMGetHostCPUName(), *host_feat = LLVMGetHostCPUFeatures();
  snprintf(j->cpu, sizeof j->cpu, "%s", cpu ? cpu : host_cpu);
  j->features = strdup(features ? features : host_feat);
  LLVMDisposeMessage(host_cpu), LLVMDisposeMessage(host_feat);
  char *triple = LLVMGetDefaultTargetTriple(), *msg = NULL;
  LLVMTargetRef target;
  if (j->features && !LLVMGetTargetFromTriple(triple, &target, &msg))
    j->tm = LLVMCreateTargetMachine(target, triple, j->cpu, j->features, LLVMCodeGenLevelAggressive, LLVMRelocPIC,
                                    LLVMCodeModelSmall);
  LLVMDisposeMessage(triple);
  if (!j->tm) {
    bn_fail(err, BN_E_UNSUPPORTED, "llvm: no target machine for this host: %s", msg ? msg : "?");
    LLVMDisposeMessage(msg);
    bn_llvm_free(j);
    return BN_E_UNSUPPORTED;
  }
  *out = j;
  return BN_OK;
}

bn_status bn_llvm_create(bn_isa isa, bn_llvm **out, bn_error *err) { return create(isa, NULL, NULL, out, err); }

/* The generic CPUs of the two portable targets; native is this host's CPU and features. */
static const char V3_FEATURES[] = "+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+movbe";
static const char V4_FEATURES[] = "+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+movbe,+avx512f,+avx512bw,+avx512dq,+avx512vl,+avx512cd,+avx512vnni";

bn_status bn_llvm_create_forced(const char *target, int force, bn_llvm **out, bn_error *err) {
  bn_isa isa;
  if (bn_llvm_target_isa(target, &isa))
    return bn_fail(err, BN_E_UNSUPPORTED, "target '%s' is unknown (native, x86-64-v3, x86-64-v4)", target);
  if (!strcmp(target, "x86-64-v3")) return create(isa, "x86-64-v3", V3_FEATURES, out, err);
  if (!strcmp(target, "x86-64-v4")) return create(isa, "x86-64-v4", V4_FEATURES, out, err);
  return create(force ? (bn_isa)(force - 1) : isa, NULL, NULL, out, err);
}

bn_status bn_llvm_create_for(const char *target, bn_llvm **out, bn_error *err) {
  return bn_llvm_create_forced(target, 0, out, err);
}

bn_isa bn_llvm_isa(const bn_llvm *j) { return j->isa; }

const char *bn_llvm_cpu(const bn_llvm *j, const char **features) {
  if (features) *features = j->features;
  return j->cpu;
}

int bn_llvm_host_has(const char *features, char *missing, size_t cap) {
  char *host = LLVMGetHostCPUFeatures(); /* once, not once per feature */
  int ok = 1;
  for (const char *p = features; *p && ok;) {
    size_t len = strcspn(p, ",");
    if (len > 1 && p[0] == '+' && !list_has(host, p + 1, len - 1)) {
      ok = 0;
      if (missing) snprintf(missing, cap, "%.*s", (int)(len - 1), p + 1);
    }
    p += len + (p[len] == ',');
  }
  LLVMDisposeMessage(host);
  return ok;
}

void bn_llvm_use_cache(bn_llvm *j, const bn_kcache *c) { j->kc = c; }

void bn_llvm_provide(bn_llvm *j, const bn_objcode *aot) { j->aot = aot->objs, j->n_aot = aot->n; }

int bn_llvm_code_current(const bn_objcode *aot) {
  static const char stamp[] = "_g" BN_GEN_STAMP;
  for (int i = 0; i < aot->n; i++) {
    size_t n = strlen(aot->objs[i].name), s = sizeof stamp - 1;
    if (n >= s && !strcmp(aot->objs[i].name + n - s, stamp)) return 1;
  }
  return aot->n == 0;
}

void bn_llvm_free(bn_llvm *j) {
  if (!j) return;
  if (j->jit) LLVMOrcDisposeLLJIT(j->jit);
  if (j->tm) LLVMDisposeTargetMachine(j->tm);
  free(j->features);
  pthread_mutex_destroy(&j->lock);
  free(j->cache);
  free(j);
}

/* The shapes each family's generator can build: an error naming the constraint, else BN_OK. */
static bn_status check_key(const bn_llvm *j, const kkey *key, bn_error *err) {
  int lanes = j->isa == BN_ISA_AVX512_VNNI ? 16 : 8;
  long long K = key->k, N = key->n;
  int v = key->variant;
  if ((unsigned)key->family >= BN_K_COUNT) return bn_fail(err, BN_E_INVALID, "llvm: kernel family %d", (int)key->family);
  switch (key->family) {
  case BN_K_MATMUL:
  case BN_K_MATMUL_T1:
  case BN_K_MATMUL_G:
    if (key->family == BN_K_MATMUL_G && key->cache != BN_DT_TG2 && key->cache != BN_DT_TG2H)
      return bn_fail(err, BN_E_INVALID, "llvm: group-scaled matmul over type %d (TG2 or TG2H)", (int)key->cache);
    if (K <= 0 || K % 256 || N <= 0)
      return bn_fail(err, BN_E_INVALID, "llvm: matmul K=%lld N=%lld (K: whole 256-groups)", K, N);
    if (key->pro < 0 || key->pro > BN_NQ_GATE_SILU + 1)
      return bn_fail(err, BN_E_INVALID, "llvm: matmul prologue %d (0 none, 1..3 norm, gate relu2, gate silu)", key->pro);
    break;
  case BN_K_MATMUL_LUT:
    if (K <= 0 || K % 256 || N <= 0 || N % 16)
      return bn_fail(err, BN_E_INVALID, "llvm: lookup-table matmul K=%lld N=%lld (K: whole 256-groups, N: 16-row blocks)", K, N);
    if (key->pro < 0 || key->pro > BN_NQ_GATE_SILU + 1)
      return bn_fail(err, BN_E_INVALID, "llvm: matmul prologue %d (0 none, 1..3 norm, gate relu2, gate silu)", key->pro);
    break;
  case BN_K_MATMUL_F:
  case BN_K_EMBED: /* rows of K in a weight type decoded block by block */
    if (K <= 0 || N <= 0 || v < 0 || v >= BN_DT_COUNT || !bn_gen_matmul_f_block((bn_dtype)v, j->isa) ||
        K % bn_gen_matmul_f_block((bn_dtype)v, j->isa))
      return bn_fail(err, BN_E_UNSUPPORTED, "llvm: %s K=%lld type %s", key->family == BN_K_EMBED ? "embedding" : "float matmul",
                     K, v >= 0 && v < BN_DT_COUNT ? bn_dtype_table[v].name : "?");
    break;
  case BN_K_NORM_QUANT:
    if (K <= 0 || K % lanes || v < 0 || v > BN_NQ_GATE_SILU_Q ||
        (N && (v != BN_NQ_RMSNORM || N < 0 || N % lanes || K % N)))
      return bn_fail(err, BN_E_UNSUPPORTED, "llvm: norm-quantize K=%lld mode %d group %lld", K, v, N);
    break;
  case BN_K_SLICE:
    if (K <= 0 || N <= 0 || v < 0 || v + N > K)
      return bn_fail(err, BN_E_UNSUPPORTED, "llvm: slice of %lld columns from %d of %lld", N, v, K);
    break;
  case BN_K_ATTENTION: /* K: head_dim, N: heads, variant: KV heads */
    if (N <= 0 || v <= 0 || N % v || K % lanes || K / lanes > 32 || (key->cache != BN_DT_F32 && key->cache != BN_DT_F16))
      return bn_fail(err, BN_E_UNSUPPORTED, "llvm: attention heads %lld/%d head_dim %lld cache type %d", N, v, K,
                     (int)key->cache);
    break;
  case BN_K_ROPE: /* K: head_dim (lanes that divide half a head), N: heads */
    if (K <= 0 || N <= 0 || K % 16)
      return bn_fail(err, BN_E_UNSUPPORTED, "llvm: rope heads %lld head_dim %lld (a multiple of 16)", N, K);
    break;
  case BN_K_PEAK: break;
  case BN_K_COUNT: return bn_fail(err, BN_E_INVALID, "llvm: kernel family %d", (int)key->family);
  }
  return BN_OK;
}

int bn_llvm_supports(const bn_llvm *j, const kkey *key) { return check_key(j, key, NULL) == BN_OK; }

/* One emitter per kernel family (kernels.def): a family without one does not compile. */
typedef void emitter(LLVMContextRef c, LLVMModuleRef m, const char *name, const kkey *key, bn_isa isa);
static void emit_MATMUL(LLVMContextRef c, LLVMModuleRef m, const char *name, const kkey *key, bn_isa isa) {
  bn_gen_matmul(c, m, name, key->k, key->n, (bn_mm_mode)key->variant, key->pro, key->eps, BN_DT_TP2, isa);
}
static void emit_MATMUL_T1(LLVMContextRef c, LLVMModuleRef m, const char *name, const kkey *key, bn_isa isa) {
  bn_gen_matmul(c, m, name, key->k, key->n, (bn_mm_mode)key->variant, key->pro, key->eps, BN_DT_TP1, isa);
}
static void emit_MATMUL_G(LLVMContextRef c, LLVMModuleRef m, const char *name, const kkey *key, bn_isa isa) {
  bn_gen_matmul(c, m, name, key->k, key->n, (bn_mm_mode)key->variant, key->pro, key->eps, key->cache, isa);
}
static void emit_MATMUL_LUT(LLVMContextRef c, LLVMModuleRef m, const char *name, const kkey *key, bn_isa isa) {
  bn_gen_matmul_lut(c, m, name, key->k, key->n, (bn_mm_mode)key->variant, key->pro, key->eps, isa);
}
static void emit_MATMUL_F(LLVMContextRef c, LLVMModuleRef m, const char *name, const kkey *key, bn_isa isa) {
  bn_gen_matmul_f(c, m, name, key->k, key->n, (bn_dtype)key->variant, isa);
}
static void emit_PEAK(LLVMContextRef c, LLVMModuleRef m, const char *name, const kkey *key, bn_isa isa) {
  bn_gen_peak(c, m, name, isa);
}
static void emit_NORM_QUANT(LLVMContextRef c, LLVMModuleRef m, const char *name, const kkey *key, bn_isa isa) {
  bn_gen_norm_quant(c, m, name, key->k, key->n, key->variant, key->eps, isa);
}
static void emit_ATTENTION(LLVMContextRef c, LLVMModuleRef m, const char *name, const kkey *key, bn_isa isa) {
  bn_gen_attention(c, m, name, (int)key->n, key->variant, (int)key->k, key->cache, isa);
}
static void emit_ROPE(LLVMContextRef c, LLVMModuleRef m, const char *name, const kkey *key, bn_isa isa) {
  bn_gen_rope(c, m, name, (int)key->n, (int)key->k, isa);
}
static void emit_EMBED(LLVMContextRef c, LLVMModuleRef m, const char *name, const kkey *key, bn_isa isa) {
  bn_gen_embed(c, m, name, key->k, (bn_dtype)key->variant, isa);
}
static void emit_SLICE(LLVMContextRef c, LLVMModuleRef m, const char *name, const kkey *key, bn_isa isa) {
  bn_gen_slice(c, m, name, key->k, key->n, key->variant, isa);
}
static emitter *const emitters[BN_K_COUNT] = {
#define X(id, name, type, split, key, ref) [BN_K_##id] = emit_##id,
#include "../kernels.def"
#undef X
};

/* Generates the (unoptimized, verified) module of one kernel in ctx. */
static bn_status gen(bn_llvm *j, LLVMContextRef ctx, const kkey *key, const char *name, LLVMModuleRef *out,
                     bn_error *err) {
  bn_status st = check_key(j, key, err);
  if (st) return st;
  LLVMModuleRef m = LLVMModuleCreateWithNameInContext(name, ctx);
  LLVMSetTarget(m, LLVMOrcLLJITGetTripleString(j->jit));
  LLVMSetDataLayout(m, LLVMOrcLLJITGetDataLayoutStr(j->jit));
  emitters[key->family](ctx, m, name, key, j->isa);
  char *msg = NULL;
  if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
    bn_fail(err, BN_E_INVALID, "llvm: kernel %s does not verify: %.300s", name, msg);
    LLVMDisposeMessage(msg);
    LLVMDisposeModule(m);
    return BN_E_INVALID;
  }
  LLVMDisposeMessage(msg);
  *out = m;
  return BN_OK;
}

static bn_status optimize(bn_llvm *j, LLVMModuleRef m, bn_error *err) {
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(m, "default<O3>", j->tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  return e ? llvm_fail(err, e, "optimizing") : BN_OK;
}

static bn_status build(bn_llvm *j, LLVMContextRef ctx, const kkey *key, const char *name, LLVMModuleRef *out,
                       bn_error *err) {
  bn_status st = gen(j, ctx, key, name, out, err);
  if (!st && (st = optimize(j, *out, err))) LLVMDisposeModule(*out);
  return st;
}

/* The cache key: the kernel's IR before optimization, the target machine and the LLVM version. */
static uint64_t object_key(const bn_llvm *j, LLVMModuleRef m) {
  char *ir = LLVMPrintModuleToString(m);
  unsigned v[3];
  LLVMGetVersion(&v[0], &v[1], &v[2]);
  char tag[128];
  snprintf(tag, sizeof tag, "|bnc-kcache-1|O3|pic|llvm %u.%u.%u|%s|", v[0], v[1], v[2], j->cpu);
  XXH3_state_t *hs = XXH3_createState();
  XXH3_64bits_reset(hs);
  XXH3_64bits_update(hs, ir, strlen(ir));
  XXH3_64bits_update(hs, tag, strlen(tag));
  XXH3_64bits_update(hs, j->features, strlen(j->features));
  uint64_t h = XXH3_64bits_digest(hs);
  XXH3_freeState(hs);
  LLVMDisposeMessage(ir);
  return h;
}

/* The object code of key's kernel, malloc'd: from the disk cache, else
 * built (and stored there). Called with the lock held. */
static bn_status object_of(bn_llvm *j, const kkey *key, const char *name, void **data, size_t *size, uint64_t *cached,
                           bn_error *err) {
  if (cached) *cached = 0;
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef m;
  bn_status st = gen(j, ctx, key, name, &m, err);
  if (st) return LLVMContextDispose(ctx), st;
  uint64_t h = j->kc ? object_key(j, m) : 0;
  if (j->kc && (*data = bn_kcache_load(j->kc, h, size))) {
    j->counts.cached++;
    if (cached) *cached = h;
  } else if (!(st = optimize(j, m, err))) {
    LLVMMemoryBufferRef buf;
    char *msg = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(j->tm, m, LLVMObjectFile, &msg, &buf)) {
      st = bn_fail(err, BN_E_UNSUPPORTED, "llvm: code generation of %s: %s", name, msg ? msg : "?");
    } else {
      *size = LLVMGetBufferSize(buf);
      if (!(*data = malloc(*size))) st = bn_fail(err, BN_E_NOMEM, "out of memory");
      else memcpy(*data, LLVMGetBufferStart(buf), *size);
      LLVMDisposeMemoryBuffer(buf);
      if (!st && j->kc && !bn_kcache_store(j->kc, h, *data, *size)) j->counts.stored++;
      j->counts.built++;
    }
    LLVMDisposeMessage(msg);
  }
  LLVMDisposeModule(m);
  LLVMContextDispose(ctx);
  return st;
}

static bn_status add_object(bn_llvm *j, const void *data, size_t size, const char *name, void **fn, bn_error *err) {
  LLVMMemoryBufferRef mb = LLVMCreateMemoryBufferWithMemoryRangeCopy(data, size, name);
  LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), mb);
  LLVMOrcExecutorAddress addr = 0;
  if (!e) e = LLVMOrcLLJITLookup(j->jit, &addr, name);
  if (e) return llvm_fail(err, e, "loading the object code");
  *fn = (void *)(uintptr_t)addr;
  return BN_OK;
}

bn_status bn_llvm_object(bn_llvm *j, const kkey *key, void **data, size_t *size, bn_error *err) {
  char name[128];
  bn_llvm_key_name(key, j->isa, name, sizeof name);
  pthread_mutex_lock(&j->lock);
  double t0 = bn_clock_s();
  bn_status st = object_of(j, key, name, data, size, NULL, err);
  j->counts.seconds += bn_clock_s() - t0;
  pthread_mutex_unlock(&j->lock);
  return st;
}

/* The symbol: family, ISA, variant and shape, so that two keys never share a name
 * (a variant outside its family's names, as a key being refused has, prints as a number). */
void bn_llvm_key_name(const kkey *key, bn_isa isa, char *buf, size_t cap) {
  static const char *modes[] = {"acc", "dq", "dqadd"}, *nq_modes[] = {"norm", "gate_relu2", "gate_silu", "rmsnorm", "quant", "gate_relu2_q", "gate_silu_q"};
  int f = key->family, v = key->variant;
  const char *name = NULL;
  if (bn_kfamily_tmatmul(f)) name = v >= 0 && v < 3 ? modes[v] : NULL;
  else if (f == BN_K_MATMUL_F || f == BN_K_EMBED) name = v >= 0 && v < BN_DT_COUNT ? bn_dtype_table[v].name : NULL;
  else if (f == BN_K_NORM_QUANT) name = v >= 0 && v <= BN_NQ_GATE_SILU_Q ? nq_modes[v] : NULL;
  else if (f == BN_K_ROPE) name = "neox";
  else if (f != BN_K_ATTENTION && f != BN_K_SLICE) name = "";
  char variant[32];
  if (f == BN_K_ATTENTION) snprintf(variant, sizeof variant, "gqa%d%s", v, key->cache == BN_DT_F16 ? "_f16" : ""); /* KV heads */
  else if (f == BN_K_SLICE) snprintf(variant, sizeof variant, "o%d", v); /* the first column */
  else if (name && key->pro > 0 && key->pro <= BN_NQ_GATE_SILU + 1 && bn_kfamily_tmatmul(f))
    snprintf(variant, sizeof variant, "%s_p%s", name, nq_modes[key->pro - 1]); /* with a prologue */
  else if (name) snprintf(variant, sizeof variant, "%s", name);
  else snprintf(variant, sizeof variant, "v%d", v);
  char family[16];
  snprintf(family, sizeof family, "%s%s", (unsigned)f < BN_K_COUNT ? bn_kfamilies[f].name : "unknown",
           f == BN_K_MATMUL_G && key->cache == BN_DT_TG2H ? "h" : ""); /* TG2H's scales per 128 */
  uint32_t eps_bits;
  memcpy(&eps_bits, &key->eps, 4);
  snprintf(buf, cap, "bn_%s_%s_%s_k%lld_n%lld_e%08x_g%s", family, bn_isa_name(isa), variant,
           (long long)key->k, (long long)key->n, eps_bits, BN_GEN_STAMP);
  for (char *p = buf; *p; p++)
    if (*p == '-') *p = '_';
}

bn_status bn_llvm_get(bn_llvm *j, const kkey *key, void **out, bn_error *err) {
  pthread_mutex_lock(&j->lock);
  for (int i = 0; i < j->n_cache; i++)
    if (bn_kkey_eq(&j->cache[i].key, key)) {
      *out = j->cache[i].fn;
      pthread_mutex_unlock(&j->lock);
      return BN_OK;
    }
  double t0 = bn_clock_s();
  char name[128];
  bn_llvm_key_name(key, j->isa, name, sizeof name);
  bn_status st = BN_OK;
  int i = 0;
  while (i < j->n_aot && strcmp(j->aot[i].name, name)) i++;
  void *data = NULL;
  size_t size = 0;
  uint64_t cached = 0;
  int given = i < j->n_aot; /* the plan carries its object code */
  if (given) st = add_object(j, j->aot[i].data, j->aot[i].size, name, out, err);
  else if (!(st = object_of(j, key, name, &data, &size, &cached, err))) st = add_object(j, data, size, name, out, err);
  free(data), data = NULL;
  if (given && !st) j->counts.aot++;
  if (st && (given || cached)) { /* code that does not load: (a cache entry dropped) built anew under a fresh symbol */
    if (cached) bn_kcache_drop(j->kc, cached), j->counts.cached--;
    strncat(name, "_rebuilt", sizeof name - strlen(name) - 1);
    if (!(st = object_of(j, key, name, &data, &size, NULL, err))) st = add_object(j, data, size, name, out, err);
    free(data);
  }
  if (!st && j->n_cache == j->cap_cache) {
    int nc = j->cap_cache ? 2 * j->cap_cache : 16;
    entry *c = realloc(j->cache, (size_t)nc * sizeof *c);
    if (c) j->cache = c, j->cap_cache = nc;
  }
  if (!st && j->n_cache < j->cap_cache) j->cache[j->n_cache++] = (entry){*key, *out};
  j->counts.seconds += bn_clock_s() - t0;
  pthread_mutex_unlock(&j->lock);
  return st;
}

/* The typed getters: the key of each kernel family, its function type. */
bn_status bn_llvm_matmul(bn_llvm *j, int64_t K, int64_t N, bn_mm_mode mode, bn_mm_kernel *out, bn_error *err) {
  void *fn;
  bn_status st = bn_llvm_get(j, &(kkey){.family = BN_K_MATMUL, .k = K, .n = N, .variant = (int)mode}, &fn, err);
  if (!st) *out = (bn_mm_kernel)fn;
  return st;
}

bn_status bn_llvm_matmul_f(bn_llvm *j, int64_t K, int64_t N, bn_dtype wtype, bn_mf_kernel *out, bn_error *err) {
  void *fn;
  bn_status st = bn_llvm_get(j, &(kkey){.family = BN_K_MATMUL_F, .k = K, .n = N, .variant = (int)wtype}, &fn, err);
  if (!st) *out = (bn_mf_kernel)fn;
  return st;
}

bn_status bn_llvm_norm_quant(bn_llvm *j, int64_t K, int mode, float eps, bn_nq_kernel *out, bn_error *err) {
  void *fn;
  bn_status st = bn_llvm_get(j, &(kkey){.family = BN_K_NORM_QUANT, .k = K, .variant = mode, .eps = eps}, &fn, err);
  if (!st) *out = (bn_nq_kernel)fn;
  return st;
}

bn_status bn_llvm_attention(bn_llvm *j, int heads, int kv_heads, int head_dim, bn_dtype cache, bn_attn_kernel *out,
                            bn_error *err) {
  void *fn;
  bn_status st = bn_llvm_get(j, &(kkey){BN_K_ATTENTION, head_dim, heads, kv_heads, 0, 0, cache}, &fn, err);
  if (!st) *out = (bn_attn_kernel)fn;
  return st;
}

char *bn_llvm_text(bn_llvm *j, const kkey *key, const char *emit, bn_error *err) {
  char name[128];
  bn_llvm_key_name(key, j->isa, name, sizeof name);
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef m;
  char *text = NULL;
  if (!build(j, ctx, key, name, &m, err)) {
    if (!strcmp(emit, "asm")) {
      LLVMMemoryBufferRef buf;
      char *msg = NULL;
      if (!LLVMTargetMachineEmitToMemoryBuffer(j->tm, m, LLVMAssemblyFile, &msg, &buf)) {
        size_t n = LLVMGetBufferSize(buf);
        if ((text = malloc(n + 1))) memcpy(text, LLVMGetBufferStart(buf), n), text[n] = 0;
        LLVMDisposeMemoryBuffer(buf);
      } else bn_fail(err, BN_E_INVALID, "llvm: %s", msg);
      LLVMDisposeMessage(msg);
    } else {
      char *ir = LLVMPrintModuleToString(m);
      text = strdup(ir);
      LLVMDisposeMessage(ir);
    }
    LLVMDisposeModule(m);
  }
  LLVMContextDispose(ctx);
  return text;
}

bn_codegen_counts bn_llvm_get_counts(const bn_llvm *j) { return j->counts; }
