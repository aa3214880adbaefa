/* Reading .bnplan files. Every offset, count and length is checked against
 * the section it lives in before it is used; the IR is parsed and verified,
 * the memory plan checked against it, and every weight bound by name to an
 * aligned region of the weights section whose size matches its type. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "../ir/files.h"
#include "../ir/irparse.h"
#include "plan.h"
#include "exec.h"
#include "plan_format.h"

typedef struct {
  const bn_plan *p;
  const uint8_t *base;
  uint64_t pos, end;
  const char *sec;
  bn_error *err;
} cur;

static const char *SEC_NAMES[BN_SEC_COUNT] = {"", "hparams", "vocab", "ir", "memplan", "weight index", "weights", "objects", "device"};

static bn_status need(cur *c, uint64_t n, const char *field) {
  if (n > c->end - c->pos)
    return bn_fail(c->err, BN_E_FORMAT, "%s: section %s: truncated reading %s at byte %llu", c->p->path, c->sec, field,
                   (unsigned long long)c->pos);
  return BN_OK;
}
#define RD(c, dst, field)                                           \
  do {                                                              \
    if (need(c, sizeof *(dst), field)) return BN_E_FORMAT;          \
    memcpy(dst, (c)->base + (c)->pos, sizeof *(dst));               \
    (c)->pos += sizeof *(dst);                                      \
  } while (0)

static bn_status rd_str(cur *c, char **out, const char *field) {
  uint32_t len;
  RD(c, &len, field);
  if (need(c, len, field)) return BN_E_FORMAT;
  if (memchr(c->base + c->pos, 0, len))
    return bn_fail(c->err, BN_E_FORMAT, "%s: section %s: %s contains a NUL byte", c->p->path, c->sec, field);
  if (!(*out = malloc((size_t)len + 1))) return bn_fail(c->err, BN_E_NOMEM, "%s: out of memory", c->p->path);
  memcpy(*out, c->base + c->pos, len);
  (*out)[len] = 0;
  c->pos += len;
  return BN_OK;
}

static bn_status bad(cur *c, const char *field, long long v) {
  return bn_fail(c->err, BN_E_FORMAT, "%s: section %s: %s = %lld is out of range", c->p->path, c->sec, field, v);
}

static bn_status rd_hparams(cur *c, bn_hparams *h) {
  if (need(c, 32, "arch")) return BN_E_FORMAT;
  memcpy(h->arch, c->base + c->pos, 32);
  c->pos += 32;
  if (!memchr(h->arch, 0, 32)) return bad(c, "arch (unterminated)", 0);
  int32_t v[9];
  const char *names[9] = {"n_ctx", "n_embd", "n_layer", "n_ff", "n_head", "n_head_kv", "head_dim", "n_rot", "n_vocab"};
  for (int i = 0; i < 9; i++) {
    RD(c, &v[i], names[i]);
    if (v[i] < 1 || v[i] > (i == 0 ? BN_PLAN_MAX_CTX : 1 << 24)) return bad(c, names[i], v[i]);
  }
  h->n_ctx = v[0], h->n_embd = v[1], h->n_layer = v[2], h->n_ff = v[3], h->n_head = v[4], h->n_head_kv = v[5];
  h->head_dim = v[6], h->n_rot = v[7], h->n_vocab = v[8];
  RD(c, &h->rope_base, "rope_base");
  RD(c, &h->eps, "eps");
  if (!(h->rope_base > 0) || !isfinite(h->rope_base) || !(h->eps > 0) || !isfinite(h->eps)) return bad(c, "rope_base/eps", 0);
  return BN_OK;
}

static bn_status rd_vocab(cur *c, bn_vocab *v, int n_vocab) {
  uint32_t kind, n, nm, add_bos;
  int32_t ids[3];
  RD(c, &kind, "kind");
  RD(c, &n, "n_tokens");
  RD(c, &nm, "n_merges");
  for (int i = 0; i < 3; i++) RD(c, &ids[i], "bos/eos/unk");
  RD(c, &add_bos, "add_bos");
  if (kind > BN_VOCAB_BPE) return bad(c, "kind", kind);
  if (n != (uint32_t)n_vocab) return bad(c, "n_tokens (vs the model's vocabulary)", n);
  if (nm > (c->end - c->pos) / 4) return bad(c, "n_merges", nm);
  for (int i = 0; i < 3; i++)
    if (ids[i] < -1 || ids[i] >= (int32_t)n) return bad(c, "bos/eos/unk", ids[i]);
  v->kind = (bn_vocab_kind)kind;
  v->bos = ids[0], v->eos = ids[1], v->unk = ids[2], v->add_bos = add_bos != 0;
  v->tokens = calloc(n, sizeof *v->tokens);
  v->scores = calloc(n, sizeof *v->scores);
  v->types = calloc(n, sizeof *v->types);
  v->merges = calloc(nm ? nm : 1, sizeof *v->merges);
  if (!v->tokens || !v->scores || !v->types || !v->merges) return bn_fail(c->err, BN_E_NOMEM, "out of memory");
  for (uint32_t i = 0; i < n; i++) {
    if (rd_str(c, &v->tokens[i], "token")) return BN_E_FORMAT;
    v->n_tokens = (int)i + 1; /* counted as soon as it is allocated, so a failure below frees it */
    RD(c, &v->scores[i], "score");
    RD(c, &v->types[i], "token type");
  }
  for (uint32_t i = 0; i < nm; i++) {
    if (rd_str(c, &v->merges[i], "merge")) return BN_E_FORMAT;
    v->n_merges = (int)i + 1;
  }
  if (c->p->version >= 5) { /* the chat template ("": none) */
    if (rd_str(c, &v->chat_template, "chat template")) return BN_E_FORMAT;
    if (strlen(v->chat_template) > BN_CHAT_TEMPLATE_MAX) return bad(c, "chat template bytes", (long long)strlen(v->chat_template));
    if (!*v->chat_template) free(v->chat_template), v->chat_template = NULL;
  }
  if (c->p->version >= 6) { /* the pre-tokenizer */
    uint32_t pre;
    RD(c, &pre, "pre-tokenizer");
    if (pre >= BN_PRE_COUNT) return bad(c, "pre-tokenizer", pre);
    v->pre = (bn_vocab_pre)pre;
  }
  char where[300];
  snprintf(where, sizeof where, "%s: section vocab", c->p->path);
  return bn_vocab_check(v, where, c->err);
}

