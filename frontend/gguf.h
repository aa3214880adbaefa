/* GGUF v2/v3: a validated, memory-mapped, zero-copy reader and a writer.
 * Nothing in a file is trusted: every count, length, type, dim and offset
 * is checked against the file's bounds before use. */
#ifndef BN_GGUF_H
#define BN_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "../ir/ir.h"

enum {
  BN_GGUF_U8, BN_GGUF_I8, BN_GGUF_U16, BN_GGUF_I16, BN_GGUF_U32, BN_GGUF_I32, BN_GGUF_F32,
  BN_GGUF_BOOL, BN_GGUF_STRING, BN_GGUF_ARRAY, BN_GGUF_U64, BN_GGUF_I64, BN_GGUF_F64,
  BN_GGUF_NTYPES
};

typedef struct {
  const char *ptr; /* not NUL-terminated: points into the file */
  uint64_t len;
} bn_gguf_str;

typedef struct {
  bn_gguf_str key;
  uint32_t type;
  /* scalars: raw little-endian bytes; strings: str; arrays: the fields below */
  union {
    uint64_t u;
    int64_t i;
    double f;
  } num;
  bn_gguf_str str;
  uint32_t arr_type;
  uint64_t arr_count;
  const uint8_t *arr_data; /* first element (numeric arrays) */
  bn_gguf_str *arr_strs;   /* string arrays: one entry per element (malloc'd) */
} bn_gguf_kv;

typedef struct {
  bn_gguf_str name;
  uint32_t n_dims;
  uint64_t dims[4]; /* dims[0] innermost */
  uint32_t ggml_type;
  bn_dtype dtype;
  uint64_t offset, nbytes, nelems;
  const uint8_t *data;
} bn_gguf_tensor;

typedef struct {
  char path[256];
  uint32_t version;
  uint64_t alignment;
  const uint8_t *base;
  size_t size;
  int mapped; /* base came from mmap */
  bn_gguf_kv *kv;
  uint64_t n_kv;
  bn_gguf_tensor *tensors;
  uint64_t n_tensors;
  bn_strmap kv_index, tensor_index; /* key / name -> position */
} bn_gguf;

bn_status bn_gguf_open(bn_gguf *f, const char *path, bn_error *err);
/* Parses a buffer the caller keeps alive (fuzzing, tests). */
bn_status bn_gguf_parse(bn_gguf *f, const void *buf, size_t size, const char *name, bn_error *err);
void bn_gguf_close(bn_gguf *f);

const bn_gguf_kv *bn_gguf_find(const bn_gguf *f, const char *key);
const bn_gguf_tensor *bn_gguf_tensor_find(const bn_gguf *f, const char *name);
int bn_gguf_str_eq(bn_gguf_str s, const char *c);
const char *bn_gguf_type_name(uint32_t type);

/* Typed getters: fail with a message naming the file, key and what was found. */
bn_status bn_gguf_get_u64(const bn_gguf *f, const char *key, uint64_t *out, bn_error *err);
bn_status bn_gguf_get_f32(const bn_gguf *f, const char *key, float *out, bn_error *err);
bn_status bn_gguf_get_str(const bn_gguf *f, const char *key, char *out, size_t cap, bn_error *err);

/* --- writer --- */
typedef struct bn_gguf_writer bn_gguf_writer;

bn_gguf_writer *bn_gguf_writer_new(void);
void bn_gguf_writer_free(bn_gguf_writer *w);
void bn_gguf_w_u32(bn_gguf_writer *w, const char *key, uint32_t v);
void bn_gguf_w_i32(bn_gguf_writer *w, const char *key, int32_t v);
void bn_gguf_w_f32(bn_gguf_writer *w, const char *key, float v);
void bn_gguf_w_bool(bn_gguf_writer *w, const char *key, int v);
void bn_gguf_w_str(bn_gguf_writer *w, const char *key, const char *v);
void bn_gguf_w_arr_str(bn_gguf_writer *w, const char *key, const char *const *v, uint64_t n);
void bn_gguf_w_arr_f32(bn_gguf_writer *w, const char *key, const float *v, uint64_t n);
void bn_gguf_w_arr_i32(bn_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
/* Adds a tensor; data must stay valid until bn_gguf_writer_write. dims[0] innermost. */
void bn_gguf_w_tensor(bn_gguf_writer *w, const char *name, uint32_t ggml_type, int n_dims,
                      const uint64_t *dims, const void *data, uint64_t nbytes);
/* Writes atomically (temp file + rename). */
bn_status bn_gguf_writer_write(bn_gguf_writer *w, const char *path, bn_error *err);

#endif
