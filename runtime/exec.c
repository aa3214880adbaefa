#include "exec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../codegen/kernels.h"
#include "../codegen/ref/ref.h"
#include "pool.h"
#include "qkv.h"

/* A node split over the threads: its generated kernel (attention without one runs the reference by heads). */
typedef struct {
  bn_kfamily family;
  int split; /* the node is split over the threads (a generated kernel, or attention) */
  void *fn;
  const void *a, *w, *resid;
  void *out;
  int64_t N;
  int64_t granule; /* matmuls: rows are split in multiples of this (bn_kfamily_granule) */
  const float *wn; /* with a norm + quantize prologue (bn_mmp_kernel): the norm weights (a is then x); else NULL */
  int64_t xw;      /* and x's row in floats */
  int64_t granule1; /* matmuls: the granule of a q/k/v phase's rows (whole heads), when not granule (0) */
  int qkv;          /* 1 + the index in bn_exec.qkv of the phase this matmul or attention is part of, else 0 */
  int skip;         /* every step skips this node: its q/k/v phase does its work */
} jit_node;

/* A prologue matmul splits a chunk by tokens when every thread gets this many (each thread then
 * quantizes only its own tokens), else by rows (each quantizes the chunk's few tokens itself). */
enum { PRO_SPLIT_TOKENS = 8 };
static int by_tokens(const jit_node *j, int64_t T, int nth) {
  return j->wn && T >= (int64_t)PRO_SPLIT_TOKENS * nth;
}

struct bn_exec {
  const bn_graph *g;
  const bn_memplan *mp;
  int n_ctx, n_layers, n_kinds, poison, step;
  uint8_t *arena;
  int32_t *tokens;
  bn_ref_env env;
  bn_ref_scratch scratch;
  void *scratch_mem;
  int *kind_of;        /* per node */
  bn_exec_stat *stats; /* per kind */
  int *last;           /* per value: last reader */
  bn_trace *trace;
  size_t kv_bytes;
  void *kv; /* the K/V caches of every layer of every sequence, one mapping */
  int n_seq;          /* sequences, each with its own K/V caches (bn_exec_opts.n_seq) */
  const char *no_batch; /* why a step may not hold several sequences (NULL: it may) */
  int *seg_t0;        /* a step's segments: the first row of each */
  uint8_t *seq_busy;  /* n_seq flags: a sequence is in the step already */
  void **kc_all, **vc_all; /* sequence s's layer L: [s n_layers + L]; env.kc/vc point at a step's sequence */
  bn_codegen *cg; /* the backend, or NULL: the reference kernels */
  bn_pool *pool;
  int own_pool; /* 0: the caller's (bn_exec_opts.pool) */
  float *scores; /* attention scores: bn_attn_scores(max_tokens, n_ctx) floats per thread */
  float *tmp;    /* the gate kernel's row: tmp_width floats per thread */
  int64_t tmp_width;
  uint8_t *pqa;  /* prologue matmuls' QA8 rows: pqa_bytes per thread */
  size_t pqa_bytes;
  float *rope[4]; /* RoPE angle tables, one per (dims, base) */
  double rope_key[4][2];
  int n_rope;
  jit_node *jit;
  int n_jit;
  bn_qkv *qkv; /* the q/k/v phases (qkv.h) */
  int n_qkv;
  float *qp;      /* their rotated q: a step's rows, the widest q's floats each */
  float *k1;      /* and each thread's rotated k row: k1_width floats a thread */
  int64_t k1_width;
  double *node_secs; /* a graph backend's time per node in a step */
};

static jit_node jit_of(bn_kfamily f, void *fn, const void *a, const void *w, const void *resid, void *out, int64_t N,
                       int64_t granule) {
  return (jit_node){.family = f, .split = 1, .fn = fn, .a = a, .w = w, .resid = resid, .out = out, .N = N,
                    .granule = granule};
}

/* Thread i's scratch: a gate's row of floats, a prologue's QA8 rows. */
static float *tmp_of(const bn_exec *e, int i) { return e->tmp + (size_t)i * (size_t)(e->tmp_width + 1); }
static uint8_t *pqa_of(const bn_exec *e, int i) { return e->pqa + (size_t)i * e->pqa_bytes; }

/* Binds node i's operands to its kernel fn (of key) as the family's calling convention takes them. */
static bn_status bind_kernel(bn_exec *e, int i, const bn_kkey *key, void *fn, bn_error *err) {
  const bn_node *n = &e->g->nodes[i];
  jit_node *j = &e->jit[i];
  void **v = e->env.val;
  switch (key->family) {
  case BN_K_MATMUL:
  case BN_K_MATMUL_LUT:
  case BN_K_MATMUL_T1:
  case BN_K_MATMUL_G: {
    int wi = key->pro ? 2 : 1; /* operands: qa, w (, resid); with a prologue x, norm weights, w (, resid) */
    *j = jit_of(key->family, fn, v[n->in[0]], v[n->in[wi]], key->variant == BN_MM_DQ_ADD ? v[n->in[wi + 1]] : NULL,
                v[n->out], key->n, bn_kfamily_granule(key->family));
    if (key->pro) {
      int gate = key->pro - 1 == BN_NQ_GATE_RELU2 || key->pro - 1 == BN_NQ_GATE_SILU;
      size_t qa = (size_t)e->mp->max_tokens * (size_t)bn_qa8_row_bytes(key->k);
      j->wn = v[n->in[1]], j->xw = gate ? 2 * key->k : key->k;
      if (qa > e->pqa_bytes) e->pqa_bytes = qa;
      if (gate && key->k > e->tmp_width) e->tmp_width = key->k;
    }
    break;
  }
  case BN_K_MATMUL_F: *j = jit_of(key->family, fn, v[n->in[0]], v[n->in[1]], NULL, v[n->out], key->n, 1); break;
  case BN_K_ATTENTION: j->fn = fn; break; /* run_attention binds it */
  case BN_K_EMBED: *j = jit_of(key->family, fn, v[n->in[0]], v[n->in[1]], NULL, v[n->out], 0, 1); break;
  case BN_K_SLICE: *j = jit_of(key->family, fn, v[n->in[0]], NULL, NULL, v[n->out], 0, 1); break;
  case BN_K_NORM_QUANT:
    if (key->k > e->tmp_width) e->tmp_width = key->k;
    *j = jit_of(key->family, fn, v[n->in[0]], n->n_in > 1 ? v[n->in[1]] : NULL, NULL, v[n->out], key->k, 1);
    break;
  case BN_K_ROPE: {
    int r = 0, dims = (int)n->attr[2];
    while (r < e->n_rope && !(e->rope_key[r][0] == dims && e->rope_key[r][1] == n->attr[3])) r++;
    if (r == e->n_rope) {
      if (r == 4) return BN_OK; /* more angle tables than any model has: reference */
      if (!(e->rope[r] = malloc((size_t)e->n_ctx * (size_t)dims * sizeof(float))))
        return bn_fail(err, BN_E_NOMEM, "executor: out of memory");
      bn_rope_table(e->rope[r], e->n_ctx, dims, n->attr[3]);
      e->rope_key[r][0] = dims, e->rope_key[r][1] = n->attr[3];
      e->n_rope++;
    }
    *j = jit_of(key->family, fn, v[n->in[0]], e->rope[r], NULL, v[n->out], (int64_t)n->attr[0], 1);
    break;
  }
  case BN_K_PEAK:
  case BN_K_COUNT: return bn_fail(err, BN_E_INVALID, "executor: node %d selects no node kernel", i);
  }
  e->n_jit++;
  return BN_OK;
}