static bn_status rd_memplan(cur *c, bn_memplan *m, const bn_graph *g) {
  uint32_t h[4];
  uint64_t arena, sum;
  for (int i = 0; i < 4; i++) RD(c, &h[i], "header");
  RD(c, &arena, "arena_bytes");
  RD(c, &sum, "sum_bytes");
  if (h[0] < 1 || h[0] > 65536) return bad(c, "max_tokens", h[0]);
  if (h[1] != (uint32_t)g->n_nodes) return bad(c, "n_nodes (vs the IR)", h[1]);
  if (arena > (UINT64_C(1) << 40)) return bad(c, "arena_bytes", (long long)arena);
  m->max_tokens = (int)h[0], m->n_nodes = (int)h[1];
  m->arena_bytes = (int64_t)arena, m->sum_bytes = (int64_t)sum;
  m->offset = malloc((size_t)m->n_nodes * sizeof *m->offset + 1);
  m->body_offset = calloc((size_t)m->n_nodes + 1, sizeof *m->body_offset);
  if (!m->offset || !m->body_offset) return bn_fail(c->err, BN_E_NOMEM, "out of memory");
  for (int i = 0; i < m->n_nodes; i++) RD(c, &m->offset[i], "offset");
  for (int i = 0; i < m->n_nodes; i++) {
    uint32_t n;
    RD(c, &n, "body size");
    int want = g->nodes[i].body ? g->nodes[i].body->n_values : 0;
    if (n != (uint32_t)want) return bad(c, "body size (vs the IR)", n);
    if (!n) continue;
    if (!(m->body_offset[i] = malloc(n * sizeof **m->body_offset))) return bn_fail(c->err, BN_E_NOMEM, "out of memory");
    for (uint32_t k = 0; k < n; k++) RD(c, &m->body_offset[i][k], "body offset");
  }
  return BN_OK;
}

