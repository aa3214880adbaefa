/* Helpers shared by the tests. */
#ifndef BN_TESTUTIL_H
#define BN_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Reads a whole file; returns NULL if missing. */
static inline void *tu_read(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  void *p = malloc((size_t)n + 1);
  if (p && fread(p, 1, (size_t)n, fp) != (size_t)n) {
    free(p);
    p = NULL;
  }
  fclose(fp);
  if (p) ((char *)p)[n] = 0;
  if (len) *len = (size_t)n;
  return p;
}

/* Writes len bytes to path (replacing it); 0 on success. */
static inline int tu_write(const char *path, const void *data, size_t len) {
  FILE *fp = fopen(path, "wb");
  if (!fp) return -1;
  int ok = fwrite(data, 1, len, fp) == len;
  return (fclose(fp) == 0 && ok) ? 0 : -1;
}

/* max |a - b| / (max(b) - min(b)): the error relative to the logit range. */
static inline double tu_rel_to_range(const float *a, const float *b, size_t n) {
  float lo = INFINITY, hi = -INFINITY;
  double md = 0;
  for (size_t i = 0; i < n; i++) {
    lo = fminf(lo, b[i]), hi = fmaxf(hi, b[i]);
    md = fmax(md, fabs((double)a[i] - b[i]));
  }
  return md / (hi - lo);
}

#endif
