/* The Metal backend on a Mac: the plan's library (re-emitted from its graph by metal/emit.c, and
 * compared with the plan's device section when it has one, as metal-sim does) compiled by Metal,
 * one pipeline per kernel, the weights in one buffer (the plan's mapping itself where Metal takes it
 * without a copy), the arena, K/V caches and RoPE tables allocated once, and each step's dispatches
 * encoded in one command buffer exactly as the dispatch table says (metal/sim runs the same table
 * on Linux). GPU time per node comes from counter samples at dispatch boundaries where the GPU has
 * them, else the command buffer's GPU time goes to the step's first node.
 *
 * Built only where CMake finds Metal.framework; no Mac has run it yet (docs/metal.md). */
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../codegen/backend.h"
#include "../codegen/ref/ref.h"
#include "emit.h"

typedef struct {
  uint32_t T, pos, n_ctx, pad;
} step_consts; /* bn_step in the MSL */

typedef struct {
  bn_mtl_lib lib;
  const bn_graph *g;
  int n_ctx, max_tokens, n_layers;
  id<MTLDevice> dev;
  id<MTLCommandQueue> queue;
  NSMutableArray<id<MTLComputePipelineState>> *pipes;
  id<MTLBuffer> weights, arena, tokens, kv[2 * 64], rope[4];
  int64_t *weight_off; /* per value: its offset in `weights` (-1: not a weight) */
  id<MTLCounterSampleBuffer> samples; /* nil: no counters at dispatch boundaries */
  int copied;                         /* the weights were copied (no mapping Metal would take) */
} mhost;

static void mhost_close(void *self) {
  mhost *m = self;
  if (!m) return;
  bn_metal_lib_free(&m->lib);
  free(m->weight_off);
  m->pipes = nil, m->weights = nil, m->arena = nil, m->tokens = nil, m->samples = nil, m->queue = nil, m->dev = nil;
  for (int i = 0; i < 2 * 64; i++) m->kv[i] = nil;
  for (int i = 0; i < 4; i++) m->rope[i] = nil;
  free(m);
}

/* The weights: one buffer over the page-rounded span they lie in (a mapped plan), else a copy. */
static bn_status map_weights(mhost *m, bn_error *err) {
  const bn_graph *g = m->g;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  size_t sum = 0;
  if (!(m->weight_off = malloc((size_t)g->n_values * sizeof *m->weight_off)))
    return bn_fail(err, BN_E_NOMEM, "metal: out of memory");
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    m->weight_off[i] = -1;
    if (v->kind != BN_VAL_WEIGHT || !v->data) continue;
    lo = (uintptr_t)v->data < lo ? (uintptr_t)v->data : lo;
    hi = (uintptr_t)v->data + v->nbytes > hi ? (uintptr_t)v->data + v->nbytes : hi;
    sum += v->nbytes;
  }
  if (!sum) return bn_fail(err, BN_E_INVALID, "metal: the graph has no weights");
  uintptr_t page = (uintptr_t)getpagesize(), base = lo / page * page, end = (hi + page - 1) / page * page;
  if (end - base <= 2 * sum + (1u << 20))
    m->weights = [m->dev newBufferWithBytesNoCopy:(void *)base length:end - base options:MTLResourceStorageModeShared
                                      deallocator:nil];
  if (m->weights) {
    for (int i = 0; i < g->n_values; i++)
      if (g->values[i].kind == BN_VAL_WEIGHT && g->values[i].data) m->weight_off[i] = (int64_t)((uintptr_t)g->values[i].data - base);
    return BN_OK;
  }
  m->copied = 1; /* weights made in memory (a GGUF compiled at load), or a mapping Metal refuses */
  size_t at = 0;
  for (int i = 0; i < g->n_values; i++)
    if (g->values[i].kind == BN_VAL_WEIGHT && g->values[i].data) m->weight_off[i] = (int64_t)at, at += (g->values[i].nbytes + 255) / 256 * 256;
  if (!(m->weights = [m->dev newBufferWithLength:at options:MTLResourceStorageModeShared]))
    return bn_fail(err, BN_E_NOMEM, "metal: no buffer for %zu bytes of weights", at);
  for (int i = 0; i < g->n_values; i++)
    if (m->weight_off[i] >= 0) memcpy((uint8_t *)m->weights.contents + m->weight_off[i], g->values[i].data, g->values[i].nbytes);
  return BN_OK;
}