/* The kernels of every node the backend supports, prepared in one call and bound. */
static bn_status prepare_kernels(bn_exec *e, bn_error *err) {
  const bn_graph *g = e->g;
  bn_kkey *keys = malloc(((size_t)g->n_nodes + 1) * sizeof *keys);
  int *node = malloc(((size_t)g->n_nodes + 1) * sizeof *node);
  void **fns = calloc((size_t)g->n_nodes + 1, sizeof *fns);
  int n = 0;
  bn_status st = keys && node && fns ? BN_OK : bn_fail(err, BN_E_NOMEM, "executor: out of memory");
  for (int i = 0; !st && i < g->n_nodes; i++) {
    if (!bn_kernel_select(g, i, &keys[n])) continue;
    if (keys[n].family == BN_K_ATTENTION) keys[n].cache = e->env.kv;
    if (bn_codegen_supports(e->cg, &keys[n])) node[n++] = i;
  }
  if (!st) st = bn_codegen_prepare(e->cg, keys, n, fns, err);
  for (int k = 0; !st && k < n; k++) st = bind_kernel(e, node[k], &keys[k], fns[k], err);
  free(keys), free(node), free(fns);
  return st;
}

/* Attention over heads [H i / n, H (i + 1) / n) of T tokens of q (output rows y) at pos.. of sequence seq,
 * after the K/V rows were stored. */
static void run_attention(bn_exec *e, int node, int i, int n, const float *q, float *y, int64_t T, int pos, int seq) {
  const bn_node *nd = &e->g->nodes[node];
  int layer = (int)nd->attr[0], H = (int)nd->attr[1];
  int h0 = H * i / n, h1 = H * (i + 1) / n;
  float *scores = e->scores + (size_t)i * (size_t)bn_attn_scores(e->mp->max_tokens, e->n_ctx);
  void *kc = e->kc_all[seq * e->n_layers + layer], *vc = e->vc_all[seq * e->n_layers + layer];
  if (h0 >= h1) return;
  if (e->jit[node].fn) ((bn_attn_kernel)e->jit[node].fn)(q, kc, vc, y, scores, T, pos, h0, h1, e->n_ctx);
  else
    bn_ref_attention_heads(q, T, H, (int)nd->attr[2], (int)nd->attr[3], pos, e->n_ctx, e->env.kv, kc, vc, scores, y,
                           h0, h1);
}

/* Thread i of n runs its share of a split kernel for T tokens: matmuls rows
 * [N i / n, N (i + 1) / n) in whole granules, RoPE heads, norms tokens. */
static void run_share(bn_exec *e, const jit_node *j, int64_t T, int i, int n) {
  if (by_tokens(j, T, n)) { /* a prologue matmul by tokens */
    int64_t t0 = T * i / n, t1 = T * (i + 1) / n;
    const float *resid = j->resid ? (const float *)j->resid + t0 * j->N : NULL;
    ((bn_mmp_kernel)j->fn)(pqa_of(e, i), j->w, (float *)j->out + t0 * j->N, resid, (const float *)j->a + t0 * j->xw,
                           j->wn, tmp_of(e, i), t1 - t0, 0, j->N);
    return;
  }
  int64_t a, b; /* this thread's rows, tokens or heads */
  bn_ksplit split = bn_kfamilies[j->family].split;
  if (split == BN_SPLIT_ROWS) bn_pool_share(j->N, j->granule1 ? j->granule1 : j->granule, i, n, &a, &b);
  else {
    int64_t all = split == BN_SPLIT_HEADS ? j->N : T;
    a = all * i / n, b = all * (i + 1) / n;
  }
  if (a >= b) return;
  switch (j->family) {
  case BN_K_MATMUL:
  case BN_K_MATMUL_LUT:
  case BN_K_MATMUL_T1:
  case BN_K_MATMUL_G:
    if (j->wn) ((bn_mmp_kernel)j->fn)(pqa_of(e, i), j->w, j->out, j->resid, j->a, j->wn, tmp_of(e, i), T, a, b);
    else ((bn_mm_kernel)j->fn)(j->a, j->w, j->out, j->resid, T, a, b);
    break;
  case BN_K_MATMUL_F: ((bn_mf_kernel)j->fn)(j->a, j->w, j->out, T, a, b); break;
  case BN_K_NORM_QUANT: ((bn_nq_kernel)j->fn)(j->a, j->w, j->out, tmp_of(e, i), T, a, b); break;
  case BN_K_EMBED:
  case BN_K_SLICE: ((bn_rows_kernel)j->fn)(j->a, j->w, j->out, T, a, b); break;
  case BN_K_ROPE: ((bn_rope_kernel)j->fn)(j->a, j->out, j->w, T, e->env.pos, a, b, e->n_ctx); break;
  case BN_K_ATTENTION: /* run_step: after the K/V store */
  case BN_K_PEAK:
  case BN_K_COUNT: break;
  }
}

