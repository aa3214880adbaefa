/* ORC LLJIT set-up, the kernel cache (one kernel per unique key), and the
 * host-ISA choice. */
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
#include <time.h>

#include "gen.h"
#include "llvm.h"

typedef bn_llvm_key kkey;

typedef struct {
  kkey key;
  void *fn;
} entry;

struct bn_llvm {
  bn_isa isa;
  LLVMOrcLLJITRef jit;
  LLVMTargetMachineRef tm;
  entry *cache;
  int n_cache, cap_cache;
  double compile_s;
  pthread_mutex_t lock;
};

static int cpu_has(const char *feature) {
  char *f = LLVMGetHostCPUFeatures();
  char want[64];
  snprintf(want, sizeof want, "+%s", feature);
  const char *p = strstr(f, want);
  int has = p && (p[strlen(want)] == ',' || p[strlen(want)] == 0);
  LLVMDisposeMessage(f);
  return has;
}

bn_isa bn_llvm_host_isa(void) {
  const char *force = getenv("BNC_ISA");
  if (force && !strcmp(force, "avx2")) return BN_ISA_AVX2;
  if (force && !strcmp(force, "avx512")) return BN_ISA_AVX512_VNNI;
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
  bn_fail(err, BN_E_UNSUPPORTED, "llvm: %s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
  return BN_E_UNSUPPORTED;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void init_llvm(void) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
}

bn_status bn_llvm_create(bn_isa isa, bn_llvm **out, bn_error *err) {
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
  char *triple = LLVMGetDefaultTargetTriple(), *cpu = LLVMGetHostCPUName(), *feat = LLVMGetHostCPUFeatures(), *msg = NULL;
  LLVMTargetRef target;
  if (!LLVMGetTargetFromTriple(triple, &target, &msg))
    j->tm = LLVMCreateTargetMachine(target, triple, cpu, feat, LLVMCodeGenLevelAggressive, LLVMRelocDefault,
                                    LLVMCodeModelJITDefault);
  LLVMDisposeMessage(triple), LLVMDisposeMessage(cpu), LLVMDisposeMessage(feat);
  if (!j->tm) {
    bn_fail(err, BN_E_UNSUPPORTED, "llvm: no target machine for this host: %s", msg ? msg : "?");
    LLVMDisposeMessage(msg);
    bn_llvm_free(j);
    return BN_E_UNSUPPORTED;
  }
  *out = j;
  return BN_OK;
}

void bn_llvm_free(bn_llvm *j) {
  if (!j) return;
  if (j->jit) LLVMOrcDisposeLLJIT(j->jit);
  if (j->tm) LLVMDisposeTargetMachine(j->tm);
  pthread_mutex_destroy(&j->lock);
  free(j->cache);
  free(j);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Builds and optimizes the module of one kernel in ctx. */
static bn_status build(bn_llvm *j, LLVMContextRef ctx, const kkey *key, const char *name, LLVMModuleRef *out,
                       bn_error *err) {
  LLVMModuleRef m = LLVMModuleCreateWithNameInContext(name, ctx);
  LLVMSetTarget(m, LLVMOrcLLJITGetTripleString(j->jit));
  LLVMSetDataLayout(m, LLVMOrcLLJITGetDataLayoutStr(j->jit));
  if (key->family == 0) bn_gen_matmul(ctx, m, name, key->k, key->n, (bn_mm_mode)key->variant, j->isa);
  else if (key->family == 1) bn_gen_matmul_f(ctx, m, name, key->k, key->n, (bn_dtype)key->variant, j->isa);
  else if (key->family == 3) bn_gen_norm_quant(ctx, m, name, key->k, key->variant, key->eps, j->isa);
  else if (key->family == BN_K_ATTENTION) bn_gen_attention(ctx, m, name, (int)key->n, key->variant, (int)key->k, j->isa);
  else if (key->family == BN_K_ROPE) bn_gen_rope(ctx, m, name, (int)key->n, (int)key->k, j->isa);
  else bn_gen_peak(ctx, m, name, j->isa);
  char *msg = NULL;
  if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
    bn_fail(err, BN_E_INVALID, "llvm: kernel %s does not verify: %.300s", name, msg);
    LLVMDisposeMessage(msg);
    LLVMDisposeModule(m);
    return BN_E_INVALID;
  }
  LLVMDisposeMessage(msg);
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(m, "default<O3>", j->tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  if (e) {
    LLVMDisposeModule(m);
    return llvm_fail(err, e, "optimizing");
  }
  *out = m;
  return BN_OK;
}

void bn_llvm_key_name(const kkey *key, bn_isa isa, char *buf, size_t cap) {
  static const char *modes[] = {"acc", "dq", "dqadd"};
  static const char *nq_modes[] = {"norm", "gate_relu2", "gate_silu"}, *families[] = {"mm", "mf", "peak", "nq", "attn", "rope"};
  const char *variant = key->family == 0 ? modes[key->variant] : key->family == 1 ? bn_dtype_table[key->variant].name
                        : key->family == 3 ? nq_modes[key->variant] : key->family == 4 ? "gqa" : key->family == 5 ? "neox" : "";
  uint32_t eps_bits;
  memcpy(&eps_bits, &key->eps, 4);
  snprintf(buf, cap, "bn_%s_%s_%s_k%lld_n%lld_e%08x", families[key->family], bn_isa_name(isa), variant,
           (long long)key->k, (long long)key->n, eps_bits);
  for (char *p = buf; *p; p++)
    if (*p == '-') *p = '_';
}

int bn_llvm_key_eq(const kkey *a, const kkey *b) {
  return a->family == b->family && a->k == b->k && a->n == b->n && a->variant == b->variant && a->eps == b->eps;
}

bn_status bn_llvm_get(bn_llvm *j, const kkey *key, void **out, bn_error *err) {
  pthread_mutex_lock(&j->lock);
  for (int i = 0; i < j->n_cache; i++)
    if (bn_llvm_key_eq(&j->cache[i].key, key)) {
      *out = j->cache[i].fn;
      pthread_mutex_unlock(&j->lock);
      return BN_OK;
    }
  double t0 = now();
  char name[128];
  bn_llvm_key_name(key, j->isa, name, sizeof name);
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  LLVMModuleRef m;
  bn_status st = build(j, LLVMOrcThreadSafeContextGetContext(tsc), key, name, &m, err);
  if (!st) {
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m, tsc);
    LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), tsm);
    LLVMOrcExecutorAddress addr = 0;
    if (!e) e = LLVMOrcLLJITLookup(j->jit, &addr, name);
    if (e) st = llvm_fail(err, e, "compiling");
    else {
      if (j->n_cache == j->cap_cache) {
        int nc = j->cap_cache ? 2 * j->cap_cache : 16;
        entry *c = realloc(j->cache, (size_t)nc * sizeof *c);
        if (c) j->cache = c, j->cap_cache = nc;
      }
      *out = (void *)(uintptr_t)addr;
      if (j->n_cache < j->cap_cache) j->cache[j->n_cache++] = (entry){*key, *out};
    }
  }
  LLVMOrcDisposeThreadSafeContext(tsc);
  j->compile_s += now() - t0;
  pthread_mutex_unlock(&j->lock);
  return st;
}

