/* A C face for asmjit's x86 assembler (shim.cpp, the only C++ in bnc): one code buffer, labels,
 * instructions named as in the manuals and looked up once, operands as plain structs, and the
 * finished code in executable memory with its listing. No asmjit type crosses this header. */
#ifndef BN_ASM_SHIM_H
#define BN_ASM_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bn_asm bn_asm;   /* code being emitted */
typedef struct bn_asm_rt bn_asm_rt; /* executable memory that finished code lives in */

/* Operands. Registers by number: general purpose 0..15 (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi,
 * r8..r15), vectors 0..31, masks 0..7. A memory operand: [base + index * scale + disp], size bytes
 * wide (0: implied by the instruction); bn_bcst makes it an AVX-512 broadcast of that element. */
typedef enum { BN_ASM_NONE, BN_ASM_GP, BN_ASM_VEC, BN_ASM_K, BN_ASM_MEM, BN_ASM_IMM, BN_ASM_LABEL } bn_asm_kind;
typedef struct {
  uint8_t kind, size; /* GP: 4 or 8 bytes; VEC: 16, 32 or 64 (xmm, ymm, zmm); MEM: the access width */
  int8_t reg, base, index, scale; /* MEM: base and index registers (-1: none), scale 1, 2, 4 or 8; reg: the
                                   * broadcast's element count (0: none) */
  int32_t disp;
  int64_t imm; /* IMM: the value; LABEL: the label */
} bn_asm_op;

static inline bn_asm_op bn_gp(int r) { return (bn_asm_op){BN_ASM_GP, 8, (int8_t)r, -1, -1, 1, 0, 0}; }
static inline bn_asm_op bn_gpd(int r) { return (bn_asm_op){BN_ASM_GP, 4, (int8_t)r, -1, -1, 1, 0, 0}; }
static inline bn_asm_op bn_vec(int r, int bytes) { return (bn_asm_op){BN_ASM_VEC, (uint8_t)bytes, (int8_t)r, -1, -1, 1, 0, 0}; }
static inline bn_asm_op bn_kreg(int r) { return (bn_asm_op){BN_ASM_K, 8, (int8_t)r, -1, -1, 1, 0, 0}; }
static inline bn_asm_op bn_imm(int64_t v) { return (bn_asm_op){BN_ASM_IMM, 0, 0, -1, -1, 1, 0, v}; }
static inline bn_asm_op bn_label(int l) { return (bn_asm_op){BN_ASM_LABEL, 0, 0, -1, -1, 1, 0, l}; }
static inline bn_asm_op bn_mem(int base, int32_t disp, int bytes) {
  return (bn_asm_op){BN_ASM_MEM, (uint8_t)bytes, 0, (int8_t)base, -1, 1, disp, 0};
}
static inline bn_asm_op bn_memx(int base, int index, int scale, int32_t disp, int bytes) {
  return (bn_asm_op){BN_ASM_MEM, (uint8_t)bytes, 0, (int8_t)base, (int8_t)index, (int8_t)scale, disp, 0};
}

/* m (of one element, size bytes) broadcast to n elements: {1toN} (n 2, 4, 8 or 16). */
static inline bn_asm_op bn_bcst(bn_asm_op m, int n) {
  m.reg = (int8_t)n;
  return m;
}

bn_asm_rt *bn_asm_rt_new(void);
void bn_asm_rt_free(bn_asm_rt *rt); /* frees every function added to it */

/* A buffer for one function; log: keep a text listing (bn_asm_listing). NULL: out of memory. */
bn_asm *bn_asm_new(bn_asm_rt *rt, int log);
void bn_asm_free(bn_asm *a);
/* An instruction's id by name ("vpdpbusd"); -1 if asmjit has none. */
int bn_asm_inst(const char *name);
int bn_asm_new_label(bn_asm *a);
void bn_asm_bind(bn_asm *a, int label);
/* The next instruction writes under mask k (zero: zeroing, else merging). */
void bn_asm_mask(bn_asm *a, int k, int zero);
/* Emits one instruction; a failure (an operand combination the instruction lacks) is kept and
 * reported by bn_asm_finish. */
void bn_asm_emit(bn_asm *a, int inst, bn_asm_op o0, bn_asm_op o1, bn_asm_op o2, bn_asm_op o3);
/* Moves the code into executable memory: the function's address, or NULL with the first error
 * in msg. The code stays until bn_asm_rt_free. */
void *bn_asm_finish(bn_asm *a, char *msg, size_t cap);
/* The listing so far ("" without log). */
const char *bn_asm_listing(bn_asm *a);

#ifdef __cplusplus
}
#endif

#endif