int bn_exec_ref_nodes(const bn_exec *e, char *kinds, size_t cap) {
  int n = 0;
  size_t len = 0;
  if (cap) kinds[0] = 0;
  if (e->cg && bn_codegen_runs_graphs(e->cg)) return 0; /* the backend runs every node */
  for (int i = 0; i < e->g->n_nodes; i++) {
    if (e->jit && e->jit[i].fn) continue;
    n++;
    const char *k = e->stats[e->kind_of[i]].kind;
    if (strstr(kinds, k) || len + strlen(k) + 3 >= cap) continue; /* each kind once */
    len += (size_t)snprintf(kinds + len, cap - len, "%s%s", len ? ", " : "", k);
  }
  return n;
}

const char *bn_exec_aot_missing(const bn_exec *e) { return e->cg ? bn_codegen_code_missing(e->cg) : NULL; }

const char *bn_exec_backend(const bn_exec *e) { return e->cg ? bn_codegen_backend(e->cg)->name : "ref"; }

int bn_exec_jit_nodes(const bn_exec *e, bn_codegen_counts *counts) {
  if (counts) *counts = e->cg ? bn_codegen_get_counts(e->cg) : (bn_codegen_counts){0};
  return e->cg && bn_codegen_runs_graphs(e->cg) ? e->g->n_nodes : e->n_jit; /* a device runs every node */
}

/* "rope", or "fused:tmatmul+dequant+add" */
static void kind_name(const bn_node *n, char *out, size_t cap) {
  if (!n->body) {
    snprintf(out, cap, "%s", bn_op_table[n->op].name);
    return;
  }
  size_t len = (size_t)snprintf(out, cap, "fused:");
  for (int i = 0; i < n->body->n_nodes && len < cap; i++)
    len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "+" : "", bn_op_table[n->body->nodes[i].op].name);
}

static bn_status bind_values(bn_exec *e, bn_error *err) {
  const bn_graph *g = e->g;
  const bn_memplan *mp = e->mp;
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    if (v->kind == BN_VAL_WEIGHT) {
      if (!v->data) return bn_fail(err, BN_E_INVALID, "weight %%%s has no data", v->name);
      e->env.val[i] = (void *)v->data;
    } else if (v->kind == BN_VAL_INPUT) {
      if (v->dtype != BN_DT_I32) return bn_fail(err, BN_E_UNSUPPORTED, "input %%%s: only i32 tokens", v->name);
      e->env.val[i] = e->tokens;
    } else e->env.val[i] = e->arena + mp->offset[v->node];
  }
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *n = &g->nodes[i];
    if (!n->body) continue;
    void **bv = calloc((size_t)n->body->n_values, sizeof *bv);
    if (!bv) return bn_fail(err, BN_E_NOMEM, "executor: out of memory");
    e->env.body_val[i] = bv;
    for (int k = 0, a = 0; k < n->body->n_values; k++)
      bv[k] = n->body->values[k].kind == BN_VAL_INPUT ? e->env.val[n->in[a++]] : e->arena + mp->body_offset[i][k];
    bv[n->body->outputs[0]] = e->env.val[n->out];
  }
  return BN_OK;
}

static bn_status make_kinds(bn_exec *e, bn_error *err) {
  const bn_graph *g = e->g;
  e->kind_of = malloc((size_t)g->n_nodes * sizeof *e->kind_of);
  e->stats = calloc((size_t)g->n_nodes + 1, sizeof *e->stats);
  if (!e->kind_of || !e->stats) return bn_fail(err, BN_E_NOMEM, "executor: out of memory");
  for (int i = 0; i < g->n_nodes; i++) {
    char k[96];
    kind_name(&g->nodes[i], k, sizeof k);
    int j = 0;
    while (j < e->n_kinds && strcmp(e->stats[j].kind, k)) j++;
    if (j == e->n_kinds) snprintf(e->stats[e->n_kinds++].kind, sizeof e->stats[0].kind, "%s", k);
    e->kind_of[i] = j;
  }
  return BN_OK;
}

/* A layer's K (or V) cache in bytes, whole cache lines. */
static size_t kv_layer_bytes(const bn_graph *g, int L, int n_ctx, bn_dtype kv) {
  return ((size_t)bn_ref_kv_width(g, L) * (size_t)n_ctx * (kv == BN_DT_F16 ? 2 : 4) + 63) / 64 * 64;
}

/* The mapping for the caches: whole 2 MiB pages, at least one (a graph without attention has no cache). */
static size_t kv_mapped(size_t bytes) {
  size_t huge = (size_t)2 << 20;
  return bytes ? (bytes + huge - 1) / huge * huge : huge;
}

/* The K/V caches of every layer: one mapping advised for 2 MiB pages and faulted in
 * here, not on the token path (a decode step reads a few rows of every head of every
 * layer: in 4 KiB pages that is a TLB miss every 10 keys or so). Zeroed by the kernel. */
static void *kv_alloc(size_t bytes) {
  size_t sz = kv_mapped(bytes);
  void *a = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a == MAP_FAILED) return NULL;
  madvise(a, sz, MADV_HUGEPAGE); /* advice: without transparent huge pages it still works */
#ifdef MADV_POPULATE_WRITE
  madvise(a, sz, MADV_POPULATE_WRITE); /* Linux 5.14+; elsewhere the pages fault in as they are used */
#endif
  return a;
}

static int64_t gcd(int64_t a, int64_t b) { return b ? gcd(b, a % b) : a; }

/* The q/k/v phases, where every part has generated code and the
 * projection's heads split over the threads with the largest share at most 1/8 above the mean
 * (a share is whole heads; on 2b4t's 30, 8 heads against 7.5 on 4 threads, 2 against 1.875 on
 * 16); none with opts->no_qkv_phase. */
