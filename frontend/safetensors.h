/* Safetensors: a validated, memory-mapped, zero-copy reader. The header is
 * untrusted JSON: every dtype, shape and offset is checked against the file
 * before use (offsets inside the data, sizes equal to shape x dtype, no two
 * tensors overlapping, names unique). */
#ifndef BN_SAFETENSORS_H
#define BN_SAFETENSORS_H

#include <stdint.h>

#include "../ir/status.h"
#include "../ir/strmap.h"

typedef enum { BN_ST_F32, BN_ST_F16, BN_ST_BF16, BN_ST_U8, BN_ST_I8, BN_ST_F64, BN_ST_I32, BN_ST_I64, BN_ST_NTYPES } bn_st_dtype;

typedef struct {
  char *name;
  bn_st_dtype dtype;
  uint32_t n_dims;
  uint64_t shape[4]; /* outermost first, as the file lists it */
  uint64_t nelems, nbytes;
  const uint8_t *data;
} bn_st_tensor;

typedef struct {
  char path[512];
  const uint8_t *base;
  size_t size, mapped;
  bn_st_tensor *t;
  int n;
  bn_strmap index; /* name -> position */
} bn_st_file;

enum { BN_ST_MAX_HEADER = 64 << 20, BN_ST_MAX_TENSORS = 1 << 20 };

bn_status bn_st_open(bn_st_file *f, const char *path, bn_error *err);
/* Parses a buffer the caller keeps alive (fuzzing, tests). */
bn_status bn_st_parse(bn_st_file *f, const void *buf, size_t size, const char *name, bn_error *err);
void bn_st_close(bn_st_file *f);
const bn_st_tensor *bn_st_find(const bn_st_file *f, const char *name);
const char *bn_st_dtype_name(bn_st_dtype t);

#endif
