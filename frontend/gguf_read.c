/* GGUF reader. Parsing walks a cursor over the mapped bytes; every read is
 * bounds-checked, so a truncated or hostile file yields one error naming the
 * file, the field and the value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../ir/files.h"
#include "gguf.h"

typedef struct {
  const bn_gguf *f;
  size_t pos;
  bn_error *err;
} cursor;

static const int scalar_size[BN_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *bn_gguf_type_name(uint32_t type) {
  static const char *n[BN_GGUF_NTYPES] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                          "bool", "string", "array", "u64", "i64", "f64"};
  return type < BN_GGUF_NTYPES ? n[type] : "unknown";
}

static bn_status need(cursor *c, uint64_t n, const char *field) {
  if (n > c->f->size - c->pos)
    return bn_fail(c->err, BN_E_FORMAT, "%s: truncated at byte %zu reading %s (need %llu bytes, %zu left)",
                   c->f->path, c->pos, field, (unsigned long long)n, c->f->size - c->pos);
  return BN_OK;
}

static bn_status rd_u32(cursor *c, uint32_t *v, const char *field) {
  if (need(c, 4, field)) return BN_E_FORMAT;
  memcpy(v, c->f->base + c->pos, 4);
  c->pos += 4;
  return BN_OK;
}

static bn_status rd_u64(cursor *c, uint64_t *v, const char *field) {
  if (need(c, 8, field)) return BN_E_FORMAT;
  memcpy(v, c->f->base + c->pos, 8);
  c->pos += 8;
  return BN_OK;
}

static bn_status rd_str(cursor *c, bn_gguf_str *s, const char *field) {
  if (rd_u64(c, &s->len, field)) return BN_E_FORMAT;
  if (need(c, s->len, field)) return BN_E_FORMAT;
  s->ptr = (const char *)c->f->base + c->pos;
  c->pos += s->len;
  return BN_OK;
}

/* Reads one value of `type` (not an array), storing scalars into kv->num. */
static bn_status rd_scalar(cursor *c, uint32_t type, bn_gguf_kv *kv, const char *field) {
  int sz = scalar_size[type];
  if (need(c, (uint64_t)sz, field)) return BN_E_FORMAT;
  const uint8_t *p = c->f->base + c->pos;
  c->pos += (size_t)sz;
  if (!kv) return BN_OK;
  switch (type) {
  case BN_GGUF_U8: case BN_GGUF_BOOL: kv->num.u = p[0]; break;
  case BN_GGUF_I8: kv->num.i = (int8_t)p[0]; break;
  case BN_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); kv->num.u = v; break; }
  case BN_GGUF_I16: { int16_t v; memcpy(&v, p, 2); kv->num.i = v; break; }
  case BN_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); kv->num.u = v; break; }
  case BN_GGUF_I32: { int32_t v; memcpy(&v, p, 4); kv->num.i = v; break; }
  case BN_GGUF_F32: { float v; memcpy(&v, p, 4); kv->num.f = v; break; }
  case BN_GGUF_U64: case BN_GGUF_I64: memcpy(&kv->num.u, p, 8); break;
  case BN_GGUF_F64: memcpy(&kv->num.f, p, 8); break;
  }
  return BN_OK;
}

