/* A plan's Metal section (docs/bnplan.md, "The device section"): the library and dispatch table of
 * each K/V cache type, written by bnc compile --target metal and read back with every count,
 * index and offset checked against the plan's graph and memory plan. */
#include <stdlib.h>
#include <string.h>

#include "../codegen/ref/ref.h"
#include "emit.h"
#include "lint.h"

static const char MAGIC[8] = "BNMETAL1";
enum { NAME = 64, KERNEL_BYTES = 128, BIND_BYTES = 16, STEP_BYTES = 16 + BN_MTL_MAX_BIND * BIND_BYTES };
static const bn_dtype CACHES[2] = {BN_DT_F32, BN_DT_F16};

typedef struct {
  uint8_t *p;
  size_t n, cap;
  int oom;
} out;

static void put(out *o, const void *d, size_t n) {
  if (o->oom) return;
  if (o->n + n > o->cap) {
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->n + n) cap *= 2;
    uint8_t *p = realloc(o->p, cap);
    if (!p) {
      o->oom = 1;
      return;
    }
    o->p = p, o->cap = cap;
  }
  memcpy(o->p + o->n, d, n);
  o->n += n;
}
static void u32(out *o, uint32_t v) { put(o, &v, 4); }
static void i64(out *o, int64_t v) { put(o, &v, 8); }
static void pad8(out *o) {
  static const uint8_t z[8];
  put(o, z, (8 - o->n % 8) % 8);
}

static void write_lib(out *o, const bn_mtl_lib *l, bn_dtype kv) {
  u32(o, (uint32_t)kv), u32(o, (uint32_t)l->n_kernels), u32(o, (uint32_t)l->n_steps), u32(o, (uint32_t)l->n_rope);
  uint64_t sb = strlen(l->source);
  put(o, &sb, 8), put(o, l->source, sb), pad8(o);
  i64(o, l->out_offset), i64(o, l->out_width);
  for (int r = 0; r < 4; r++) u32(o, (uint32_t)l->rope_dims[r]), u32(o, 0), put(o, &l->rope_base[r], 8);
  for (int i = 0; i < l->n_kernels; i++) {
    const bn_mtl_kernel *k = &l->kernels[i];
    uint8_t rec[KERNEL_BYTES] = {0};
    int32_t ints[4] = {(int32_t)k->key.family, k->key.variant, k->key.pro, (int32_t)k->key.cache};
    int64_t kn[2] = {k->key.k, k->key.n};
    uint32_t shape[6] = {(uint32_t)k->n_buffers, (uint32_t)k->tg_block, k->threads, k->tg_bytes, k->groups_x, k->tok_tile};
    memcpy(rec, k->name, NAME), memcpy(rec + 64, ints, 16), memcpy(rec + 80, kn, 16), memcpy(rec + 96, &k->key.eps, 4);
    memcpy(rec + 100, shape, 24);
    put(o, rec, sizeof rec);
  }
  for (int i = 0; i < l->n_steps; i++) {
    const bn_mtl_dispatch *d = &l->steps[i];
    uint8_t rec[STEP_BYTES] = {0};
    int32_t head[4] = {d->kernel, d->node, d->n_bind, d->many};
    memcpy(rec, head, 16);
    for (int b = 0; b < d->n_bind; b++) {
      uint8_t *r = rec + 16 + b * BIND_BYTES;
      r[0] = d->bind[b].space;
      memcpy(r + 4, &d->bind[b].index, 4), memcpy(r + 8, &d->bind[b].offset, 8);
    }
    put(o, rec, sizeof rec);
  }
}

bn_status bn_metal_section(const bn_graph *g, const bn_memplan *mp, uint8_t **bytes, size_t *n, bn_error *err) {
  out o = {0};
  put(&o, MAGIC, 8), u32(&o, 2), u32(&o, 0);
  for (int c = 0; c < 2; c++) {
    bn_mtl_lib l;
    bn_status st = bn_metal_build(g, mp, CACHES[c], &l, err);
    if (st) return free(o.p), st;
    write_lib(&o, &l, CACHES[c]);
    bn_metal_lib_free(&l);
  }
  if (o.oom) return free(o.p), bn_fail(err, BN_E_NOMEM, "metal: out of memory");
  *bytes = o.p, *n = o.n;
  return BN_OK;
}

