/* A dequantization that is an exact tie between two floats, for every ternary kernel's test: three codes of
 * 99 times +1 trits (acc 297), row scale 0x1.34af26p-1, token scale 99 make acc rs / s = 0x1.cf06b9p+0
 * exactly, halfway between two floats; half to even gives 0x1.cf06b8p+0 (from an inexact quotient, e.g. a
 * reciprocal's, it lands on either side). Odd rows have -1 trits: the negative tie. */
#ifndef BN_TESTS_TIE_H
#define BN_TESTS_TIE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../codegen/kernels.h"
#include "../ir/quant.h"

enum { TIE_K = 256, TIE_N = 16 };
static const float TIE_WANT = 0x1.cf06b8p+0f;

static inline bn_shape tie_shape(void) { return (bn_shape){2, {TIE_N, TIE_K}}; }

/* The TIE_N x TIE_K weights in TP2 (malloc'ed). */
static inline uint8_t *tie_tp2(void) {
  bn_shape sh = tie_shape();
  uint8_t *w = malloc(bn_value_bytes(BN_DT_TP2, &sh, 0));
  int8_t trit[TIE_K];
  for (int r = 0; r < TIE_N; r++) {
    memset(trit, 0, sizeof trit);
    trit[0] = trit[1] = trit[2] = (int8_t)(r % 2 ? -1 : 1);
    bn_tp2_write_row(w, TIE_N, TIE_K, (uint64_t)r, trit, 0x1.34af26p-1f);
  }
  return w;
}

/* T QA8 rows of the tie's codes and scale (64-byte aligned, malloc'ed). */
static inline uint8_t *tie_qa(int T) {
  int64_t rb = bn_qa8_row_bytes(TIE_K);
  uint8_t *qa = aligned_alloc(64, (size_t)(T * rb));
  float s = 99.0f;
  int32_t sum = 3 * 99;
  memset(qa, 0, (size_t)(T * rb));
  for (int t = 0; t < T; t++) {
    memset(qa + t * rb, 99, 3);
    memcpy(qa + t * rb + rb - 64, &s, 4);
    memcpy(qa + t * rb + rb - 60, &sum, 4);
  }
  return qa;
}

/* Output i's expected bits: the even float, its sign by row. */
static inline float tie_want(int i) { return i % 2 ? -TIE_WANT : TIE_WANT; }

/* Runs the dequantizing kernel fn over the tie's weights w for T tokens; the index
 * of the first output that is not tie_want's bits (its value in *got), or -1. */
static inline int tie_run(bn_mm_kernel fn, const uint8_t *w, int T, float *got) {
  uint8_t *qa = tie_qa(T);
  float *y = malloc((size_t)T * TIE_N * 4), *resid = calloc((size_t)T * TIE_N, 4);
  fn(qa, w, y, resid, T, 0, TIE_N);
  int wrong = -1;
  for (int i = 0; i < T * TIE_N && wrong < 0; i++) {
    float want = tie_want(i);
    if (memcmp(&y[i], &want, 4)) wrong = i, *got = y[i];
  }
  free(qa), free(y), free(resid);
  return wrong;
}

#endif
