/* A growing text buffer for the printers (print.c, dot.c). */
#ifndef BN_SBUF_H
#define BN_SBUF_H

#include <stddef.h>

#include "ir.h"

typedef struct {
  char *buf;
  size_t len, cap;
  int oom; /* a write failed: the text is incomplete */
} bn_sbuf;

void bn_sbuf_put(bn_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "f32[T, 256]" */
void bn_sbuf_type(bn_sbuf *b, const bn_value *v);

#endif