static bn_status make_qkv(bn_exec *e, const bn_exec_opts *opts, bn_error *err) {
  const bn_graph *g = e->g;
  int nth = bn_pool_size(e->pool), n = 0;
  if (opts->no_qkv_phase) return BN_OK; /* off: decoding runs the nodes (for comparisons) */
  for (int a = 0; a < g->n_nodes; a++) n += g->nodes[a].op == BN_OP_ATTENTION;
  if (!n) return BN_OK;
  if (!(e->qkv = malloc((size_t)n * sizeof *e->qkv))) return bn_fail(err, BN_E_NOMEM, "executor: out of memory");
  int64_t qmax = 0, kmax = 0;
  for (int a = 0; a < g->n_nodes; a++) {
    bn_qkv q;
    if (!bn_qkv_find(g, a, &q)) continue;
    jit_node *m = &e->jit[q.mm];
    jit_node *rq = &e->jit[q.skip[BN_QKV_ROPE_Q]], *rk = &e->jit[q.skip[BN_QKV_ROPE_K]];
    if (!m->fn || !bn_kfamily_tmatmul(m->family) || !rq->fn || rq->family != BN_K_ROPE ||
        !rk->fn || rk->family != BN_K_ROPE)
      continue;
    int64_t gran = m->granule / gcd(m->granule, q.head_dim) * q.head_dim; /* whole heads, whole row blocks */
    int64_t heads = m->N / gran, most = (heads + nth - 1) / nth;
    if (m->N % gran || most * 8 * nth > 9 * heads) continue;
    e->qkv[e->n_qkv++] = q;
    m->granule1 = gran, m->qkv = e->jit[a].qkv = e->n_qkv;
    for (int s = 0; s < 5; s++) e->jit[q.skip[s]].skip = 1;
    if (q.qw > qmax) qmax = q.qw;
    if (q.kw > kmax) kmax = q.kw;
  }
  e->k1_width = kmax + 16; /* and a vector of slack */
  if (e->n_qkv && (!(e->qp = aligned_alloc(64, ((size_t)e->mp->max_tokens * (size_t)qmax + 16) * 4)) ||
                   !(e->k1 = aligned_alloc(64, (size_t)nth * (size_t)e->k1_width * 4))))
    return bn_fail(err, BN_E_NOMEM, "executor: out of memory");
  return BN_OK;
}

/* A value of one row per token: [T, ...] with every other dim known. */
static int per_token(const bn_value *v) {
  if (v->shape.rank < 1 || v->shape.d[0] != BN_DIM_T) return 0;
  for (int k = 1; k < v->shape.rank; k++)
    if (v->shape.d[k] <= 0) return 0;
  return 1;
}

static bn_status check_body(const bn_graph *outer, const bn_node *n, bn_error *err) {
  const bn_graph *b = n->body;
  for (int i = 0; i < b->n_nodes; i++) {
    const bn_value *v = &b->values[b->nodes[i].out];
    if (b->nodes[i].op == BN_OP_ATTENTION || b->nodes[i].op == BN_OP_FUSED || !per_token(v))
      return bn_fail(err, BN_E_FORMAT, "node %%%s: its body computes %%%s, which the executor cannot run there (%s)",
                     outer->values[n->out].name, v->name,
                     b->nodes[i].op == BN_OP_ATTENTION || b->nodes[i].op == BN_OP_FUSED ? "attention or a nested fusion"
                                                                                         : "not one row per token");
  }
  return BN_OK;
}

bn_status bn_exec_check(const bn_graph *g, int n_vocab, bn_error *err) {
  int inputs = 0, max_layer = -1;
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    if (v->kind == BN_VAL_INPUT && (v->dtype != BN_DT_I32 || v->shape.rank != 1 || v->shape.d[0] != BN_DIM_T))
      return bn_fail(err, BN_E_FORMAT, "input %%%s must be the tokens, i32[T]", v->name);
    inputs += v->kind == BN_VAL_INPUT;
    for (int k = 0; v->kind == BN_VAL_WEIGHT && k < v->shape.rank; k++)
      if (v->shape.d[k] <= 0) return bn_fail(err, BN_E_FORMAT, "weight %%%s has a symbolic dimension", v->name);
    if (v->kind == BN_VAL_NODE && !per_token(v))
      return bn_fail(err, BN_E_FORMAT, "value %%%s is not one row per token ([T, ...])", v->name);
  }
  if (inputs != 1) return bn_fail(err, BN_E_FORMAT, "the graph has %d inputs (one: the tokens)", inputs);
  const bn_value *out = g->n_outputs ? &g->values[g->outputs[0]] : NULL;
  if (!out || out->kind != BN_VAL_NODE || out->dtype != BN_DT_F32 || out->shape.rank != 2 || out->shape.d[1] != n_vocab)
    return bn_fail(err, BN_E_FORMAT, "the graph's output %%%s is not the logits, f32[T, %d] (the vocabulary's size)",
                   out ? out->name : "(none)", n_vocab);
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *n = &g->nodes[i];
    bn_status st = n->body ? check_body(g, n, err) : BN_OK;
    if (st) return st;
    if (n->op == BN_OP_ATTENTION && (int)n->attr[0] > max_layer) max_layer = (int)n->attr[0];
  }
  /* one attention node per layer: the layer's K/V cache is sized by it */
  uint8_t *seen = calloc((size_t)max_layer + 2, 1);
  if (!seen) return bn_fail(err, BN_E_NOMEM, "out of memory");
  for (int i = 0; i < g->n_nodes; i++) {
    const bn_node *n = &g->nodes[i];
    if (n->op != BN_OP_ATTENTION) continue;
    if (seen[(int)n->attr[0]]++) {
      free(seen);
      return bn_fail(err, BN_E_FORMAT, "attention %%%s: layer %d has a K/V cache already (one attention a layer)",
                     g->values[n->out].name, (int)n->attr[0]);
    }
  }
  free(seen);
  return BN_OK;
}

