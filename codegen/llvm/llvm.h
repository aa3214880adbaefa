/* The LLVM backend: kernels built as LLVM IR through the LLVM-C API with
 * every shape a constant, optimized at O3 for the host CPU and JIT-compiled
 * with ORC LLJIT. Each unique kernel (shape, mode, ISA) is built once and
 * shared by every node that needs it. The runtime reaches it through its
 * registry entry (backend.c here); this header is for the backend and its tests. */
#ifndef BN_LLVM_H
#define BN_LLVM_H

#include <stdint.h>

#include "../backend.h"

typedef enum { BN_ISA_AVX2, BN_ISA_AVX512_VNNI } bn_isa;

typedef struct bn_llvm bn_llvm;

/* The elements of K a float matmul over weights of this type takes at a time
 * (K must be a multiple); 0: no generated kernel for the type. */
int bn_gen_matmul_f_block(bn_dtype wtype, bn_isa isa);

/* Can this JIT build key's kernel (its ISA's lanes, the weight types it decodes)? */
int bn_llvm_supports(const bn_llvm *j, const bn_kkey *key);
/* Builds (once) and returns the kernel of key. */
bn_status bn_llvm_get(bn_llvm *j, const bn_kkey *key, void **fn, bn_error *err);
/* The kernel's symbol name. */
void bn_llvm_key_name(const bn_kkey *key, bn_isa isa, char *buf, size_t cap);
/* The optimized LLVM IR (emit = "llvm") or assembly ("asm") of key's kernel, malloc'd. */
char *bn_llvm_text(bn_llvm *j, const bn_kkey *key, const char *emit, bn_error *err);

/* The best ISA this CPU has. */
bn_isa bn_llvm_host_isa(void);
/* Compile targets: "native" (the host's best), "x86-64-v3" (AVX2), "x86-64-v4" (AVX-512 with VNNI).
 * Returns 0 and the ISA for a known name ("ref", what older plans carry, counts as native). */
int bn_llvm_target_isa(const char *target, bn_isa *isa);
const char *bn_isa_name(bn_isa isa);
/* A JIT generating for this host's CPU, with isa's kernels. */
bn_status bn_llvm_create(bn_isa isa, bn_llvm **out, bn_error *err);
/* A JIT for a compile target: native (this host's CPU and features), or the
 * generic x86-64-v3 / x86-64-v4 CPUs (object code any such CPU runs). */
bn_status bn_llvm_create_for(const char *target, bn_llvm **out, bn_error *err);
/* The same with the native target's ISA forced (force: 1 + a bn_isa; 0: the host's best;
 * the portable targets have theirs). */
bn_status bn_llvm_create_forced(const char *target, int force, bn_llvm **out, bn_error *err);
bn_isa bn_llvm_isa(const bn_llvm *j);
/* The CPU name and feature string ("+avx2,+fma,...") the code is generated for. */
const char *bn_llvm_cpu(const bn_llvm *j, const char **features);
/* Does this host have every "+feature" of the list? If not, the first missing one. */
int bn_llvm_host_has(const char *features, char *missing, size_t cap);

/* Keeps generated object code in c's directory and looks there first (c outlives j; NULL: no cache). */
void bn_llvm_use_cache(bn_llvm *j, const bn_kcache *c);

/* Kernels whose names appear in code are loaded from there instead of being
 * generated (code must outlive j). The caller checks the host has the features. */
void bn_llvm_provide(bn_llvm *j, const bn_objcode *code);
/* Was code made by this build's generators? (Kernel names end in the generators' stamp:
 * object code from another build is not used, its kernels are generated anew.) */
int bn_llvm_code_current(const bn_objcode *code);
/* The object code of key's kernel (malloc'd): from the disk cache or built. */
bn_status bn_llvm_object(bn_llvm *j, const bn_kkey *key, void **data, size_t *size, bn_error *err);
/* Where the kernels came from (bn_codegen_counts). */
bn_codegen_counts bn_llvm_get_counts(const bn_llvm *j);
void bn_llvm_free(bn_llvm *j);
/* Typed getters for the tests: the kernel of each family's key, built on first use. */
bn_status bn_llvm_matmul(bn_llvm *j, int64_t K, int64_t N, bn_mm_mode mode, bn_mm_kernel *out, bn_error *err);
bn_status bn_llvm_matmul_f(bn_llvm *j, int64_t K, int64_t N, bn_dtype wtype, bn_mf_kernel *out, bn_error *err);
bn_status bn_llvm_norm_quant(bn_llvm *j, int64_t K, int mode, float eps, bn_nq_kernel *out, bn_error *err);
bn_status bn_llvm_attention(bn_llvm *j, int heads, int kv_heads, int head_dim, bn_dtype cache, bn_attn_kernel *out,
                            bn_error *err);

#endif
