/* metal-sim: the Metal backend run on the CPU. It builds the plan's Metal library and dispatch
 * table (metal/emit.h) from the graph, compiles the MSL as C++ (sim.h) and runs every step
 * through the dispatch table as the Mac host does: the same buffers, offsets, grids and
 * threadgroup sizes; only the Metal API calls differ. The source is emitted here, never read
 * from the plan, so no code from a file is compiled. */
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "../../codegen/backend.h"
#include "../../codegen/ref/ref.h"
#include "../emit.h"
#include "sim.h"

typedef struct {
  uint32_t T, pos, n_ctx, pad;
} step_consts; /* bn_step in the MSL */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
  bn_mtl_lib lib;
  bn_sim_lib *so;
  const bn_graph *g;
  int n_ctx, max_tokens, n_layers;
  uint8_t *arena;
  int32_t *tokens;
  step_consts st;
  void **kc, **vc;
  float *rope[4];
} msim;

static void msim_close(void *self) {
  msim *m = self;
  if (!m) return;
  bn_metal_lib_free(&m->lib);
  bn_sim_free(m->so);
  for (int L = 0; m->kc && L < m->n_layers; L++) free(m->kc[L]), free(m->vc[L]);
  for (int r = 0; r < 4; r++) free(m->rope[r]);
  free(m->kc), free(m->vc), free(m->arena), free(m->tokens), free(m);
}

static bn_status msim_open(const bn_backend_opts *o, void **self, bn_error *err) {
  const bn_memplan *mp = o->memplan;
  msim *m = calloc(1, sizeof *m);
  if (!m) return bn_fail(err, BN_E_NOMEM, "metal-sim: out of memory");
  *self = m;
  bn_status st = bn_metal_host_lib(o, &m->lib, err);
  if (st) return msim_close(m), *self = NULL, st;
  m->g = o->g, m->n_ctx = o->n_ctx, m->max_tokens = mp->max_tokens, m->n_layers = bn_ref_kv_layers(o->g);
  bn_dtype kv = o->kv == BN_DT_F16 ? BN_DT_F16 : BN_DT_F32;
  bn_sim_kernel *ks = st ? NULL : calloc((size_t)m->lib.n_kernels + 1, sizeof *ks);
  if (!st && !ks) st = bn_fail(err, BN_E_NOMEM, "metal-sim: out of memory");
  for (int i = 0; !st && i < m->lib.n_kernels; i++)
    ks[i] = (bn_sim_kernel){.name = m->lib.kernels[i].name, .n_buffers = m->lib.kernels[i].n_buffers,
                            .tg_block = m->lib.kernels[i].tg_block};
  bn_sim_opts so = {.cache = o->cache};
  if (!st) st = bn_sim_compile(m->lib.source, ks, m->lib.n_kernels, &so, &m->so, err);
  free(ks);
  if (st) return msim_close(m), *self = NULL, st;
  m->arena = aligned_alloc(64, (size_t)(mp->arena_bytes + 63) / 64 * 64 + 64);
  m->tokens = calloc((size_t)m->max_tokens + 1, sizeof *m->tokens);
  m->kc = calloc((size_t)m->n_layers + 1, sizeof *m->kc), m->vc = calloc((size_t)m->n_layers + 1, sizeof *m->vc);
  int ok = m->arena && m->tokens && m->kc && m->vc;
  for (int L = 0; ok && L < m->n_layers; L++) {
    size_t bytes = (size_t)bn_ref_kv_width(o->g, L) * (size_t)m->n_ctx * (kv == BN_DT_F16 ? 2 : 4) + 64;
    ok = (m->kc[L] = calloc(1, bytes)) && (m->vc[L] = calloc(1, bytes));
  }
  for (int r = 0; ok && r < m->lib.n_rope; r++) {
    int dims = m->lib.rope_dims[r];
    if ((ok = (m->rope[r] = malloc((size_t)m->n_ctx * (size_t)dims * sizeof(float))) != NULL))
      bn_rope_table(m->rope[r], m->n_ctx, dims, m->lib.rope_base[r]);
  }
  if (!ok) return msim_close(m), *self = NULL, bn_fail(err, BN_E_NOMEM, "metal-sim: out of memory");
  return BN_OK;
}