static bn_status rd_weights(cur *c, bn_graph *g, uint64_t wsec_off, uint64_t wsec_bytes) {
  uint32_t n, bound = 0;
  RD(c, &n, "count");
  for (uint32_t i = 0; i < n; i++) {
    char *name = NULL;
    uint64_t off, bytes;
    if (rd_str(c, &name, "name")) return BN_E_FORMAT;
    bn_status st = BN_OK;
    if (need(c, 16, "offset")) st = BN_E_FORMAT;
    else {
      RD(c, &off, "offset");
      RD(c, &bytes, "bytes");
    }
    int v = st ? -1 : bn_graph_find_value(g, name, strlen(name));
    if (!st && (v < 0 || g->values[v].kind != BN_VAL_WEIGHT))
      st = bn_fail(c->err, BN_E_FORMAT, "%s: weight index: '%s' is not a weight of the IR", c->p->path, name);
    else if (!st && g->values[v].data)
      st = bn_fail(c->err, BN_E_FORMAT, "%s: weight index: '%s' appears twice", c->p->path, name);
    else if (!st && (off > wsec_bytes || bytes > wsec_bytes - off || (wsec_off + off) % BN_PLAN_ALIGN))
      st = bn_fail(c->err, BN_E_FORMAT, "%s: weight index: '%s' at %llu (+%llu) is outside the weights or unaligned",
                   c->p->path, name, (unsigned long long)off, (unsigned long long)bytes);
    else if (!st && !bn_value_bytes(g->values[v].dtype, &g->values[v].shape, 0))
      st = bn_fail(c->err, BN_E_FORMAT, "%s: weight index: '%s' is %s, a shape its type cannot hold", c->p->path, name,
                   bn_dtype_table[g->values[v].dtype].name);
    else if (!st && bytes != bn_value_bytes(g->values[v].dtype, &g->values[v].shape, 0))
      st = bn_fail(c->err, BN_E_FORMAT, "%s: weight index: '%s' has %llu bytes, its type needs %llu", c->p->path, name,
                   (unsigned long long)bytes, (unsigned long long)bn_value_bytes(g->values[v].dtype, &g->values[v].shape, 0));
    if (!st) {
      g->values[v].data = c->base + wsec_off + off;
      g->values[v].nbytes = bytes;
      bound++;
    }
    free(name);
    if (st) return st;
  }
  for (int i = 0; i < g->n_values; i++)
    if (g->values[i].kind == BN_VAL_WEIGHT && !g->values[i].data)
      return bn_fail(c->err, BN_E_FORMAT, "%s: weight %%%s has no data in the plan", c->p->path, g->values[i].name);
  (void)bound;
  return BN_OK;
}

/* The backend, kernel names, cpu and features are malloc'd; the object bytes stay in the mapping. */
static bn_status rd_objects(cur *c, bn_plan *p) {
  bn_objcode *a = &p->code;
  uint32_t n;
  p->sig_off = c->pos;
  if (need(c, BN_PLAN_SIGBLOCK, "signature")) return BN_E_FORMAT;
  memcpy(p->signer, c->base + c->pos, BN_PK_BYTES);
  memcpy(p->signature, c->base + c->pos + BN_PK_BYTES, BN_SIG_BYTES);
  c->pos += BN_PLAN_SIGBLOCK;
  if (p->version < 4) a->backend = strdup("llvm"); /* version 3's code is LLVM's */
  else if (rd_str(c, (char **)&a->backend, "backend")) return BN_E_FORMAT;
  if (!a->backend) return bn_fail(c->err, BN_E_NOMEM, "out of memory");
  if (rd_str(c, (char **)&a->cpu, "cpu") || rd_str(c, (char **)&a->features, "features")) return BN_E_FORMAT;
  RD(c, &n, "count");
  if (n > (c->end - c->pos) / 12) return bad(c, "count", n);
  bn_kobj *objs = calloc(n ? n : 1, sizeof *objs);
  if (!objs) return bn_fail(c->err, BN_E_NOMEM, "out of memory");
  a->objs = objs;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t size;
    if (rd_str(c, (char **)&objs[i].name, "kernel name")) return BN_E_FORMAT;
    a->n = (int)i + 1;
    RD(c, &size, "object size");
    if (!size || need(c, size, "object code")) return bad(c, "object size", (long long)size);
    for (uint32_t k = 0; k < i; k++)
      if (!strcmp(objs[k].name, objs[i].name))
        return bn_fail(c->err, BN_E_FORMAT, "%s: section objects: kernel %s appears twice", c->p->path, objs[i].name);
    objs[i].data = c->base + c->pos, objs[i].size = size;
    c->pos += size;
  }
  return BN_OK;
}