/* Skips (validating) an array value; depth bounds nested arrays. */
static bn_status rd_array(cursor *c, bn_gguf_kv *kv, int depth, const char *key) {
  uint32_t et;
  uint64_t n;
  if (rd_u32(c, &et, key) || rd_u64(c, &n, key)) return BN_E_FORMAT;
  if (et >= BN_GGUF_NTYPES)
    return bn_fail(c->err, BN_E_FORMAT, "%s: key '%s': unknown array element type %u", c->f->path, key, et);
  if (depth > 4) return bn_fail(c->err, BN_E_FORMAT, "%s: key '%s': arrays nested too deep", c->f->path, key);
  /* Each element takes at least one byte (strings: 8): an absurd count fails here, before any allocation. */
  uint64_t min_elem = et == BN_GGUF_STRING ? 8 : et == BN_GGUF_ARRAY ? 12 : (uint64_t)scalar_size[et];
  if (n > (c->f->size - c->pos) / min_elem)
    return bn_fail(c->err, BN_E_FORMAT, "%s: key '%s': array count %llu exceeds the file", c->f->path, key,
                   (unsigned long long)n);
  if (kv) {
    kv->arr_type = et;
    kv->arr_count = n;
    kv->arr_data = c->f->base + c->pos;
  }
  if (et == BN_GGUF_STRING) {
    bn_gguf_str *strs = NULL;
    if (kv && n) {
      strs = calloc(n, sizeof *strs);
      if (!strs) return bn_fail(c->err, BN_E_NOMEM, "%s: key '%s': out of memory", c->f->path, key);
      kv->arr_strs = strs;
    }
    for (uint64_t i = 0; i < n; i++) {
      bn_gguf_str s;
      if (rd_str(c, &s, key)) return BN_E_FORMAT;
      if (strs) strs[i] = s;
    }
    return BN_OK;
  }
  if (et == BN_GGUF_ARRAY) {
    for (uint64_t i = 0; i < n; i++)
      if (rd_array(c, NULL, depth + 1, key)) return BN_E_FORMAT;
    return BN_OK;
  }
  if (need(c, n * (uint64_t)scalar_size[et], key)) return BN_E_FORMAT;
  c->pos += n * (uint64_t)scalar_size[et];
  return BN_OK;
}

static bn_status rd_kv(cursor *c, bn_gguf_kv *kv, uint64_t index) {
  char field[64];
  snprintf(field, sizeof field, "key of kv pair %llu", (unsigned long long)index);
  if (rd_str(c, &kv->key, field)) return BN_E_FORMAT;
  if (memchr(kv->key.ptr, 0, kv->key.len))
    return bn_fail(c->err, BN_E_FORMAT, "%s: %s contains a NUL byte", c->f->path, field);
  char key[128];
  snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 100 ? kv->key.len : 100), kv->key.ptr);
  if (rd_u32(c, &kv->type, key)) return BN_E_FORMAT;
  if (kv->type >= BN_GGUF_NTYPES)
    return bn_fail(c->err, BN_E_FORMAT, "%s: key '%s': unknown value type %u", c->f->path, key, kv->type);
  if (kv->type == BN_GGUF_STRING) return rd_str(c, &kv->str, key);
  if (kv->type == BN_GGUF_ARRAY) return rd_array(c, kv, 0, key);
  return rd_scalar(c, kv->type, kv, key);
}

