/* GGUF v3 writer: kv pairs are serialized as they are added; tensors are
 * referenced and streamed out at write time, each at an aligned offset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../ir/files.h"
#include "gguf.h"

typedef struct {
  char *name;
  uint32_t type;
  int n_dims;
  uint64_t dims[4];
  const void *data;
  uint64_t nbytes;
} wtensor;

struct bn_gguf_writer {
  uint8_t *kv;
  size_t kv_len, kv_cap;
  uint64_t n_kv;
  wtensor *t;
  int n_t, cap_t;
  int oom;
};

enum { ALIGN = 32 };

bn_gguf_writer *bn_gguf_writer_new(void) { return calloc(1, sizeof(bn_gguf_writer)); }

void bn_gguf_writer_free(bn_gguf_writer *w) {
  if (!w) return;
  for (int i = 0; i < w->n_t; i++) free(w->t[i].name);
  free(w->t);
  free(w->kv);
  free(w);
}

static void emit(bn_gguf_writer *w, const void *p, size_t n) {
  if (w->kv_len + n > w->kv_cap) {
    size_t nc = w->kv_cap ? w->kv_cap : 4096;
    while (nc < w->kv_len + n) nc *= 2;
    uint8_t *q = realloc(w->kv, nc);
    if (!q) { w->oom = 1; return; }
    w->kv = q;
    w->kv_cap = nc;
  }
  memcpy(w->kv + w->kv_len, p, n);
  w->kv_len += n;
}

static void emit_u32(bn_gguf_writer *w, uint32_t v) { emit(w, &v, 4); }
static void emit_u64(bn_gguf_writer *w, uint64_t v) { emit(w, &v, 8); }
static void emit_str(bn_gguf_writer *w, const char *s) {
  emit_u64(w, strlen(s));
  emit(w, s, strlen(s));
}
static void key(bn_gguf_writer *w, const char *k, uint32_t type) {
  emit_str(w, k);
  emit_u32(w, type);
  w->n_kv++;
}

void bn_gguf_w_u32(bn_gguf_writer *w, const char *k, uint32_t v) { key(w, k, BN_GGUF_U32); emit_u32(w, v); }
void bn_gguf_w_i32(bn_gguf_writer *w, const char *k, int32_t v) { key(w, k, BN_GGUF_I32); emit(w, &v, 4); }
void bn_gguf_w_f32(bn_gguf_writer *w, const char *k, float v) { key(w, k, BN_GGUF_F32); emit(w, &v, 4); }
void bn_gguf_w_bool(bn_gguf_writer *w, const char *k, int v) {
  uint8_t b = v != 0;
  key(w, k, BN_GGUF_BOOL);
  emit(w, &b, 1);
}
void bn_gguf_w_str(bn_gguf_writer *w, const char *k, const char *v) { key(w, k, BN_GGUF_STRING); emit_str(w, v); }

static void arr_head(bn_gguf_writer *w, const char *k, uint32_t et, uint64_t n) {
  key(w, k, BN_GGUF_ARRAY);
  emit_u32(w, et);
  emit_u64(w, n);
}
void bn_gguf_w_arr_str(bn_gguf_writer *w, const char *k, const char *const *v, uint64_t n) {
  arr_head(w, k, BN_GGUF_STRING, n);
  for (uint64_t i = 0; i < n; i++) emit_str(w, v[i]);
}
void bn_gguf_w_arr_f32(bn_gguf_writer *w, const char *k, const float *v, uint64_t n) {
  arr_head(w, k, BN_GGUF_F32, n);
  emit(w, v, n * 4);
}
void bn_gguf_w_arr_i32(bn_gguf_writer *w, const char *k, const int32_t *v, uint64_t n) {
  arr_head(w, k, BN_GGUF_I32, n);
  emit(w, v, n * 4);
}

void bn_gguf_w_tensor(bn_gguf_writer *w, const char *name, uint32_t ggml_type, int n_dims, const uint64_t *dims,
                      const void *data, uint64_t nbytes) {
  if (w->n_t == w->cap_t) {
    int nc = w->cap_t ? w->cap_t * 2 : 64;
    wtensor *q = realloc(w->t, (size_t)nc * sizeof *q);
    if (!q) { w->oom = 1; return; }
    w->t = q;
    w->cap_t = nc;
  }
  wtensor *t = &w->t[w->n_t++];
  memset(t, 0, sizeof *t);
  t->name = strdup(name);
  t->type = ggml_type;
  t->n_dims = n_dims;
  memcpy(t->dims, dims, (size_t)n_dims * sizeof *dims);
  t->data = data;
  t->nbytes = nbytes;
  if (!t->name) w->oom = 1;
}

static uint64_t align_up(uint64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

static int write_all(FILE *fp, bn_gguf_writer *w) {
  static const uint8_t zeros[ALIGN];
  uint32_t hdr[2] = {0x46554747u, 3};
  uint64_t counts[2] = {(uint64_t)w->n_t, w->n_kv};
  if (fwrite(hdr, 4, 2, fp) != 2 || fwrite(counts, 8, 2, fp) != 2) return 0;
  if (fwrite(w->kv, 1, w->kv_len, fp) != w->kv_len) return 0;
  uint64_t pos = 24 + w->kv_len, off = 0;
  for (int i = 0; i < w->n_t; i++) {
    wtensor *t = &w->t[i];
    uint64_t len = strlen(t->name);
    uint32_t nd = (uint32_t)t->n_dims;
    if (fwrite(&len, 8, 1, fp) != 1 || fwrite(t->name, 1, len, fp) != len || fwrite(&nd, 4, 1, fp) != 1 ||
        fwrite(t->dims, 8, nd, fp) != nd || fwrite(&t->type, 4, 1, fp) != 1 || fwrite(&off, 8, 1, fp) != 1)
      return 0;
    pos += 8 + len + 4 + 8 * nd + 4 + 8;
    off = align_up(off + t->nbytes);
  }
  if (fwrite(zeros, 1, align_up(pos) - pos, fp) != align_up(pos) - pos) return 0;
  for (int i = 0; i < w->n_t; i++) {
    wtensor *t = &w->t[i];
    if (fwrite(t->data, 1, t->nbytes, fp) != t->nbytes) return 0;
    uint64_t pad = align_up(t->nbytes) - t->nbytes;
    if (i + 1 < w->n_t && fwrite(zeros, 1, pad, fp) != pad) return 0;
  }
  return 1;
}

bn_status bn_gguf_writer_write(bn_gguf_writer *w, const char *path, bn_error *err) {
  if (w->oom) return bn_fail(err, BN_E_NOMEM, "%s: out of memory building the file", path);
  bn_outfile of;
  bn_status st = bn_outfile_open(&of, path, NULL, err);
  if (st) return st;
  if (!write_all(of.fp, w)) {
    bn_outfile_abort(&of);
    return bn_fail(err, BN_E_IO, "%s: write failed", path);
  }
  return bn_outfile_commit(&of, err);
}
