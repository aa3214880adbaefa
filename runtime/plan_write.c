/* Writing .bnplan files: each section is built in memory (the weights are
 * streamed from where they are), then header, table and sections go out in
 * order, each section at a 64-byte boundary. The hash covers every byte
 * after the header. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "../ir/files.h"
#include "../ir/irparse.h"
#include "plan.h"
#include "plan_format.h"

typedef struct {
  uint8_t *p;
  size_t n, cap;
  int oom;
} buf;

static void put(buf *b, const void *src, size_t n) {
  if (b->n + n > b->cap) {
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->n + n) nc *= 2;
    uint8_t *q = realloc(b->p, nc);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q, b->cap = nc;
  }
  memcpy(b->p + b->n, src, n);
  b->n += n;
}
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void i32(buf *b, int32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void f32(buf *b, float v) { put(b, &v, 4); }
static void str(buf *b, const char *s) {
  u32(b, (uint32_t)strlen(s));
  put(b, s, strlen(s));
}

static void hparams(buf *b, const bn_hparams *h) {
  char arch[32] = {0};
  snprintf(arch, sizeof arch, "%s", h->arch);
  put(b, arch, sizeof arch);
  int32_t v[9] = {h->n_ctx, h->n_embd, h->n_layer, h->n_ff, h->n_head, h->n_head_kv, h->head_dim, h->n_rot, h->n_vocab};
  for (int i = 0; i < 9; i++) i32(b, v[i]);
  f32(b, h->rope_base);
  f32(b, h->eps);
}

static void vocab(buf *b, const bn_vocab *v) {
  u32(b, (uint32_t)v->kind);
  u32(b, (uint32_t)v->n_tokens);
  u32(b, (uint32_t)v->n_merges);
  i32(b, v->bos), i32(b, v->eos), i32(b, v->unk), u32(b, (uint32_t)v->add_bos);
  for (int i = 0; i < v->n_tokens; i++) {
    str(b, v->tokens[i]);
    f32(b, v->scores[i]);
    i32(b, v->types[i]);
  }
  for (int i = 0; i < v->n_merges; i++) str(b, v->merges[i]);
  str(b, v->chat_template ? v->chat_template : ""); /* version 5 */
  u32(b, (uint32_t)v->pre);                           /* version 6 */
}

static void memplan(buf *b, const bn_memplan *m, const bn_graph *g) {
  u32(b, (uint32_t)m->max_tokens), u32(b, (uint32_t)m->n_nodes), u32(b, 0), u32(b, 0);
  u64(b, (uint64_t)m->arena_bytes), u64(b, (uint64_t)m->sum_bytes);
  for (int i = 0; i < m->n_nodes; i++) u64(b, (uint64_t)m->offset[i]);
  for (int i = 0; i < m->n_nodes; i++) {
    int n = g->nodes[i].body ? g->nodes[i].body->n_values : 0;
    u32(b, (uint32_t)n);
    for (int k = 0; k < n; k++) u64(b, (uint64_t)m->body_offset[i][k]);
  }
}

static uint64_t align(uint64_t x) { return (x + BN_PLAN_ALIGN - 1) / BN_PLAN_ALIGN * BN_PLAN_ALIGN; }

/* The weight index (name, offset in the weights section, bytes); returns the section's size. */
static uint64_t weight_index(buf *b, const bn_graph *g) {
  uint64_t off = 0;
  uint32_t n = 0;
  for (int i = 0; i < g->n_values; i++) n += g->values[i].kind == BN_VAL_WEIGHT;
  u32(b, n);
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    if (v->kind != BN_VAL_WEIGHT) continue;
    str(b, v->name);
    u64(b, off);
    u64(b, v->nbytes);
    off = align(off + v->nbytes);
  }
  return off;
}