static bn_status parse(bn_plan *p, bn_error *err) {
  const uint8_t *b = p->base;
  if (p->size < BN_PLAN_HEADER || memcmp(b, BN_PLAN_MAGIC, 8))
    return bn_fail(err, BN_E_FORMAT, "%s: not a bnc plan (bad magic or %zu bytes)", p->path, p->size);
  uint32_t hb, nsec;
  uint64_t file_bytes, hash;
  memcpy(&p->version, b + 8, 4);
  memcpy(&hb, b + 12, 4);
  memcpy(&file_bytes, b + 16, 8);
  memcpy(&hash, b + 24, 8);
  memcpy(&nsec, b + 32, 4);
  if (p->version < 2 || p->version > BN_PLAN_VERSION)
    return bn_fail(err, BN_E_FORMAT, "%s: plan version %u (this bnc reads 2 to %d; recompile)", p->path, p->version,
                   BN_PLAN_VERSION);
  if (hb != BN_PLAN_HEADER) return bn_fail(err, BN_E_FORMAT, "%s: header_bytes %u (expected %d)", p->path, hb, BN_PLAN_HEADER);
  if (file_bytes != p->size)
    return bn_fail(err, BN_E_FORMAT, "%s: file_bytes %llu but the file has %zu (truncated?)", p->path,
                   (unsigned long long)file_bytes, p->size);
  uint32_t most = p->version >= 5 ? BN_SEC_DEVICE : BN_SEC_OBJECTS;
  if (nsec < BN_SEC_WEIGHTS || nsec > most)
    return bn_fail(err, BN_E_FORMAT, "%s: n_sections %u (expected %d to %u)", p->path, nsec, BN_SEC_WEIGHTS, most);
  if (!memchr(b + 40, 0, 24)) return bn_fail(err, BN_E_FORMAT, "%s: target name is not terminated", p->path);
  memcpy(p->target, b + 40, 24);
  if (XXH3_64bits(b + BN_PLAN_HEADER, p->size - BN_PLAN_HEADER) != hash)
    return bn_fail(err, BN_E_FORMAT, "%s: content hash mismatch (the file is damaged)", p->path);
  p->hash = hash;
  uint64_t off[BN_SEC_COUNT] = {0}, bytes[BN_SEC_COUNT] = {0};
  uint64_t table_end = BN_PLAN_HEADER + (uint64_t)BN_PLAN_ENTRY * (p->version >= 5 ? BN_PLAN_SLOTS : BN_PLAN_SLOTS_V4);
  if (table_end > p->size) return bn_fail(err, BN_E_FORMAT, "%s: section table truncated", p->path);
  for (uint32_t s = 0; s < nsec; s++) {
    const uint8_t *e = b + BN_PLAN_HEADER + BN_PLAN_ENTRY * s;
    uint32_t id;
    memcpy(&id, e, 4);
    if (id != s + 1) return bn_fail(err, BN_E_FORMAT, "%s: section %u has id %u (expected %u)", p->path, s, id, s + 1);
    memcpy(&off[id], e + 8, 8);
    memcpy(&bytes[id], e + 16, 8);
    if (off[id] < table_end || off[id] > p->size || bytes[id] > p->size - off[id] || off[id] % BN_PLAN_ALIGN)
      return bn_fail(err, BN_E_FORMAT, "%s: section %s at %llu (+%llu) is outside the file or unaligned", p->path,
                     SEC_NAMES[id], (unsigned long long)off[id], (unsigned long long)bytes[id]);
    if (id > 1 && off[id] < off[id - 1] + bytes[id - 1])
      return bn_fail(err, BN_E_FORMAT, "%s: section %s overlaps section %s", p->path, SEC_NAMES[id], SEC_NAMES[id - 1]);
  }
  cur c = {p, b, 0, 0, "", err};
#define SECTION(id) (c.pos = off[id], c.end = off[id] + bytes[id], c.sec = SEC_NAMES[id])
  bn_status st;
  SECTION(BN_SEC_HPARAMS);
  if ((st = rd_hparams(&c, &p->model.hp))) return st;
  SECTION(BN_SEC_VOCAB);
  if ((st = rd_vocab(&c, &p->model.vocab, p->model.hp.n_vocab))) return st;
  char name[300];
  snprintf(name, sizeof name, "%s (ir)", p->path);
  if ((st = bn_ir_parse((const char *)b + off[BN_SEC_IR], bytes[BN_SEC_IR], name, &p->model.graph, err))) return st;
  SECTION(BN_SEC_MEMPLAN);
  if ((st = rd_memplan(&c, &p->mem, &p->model.graph))) return st;
  SECTION(BN_SEC_WEIGHT_INDEX);
  if ((st = rd_weights(&c, &p->model.graph, off[BN_SEC_WEIGHTS], bytes[BN_SEC_WEIGHTS]))) return st;
  bn_error e2;
  if (bn_memplan_check(&p->mem, &p->model.graph, &e2) || bn_exec_check(&p->model.graph, p->model.hp.n_vocab, &e2))
    return bn_fail(err, BN_E_FORMAT, "%s: %s", p->path, e2.msg);
  p->weights_off = off[BN_SEC_WEIGHTS], p->weights_bytes = bytes[BN_SEC_WEIGHTS];
  if (nsec >= BN_SEC_DEVICE && bytes[BN_SEC_DEVICE]) /* read by its backend (metal/plan.c) */
    p->device = b + off[BN_SEC_DEVICE], p->device_bytes = bytes[BN_SEC_DEVICE];
  if (nsec < BN_SEC_OBJECTS || !bytes[BN_SEC_OBJECTS]) return BN_OK; /* an empty object section: none */
  p->has_objects = 1;
  if (p->version < 3) return BN_OK; /* unsigned object code: never run, so never read */
  SECTION(BN_SEC_OBJECTS);
  return rd_objects(&c, p);
}