/* ---- reading ---- */

typedef struct {
  const uint8_t *p;
  size_t pos, end;
} in;

static const uint8_t *take(in *r, size_t n) {
  if (n > r->end - r->pos) return NULL;
  const uint8_t *p = r->p + r->pos;
  r->pos += n;
  return p;
}

/* the message first: it may name what is freed */
#define BAD(...) (bn_fail(err, BN_E_FORMAT, "metal section: " __VA_ARGS__), bn_metal_lib_free(l), BN_E_FORMAT)

/* One library; checked against g and mp. */
static bn_status read_lib(in *r, const bn_graph *g, const bn_memplan *mp, bn_mtl_lib *l, uint32_t *kv, bn_error *err) {
  memset(l, 0, sizeof *l);
  const uint8_t *h = take(r, 24);
  if (!h) return BAD("truncated");
  uint32_t nk, ns, nr;
  uint64_t sb;
  memcpy(kv, h, 4), memcpy(&nk, h + 4, 4), memcpy(&ns, h + 8, 4), memcpy(&nr, h + 12, 4), memcpy(&sb, h + 16, 8);
  if (*kv != BN_DT_F32 && *kv != BN_DT_F16) return BAD("cache type %u (f32 or f16)", *kv);
  if (nk < 1 || nk > 4096 || ns < 1 || ns > (1u << 20) || nr > 4)
    return BAD("%u kernels, %u dispatches, %u RoPE tables (at most 4096, 2^20, 4)", nk, ns, nr);
  const uint8_t *src = sb <= r->end - r->pos ? take(r, (size_t)sb) : NULL;
  if (!src || memchr(src, 0, (size_t)sb)) return BAD("the source (%llu bytes) is truncated or holds a NUL", (unsigned long long)sb);
  take(r, (8 - sb % 8) % 8);
  if (!(l->source = malloc((size_t)sb + 1))) return BAD("out of memory");
  memcpy(l->source, src, (size_t)sb), l->source[sb] = 0;
  const uint8_t *o = take(r, 16 + 4 * 16);
  if (!o) return BAD("truncated");
  memcpy(&l->out_offset, o, 8), memcpy(&l->out_width, o + 8, 8);
  const bn_value *ov = &g->values[g->outputs[0]];
  if (ov->kind != BN_VAL_NODE || l->out_offset != mp->offset[ov->node] || l->out_width != ov->shape.d[1])
    return BAD("the logits at %lld, %lld wide: not the graph's output", (long long)l->out_offset, (long long)l->out_width);
  l->n_rope = (int)nr;
  for (int i = 0; i < 4; i++) {
    uint32_t dims;
    memcpy(&dims, o + 16 + 16 * i, 4), memcpy(&l->rope_base[i], o + 24 + 16 * i, 8);
    l->rope_dims[i] = (int)dims;
    if (i < l->n_rope && (dims < 2 || dims > 4096 || dims % 2 || !(l->rope_base[i] > 0)))
      return BAD("RoPE table %d: %u dims, base %g", i, dims, l->rope_base[i]);
  }
  l->kernels = calloc(nk, sizeof *l->kernels), l->steps = calloc(ns, sizeof *l->steps);
  if (!l->kernels || !l->steps) return BAD("out of memory");
  l->n_kernels = (int)nk, l->n_steps = (int)ns;
  for (uint32_t i = 0; i < nk; i++) {
    const uint8_t *k = take(r, KERNEL_BYTES);
    if (!k) return BAD("truncated in kernel %u", i);
    bn_mtl_kernel *m = &l->kernels[i];
    int32_t ints[4];
    int64_t kn[2];
    uint32_t shape[6];
    memcpy(m->name, k, NAME), memcpy(ints, k + 64, 16), memcpy(kn, k + 80, 16), memcpy(&m->key.eps, k + 96, 4);
    memcpy(shape, k + 100, 24);
    if (!memchr(m->name, 0, NAME)) return BAD("kernel %u's name is not terminated", i);
    m->key = (bn_kkey){.family = (bn_kfamily)ints[0], .variant = ints[1], .pro = ints[2], .cache = (bn_dtype)ints[3],
                       .k = kn[0], .n = kn[1], .eps = m->key.eps};
    m->n_buffers = (int)shape[0], m->tg_block = (int)shape[1], m->threads = shape[2], m->tg_bytes = shape[3];
    m->groups_x = shape[4], m->tok_tile = shape[5];
    if ((uint32_t)ints[0] >= BN_K_COUNT || shape[0] < 1 || shape[0] > BN_MTL_MAX_BIND || shape[1] > 1 || !shape[2] ||
        shape[2] % 32 || shape[2] > 1024 || shape[3] > 32768 || !shape[4] || shape[4] > (1u << 24) || !shape[5] ||
        shape[5] > 1024)
      return BAD("kernel %s: family %d, %u buffers, %u threads, %u bytes of threadgroup memory, %u x 1/%u groups", m->name,
                 ints[0], shape[0], shape[2], shape[3], shape[4], shape[5]);
  }
  int layers = bn_ref_kv_layers(g);
  for (uint32_t i = 0; i < ns; i++) {
    const uint8_t *s = take(r, STEP_BYTES);
    if (!s) return BAD("truncated in dispatch %u", i);
    bn_mtl_dispatch *d = &l->steps[i];
    memcpy(&d->kernel, s, 4), memcpy(&d->node, s + 4, 4), memcpy(&d->n_bind, s + 8, 4), memcpy(&d->many, s + 12, 4);
    if (d->kernel < 0 || d->kernel >= l->n_kernels || d->node < 0 || d->node >= g->n_nodes ||
        d->n_bind != l->kernels[d->kernel].n_buffers || d->many < -1 || d->many >= l->n_kernels ||
        (d->many >= 0 && l->kernels[d->many].n_buffers != d->n_bind))
      return BAD("dispatch %u: kernel %d (many tokens: %d), node %d, %d buffers", i, d->kernel, d->many, d->node,
                 d->n_bind);
    for (int b = 0; b < d->n_bind; b++) {
      const uint8_t *e = s + 16 + b * BIND_BYTES;
      bn_mtl_bind *x = &d->bind[b];
      x->space = e[0];
      memcpy(&x->index, e + 4, 4), memcpy(&x->offset, e + 8, 8);
      int ok = (b == 0) == (x->space == BN_MTL_STEP);
      switch (x->space) {
      case BN_MTL_STEP: case BN_MTL_TOKENS: ok = ok && !x->index && !x->offset; break;
      case BN_MTL_ARENA: ok = ok && !x->index && x->offset >= 0 && x->offset < mp->arena_bytes && x->offset % 4 == 0; break;
      case BN_MTL_WEIGHT: /* operand `index` of the dispatch's node */
        ok = ok && x->index >= 0 && x->index < g->nodes[d->node].n_in &&
             g->values[g->nodes[d->node].in[x->index]].kind == BN_VAL_WEIGHT && !x->offset;
        break;
      case BN_MTL_KCACHE: case BN_MTL_VCACHE: ok = ok && x->index >= 0 && x->index < layers && !x->offset; break;
      case BN_MTL_ROPE: ok = ok && x->index >= 0 && x->index < l->n_rope && !x->offset; break;
      default: ok = 0;
      }
      if (!ok) return BAD("dispatch %u, buffer %d: space %u, index %d, offset %lld", i, b, x->space, x->index, (long long)x->offset);
    }
  }
  return BN_OK;
}

