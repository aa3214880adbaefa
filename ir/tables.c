/* The op and element-type tables, expanded from ops.def and dtypes.def. */
#include <string.h>

#include "ir.h"

const bn_op_info bn_op_table[BN_OP_COUNT] = {
#define X(id, name, mn, mx, shape, a0, a1, a2, a3) {name, mn, mx, shape, {a0, a1, a2, a3}},
#include "ops.def"
#undef X
};

const bn_dtype_info bn_dtype_table[BN_DT_COUNT] = {
#define X(id, name, ggml, be, bb, tern) {name, ggml, be, bb, tern},
#include "dtypes.def"
#undef X
};

int bn_op_from_name(const char *name, size_t len) {
  for (int i = 0; i < BN_OP_COUNT; i++)
    if (strlen(bn_op_table[i].name) == len && !memcmp(bn_op_table[i].name, name, len)) return i;
  return -1;
}

int bn_dtype_from_name(const char *name, size_t len) {
  for (int i = 0; i < BN_DT_COUNT; i++)
    if (strlen(bn_dtype_table[i].name) == len && !memcmp(bn_dtype_table[i].name, name, len)) return i;
  return -1;
}

int bn_dtype_from_ggml(uint32_t ggml_id) {
  for (int i = 0; i < BN_DT_COUNT; i++)
    if (bn_dtype_table[i].ggml_id >= 0 && (uint32_t)bn_dtype_table[i].ggml_id == ggml_id) return i;
  return -1;
}

uint64_t bn_dtype_nbytes(bn_dtype t, uint64_t n) {
  const bn_dtype_info *d = &bn_dtype_table[t];
  if (n == 0 || n % (uint64_t)d->block_elems) return 0;
  if (n > (UINT64_C(1) << 62)) return 0;
  /* I2_S: 2 bits per element plus one float scale padded to 32 bytes. */
  if (t == BN_DT_I2_S) return n / 4 + 32;
  return n / (uint64_t)d->block_elems * (uint64_t)d->block_bytes;
}