/* Opens the backend for the plan's target and prepares every node's kernel, or hands a graph backend the graph. */
static bn_status open_backend(bn_exec *e, const bn_exec_opts *opts, bn_error *err) {
  const char *target = opts->target ? opts->target : "native";
  bn_backend_opts bo = {.target = target, .isa = opts->isa, .cache = opts->cache, .code = opts->code, .g = e->g,
                        .memplan = e->mp, .n_ctx = e->n_ctx, .kv = e->env.kv,
                        .device = opts->device, .device_bytes = opts->device_bytes};
  bn_status st = bn_codegen_open(opts->backend, &bo, &e->cg, err);
  if (st && (!strcmp(target, "native") || bn_words_has(opts->backend->targets, target))) return st; /* not the target's fault */
  if (st) {
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err->msg); /* err->msg cannot be both source and destination */
    return bn_fail(err, st, "%s (the plan's target is %s: recompile with --target=native)", why, target);
  }
  if (bn_codegen_runs_graphs(e->cg))
    return (e->node_secs = calloc((size_t)e->g->n_nodes + 1, sizeof *e->node_secs)) ? BN_OK
           : bn_fail(err, BN_E_NOMEM, "executor: out of memory");
  if ((st = prepare_kernels(e, err))) return st;
  if (!(e->tmp = malloc((size_t)bn_pool_size(e->pool) * (size_t)(e->tmp_width + 1) * sizeof *e->tmp)))
    return bn_fail(err, BN_E_NOMEM, "executor: out of memory");
  if (e->pqa_bytes && !(e->pqa = aligned_alloc(64, (size_t)bn_pool_size(e->pool) * e->pqa_bytes)))
    return bn_fail(err, BN_E_NOMEM, "executor: out of memory for the prologue rows (%zu bytes a thread)", e->pqa_bytes);
  return make_qkv(e, opts, err);
}

/* Why a step may not hold several sequences, or NULL: their last tokens' logits are computed by moving
 * those rows to the front of the output projection's input, and RoPE runs per sequence. */
static const char *batch_limit(const bn_exec *e) {
  const bn_graph *g = e->g;
  int o = g->values[g->outputs[0]].node;
  if (o < 0 || g->nodes[o].op != BN_OP_OUTPUT_PROJ || g->nodes[o].body)
    return "the logits do not come from an output projection";
  if (e->last[g->nodes[o].in[0]] != o) return "the output projection's input is read after it";
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; g->nodes[i].body && k < g->nodes[i].body->n_nodes; k++)
      if (g->nodes[i].body->nodes[k].op == BN_OP_ROPE) return "a fused node holds a RoPE";
  return NULL;
}

static bn_status use_pool(bn_exec *e, const bn_exec_opts *opts, bn_error *err) {
  if (opts && opts->pool) return e->pool = opts->pool, BN_OK;
  e->own_pool = 1;
  return bn_pool_create(opts && opts->threads > 0 ? opts->threads : 1, &e->pool, err);
}

bn_status bn_exec_create(const bn_graph *g, const bn_memplan *mp, int n_ctx, const bn_exec_opts *opts, bn_exec **out,
                         bn_error *err) {
  *out = NULL;
  bn_status st = bn_memplan_check(mp, g, err);
  if (st) return st;
  bn_dtype kvt = opts ? opts->kv : BN_DT_F32;
  int n_seq = opts && opts->n_seq > 1 ? opts->n_seq : 1;
  if (kvt != BN_DT_F32 && kvt != BN_DT_F16)
    return bn_fail(err, BN_E_INVALID, "executor: KV cache type %s (f32 or f16)",
                   (unsigned)kvt < BN_DT_COUNT ? bn_dtype_table[kvt].name : "?");
  if (n_seq > BN_EXEC_MAX_SEQ) return bn_fail(err, BN_E_INVALID, "executor: %d sequences (at most %d)", n_seq, BN_EXEC_MAX_SEQ);
  bn_exec *e = calloc(1, sizeof *e);
  if (!e) return bn_fail(err, BN_E_NOMEM, "executor: out of memory");
  e->g = g;
  e->mp = mp;
  e->n_ctx = n_ctx;
  e->n_seq = n_seq;
  e->env.g = g;
  e->env.kv = kvt;
  e->n_layers = bn_ref_kv_layers(g);
  e->arena = aligned_alloc(BN_ARENA_ALIGN, (size_t)(mp->arena_bytes ? mp->arena_bytes : BN_ARENA_ALIGN));
  e->tokens = calloc((size_t)mp->max_tokens, sizeof *e->tokens);
  e->env.val = calloc((size_t)g->n_values, sizeof *e->env.val);
  e->env.body_val = calloc((size_t)g->n_nodes + 1, sizeof *e->env.body_val);
  e->kc_all = calloc((size_t)n_seq * (size_t)e->n_layers + 1, sizeof *e->kc_all);
  e->vc_all = calloc((size_t)n_seq * (size_t)e->n_layers + 1, sizeof *e->vc_all);
  e->seg_t0 = calloc((size_t)mp->max_tokens + 1, sizeof *e->seg_t0);
  e->seq_busy = calloc((size_t)n_seq, 1);
  e->env.kc = e->kc_all, e->env.vc = e->vc_all;
  e->last = malloc((size_t)g->n_values * sizeof *e->last);
  int64_t sz[6], total = 0;
  bn_ref_scratch_size(g, mp->max_tokens, n_ctx, sz);
  for (int i = 0; i < 6; i++) total += (sz[i] + 63) / 64 * 64;
  uint8_t *s = e->scratch_mem = calloc(1, (size_t)total);
  if (!e->arena || !e->tokens || !e->env.val || !e->env.body_val || !e->kc_all || !e->vc_all || !e->seg_t0 ||
      !e->seq_busy || !e->last || !s) {
    bn_exec_free(e);
    return bn_fail(err, BN_E_NOMEM, "executor: out of memory (arena %lld bytes)", (long long)mp->arena_bytes);
  }
  void **parts[6] = {(void **)&e->scratch.q, (void **)&e->scratch.trit, (void **)&e->scratch.s,
                     (void **)&e->scratch.bscale, (void **)&e->scratch.fw, (void **)&e->scratch.scores};
  for (int i = 0; i < 6; i++, s += (sz[i - 1] + 63) / 64 * 64) *parts[i] = s;
  e->env.scratch = &e->scratch;
  for (int L = 0; L < e->n_layers; L++) e->kv_bytes += 2 * (size_t)e->n_seq * kv_layer_bytes(g, L, n_ctx, kvt);
  if (!(e->kv = kv_alloc(e->kv_bytes))) {
    bn_exec_free(e);
    return bn_fail(err, BN_E_NOMEM, "executor: out of memory for the KV cache (%d positions, %zu bytes)", n_ctx,
                   e->kv_bytes);
  }
  uint8_t *kv = e->kv;
  for (int q = 0; q < e->n_seq; q++)
    for (int L = 0; L < e->n_layers; L++) {
      size_t bytes = kv_layer_bytes(g, L, n_ctx, kvt);
      e->kc_all[q * e->n_layers + L] = kv, kv += bytes;
      e->vc_all[q * e->n_layers + L] = kv, kv += bytes;
    }
  int *first = malloc((size_t)g->n_values * sizeof *first);
  if (!first) st = bn_fail(err, BN_E_NOMEM, "executor: out of memory");
  else bn_liveness(g, first, e->last), e->no_batch = batch_limit(e);
  free(first);
  if (st || (st = bind_values(e, err)) || (st = make_kinds(e, err)) ||
      (st = use_pool(e, opts, err))) {
    bn_exec_free(e);
    return st;
  }
  e->scores = malloc((size_t)bn_pool_size(e->pool) * (size_t)bn_attn_scores(mp->max_tokens, n_ctx) * sizeof *e->scores);
  if (!e->scores) {
    bn_exec_free(e);
    return bn_fail(err, BN_E_NOMEM, "executor: out of memory");
  }
  if (!(e->jit = calloc((size_t)g->n_nodes + 1, sizeof *e->jit))) {
    bn_exec_free(e);
    return bn_fail(err, BN_E_NOMEM, "executor: out of memory");
  }
  for (int i = 0; i < g->n_nodes; i++) /* attention: split by heads over the threads */
    if (g->nodes[i].op == BN_OP_ATTENTION) e->jit[i] = (jit_node){.family = BN_K_ATTENTION, .split = 1};
  if (opts && opts->backend && (st = open_backend(e, opts, err))) {
    bn_exec_free(e);
    return st;
  }
  *out = e;
  return BN_OK;
}