/* The object section: room for the signature block, backend, cpu, features, then each kernel's name and bytes. */
static void objects(buf *b, const bn_objcode *aot) {
  static const uint8_t unsigned_block[BN_PLAN_SIGBLOCK];
  put(b, unsigned_block, sizeof unsigned_block);
  str(b, aot->backend);
  str(b, aot->cpu);
  str(b, aot->features);
  u32(b, (uint32_t)aot->n);
  for (int i = 0; i < aot->n; i++) {
    str(b, aot->objs[i].name);
    u64(b, aot->objs[i].size);
    put(b, aot->objs[i].data, aot->objs[i].size);
  }
}

enum { TABLE_END = BN_PLAN_HEADER + BN_PLAN_ENTRY * BN_PLAN_SLOTS };

static int write_all(FILE *fp, const uint8_t *hdr, buf *secs, int n_secs, const bn_graph *g, const uint64_t *off,
                     uint64_t weights_off, uint64_t weights_end, const buf *objs, uint64_t objs_off, const buf *dev,
                     uint64_t dev_off) {
  static const uint8_t zeros[BN_PLAN_ALIGN];
  uint64_t pos = 0;
  if (fwrite(hdr, 1, TABLE_END, fp) != TABLE_END) return 0;
  pos = TABLE_END;
  for (int s = 0; s < n_secs; s++) {
    if (fwrite(zeros, 1, off[s] - pos, fp) != off[s] - pos || fwrite(secs[s].p, 1, secs[s].n, fp) != secs[s].n) return 0;
    pos = off[s] + secs[s].n;
  }
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    if (v->kind != BN_VAL_WEIGHT) continue;
    uint64_t at = align(pos - weights_off) + weights_off;
    if (fwrite(zeros, 1, at - pos, fp) != at - pos || fwrite(v->data, 1, v->nbytes, fp) != v->nbytes) return 0;
    pos = at + v->nbytes;
  }
  if (fwrite(zeros, 1, weights_end - pos, fp) != weights_end - pos) return 0; /* the last weight's padding: the section's size */
  pos = weights_end;
  if (objs->n && (fwrite(zeros, 1, objs_off - pos, fp) != objs_off - pos || fwrite(objs->p, 1, objs->n, fp) != objs->n))
    return 0;
  if (objs->n) pos = objs_off + objs->n;
  if (dev->n && (fwrite(zeros, 1, dev_off - pos, fp) != dev_off - pos || fwrite(dev->p, 1, dev->n, fp) != dev->n))
    return 0;
  return 1;
}

/* Signs the finished file (fp, rewound) and writes the signature block at sig_off (plan_sign.c). */
static int sign(FILE *fp, uint64_t sig_off, uint64_t w_off, uint64_t w_bytes, const uint8_t *sk) {
  bn_plan_digest d;
  uint8_t chunk[1 << 16], digest[BN_PLAN_DIGEST], block[BN_PLAN_SIGBLOCK];
  size_t got;
  if (sodium_init() < 0 || fseek(fp, 0, SEEK_SET)) return 0;
  bn_plan_digest_init(&d, sig_off, w_off, w_bytes);
  while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0) bn_plan_digest_update(&d, chunk, got);
  bn_plan_digest_final(&d, digest);
  crypto_sign_ed25519_sk_to_pk(block, sk);
  crypto_sign_detached(block + BN_PK_BYTES, NULL, digest, sizeof digest, sk);
  return !fseek(fp, (long)sig_off, SEEK_SET) && fwrite(block, 1, sizeof block, fp) == sizeof block;
}

/* Hashes everything after the header into the header. */
static int seal(FILE *fp) {
  XXH3_state_t *hs = XXH3_createState();
  uint8_t chunk[1 << 16];
  size_t got;
  if (!hs) return 0;
  XXH3_64bits_reset(hs);
  fseek(fp, BN_PLAN_HEADER, SEEK_SET);
  while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0) XXH3_64bits_update(hs, chunk, got);
  uint64_t hash = XXH3_64bits_digest(hs);
  XXH3_freeState(hs);
  return !ferror(fp) && !fseek(fp, 24, SEEK_SET) && fwrite(&hash, 8, 1, fp) == 1;
}