static bn_status pipelines(mhost *m, bn_error *err) {
  MTLCompileOptions *co = [MTLCompileOptions new];
  co.fastMathEnabled = NO; /* the kernels' float pairs need every rounding as written (emit.c) */
  NSError *e = nil;
  id<MTLLibrary> lib = [m->dev newLibraryWithSource:[NSString stringWithUTF8String:m->lib.source] options:co error:&e];
  if (!lib) return bn_fail(err, BN_E_INVALID, "metal: the library did not compile: %s", e.localizedDescription.UTF8String);
  m->pipes = [NSMutableArray arrayWithCapacity:(NSUInteger)m->lib.n_kernels];
  for (int i = 0; i < m->lib.n_kernels; i++) {
    const bn_mtl_kernel *k = &m->lib.kernels[i];
    id<MTLFunction> fn = [lib newFunctionWithName:[NSString stringWithUTF8String:k->name]];
    id<MTLComputePipelineState> p = fn ? [m->dev newComputePipelineStateWithFunction:fn error:&e] : nil;
    if (!p) return bn_fail(err, BN_E_INVALID, "metal: kernel %s: no pipeline%s%s", k->name, e ? ": " : "",
                           e ? e.localizedDescription.UTF8String : "");
    if (p.maxTotalThreadsPerThreadgroup < k->threads || p.threadExecutionWidth != 32)
      return bn_fail(err, BN_E_UNSUPPORTED, "metal: kernel %s needs %u threads a group in simdgroups of 32 (this GPU: %lu, %lu)",
                     k->name, k->threads, (unsigned long)p.maxTotalThreadsPerThreadgroup, (unsigned long)p.threadExecutionWidth);
    [m->pipes addObject:p];
  }
  return BN_OK;
}

static void counters(mhost *m) {
  if (![m->dev supportsCounterSampling:MTLCounterSamplingPointAtDispatchBoundary]) return;
  for (id<MTLCounterSet> cs in m->dev.counterSets)
    if ([cs.name isEqualToString:MTLCommonCounterSetTimestamp]) {
      MTLCounterSampleBufferDescriptor *d = [MTLCounterSampleBufferDescriptor new];
      d.counterSet = cs, d.storageMode = MTLStorageModeShared, d.sampleCount = (NSUInteger)(2 * m->lib.n_steps);
      m->samples = [m->dev newCounterSampleBufferWithDescriptor:d error:nil];
    }
}

static bn_status mhost_open(const bn_backend_opts *o, void **self, bn_error *err) {
  const bn_memplan *mp = o->memplan;
  mhost *m = calloc(1, sizeof *m);
  if (!m) return bn_fail(err, BN_E_NOMEM, "metal: out of memory");
  *self = m;
  bn_status st = bn_metal_host_lib(o, &m->lib, err);
  if (st) return mhost_close(m), *self = NULL, st;
  m->g = o->g, m->n_ctx = o->n_ctx, m->max_tokens = mp->max_tokens, m->n_layers = bn_ref_kv_layers(o->g);
  bn_dtype kv = o->kv == BN_DT_F16 ? BN_DT_F16 : BN_DT_F32;
  if (m->n_layers > 64) st = bn_fail(err, BN_E_UNSUPPORTED, "metal: %d layers (at most 64)", m->n_layers);
  if (!st && !(m->dev = MTLCreateSystemDefaultDevice())) st = bn_fail(err, BN_E_UNSUPPORTED, "metal: no Metal GPU");
  if (!st) m->queue = [m->dev newCommandQueue];
  if (!st) st = pipelines(m, err);
  if (!st) st = map_weights(m, err);
  if (!st) {
    m->arena = [m->dev newBufferWithLength:(NSUInteger)mp->arena_bytes + 64 options:MTLResourceStorageModeShared];
    m->tokens = [m->dev newBufferWithLength:(NSUInteger)m->max_tokens * 4 options:MTLResourceStorageModeShared];
    for (int L = 0; L < m->n_layers; L++)
      for (int c = 0; c < 2; c++)
        m->kv[2 * L + c] = [m->dev newBufferWithLength:(NSUInteger)bn_ref_kv_width(o->g, L) * (NSUInteger)m->n_ctx * (kv == BN_DT_F16 ? 2 : 4) + 64
                                               options:MTLResourceStorageModePrivate];
    for (int r = 0; r < m->lib.n_rope; r++) {
      int dims = m->lib.rope_dims[r];
      m->rope[r] = [m->dev newBufferWithLength:(NSUInteger)m->n_ctx * (NSUInteger)dims * 4 options:MTLResourceStorageModeShared];
      if (m->rope[r]) bn_rope_table(m->rope[r].contents, m->n_ctx, dims, m->lib.rope_base[r]);
    }
    if (!m->arena || !m->tokens) st = bn_fail(err, BN_E_NOMEM, "metal: no GPU memory for the arena");
    counters(m);
  }
  if (st) return mhost_close(m), *self = NULL, st;
  return BN_OK;
}