void bn_exec_free(bn_exec *e) {
  if (!e) return;
  if (e->kv) munmap(e->kv, kv_mapped(e->kv_bytes));
  if (e->env.body_val)
    for (int i = 0; i < e->g->n_nodes; i++) free(e->env.body_val[i]);
  free(e->arena), free(e->tokens), free(e->env.val), free(e->env.body_val), free(e->kc_all), free(e->vc_all);
  free(e->seg_t0), free(e->seq_busy);
  free(e->scratch_mem), free(e->kind_of), free(e->stats), free(e->last), free(e->jit), free(e->scores), free(e->tmp);
  free(e->pqa), free(e->qkv), free(e->qp), free(e->k1), free(e->node_secs);
  for (int r = 0; r < e->n_rope; r++) free(e->rope[r]);
  if (e->own_pool) bn_pool_free(e->pool);
  bn_codegen_close(e->cg);
  free(e);
}

static void poison_dead(bn_exec *e, int node) {
  const bn_graph *g = e->g;
  const bn_node *n = &g->nodes[node];
  for (int k = 0; k < n->n_in; k++) {
    const bn_value *v = &g->values[n->in[k]];
    if (v->kind != BN_VAL_NODE || e->last[n->in[k]] != node) continue;
    uint64_t bytes = bn_value_bytes(v->dtype, &v->shape, e->mp->max_tokens);
    memset(e->arena + e->mp->offset[v->node], 0xff, bytes); /* NaN as f32, -1 as int */
  }
  if (n->body) /* body intermediates die with their node */
    for (int k = 0; k < n->body->n_nodes; k++) {
      int bvid = n->body->nodes[k].out;
      if (bvid == n->body->outputs[0]) continue;
      const bn_value *v = &n->body->values[bvid];
      memset(e->arena + e->mp->body_offset[node][bvid], 0xff, bn_value_bytes(v->dtype, &v->shape, e->mp->max_tokens));
    }
}

typedef struct {
  bn_exec *e;
  int n, rows; /* rows: BN_ROWS_ALL, _LAST or _NONE */
  int row; /* the row of the last token's output */
  const bn_exec_seg *segs; /* the step's sequences: segment s's rows from e->seg_t0[s] */
  int n_segs;
} step;

/* Attention node i over every segment: unless its q/k/v phase stored them, each thread stores its KV
 * heads' rows of every segment in its sequence's caches; then, once all are stored, attends for its
 * heads (q: the phase's rotated rows, or the node's input). */
static void attention_segments(bn_exec *e, const step *sp, int i, int th, int nth) {
  const bn_node *nd = &e->g->nodes[i];
  int layer = (int)nd->attr[0], H = (int)nd->attr[1], kvh = (int)nd->attr[2], hd = (int)nd->attr[3];
  int stored = e->jit[i].qkv != 0; /* by the phase */
  const float *q = stored ? e->qp : e->env.val[nd->in[0]], *k = e->env.val[nd->in[1]], *v = e->env.val[nd->in[2]];
  float *y = e->env.val[nd->out];
  for (int s = 0; s < sp->n_segs && !stored; s++) {
    const bn_exec_seg *g = &sp->segs[s];
    int64_t at = (int64_t)e->seg_t0[s] * kvh * hd;
    bn_ref_kv_store(k + at, v + at, g->n, kvh, hd, g->pos, e->n_ctx, e->env.kv, e->kc_all[g->seq * e->n_layers + layer],
                    e->vc_all[g->seq * e->n_layers + layer], kvh * th / nth, kvh * (th + 1) / nth);
  }
  if (!stored) bn_pool_barrier(e->pool); /* every head reads this step's K/V rows, stored by KV heads */
  for (int s = 0; s < sp->n_segs; s++) {
    int64_t at = (int64_t)e->seg_t0[s] * H * hd;
    run_attention(e, i, th, nth, q + at, y + at, sp->segs[s].n, sp->segs[s].pos, sp->segs[s].seq);
  }
}

/* Tokens [t0, t1) x columns [n0, n1) (whole heads) of a step's X = [q | k | v], which this thread
 * computed (qkv.h): q rotated into qp's rows, k rotated (through the thread's row of k1) and stored with v
 * in each token's sequence's K/V cache at its position, as the slices, RoPEs and K/V store would. */
