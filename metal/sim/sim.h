/* Running emitted MSL on the CPU with Metal's semantics (docs/metal.md): the source is
 * compiled as C++ against metal/sim/metal_stdlib into a shared object, and a dispatch runs
 * every threadgroup of its grid, each thread of a group a fiber. A threadgroup barrier
 * waits for every thread of the group, a simdgroup function for the 32 lanes of its
 * simdgroup; threadgroup memory is one block per group, filled with NaN bytes before the
 * group runs and followed by a guard that must come back untouched. A thread that leaves
 * while others wait at a barrier, or threads waiting at different barriers, fail the
 * dispatch. Slow by design; wrong results are what it exists to catch. */
#ifndef BN_METAL_SIM_H
#define BN_METAL_SIM_H

#include <stdint.h>

#include "../../codegen/kcache.h"
#include "../../ir/status.h"

typedef struct bn_sim_lib bn_sim_lib;

/* A kernel of the library: its name and parameters (buffers 0..n_buffers-1, then a
 * threadgroup block when tg_block, then the thread ids; metal/emit.h says the order). */
typedef struct {
  const char *name;
  int n_buffers, tg_block;
} bn_sim_kernel;

typedef struct {
  const char *cxx;        /* the C++ compiler (NULL: "c++") */
  const bn_kcache *cache; /* where compiled libraries are kept (NULL: compiled every time) */
} bn_sim_opts;

/* Compiles msl with kernels k[0..n) callable. */
bn_status bn_sim_compile(const char *msl, const bn_sim_kernel *k, int n, const bn_sim_opts *opts, bn_sim_lib **out,
                         bn_error *err);
/* Whether the library came from the cache, or was stored there; seconds spent compiling or loading. */
void bn_sim_lib_info(const bn_sim_lib *lib, int *cached, int *stored, double *seconds);

typedef struct {
  uint32_t groups[2]; /* threadgroups of the grid, x and y */
  uint32_t threads;   /* threads of a group, a multiple of 32 (1-D groups) */
  uint32_t tg_bytes;  /* threadgroup memory of a group (the kernel's tg_block) */
  void *const *buffers;
} bn_sim_grid;

/* Runs kernel i over the whole grid; an error names the kernel, the group and what went wrong. */
bn_status bn_sim_dispatch(bn_sim_lib *lib, int i, const bn_sim_grid *grid, bn_error *err);
void bn_sim_free(bn_sim_lib *lib);

/* The C++ that makes msl's kernels callable by the runner (for tests and bnc ir). */
char *bn_sim_wrapper(const char *msl, const bn_sim_kernel *k, int n);

#endif