bn_status bn_plan_write(const bn_model *m, const bn_memplan *mp, const bn_plan_write_opts *o, const char *path,
                        bn_error *err) {
  const bn_graph *g = &m->graph;
  const bn_objcode *aot = o->code;
  for (int i = 0; i < g->n_values; i++)
    if (g->values[i].kind == BN_VAL_WEIGHT && !g->values[i].data)
      return bn_fail(err, BN_E_INVALID, "%s: weight %%%s has no data to store", path, g->values[i].name);
  buf secs[BN_SEC_WEIGHTS] = {{0}};
  hparams(&secs[0], &m->hp);
  vocab(&secs[1], &m->vocab);
  char *ir = bn_graph_print(g);
  if (ir) put(&secs[2], ir, strlen(ir));
  free(ir);
  memplan(&secs[3], mp, g);
  uint64_t weights_bytes = weight_index(&secs[4], g);
  buf objs = {0};
  if (aot && aot->n) objects(&objs, aot);
  bn_status st = BN_OK;
  for (int s = 0; s < BN_SEC_WEIGHTS - 1; s++)
    if (secs[s].oom || !ir || objs.oom) st = bn_fail(err, BN_E_NOMEM, "%s: out of memory", path);
  /* layout: header, table, then sections at 64-byte boundaries: weights, then the objects */
  enum { W = BN_SEC_WEIGHTS - 1, O = BN_SEC_OBJECTS - 1, D = BN_SEC_DEVICE - 1 };
  buf dev = {.p = (uint8_t *)o->device, .n = o->device ? o->device_bytes : 0};
  uint64_t off[BN_SEC_COUNT] = {0}, pos = TABLE_END;
  for (int s = 0; s < W; s++) {
    off[s] = align(pos);
    pos = off[s] + secs[s].n;
  }
  off[W] = align(pos);
  off[O] = align(off[W] + weights_bytes);
  off[D] = align(off[O] + objs.n);
  uint64_t file_bytes = dev.n ? off[D] + dev.n : objs.n ? off[O] + objs.n : off[W] + weights_bytes;
  uint8_t hdr[TABLE_END] = {0};
  memcpy(hdr, BN_PLAN_MAGIC, 8);
  uint32_t h32[2] = {BN_PLAN_VERSION, BN_PLAN_HEADER}, nsec = dev.n ? BN_SEC_DEVICE : objs.n ? BN_SEC_OBJECTS : BN_SEC_WEIGHTS;
  memcpy(hdr + 8, h32, 8);
  memcpy(hdr + 16, &file_bytes, 8);
  memcpy(hdr + 32, &nsec, 4);
  snprintf((char *)hdr + 40, 24, "%s", o->target ? o->target : "native");
  for (int s = 0; s < (int)nsec; s++) {
    uint8_t *e = hdr + BN_PLAN_HEADER + BN_PLAN_ENTRY * s;
    uint32_t id = (uint32_t)s + 1;
    uint64_t bytes = s == W ? weights_bytes : s == O ? objs.n : s == D ? dev.n : secs[s].n;
    memcpy(e, &id, 4);
    memcpy(e + 8, &off[s], 8);
    memcpy(e + 16, &bytes, 8);
  }
  bn_outfile of = {0};
  if (!st) st = bn_outfile_open(&of, path, o->input, err);
  if (!st && !write_all(of.fp, hdr, secs, W, g, off, off[W], off[W] + weights_bytes, &objs, off[O], &dev, off[D]))
    st = bn_fail(err, BN_E_IO, "%s: write failed", path);
  if (!st && objs.n && o->sign_sk && !sign(of.fp, off[O], off[W], weights_bytes, o->sign_sk))
    st = bn_fail(err, BN_E_IO, "%s: signing failed", path);
  if (!st && !seal(of.fp)) st = bn_fail(err, BN_E_IO, "%s: write failed", path);
  if (!st) st = bn_outfile_commit(&of, err);
  else if (of.fp) bn_outfile_abort(&of);
  for (int s = 0; s < W; s++) free(secs[s].p);
  free(objs.p);
  return st;
}