static void run_qkv(bn_exec *e, const step *sp, const bn_qkv *q, int64_t t0, int64_t t1, int64_t n0, int64_t n1, int th) {
  const float *X = e->env.val[e->g->nodes[q->mm].out];
  const jit_node *rq = &e->jit[q->skip[BN_QKV_ROPE_Q]], *rk = &e->jit[q->skip[BN_QKV_ROPE_K]];
  int64_t hd = q->head_dim, qw = q->qw, kw = q->kw, n_ctx = e->n_ctx;
  float *k1 = e->k1 + (size_t)th * (size_t)e->k1_width;
  int64_t qa = n0 / hd, qb = (n1 < qw ? n1 : qw) / hd; /* heads of q, k and v */
  int64_t ka = ((n0 > qw ? n0 : qw) - qw) / hd, kb = ((n1 < qw + kw ? n1 : qw + kw) - qw) / hd;
  int64_t va = ((n0 > qw + kw ? n0 : qw + kw) - qw - kw) / hd, vb = (n1 - qw - kw) / hd;
  for (int s = 0; s < sp->n_segs; s++) {
    const bn_exec_seg *g = &sp->segs[s];
    int64_t a = t0 > e->seg_t0[s] ? t0 : e->seg_t0[s], b = t1 < e->seg_t0[s] + g->n ? t1 : e->seg_t0[s] + g->n;
    void *kc = e->kc_all[g->seq * e->n_layers + q->layer], *vc = e->vc_all[g->seq * e->n_layers + q->layer];
    for (int64_t t = a; t < b; t++) {
      const float *x = X + t * (qw + 2 * kw);
      int64_t pos = g->pos + t - e->seg_t0[s];
      if (qb > qa) ((bn_rope_kernel)rq->fn)(x, e->qp + t * qw, rq->w, 1, pos, qa, qb, n_ctx);
      if (kb > ka) ((bn_rope_kernel)rk->fn)(x + qw, k1, rk->w, 1, pos, ka, kb, n_ctx);
      for (int64_t h = ka; h < kb; h++) bn_ref_kv_row(e->env.kv, kc, (h * n_ctx + pos) * hd, k1 + h * hd, (int)hd);
      for (int64_t h = va; h < vb; h++) bn_ref_kv_row(e->env.kv, vc, (h * n_ctx + pos) * hd, x + qw + kw + h * hd, (int)hd);
    }
  }
}

/* A RoPE node over several segments, each at its own positions. */
static void rope_segments(bn_exec *e, const step *sp, int i, int th, int nth) {
  const jit_node *j = &e->jit[i];
  const bn_node *nd = &e->g->nodes[i];
  int64_t w = (int64_t)nd->attr[0] * (int64_t)nd->attr[1];
  for (int s = 0; s < sp->n_segs; s++) {
    const bn_exec_seg *g = &sp->segs[s];
    int64_t at = (int64_t)e->seg_t0[s] * w, a = j->N * th / nth, b = j->N * (th + 1) / nth;
    if (j->fn && a < b)
      ((bn_rope_kernel)j->fn)((const float *)j->a + at, (float *)j->out + at, j->w, g->n, g->pos, a, b, e->n_ctx);
    else if (!j->fn && th == 0) { /* the reference on the segment's rows */
      void *x = e->env.val[nd->in[0]], *y = e->env.val[nd->out];
      int64_t T = e->env.T;
      int pos = e->env.pos;
      e->env.val[nd->in[0]] = (float *)x + at, e->env.val[nd->out] = (float *)y + at;
      e->env.T = g->n, e->env.pos = g->pos;
      bn_ref_run_node(&e->env, i);
      e->env.val[nd->in[0]] = x, e->env.val[nd->out] = y, e->env.T = T, e->env.pos = pos;
    }
  }
}

/* The output projection of several segments: their last tokens' rows moved to the front of its input
 * (which nothing reads after it: batch_limit), then the logits of those rows alone. */
static void head_segments(bn_exec *e, const step *sp, int i, int th, int nth) {
  const bn_node *nd = &e->g->nodes[i];
  int64_t w = e->g->values[nd->in[0]].shape.d[1];
  float *x = e->env.val[nd->in[0]];
  if (th == 0) /* row s from row t0 + n - 1 >= s: a later segment's row is never overwritten first */
    for (int s = 0; s < sp->n_segs; s++)
      memmove(x + s * w, x + (int64_t)(e->seg_t0[s] + sp->segs[s].n - 1) * w, (size_t)w * sizeof *x);
  bn_pool_barrier(e->pool);
  if (e->jit[i].fn) run_share(e, &e->jit[i], sp->n_segs, th, nth);
  else if (th == 0) {
    int64_t T = e->env.T;
    e->env.T = sp->n_segs;
    bn_ref_run_node(&e->env, i);
    e->env.T = T;
  }
}

/* One step as one parallel region: every thread walks the nodes, runs its
 * share of each split kernel and meets the others at a barrier after it;
 * nodes without generated code run on thread 0 while the others wait. Thread
 * 0 keeps the clock, the statistics and the trace. */
