#include "trace.h"

#include "../ir/clock.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

int64_t bn_trace_now_ns(void) { return bn_clock_ns(); }

bn_status bn_trace_init(bn_trace *t, int cap, bn_error *err) {
  t->ev = malloc((size_t)cap * sizeof *t->ev);
  t->n = 0;
  t->cap = t->ev ? cap : 0;
  t->dropped = 0;
  t->t0_ns = bn_trace_now_ns();
  return t->ev ? BN_OK : bn_fail(err, BN_E_NOMEM, "trace: out of memory for %d events", cap);
}

void bn_trace_free(bn_trace *t) {
  free(t->ev);
  t->ev = NULL;
}

void bn_trace_add(bn_trace *t, const char *name, const char *cat, int64_t start_ns, int64_t end_ns, int step,
                  int tokens) {
  if (t->n == t->cap) {
    t->dropped++;
    return;
  }
  t->ev[t->n++] = (bn_trace_event){name, cat, start_ns - t->t0_ns, end_ns - start_ns, step, tokens};
}

bn_status bn_trace_write(const bn_trace *t, const char *path, bn_error *err) {
  cJSON *root = cJSON_CreateObject(), *events = cJSON_AddArrayToObject(root, "traceEvents");
  for (int i = 0; i < t->n && events; i++) {
    const bn_trace_event *e = &t->ev[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", e->name);
    cJSON_AddStringToObject(o, "cat", e->cat);
    cJSON_AddStringToObject(o, "ph", "X");
    cJSON_AddNumberToObject(o, "ts", (double)e->ts_ns / 1000.0); /* microseconds */
    cJSON_AddNumberToObject(o, "dur", (double)e->dur_ns / 1000.0);
    cJSON_AddNumberToObject(o, "pid", 1);
    cJSON_AddNumberToObject(o, "tid", e->cat[0] == 's' ? 1 : 2);
    cJSON *args = cJSON_AddObjectToObject(o, "args");
    cJSON_AddNumberToObject(args, "step", e->step);
    cJSON_AddNumberToObject(args, "tokens", e->tokens);
    cJSON_AddItemToArray(events, o);
  }
  cJSON_AddStringToObject(root, "displayTimeUnit", "ms");
  cJSON *meta = cJSON_AddObjectToObject(root, "otherData");
  cJSON_AddStringToObject(meta, "producer", "bnc");
  cJSON_AddNumberToObject(meta, "dropped_events", (double)t->dropped);
  char *text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  FILE *fp = text ? fopen(path, "wb") : NULL;
  int ok = fp && fputs(text, fp) >= 0;
  if (fp) ok = fclose(fp) == 0 && ok;
  free(text);
  return ok ? BN_OK : bn_fail(err, BN_E_IO, "%s: cannot write the trace", path);
}