static bn_status rd_tensor_info(cursor *c, bn_gguf_tensor *t, uint64_t index) {
  char field[64];
  snprintf(field, sizeof field, "name of tensor %llu", (unsigned long long)index);
  if (rd_str(c, &t->name, field)) return BN_E_FORMAT;
  if (memchr(t->name.ptr, 0, t->name.len))
    return bn_fail(c->err, BN_E_FORMAT, "%s: %s contains a NUL byte", c->f->path, field);
  char nm[128];
  snprintf(nm, sizeof nm, "tensor '%.*s'", (int)(t->name.len < 100 ? t->name.len : 100), t->name.ptr);
  if (rd_u32(c, &t->n_dims, nm)) return BN_E_FORMAT;
  if (t->n_dims < 1 || t->n_dims > 4)
    return bn_fail(c->err, BN_E_FORMAT, "%s: %s: n_dims %u (must be 1..4)", c->f->path, nm, t->n_dims);
  uint64_t n = 1;
  for (uint32_t d = 0; d < t->n_dims; d++) {
    if (rd_u64(c, &t->dims[d], nm)) return BN_E_FORMAT;
    if (t->dims[d] == 0 || t->dims[d] > (UINT64_C(1) << 62) / n)
      return bn_fail(c->err, BN_E_FORMAT, "%s: %s: dim %u = %llu is zero or makes the size overflow",
                     c->f->path, nm, d, (unsigned long long)t->dims[d]);
    n *= t->dims[d];
  }
  for (uint32_t d = t->n_dims; d < 4; d++) t->dims[d] = 1;
  t->nelems = n;
  if (rd_u32(c, &t->ggml_type, nm) || rd_u64(c, &t->offset, nm)) return BN_E_FORMAT;
  int dt = bn_dtype_from_ggml(t->ggml_type);
  if (dt < 0)
    return bn_fail(c->err, BN_E_FORMAT, "%s: %s: unknown or unsupported tensor type %u", c->f->path, nm,
                   t->ggml_type);
  t->dtype = (bn_dtype)dt;
  /* Block types need whole blocks per row, as ggml does. */
  int be = bn_dtype_table[dt].block_elems;
  if ((dt != BN_DT_I2_S && t->dims[0] % (uint64_t)be) || !(t->nbytes = bn_dtype_nbytes(t->dtype, n)))
    return bn_fail(c->err, BN_E_FORMAT, "%s: %s: %llu elements (row %llu) do not fill whole %s blocks of %d",
                   c->f->path, nm, (unsigned long long)n, (unsigned long long)t->dims[0],
                   bn_dtype_table[dt].name, be);
  if (t->offset % c->f->alignment)
    return bn_fail(c->err, BN_E_FORMAT, "%s: %s: offset %llu is not a multiple of the alignment %llu", c->f->path,
                   nm, (unsigned long long)t->offset, (unsigned long long)c->f->alignment);
  return BN_OK;
}

