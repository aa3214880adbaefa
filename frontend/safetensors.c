/* The safetensors reader (safetensors.h): u64 header length, a JSON object of
 * name -> {dtype, shape, data_offsets} (and "__metadata__"), then the data. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ir/files.h"

static const struct {
  const char *name;
  int size;
} dtypes[BN_ST_NTYPES] = {[BN_ST_F32] = {"F32", 4}, [BN_ST_F16] = {"F16", 2}, [BN_ST_BF16] = {"BF16", 2},
                          [BN_ST_U8] = {"U8", 1},   [BN_ST_I8] = {"I8", 1},   [BN_ST_F64] = {"F64", 8},
                          [BN_ST_I32] = {"I32", 4}, [BN_ST_I64] = {"I64", 8}};

const char *bn_st_dtype_name(bn_st_dtype t) { return (unsigned)t < BN_ST_NTYPES ? dtypes[t].name : "?"; }

/* A JSON number that is a whole number in [0, 2^53]. */
static int whole(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j) || !(j->valuedouble >= 0 && j->valuedouble <= 9007199254740992.0)) return 0;
  *out = (uint64_t)j->valuedouble;
  return (double)*out == j->valuedouble;
}

static int by_offset(const void *a, const void *b) {
  const bn_st_tensor *x = a, *y = b;
  return x->data < y->data ? -1 : x->data > y->data;
}

static bn_status tensor(bn_st_file *f, const cJSON *e, const uint8_t *data, uint64_t data_size, bn_error *err) {
  bn_st_tensor *t = &f->t[f->n];
  const char *nm = e->string;
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype"), *sh = cJSON_GetObjectItemCaseSensitive(e, "shape"),
              *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
    return bn_fail(err, BN_E_FORMAT, "%s: tensor '%.200s': needs dtype, shape and data_offsets [begin, end]", f->path, nm);
  int ty = -1;
  for (int i = 0; i < BN_ST_NTYPES; i++)
    if (!strcmp(dt->valuestring, dtypes[i].name)) ty = i;
  if (ty < 0)
    return bn_fail(err, BN_E_UNSUPPORTED, "%s: tensor '%.200s': dtype '%.32s' is not one bnc reads", f->path, nm,
                   dt->valuestring);
  int nd = cJSON_GetArraySize(sh);
  if (nd > 4) return bn_fail(err, BN_E_FORMAT, "%s: tensor '%.200s' has %d dims (at most 4)", f->path, nm, nd);
  uint64_t n = 1, b, e_;
  for (int i = 0; i < nd; i++) {
    uint64_t d;
    if (!whole(cJSON_GetArrayItem(sh, i), &d) || d > (UINT64_C(1) << 40) || (d && n > (UINT64_C(1) << 48) / d))
      return bn_fail(err, BN_E_FORMAT, "%s: tensor '%.200s': shape entry %d is not a size bnc accepts", f->path, nm, i);
    t->shape[i] = d, n *= d;
  }
  if (!whole(cJSON_GetArrayItem(off, 0), &b) || !whole(cJSON_GetArrayItem(off, 1), &e_) || b > e_ || e_ > data_size)
    return bn_fail(err, BN_E_FORMAT, "%s: tensor '%.200s': data_offsets lie outside the %llu data bytes", f->path, nm,
                   (unsigned long long)data_size);
  if (e_ - b != n * (uint64_t)dtypes[ty].size)
    return bn_fail(err, BN_E_FORMAT, "%s: tensor '%.200s': %llu bytes for %llu elements of %s", f->path, nm,
                   (unsigned long long)(e_ - b), (unsigned long long)n, dtypes[ty].name);
  if (!(t->name = strdup(nm))) return bn_fail(err, BN_E_NOMEM, "out of memory");
  t->dtype = (bn_st_dtype)ty, t->n_dims = (uint32_t)nd, t->nelems = n, t->nbytes = e_ - b, t->data = data + b;
  f->n++;
  return BN_OK;
}