bn_status bn_metal_section_read(const void *bytes, size_t n, const bn_graph *g, const bn_memplan *mp, bn_dtype kv,
                                bn_mtl_lib *lib, bn_error *err) {
  memset(lib, 0, sizeof *lib);
  in r = {bytes, 0, n};
  const uint8_t *h = take(&r, 16);
  uint32_t nl;
  if (!h || memcmp(h, MAGIC, 8)) return bn_fail(err, BN_E_FORMAT, "metal section: bad magic (not a Metal library)");
  memcpy(&nl, h + 8, 4);
  if (nl < 1 || nl > 4) return bn_fail(err, BN_E_FORMAT, "metal section: %u libraries (1 to 4)", nl);
  for (uint32_t i = 0; i < nl; i++) {
    bn_mtl_lib l;
    uint32_t t = 0;
    bn_status st = read_lib(&r, g, mp, &l, &t, err);
    if (st) return bn_metal_lib_free(lib), st;
    if (t == (uint32_t)kv && !lib->source) *lib = l;
    else bn_metal_lib_free(&l);
  }
  if (r.pos != r.end) return bn_metal_lib_free(lib), bn_fail(err, BN_E_FORMAT, "metal section: %zu bytes left over", r.end - r.pos);
  if (!lib->source)
    return bn_fail(err, BN_E_UNSUPPORTED, "metal section: no library for %s K/V caches", bn_dtype_table[kv].name);
  return BN_OK;
}