static int cmp_offset(const void *a, const void *b) {
  const bn_gguf_tensor *x = *(const bn_gguf_tensor *const *)a, *y = *(const bn_gguf_tensor *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static bn_status check_layout(bn_gguf *f, size_t data_start, bn_error *err) {
  if (f->n_tensors == 0) return BN_OK;
  bn_gguf_tensor **order = malloc(f->n_tensors * sizeof *order);
  if (!order) return bn_fail(err, BN_E_NOMEM, "%s: out of memory", f->path);
  for (uint64_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
  qsort(order, f->n_tensors, sizeof *order, cmp_offset);
  bn_status st = BN_OK;
  uint64_t avail = f->size - data_start;
  for (uint64_t i = 0; i < f->n_tensors && !st; i++) {
    bn_gguf_tensor *t = order[i];
    if (t->offset > avail || t->nbytes > avail - t->offset)
      st = bn_fail(err, BN_E_FORMAT, "%s: tensor '%.*s': data [%llu, +%llu) runs past the end of the file",
                   f->path, (int)t->name.len, t->name.ptr, (unsigned long long)t->offset,
                   (unsigned long long)t->nbytes);
    else if (i > 0 && order[i - 1]->offset + order[i - 1]->nbytes > t->offset)
      st = bn_fail(err, BN_E_FORMAT, "%s: tensor '%.*s' overlaps tensor '%.*s'", f->path, (int)t->name.len,
                   t->name.ptr, (int)order[i - 1]->name.len, order[i - 1]->name.ptr);
    else t->data = f->base + data_start + t->offset;
  }
  free(order);
  return st;
}


static bn_status parse(bn_gguf *f, bn_error *err) {
  cursor c = {f, 0, err};
  uint32_t magic;
  if (rd_u32(&c, &magic, "magic")) return BN_E_FORMAT;
  if (magic != 0x46554747u)
    return bn_fail(err, BN_E_FORMAT, "%s: magic 0x%08x is not GGUF", f->path, magic);
  if (rd_u32(&c, &f->version, "version")) return BN_E_FORMAT;
  if (f->version != 2 && f->version != 3)
    return bn_fail(err, BN_E_FORMAT, "%s: version %u unsupported (need 2 or 3)", f->path, f->version);
  if (rd_u64(&c, &f->n_tensors, "tensor_count") || rd_u64(&c, &f->n_kv, "kv_count")) return BN_E_FORMAT;
  /* A kv pair takes >= 12 bytes, a tensor info >= 24: bound counts before allocating. */
  if (f->n_kv > f->size / 12)
    return bn_fail(err, BN_E_FORMAT, "%s: kv_count %llu is impossible for a %zu-byte file", f->path,
                   (unsigned long long)f->n_kv, f->size);
  if (f->n_tensors > f->size / 24)
    return bn_fail(err, BN_E_FORMAT, "%s: tensor_count %llu is impossible for a %zu-byte file", f->path,
                   (unsigned long long)f->n_tensors, f->size);
  if (f->n_kv > (1u << 24) || f->n_tensors > (1u << 24))
    return bn_fail(err, BN_E_FORMAT, "%s: %llu keys and %llu tensors (at most %u each)", f->path,
                   (unsigned long long)f->n_kv, (unsigned long long)f->n_tensors, 1u << 24);
  f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
  f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
  if (!f->kv || !f->tensors || bn_strmap_init(&f->kv_index, f->n_kv) || bn_strmap_init(&f->tensor_index, f->n_tensors))
    return bn_fail(err, BN_E_NOMEM, "%s: out of memory", f->path);
  f->alignment = 32;
  for (uint64_t i = 0; i < f->n_kv; i++) {
    if (rd_kv(&c, &f->kv[i], i)) { f->n_kv = i + 1; return BN_E_FORMAT; }
    if (bn_strmap_add(&f->kv_index, f->kv[i].key.ptr, f->kv[i].key.len, (int)i) != -1) {
      f->n_kv = i + 1;
      return bn_fail(err, BN_E_FORMAT, "%s: key '%.*s' appears twice", f->path, (int)f->kv[i].key.len,
                     f->kv[i].key.ptr);
    }
  }
  const bn_gguf_kv *al = bn_gguf_find(f, "general.alignment");
  if (al) {
    if (al->type != BN_GGUF_U32 || al->num.u == 0 || (al->num.u & (al->num.u - 1)) || al->num.u > 65536)
      return bn_fail(err, BN_E_FORMAT, "%s: general.alignment must be a u32 power of two <= 65536 (got %s %llu)",
                     f->path, bn_gguf_type_name(al->type), (unsigned long long)al->num.u);
    f->alignment = al->num.u;
  }
  for (uint64_t i = 0; i < f->n_tensors; i++) {
    if (rd_tensor_info(&c, &f->tensors[i], i)) return BN_E_FORMAT;
    if (bn_strmap_add(&f->tensor_index, f->tensors[i].name.ptr, f->tensors[i].name.len, (int)i) != -1)
      return bn_fail(err, BN_E_FORMAT, "%s: tensor '%.*s' appears twice", f->path, (int)f->tensors[i].name.len,
                     f->tensors[i].name.ptr);
  }
  size_t data_start = (c.pos + f->alignment - 1) / f->alignment * f->alignment;
  if (data_start > f->size && f->n_tensors)
    return bn_fail(err, BN_E_FORMAT, "%s: tensor data would start at %zu, past the end (%zu bytes)", f->path,
                   data_start, f->size);
  return check_layout(f, data_start, err);
}

bn_status bn_gguf_parse(bn_gguf *f, const void *buf, size_t size, const char *name, bn_error *err) {
  memset(f, 0, sizeof *f);
  snprintf(f->path, sizeof f->path, "%s", name);
  f->base = buf;
  f->size = size;
  bn_status st = parse(f, err);
  if (st) bn_gguf_close(f);
  return st;
}

bn_status bn_gguf_open(bn_gguf *f, const char *path, bn_error *err) {
  memset(f, 0, sizeof *f);
  bn_file_view v;
  bn_status st = bn_file_load(path, 24, 0, "a GGUF file", &v, err);
  if (st) return st;
  if ((st = bn_gguf_parse(f, v.base, v.size, path, err))) {
    bn_file_release(&v);
    return st;
  }
  f->mapped = 1;
  return BN_OK;
}

void bn_gguf_close(bn_gguf *f) {
  if (f->kv)
    for (uint64_t i = 0; i < f->n_kv; i++) free(f->kv[i].arr_strs);
  free(f->kv);
  free(f->tensors);
  bn_strmap_free(&f->kv_index), bn_strmap_free(&f->tensor_index);
  if (f->mapped) munmap((void *)f->base, f->size);
  memset(f, 0, sizeof *f);
}

int bn_gguf_str_eq(bn_gguf_str s, const char *c) { return strlen(c) == s.len && !memcmp(s.ptr, c, s.len); }

const bn_gguf_kv *bn_gguf_find(const bn_gguf *f, const char *key) {
  int i = bn_strmap_get(&f->kv_index, key, strlen(key));
  return i >= 0 && (uint64_t)i < f->n_kv ? &f->kv[i] : NULL;
}

const bn_gguf_tensor *bn_gguf_tensor_find(const bn_gguf *f, const char *name) {
  int i = bn_strmap_get(&f->tensor_index, name, strlen(name));
  return i >= 0 && (uint64_t)i < f->n_tensors ? &f->tensors[i] : NULL;
}

bn_status bn_gguf_get_u64(const bn_gguf *f, const char *key, uint64_t *out, bn_error *err) {
  const bn_gguf_kv *kv = bn_gguf_find(f, key);
  if (!kv) return bn_fail(err, BN_E_FORMAT, "%s: missing key '%s'", f->path, key);
  switch (kv->type) {
  case BN_GGUF_U8: case BN_GGUF_U16: case BN_GGUF_U32: case BN_GGUF_U64: *out = kv->num.u; return BN_OK;
  case BN_GGUF_I8: case BN_GGUF_I16: case BN_GGUF_I32: case BN_GGUF_I64:
    if (kv->num.i < 0) return bn_fail(err, BN_E_FORMAT, "%s: key '%s' is negative (%lld)", f->path, key, (long long)kv->num.i);
    *out = (uint64_t)kv->num.i;
    return BN_OK;
  default:
    return bn_fail(err, BN_E_FORMAT, "%s: key '%s' has type %s, expected an integer", f->path, key,
                   bn_gguf_type_name(kv->type));
  }
}

bn_status bn_gguf_get_f32(const bn_gguf *f, const char *key, float *out, bn_error *err) {
  const bn_gguf_kv *kv = bn_gguf_find(f, key);
  if (!kv) return bn_fail(err, BN_E_FORMAT, "%s: missing key '%s'", f->path, key);
  if (kv->type != BN_GGUF_F32 && kv->type != BN_GGUF_F64)
    return bn_fail(err, BN_E_FORMAT, "%s: key '%s' has type %s, expected f32", f->path, key,
                   bn_gguf_type_name(kv->type));
  *out = (float)kv->num.f;
  return BN_OK;
}

bn_status bn_gguf_get_str(const bn_gguf *f, const char *key, char *out, size_t cap, bn_error *err) {
  const bn_gguf_kv *kv = bn_gguf_find(f, key);
  if (!kv) return bn_fail(err, BN_E_FORMAT, "%s: missing key '%s'", f->path, key);
  if (kv->type != BN_GGUF_STRING)
    return bn_fail(err, BN_E_FORMAT, "%s: key '%s' has type %s, expected string", f->path, key,
                   bn_gguf_type_name(kv->type));
  if (kv->str.len >= cap)
    return bn_fail(err, BN_E_FORMAT, "%s: key '%s' is too long (%llu bytes)", f->path, key,
                   (unsigned long long)kv->str.len);
  if (memchr(kv->str.ptr, 0, kv->str.len))
    return bn_fail(err, BN_E_FORMAT, "%s: key '%s' contains a NUL byte", f->path, key);
  memcpy(out, kv->str.ptr, kv->str.len);
  out[kv->str.len] = 0;
  return BN_OK;
}
