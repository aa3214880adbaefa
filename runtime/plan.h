/* .bnplan: a compiled model in one file (format in docs/bnplan.md).
 * Little-endian, sectioned, content-hashed; packed weights are 64-byte
 * aligned and used in place from the mapping. The reader validates every
 * field and bound: a damaged plan is an error naming the field, never a crash. */
#ifndef BN_RT_PLAN_H
#define BN_RT_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "../codegen/llvm/llvm.h"
#include "../ir/memplan.h"
#include "../ir/model.h"

enum { BN_PLAN_VERSION = 2 }; /* 2: TP2 rows interleaved in blocks of 4 */

typedef struct {
  char path[256];
  bn_model model;      /* hyperparameters, vocabulary, graph (weights point into the mapping) */
  bn_memplan mem;
  char target[24];
  uint64_t hash;
  uint32_t version;
  bn_llvm_aot aot;     /* the object code section (n = 0 without one); bytes point into the mapping */
  const uint8_t *base; /* the plan's bytes: read into memory, mapped, or the caller's buffer */
  size_t size;
  int mapped;          /* base is ours: mapped_size bytes to unmap */
  size_t mapped_size;
} bn_plan;

/* Writes atomically (temp file + rename). Deterministic: the same inputs give
 * the same bytes. aot (NULL or n = 0: none) is stored as the object section. */
bn_status bn_plan_write(const bn_model *m, const bn_memplan *mp, const char *target, const bn_llvm_aot *aot,
                        const char *path, bn_error *err);
/* Reads the file into memory advised for 2 MiB pages (faster weight streaming),
 * or maps it where BNC_MMAP=1 is set (pages shared through the page cache,
 * nothing copied) or the copy cannot be made. */
bn_status bn_plan_open(bn_plan *p, const char *path, bn_error *err);
/* Parses a buffer the caller keeps alive (fuzzing, tests). */
bn_status bn_plan_parse(bn_plan *p, const void *buf, size_t size, const char *name, bn_error *err);
void bn_plan_close(bn_plan *p);
/* Is this file a plan? (checks the magic only) */
int bn_plan_sniff(const char *path);

#endif