static void run_step(void *ctx, int th, int nth) { /* thread th of nth */
  step *sp = ctx;
  bn_exec *e = sp->e;
  const bn_graph *g = e->g;
  int n = sp->n, out_node = g->values[g->outputs[0]].node, many = sp->n_segs > 1;
  for (int i = 0; i < g->n_nodes; i++) {
    int64_t t0 = th ? 0 : bn_trace_now_ns();
    const jit_node *j = &e->jit[i];
    if (j->skip) continue; /* a slice or RoPE its q/k/v phase did */
    if (i == out_node && sp->rows == BN_ROWS_NONE) continue; /* no logits wanted */
    if (j->family == BN_K_ATTENTION && j->split) attention_segments(e, sp, i, th, nth);
    else if (many && g->nodes[i].op == BN_OP_ROPE) rope_segments(e, sp, i, th, nth);
    else if (many && i == out_node) head_segments(e, sp, i, th, nth);
    else if (j->fn && j->family == BN_K_MATMUL_F && sp->rows == BN_ROWS_LAST && i == out_node) { /* the last token's logits */
      jit_node last = *j;
      last.a = (const float *)last.a + (size_t)(n - 1) * (size_t)g->values[g->nodes[i].in[0]].shape.d[1];
      run_share(e, &last, 1, th, nth);
      if (th == 0) sp->row = 0;
    } else if (j->fn) {
      run_share(e, j, n, th, nth);
      if (j->qkv) { /* this thread's share of q, k and v (run_share's: tokens, or whole heads), at once */
        int64_t t0 = 0, t1 = n, n0 = 0, n1 = j->N;
        if (by_tokens(j, n, nth)) t0 = (int64_t)n * th / nth, t1 = (int64_t)n * (th + 1) / nth;
        else bn_pool_share(j->N, j->granule1, th, nth, &n0, &n1);
        run_qkv(e, sp, &e->qkv[j->qkv - 1], t0, t1, n0, n1, th);
      }
    } else if (th == 0) bn_ref_run_node(&e->env, i);
    bn_pool_barrier(e->pool);
    if (th == 0) {
      int64_t t1 = bn_trace_now_ns();
      bn_exec_stat *s = &e->stats[e->kind_of[i]];
      s->seconds += (double)(t1 - t0) * 1e-9;
      s->calls++;
      if (e->trace) bn_trace_add(e->trace, s->kind, "kernel", t0, t1, e->step, n);
      if (e->poison) poison_dead(e, i);
    }
    if (e->poison) bn_pool_barrier(e->pool); /* the next node may write where dead values were poisoned */
  }
}

/* Checks the segments, copies their tokens one after another into the step's input and runs it. */
static bn_status run_segments(bn_exec *e, const bn_exec_seg *segs, int n_segs, int rows, const float **out,
                              bn_error *err) {
  const bn_graph *g = e->g;
  int max = e->mp->max_tokens, T = 0, graphs = e->cg && bn_codegen_runs_graphs(e->cg);
  if (n_segs < 1 || n_segs > max) return bn_fail(err, BN_E_RANGE, "eval: %d sequences in a step (1..%d)", n_segs, max);
  if (n_segs > 1 && (e->no_batch || graphs))
    return bn_fail(err, BN_E_UNSUPPORTED, "eval: one sequence a step: %s",
                   e->no_batch ? e->no_batch : "the backend runs whole graphs");
  bn_status st = BN_OK;
  int k = 0;
  for (; k < n_segs && !st; k++) {
    const bn_exec_seg *q = &segs[k];
    if (q->seq < 0 || q->seq >= e->n_seq || (graphs && q->seq))
      st = bn_fail(err, BN_E_RANGE, "eval: sequence %d (0..%d)", q->seq, graphs ? 0 : e->n_seq - 1);
    else if (e->seq_busy[q->seq]) st = bn_fail(err, BN_E_INVALID, "eval: sequence %d twice in one step", q->seq);
    else if (q->n > max - T)
      st = bn_fail(err, BN_E_RANGE, "eval: %d tokens in a step of %d sequences (at most %d)", T + q->n, n_segs, max);
    else if (!(st = bn_ref_begin_step(&e->env, e->tokens + T, q->tokens, q->n, q->pos, max, e->n_ctx, err)))
      e->seq_busy[q->seq] = 1, e->seg_t0[k] = T, T += q->n;
  }
  for (int s = 0; s < k; s++)
    if (segs[s].seq >= 0 && segs[s].seq < e->n_seq) e->seq_busy[segs[s].seq] = 0;
  if (st) return st;
  e->env.T = T, e->env.pos = segs[0].pos;
  e->env.kc = e->kc_all + segs[0].seq * e->n_layers, e->env.vc = e->vc_all + segs[0].seq * e->n_layers;
  e->step++;
  if (graphs) { /* the backend runs the whole step, and says how long each node took */
    memset(e->node_secs, 0, (size_t)g->n_nodes * sizeof *e->node_secs);
    bn_graph_step gs = {.tokens = e->tokens, .n = T, .pos = segs[0].pos, .last_only = rows != BN_ROWS_ALL,
                        .node_seconds = e->node_secs};
    if ((st = bn_codegen_run_graph(e->cg, &gs, err))) return st;
    for (int i = 0; i < g->n_nodes; i++) {
      bn_exec_stat *s = &e->stats[e->kind_of[i]];
      s->seconds += e->node_secs[i], s->calls++;
    }
    *out = rows == BN_ROWS_NONE ? NULL : gs.out;
    return BN_OK;
  }
  step sp = {.e = e, .n = T, .rows = rows, .row = T - 1, .segs = segs, .n_segs = n_segs};
  bn_pool_run(e->pool, run_step, &sp);
  const bn_value *ov = &g->values[g->outputs[0]];
  *out = rows == BN_ROWS_NONE ? NULL : e->env.val[g->outputs[0]];
  if (rows == BN_ROWS_LAST && n_segs == 1) *out += (size_t)sp.row * (size_t)ov->shape.d[ov->shape.rank - 1];
  return BN_OK;
}

bn_status bn_exec_run(bn_exec *e, const int32_t *tokens, int n, int pos, int rows, const float **out,
                      bn_error *err) {
  bn_exec_seg seg = {.tokens = tokens, .n = n, .pos = pos, .seq = 0};
  if (rows < BN_ROWS_ALL || rows > BN_ROWS_NONE) return bn_fail(err, BN_E_INVALID, "eval: output rows %d (0..2)", rows);
  return run_segments(e, &seg, 1, rows, out, err);
}

bn_status bn_exec_run_batch(bn_exec *e, const bn_exec_seg *segs, int n_segs, const float **out, bn_error *err) {
  return run_segments(e, segs, n_segs, BN_ROWS_LAST, out, err);
}

void bn_exec_set_poison(bn_exec *e, int on) { e->poison = on; }
void bn_exec_set_trace(bn_exec *e, bn_trace *t) { e->trace = t; }
int bn_exec_stats(const bn_exec *e, const bn_exec_stat **stats) {
  *stats = e->stats;
  return e->n_kinds;
}
int bn_exec_max_tokens(const bn_exec *e) { return e->mp->max_tokens; }
int64_t bn_exec_arena_bytes(const bn_exec *e) { return e->mp->arena_bytes; }
size_t bn_exec_kv_bytes(const bn_exec *e) { return e->kv_bytes; }
int bn_exec_qkv_phases(const bn_exec *e) { return e->n_qkv; }