bn_status bn_plan_parse(bn_plan *p, const void *buf, size_t size, const char *name, bn_error *err) {
  memset(p, 0, sizeof *p);
  snprintf(p->path, sizeof p->path, "%s", name);
  p->base = buf;
  p->size = size;
  bn_status st = parse(p, err);
  if (st) bn_plan_close(p);
  return st;
}

static bn_status open_plan(bn_plan *p, const char *path, int map, bn_error *err) {
  memset(p, 0, sizeof *p);
  bn_file_view v;
  bn_status st = bn_file_load(path, BN_PLAN_HEADER, !map, "a bnc plan", &v, err);
  if (st) return st;
  if ((st = bn_plan_parse(p, v.base, v.size, path, err))) {
    bn_file_release(&v);
    return st;
  }
  p->mapped = 1;
  p->mapped_size = v.mapped;
  return BN_OK;
}

bn_status bn_plan_open(bn_plan *p, const char *path, bn_error *err) { return open_plan(p, path, 0, err); }
bn_status bn_plan_map(bn_plan *p, const char *path, bn_error *err) { return open_plan(p, path, 1, err); }

void bn_plan_close(bn_plan *p) {
  for (int i = 0; i < p->code.n; i++) free((char *)p->code.objs[i].name);
  free((void *)p->code.objs), free((char *)p->code.backend), free((char *)p->code.cpu), free((char *)p->code.features);
  bn_model_free(&p->model);
  bn_memplan_free(&p->mem);
  if (p->mapped) munmap((void *)p->base, p->mapped_size);
  memset(p, 0, sizeof *p);
}

int bn_plan_sniff(const char *path) {
  char magic[8];
  FILE *fp = fopen(path, "rb");
  int is = fp && fread(magic, 1, 8, fp) == 8 && !memcmp(magic, BN_PLAN_MAGIC, 8);
  if (fp) fclose(fp);
  return is;
}
