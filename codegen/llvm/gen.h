/* IR generators of the LLVM backend (one file per kernel family). */
#ifndef BN_LLVM_GEN_H
#define BN_LLVM_GEN_H

#include <llvm-c/Core.h>

#include "llvm.h"

/* Adds `void name(ptr qa, ptr w, ptr out, ptr resid, i64 T, i64 n0, i64 n1)` to m. */
void bn_gen_matmul(LLVMContextRef c, LLVMModuleRef m, const char *name, int64_t K, int64_t N, bn_mm_mode mode, bn_isa isa);

#endif
