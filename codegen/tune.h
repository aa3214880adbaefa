/* The compile-time tuner and the matmul fixture it and bnc bench --kernel time
 * kernels on; any backend's kernels, through the backend interface. */
#ifndef BN_TUNE_H
#define BN_TUNE_H

#include "backend.h"

/* The tuner's measurement of one matmul shape: microseconds per call of the
 * packed [0] and lookup-table [1] kernels for one token and for a chunk of
 * `batch`, on one thread; lut: the tables win on pp128 + tg64's work. */
typedef struct {
  int64_t k, n;
  int batch, lut;
  double decode_us[2], prefill_us[2];
} bn_tune;
bn_status bn_tune_matmul(bn_codegen *cg, int64_t K, int64_t N, int batch, bn_tune *out, bn_error *err);

/* What the tuner and bnc bench --kernel time a ternary matmul on: random TP2
 * weights (codes 0 or 1, row scales 1), the same as TL2 (tl: NULL unless
 * N % 16 = 0), in `copies` copies stride bytes apart — with stream, as many
 * as exceed the last-level cache, so a decode step reads them from memory as
 * a real one does — T random QA8 rows, and T x N floats of output. */
typedef struct {
  uint8_t *tp, *tl, *qa;
  float *y;
  size_t bytes, stride;
  int copies;
} bn_mm_fixture;
bn_status bn_mm_fixture_make(int64_t K, int64_t N, int64_t T, int stream, bn_mm_fixture *f, bn_error *err);
void bn_mm_fixture_free(bn_mm_fixture *f);

#endif