static kkey mm_key(int64_t K, int64_t N, bn_mm_mode mode) {
  kkey k;
  memset(&k, 0, sizeof k);
  k.family = 0, k.k = K, k.n = N, k.variant = (int)mode;
  return k;
}

bn_status bn_llvm_matmul(bn_llvm *j, int64_t K, int64_t N, bn_mm_mode mode, bn_mm_kernel *out, bn_error *err) {
  if (K <= 0 || K % 256 || N <= 0)
    return bn_fail(err, BN_E_INVALID, "llvm: matmul K=%lld N=%lld (K: whole 256-groups)", (long long)K, (long long)N);
  kkey key = mm_key(K, N, mode);
  void *fn;
  bn_status st = bn_llvm_get(j, &key, &fn, err);
  if (!st) *out = (bn_mm_kernel)fn;
  return st;
}

bn_status bn_llvm_matmul_f(bn_llvm *j, int64_t K, int64_t N, bn_dtype wtype, bn_mf_kernel *out, bn_error *err) {
  int lanes = j->isa == BN_ISA_AVX512_VNNI ? 16 : 8;
  if (K <= 0 || K % lanes || N <= 0 || (wtype != BN_DT_F16 && wtype != BN_DT_F32))
    return bn_fail(err, BN_E_UNSUPPORTED, "llvm: float matmul K=%lld type %s", (long long)K, bn_dtype_table[wtype].name);
  kkey key;
  memset(&key, 0, sizeof key);
  key.family = 1, key.k = K, key.n = N, key.variant = (int)wtype;
  void *fn;
  bn_status st = bn_llvm_get(j, &key, &fn, err);
  if (!st) *out = (bn_mf_kernel)fn;
  return st;
}

bn_status bn_llvm_norm_quant(bn_llvm *j, int64_t K, int mode, float eps, bn_nq_kernel *out, bn_error *err) {
  int lanes = j->isa == BN_ISA_AVX512_VNNI ? 16 : 8;
  if (K <= 0 || K % lanes || mode < 0 || mode > 2)
    return bn_fail(err, BN_E_UNSUPPORTED, "llvm: norm-quantize K=%lld mode %d", (long long)K, mode);
  kkey key;
  memset(&key, 0, sizeof key);
  key.family = 3, key.k = K, key.variant = mode, key.eps = eps;
  void *fn;
  bn_status st = bn_llvm_get(j, &key, &fn, err);
  if (!st) *out = (bn_nq_kernel)fn;
  return st;
}

bn_status bn_llvm_attention(bn_llvm *j, int heads, int kv_heads, int head_dim, bn_attn_kernel *out, bn_error *err) {
  int lanes = j->isa == BN_ISA_AVX512_VNNI ? 16 : 8;
  if (heads <= 0 || kv_heads <= 0 || heads % kv_heads || head_dim % lanes || head_dim / lanes > 32)
    return bn_fail(err, BN_E_UNSUPPORTED, "llvm: attention heads %d/%d head_dim %d", heads, kv_heads, head_dim);
  kkey key;
  memset(&key, 0, sizeof key);
  key.family = 4, key.k = head_dim, key.n = heads, key.variant = kv_heads;
  void *fn;
  bn_status st = bn_llvm_get(j, &key, &fn, err);
  if (!st) *out = (bn_attn_kernel)fn;
  return st;
}

bn_status bn_llvm_peak(bn_llvm *j, bn_peak_kernel *out, int *macs_per_iter, bn_error *err) {
  kkey key;
  memset(&key, 0, sizeof key);
  key.family = 2;
  void *fn;
  bn_status st = bn_llvm_get(j, &key, &fn, err);
  if (!st) *out = (bn_peak_kernel)fn, *macs_per_iter = 8 * (j->isa == BN_ISA_AVX512_VNNI ? 64 : 32);
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

double bn_llvm_compile_seconds(const bn_llvm *j, int *kernels) {
  if (kernels) *kernels = j->n_cache;
  return j->compile_s;
}