static bn_status parse(bn_st_file *f, bn_error *err) {
  uint64_t hl;
  if (f->size < 8) return bn_fail(err, BN_E_FORMAT, "%s: not a safetensors file (%zu bytes)", f->path, f->size);
  memcpy(&hl, f->base, 8);
  if (hl < 2 || hl > BN_ST_MAX_HEADER || hl > f->size - 8)
    return bn_fail(err, BN_E_FORMAT, "%s: header length %llu does not fit the file (%zu bytes; at most %d)", f->path,
                   (unsigned long long)hl, f->size, BN_ST_MAX_HEADER);
  cJSON *root = cJSON_ParseWithLength((const char *)f->base + 8, (size_t)hl);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return bn_fail(err, BN_E_FORMAT, "%s: the header is not a JSON object", f->path);
  }
  int n = cJSON_GetArraySize(root);
  bn_status st = BN_OK;
  if (n > BN_ST_MAX_TENSORS) st = bn_fail(err, BN_E_FORMAT, "%s: %d header entries (at most %d)", f->path, n, BN_ST_MAX_TENSORS);
  else if (!(f->t = calloc((size_t)n + 1, sizeof *f->t)) || bn_strmap_init(&f->index, (size_t)n))
    st = bn_fail(err, BN_E_NOMEM, "out of memory");
  const uint8_t *data = f->base + 8 + hl;
  for (const cJSON *e = root->child; e && !st; e = e->next) {
    if (!strcmp(e->string, "__metadata__")) continue;
    st = tensor(f, e, data, f->size - 8 - hl, err);
  }
  cJSON_Delete(root);
  if (st) return st;
  for (int i = 0; i < f->n; i++) {
    int had = bn_strmap_add(&f->index, f->t[i].name, strlen(f->t[i].name), i);
    if (had == -2) return bn_fail(err, BN_E_NOMEM, "out of memory");
    if (had >= 0) return bn_fail(err, BN_E_FORMAT, "%s: tensor '%.200s' is listed twice", f->path, f->t[i].name);
  }
  bn_st_tensor *sorted = malloc(((size_t)f->n + 1) * sizeof *sorted);
  if (!sorted) return bn_fail(err, BN_E_NOMEM, "out of memory");
  memcpy(sorted, f->t, (size_t)f->n * sizeof *sorted);
  qsort(sorted, (size_t)f->n, sizeof *sorted, by_offset);
  for (int i = 1; i < f->n && !st; i++)
    if (sorted[i - 1].data + sorted[i - 1].nbytes > sorted[i].data)
      st = bn_fail(err, BN_E_FORMAT, "%s: tensors '%.200s' and '%.200s' overlap", f->path, sorted[i - 1].name, sorted[i].name);
  free(sorted);
  return st;
}

bn_status bn_st_parse(bn_st_file *f, const void *buf, size_t size, const char *name, bn_error *err) {
  memset(f, 0, sizeof *f);
  snprintf(f->path, sizeof f->path, "%s", name);
  f->base = buf, f->size = size;
  bn_status st = parse(f, err);
  if (st) bn_st_close(f);
  return st;
}

bn_status bn_st_open(bn_st_file *f, const char *path, bn_error *err) {
  memset(f, 0, sizeof *f);
  bn_file_view v;
  bn_status st = bn_file_load(path, 8, 0, "a safetensors file", &v, err);
  if (st) return st;
  if ((st = bn_st_parse(f, v.base, v.size, path, err))) {
    bn_file_release(&v);
    return st;
  }
  f->mapped = v.mapped;
  return BN_OK;
}

void bn_st_close(bn_st_file *f) {
  for (int i = 0; f->t && i < f->n; i++) free(f->t[i].name);
  free(f->t);
  bn_strmap_free(&f->index);
  if (f->mapped) {
    bn_file_view v = {f->base, f->size, f->mapped};
    bn_file_release(&v);
  }
  memset(f, 0, sizeof *f);
}

const bn_st_tensor *bn_st_find(const bn_st_file *f, const char *name) {
  int i = bn_strmap_get(&f->index, name, strlen(name));
  return i >= 0 && i < f->n ? &f->t[i] : NULL;
}
