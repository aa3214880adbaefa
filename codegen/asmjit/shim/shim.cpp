// The asmjit shim (shim.h): C calls onto asmjit's x86::Assembler.
#include "shim.h"

#include <asmjit/x86.h>

#include <cstdio>
#include <cstring>
#include <new>

using namespace asmjit;

struct bn_asm_rt {
  JitRuntime rt;
};

struct bn_asm {
  bn_asm_rt *rt;
  CodeHolder code;
  x86::Assembler *as;
  StringLogger logger;
  char error[160];
};

extern "C" bn_asm_rt *bn_asm_rt_new(void) { return new (std::nothrow) bn_asm_rt(); }
extern "C" void bn_asm_rt_free(bn_asm_rt *rt) { delete rt; }

extern "C" bn_asm *bn_asm_new(bn_asm_rt *rt, int log) {
  bn_asm *a = new (std::nothrow) bn_asm();
  if (!a) return nullptr;
  a->rt = rt;
  a->error[0] = 0;
  if (a->code.init(rt->rt.environment()) != kErrorOk) {
    delete a;
    return nullptr;
  }
  if (log) a->code.setLogger(&a->logger);
  a->as = new (std::nothrow) x86::Assembler(&a->code);
  if (!a->as) {
    delete a;
    return nullptr;
  }
  return a;
}

extern "C" void bn_asm_free(bn_asm *a) {
  if (!a) return;
  delete a->as;
  delete a;
}

extern "C" int bn_asm_inst(const char *name) {
  InstId id = InstAPI::stringToInstId(Arch::kX64, name, strlen(name));
  return id == BaseInst::kIdNone ? -1 : (int)id;
}

extern "C" int bn_asm_new_label(bn_asm *a) { return (int)a->as->newLabel().id(); }
extern "C" void bn_asm_bind(bn_asm *a, int label) { a->as->bind(Label((uint32_t)label)); }

extern "C" void bn_asm_mask(bn_asm *a, int k, int zero) {
  a->as->setExtraReg(x86::k((uint32_t)k));
  if (zero) a->as->addInstOptions(InstOptions::kX86_ZMask);
}

static Operand operand(const bn_asm_op &o) {
  switch (o.kind) {
  case BN_ASM_GP: return o.size == 4 ? Operand(x86::gpd((uint32_t)o.reg)) : Operand(x86::gpq((uint32_t)o.reg));
  case BN_ASM_VEC:
    return o.size == 64 ? Operand(x86::zmm((uint32_t)o.reg))
                        : o.size == 32 ? Operand(x86::ymm((uint32_t)o.reg)) : Operand(x86::xmm((uint32_t)o.reg));
  case BN_ASM_K: return x86::k((uint32_t)o.reg);
  case BN_ASM_MEM: {
    x86::Mem m = o.index >= 0 ? x86::ptr(x86::gpq((uint32_t)o.base), x86::gpq((uint32_t)o.index),
                                         o.scale == 8 ? 3 : o.scale == 4 ? 2 : o.scale == 2 ? 1 : 0, o.disp, o.size)
                              : x86::ptr(x86::gpq((uint32_t)o.base), o.disp, o.size);
    return o.reg == 16 ? m._1to16() : o.reg == 8 ? m._1to8() : o.reg == 4 ? m._1to4() : o.reg == 2 ? m._1to2() : m;
  }
  case BN_ASM_IMM: return Imm(o.imm);
  case BN_ASM_LABEL: return Label((uint32_t)o.imm);
  default: return Operand();
  }
}

extern "C" void bn_asm_emit(bn_asm *a, int inst, bn_asm_op o0, bn_asm_op o1, bn_asm_op o2, bn_asm_op o3) {
  Operand ops[4] = {operand(o0), operand(o1), operand(o2), operand(o3)};
  size_t n = 0;
  while (n < 4 && !ops[n].isNone()) n++;
  Error e = inst < 0 ? kErrorInvalidInstruction : a->as->emitOpArray((InstId)inst, ops, n);
  if (e != kErrorOk && !a->error[0]) {
    String name;
    if (inst >= 0) InstAPI::instIdToString(Arch::kX64, (InstId)inst, name);
    snprintf(a->error, sizeof a->error, "asmjit: %s: %s", inst >= 0 ? name.data() : "(unknown instruction)",
             DebugUtils::errorAsString(e));
  }
}

extern "C" void *bn_asm_finish(bn_asm *a, char *msg, size_t cap) {
  void *fn = nullptr;
  if (a->error[0]) {
    snprintf(msg, cap, "%s", a->error);
    return nullptr;
  }
  Error e = a->rt->rt.add(&fn, &a->code);
  if (e != kErrorOk) {
    snprintf(msg, cap, "asmjit: %s", DebugUtils::errorAsString(e));
    return nullptr;
  }
  return fn;
}

extern "C" const char *bn_asm_listing(bn_asm *a) { return a->logger.data(); }
