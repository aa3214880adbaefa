/* Status codes and error messages shared by every layer.
 * A fallible function returns bn_status and fills a bn_error whose message
 * names the input (file, field, node, line) and the offending value. */
#ifndef BN_STATUS_H
#define BN_STATUS_H

#include <stddef.h>

typedef enum {
  BN_OK = 0,
  BN_E_IO,      /* cannot open/read/write a file */
  BN_E_FORMAT,  /* malformed input: GGUF, .bnir, plan */
  BN_E_UNSUPPORTED,
  BN_E_INVALID, /* bad argument or graph that fails verification */
  BN_E_NOMEM,
  BN_E_RANGE,   /* e.g. prompt longer than the context */
  BN_E_BUSY     /* every slot and place in a queue is taken: try again later */
} bn_status;

typedef struct {
  bn_status code;
  char msg[512];
} bn_error;

/* Fills err (may be NULL) and returns code, so callers can `return bn_fail(...)`. */
bn_status bn_fail(bn_error *err, bn_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *bn_status_name(bn_status s);

#endif