int bn_metal_lib_equal(const bn_mtl_lib *a, const bn_mtl_lib *b) {
  if (strcmp(a->source, b->source) || a->n_kernels != b->n_kernels || a->n_steps != b->n_steps || a->n_rope != b->n_rope ||
      a->out_offset != b->out_offset || a->out_width != b->out_width)
    return 0;
  for (int r = 0; r < a->n_rope; r++)
    if (a->rope_dims[r] != b->rope_dims[r] || a->rope_base[r] != b->rope_base[r]) return 0;
  for (int i = 0; i < a->n_kernels; i++) {
    const bn_mtl_kernel *x = &a->kernels[i], *y = &b->kernels[i];
    if (strcmp(x->name, y->name) || !bn_kkey_eq(&x->key, &y->key) || x->n_buffers != y->n_buffers ||
        x->tg_block != y->tg_block || x->threads != y->threads || x->tg_bytes != y->tg_bytes ||
        x->groups_x != y->groups_x || x->tok_tile != y->tok_tile)
      return 0;
  }
  for (int i = 0; i < a->n_steps; i++) {
    const bn_mtl_dispatch *x = &a->steps[i], *y = &b->steps[i];
    if (x->kernel != y->kernel || x->node != y->node || x->many != y->many || x->n_bind != y->n_bind) return 0;
    for (int k = 0; k < x->n_bind; k++)
      if (x->bind[k].space != y->bind[k].space || x->bind[k].index != y->bind[k].index ||
          x->bind[k].offset != y->bind[k].offset)
        return 0;
  }
  return 1;
}

bn_status bn_metal_host_lib(const bn_backend_opts *o, bn_mtl_lib *lib, bn_error *err) {
  if (!o->g || !o->memplan) return bn_fail(err, BN_E_INVALID, "metal: runs whole plans (no graph given)");
  bn_dtype kv = o->kv == BN_DT_F16 ? BN_DT_F16 : BN_DT_F32;
  bn_status st = bn_metal_build(o->g, o->memplan, kv, lib, err);
  if (!st && (st = bn_metal_lint(lib->source, err))) bn_metal_lib_free(lib); /* only MSL a Mac takes runs here */
  if (st || !o->device) return st;
  bn_mtl_lib stored;
  if (!(st = bn_metal_section_read(o->device, o->device_bytes, o->g, o->memplan, kv, &stored, err)) &&
      !bn_metal_lib_equal(&stored, lib))
    st = bn_fail(err, BN_E_FORMAT, "metal: the plan's Metal library is not the one this bnc emits for its graph "
                 "(made by another version? recompile)");
  bn_metal_lib_free(&stored);
  if (st) bn_metal_lib_free(lib);
  return st;
}