static id<MTLBuffer> buffer(mhost *m, const bn_mtl_dispatch *d, const bn_mtl_bind *b, NSUInteger *off) {
  *off = 0;
  switch ((bn_mtl_space)b->space) {
  case BN_MTL_ARENA: *off = (NSUInteger)b->offset; return m->arena;
  case BN_MTL_WEIGHT: *off = (NSUInteger)m->weight_off[m->g->nodes[d->node].in[b->index]]; return m->weights;
  case BN_MTL_TOKENS: return m->tokens;
  case BN_MTL_KCACHE: return m->kv[2 * b->index];
  case BN_MTL_VCACHE: return m->kv[2 * b->index + 1];
  case BN_MTL_ROPE: return m->rope[b->index];
  case BN_MTL_STEP: return nil;
  }
  return nil;
}

static bn_status mhost_run(void *self, bn_graph_step *step, bn_error *err) {
  mhost *m = self;
  int T = step->n;
  if (T < 1 || T > m->max_tokens || step->pos < 0 || step->pos + T > m->n_ctx)
    return bn_fail(err, BN_E_RANGE, "metal: %d tokens at %d (at most %d a step, %d positions)", T, step->pos, m->max_tokens, m->n_ctx);
  memcpy(m->tokens.contents, step->tokens, (size_t)T * 4);
  step_consts st = {(uint32_t)T, (uint32_t)step->pos, (uint32_t)m->n_ctx, 0};
  id<MTLCommandBuffer> cb = [m->queue commandBuffer];
  MTLComputePassDescriptor *pd = [MTLComputePassDescriptor computePassDescriptor];
  pd.dispatchType = MTLDispatchTypeSerial; /* each dispatch sees the last one's writes */
  id<MTLComputeCommandEncoder> enc = [cb computeCommandEncoderWithDescriptor:pd];
  for (int i = 0; i < m->lib.n_steps; i++) {
    const bn_mtl_dispatch *d = &m->lib.steps[i];
    int ki = bn_metal_kernel_for(&m->lib, d, T);
    const bn_mtl_kernel *k = &m->lib.kernels[ki];
    [enc setComputePipelineState:m->pipes[(NSUInteger)ki]];
    [enc setBytes:&st length:sizeof st atIndex:0];
    for (int b = 1; b < d->n_bind; b++) {
      NSUInteger off;
      id<MTLBuffer> buf = buffer(m, d, &d->bind[b], &off);
      [enc setBuffer:buf offset:off atIndex:(NSUInteger)b];
    }
    if (k->tg_block) [enc setThreadgroupMemoryLength:(k->tg_bytes + 15) / 16 * 16 atIndex:0];
    if (m->samples) [enc sampleCountersInBuffer:m->samples atSampleIndex:(NSUInteger)(2 * i) withBarrier:YES];
    [enc dispatchThreadgroups:MTLSizeMake(k->groups_x, (NSUInteger)(T + (int)k->tok_tile - 1) / k->tok_tile, 1)
        threadsPerThreadgroup:MTLSizeMake(k->threads, 1, 1)];
    if (m->samples) [enc sampleCountersInBuffer:m->samples atSampleIndex:(NSUInteger)(2 * i + 1) withBarrier:YES];
  }
  [enc endEncoding];
  [cb commit];
  [cb waitUntilCompleted];
  if (cb.status != MTLCommandBufferStatusCompleted)
    return bn_fail(err, BN_E_INVALID, "metal: the step failed on the GPU: %s", cb.error.localizedDescription.UTF8String);
  if (step->node_seconds) {
    NSData *data = m->samples ? [m->samples resolveCounterRange:NSMakeRange(0, (NSUInteger)(2 * m->lib.n_steps))] : nil;
    if (data) { /* GPU timestamps (nanoseconds on Apple GPUs) around every dispatch */
      const MTLCounterResultTimestamp *ts = data.bytes;
      for (int i = 0; i < m->lib.n_steps; i++)
        step->node_seconds[m->lib.steps[i].node] += (double)(ts[2 * i + 1].timestamp - ts[2 * i].timestamp) * 1e-9;
    } else step->node_seconds[m->lib.steps[0].node] += cb.GPUEndTime - cb.GPUStartTime;
  }
  float *out = (float *)((uint8_t *)m->arena.contents + m->lib.out_offset);
  step->out = step->last_only ? out + (size_t)(T - 1) * (size_t)m->lib.out_width : out;
  return BN_OK;
}

static int mhost_supports(void *self, const bn_kkey *key) { return bn_metal_supports(key); }

static bn_codegen_info mhost_info(void *self) {
  mhost *m = self;
  return (bn_codegen_info){.isa = "metal", .cpu = m && m->dev ? m->dev.name.UTF8String : "", .features = "", .lanes = 32};
}

const bn_backend bn_backend_metal = {
    .name = "metal",
    .about = "the plan's Metal shaders on this Mac's GPU (docs/metal.md)",
    .targets = "native metal",
    .open = mhost_open,
    .supports = mhost_supports,
    .run_graph = mhost_run,
    .info = mhost_info,
    .close = mhost_close,
};
