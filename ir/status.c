#include "status.h"

#include <stdarg.h>
#include <stdio.h>

bn_status bn_fail(bn_error *err, bn_status code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

const char *bn_status_name(bn_status s) {
  static const char *names[] = {"ok", "io", "format", "unsupported", "invalid", "nomem", "range", "busy"};
  return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown";
}
