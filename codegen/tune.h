/* The compile-time tuner and the matmul fixture it and bnc bench --kernel time
 * kernels on; any backend's kernels, through the backend interface. */
#ifndef BN_TUNE_H
#define BN_TUNE_H

#include "backend.h"

/* The weight layouts a ternary matmul may take (the tuner's choice: BN_LAYOUTS), then the group-scaled ones
 * of the same codes (bnc bench --kernel times them too); their kernel families and names. */
enum { BN_LAYOUT_TP2, BN_LAYOUT_TL2, BN_LAYOUT_TP1, BN_LAYOUTS, BN_LAYOUT_TG2 = BN_LAYOUTS, BN_LAYOUT_TG2H, BN_FIXTURES };
extern const bn_kfamily bn_layout_family[BN_FIXTURES];
extern const char *const bn_layout_name[BN_FIXTURES];
/* The fused matmul + dequant kernel's key for layout l of a K -> N product. */
bn_kkey bn_layout_key(int l, int64_t K, int64_t N);

/* The tuner's measurement of one matmul shape: microseconds per call of each
 * layout's kernel (0: the backend has none for the shape) for one token and for
 * a chunk of `batch`, on one thread; best: the layout that wins on pp128 +
 * tg64's work (another than TP2 by 3 %, the noise). */
typedef struct {
  int64_t k, n;
  int batch, best;
  double decode_us[BN_LAYOUTS], prefill_us[BN_LAYOUTS];
} bn_tune;
bn_status bn_tune_matmul(bn_codegen *cg, int64_t K, int64_t N, int batch, bn_tune *out, bn_error *err);

/* What the tuner and bnc bench --kernel time a ternary matmul on: random TP2
 * weights (codes 0 or 1, row scales 1), the same as TL2 (NULL unless N % 16 =
 * 0), as TP1 and with random f16 scales per 256 and 128 elements (TG2, TG2H;
 * NULL unless N % 4 = 0), each in `copies` copies stride bytes apart — with stream, as
 * many as exceed the last-level cache, so a decode step reads them from memory
 * as a real one does — T random QA8 rows, and T x N floats of output. */
typedef struct {
  uint8_t *w[BN_FIXTURES], *qa; /* by layout */
  float *y;
  size_t bytes[BN_FIXTURES], stride;
  int copies;
} bn_mm_fixture;
bn_status bn_mm_fixture_make(int64_t K, int64_t N, int64_t T, int stream, bn_mm_fixture *f, bn_error *err);
void bn_mm_fixture_free(bn_mm_fixture *f);

#endif