static void *buffer(msim *m, const bn_mtl_dispatch *d, const bn_mtl_bind *b) {
  switch ((bn_mtl_space)b->space) {
  case BN_MTL_STEP: return &m->st;
  case BN_MTL_ARENA: return m->arena + b->offset;
  case BN_MTL_WEIGHT: return (uint8_t *)m->g->values[m->g->nodes[d->node].in[b->index]].data + b->offset;
  case BN_MTL_TOKENS: return m->tokens;
  case BN_MTL_KCACHE: return m->kc[b->index];
  case BN_MTL_VCACHE: return m->vc[b->index];
  case BN_MTL_ROPE: return m->rope[b->index];
  }
  return NULL;
}

static bn_status msim_run(void *self, bn_graph_step *step, bn_error *err) {
  msim *m = self;
  int T = step->n;
  if (T < 1 || T > m->max_tokens || step->pos < 0 || step->pos + T > m->n_ctx)
    return bn_fail(err, BN_E_RANGE, "metal-sim: %d tokens at %d (at most %d a step, %d positions)", T, step->pos,
                   m->max_tokens, m->n_ctx);
  memcpy(m->tokens, step->tokens, (size_t)T * sizeof *m->tokens);
  m->st = (step_consts){.T = (uint32_t)T, .pos = (uint32_t)step->pos, .n_ctx = (uint32_t)m->n_ctx};
  for (int i = 0; i < m->lib.n_steps; i++) {
    const bn_mtl_dispatch *d = &m->lib.steps[i];
    int ki = bn_metal_kernel_for(&m->lib, d, T);
    const bn_mtl_kernel *k = &m->lib.kernels[ki];
    void *bufs[BN_MTL_MAX_BIND];
    for (int b = 0; b < d->n_bind; b++) bufs[b] = buffer(m, d, &d->bind[b]);
    bn_sim_grid grid = {.groups = {k->groups_x, (uint32_t)((T + (int)k->tok_tile - 1) / (int)k->tok_tile)},
                        .threads = k->threads, .tg_bytes = k->tg_bytes, .buffers = bufs};
    double t0 = now_s();
    bn_status st = bn_sim_dispatch(m->so, ki, &grid, err);
    if (step->node_seconds) step->node_seconds[d->node] += now_s() - t0;
    if (st) return st;
  }
  float *out = (float *)(m->arena + m->lib.out_offset);
  step->out = step->last_only ? out + (size_t)(T - 1) * (size_t)m->lib.out_width : out;
  return BN_OK;
}

static int msim_supports(void *self, const bn_kkey *key) { return bn_metal_supports(key); }

static bn_codegen_info msim_info(void *self) {
  return (bn_codegen_info){.isa = "metal-sim", .cpu = "", .features = "", .lanes = 32};
}

static bn_codegen_counts msim_counts(void *self) {
  msim *m = self;
  int cached = 0, stored = 0;
  double s = 0;
  if (m && m->so) bn_sim_lib_info(m->so, &cached, &stored, &s);
  int n = m ? m->lib.n_kernels : 0;
  return (bn_codegen_counts){.built = cached ? 0 : n, .stored = stored ? n : 0, .cached = cached ? n : 0, .seconds = s};
}

const bn_backend bn_backend_metal_sim = {
    .name = "metal-sim",
    .about = "the Metal shaders of the plan, run on this CPU with Metal's semantics (slow; a proof, not a speed)",
    .targets = "native metal",
    .open = msim_open,
    .supports = msim_supports,
    .run_graph = msim_run,
    .info = msim_info,
    .counts = msim_counts,
    .close = msim_close,
};
