/* A Chrome trace (chrome://tracing, Perfetto) of a run: events are kept in
 * a buffer made at the start, so recording allocates nothing; the JSON is
 * written at the end with cJSON. */
#ifndef BN_RT_TRACE_H
#define BN_RT_TRACE_H

#include <stdint.h>

#include "../ir/status.h"

typedef struct {
  const char *name; /* static or owned by the recorder's user for the run */
  const char *cat;  /* "stage" or "kernel" */
  int64_t ts_ns, dur_ns;
  int step, tokens;
} bn_trace_event;

typedef struct bn_trace {
  bn_trace_event *ev;
  int n, cap;
  long dropped;
  int64_t t0_ns;
} bn_trace;

bn_status bn_trace_init(bn_trace *t, int cap, bn_error *err);
void bn_trace_free(bn_trace *t);
int64_t bn_trace_now_ns(void);
void bn_trace_add(bn_trace *t, const char *name, const char *cat, int64_t start_ns, int64_t end_ns, int step,
                  int tokens);
bn_status bn_trace_write(const bn_trace *t, const char *path, bn_error *err);

#endif
