/* bnc serve: an OpenAI-style HTTP API over the serving engine (runtime/engine.h) on libmicrohttpd, a
 * thread per connection: /v1/completions and /v1/chat/completions (streamed as server-sent events or
 * whole), /v1/models, /health, /metrics. Requests of every connection share the engine's slots. */
#define _GNU_SOURCE /* POLLRDHUP: a client that closed its side */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/engine.h"
#include "../runtime/tokenizer.h"
#include "cli.h"
#include "serve_req.h"

static const char HELP[] =
    "usage: bnc serve MODEL [--host 127.0.0.1] [--port 8080] [--parallel 4] [--queue N] [-c CTX] [-t THREADS]\n"
    "                 [--api-key KEY] [--backend NAME] [--kv f32|f16]\n"
    "  Serves MODEL (a .bnplan or a GGUF) over HTTP, OpenAI-style: POST /v1/completions and\n"
    "  /v1/chat/completions (\"stream\": true for server-sent events), GET /v1/models, /health, /metrics.\n"
    "  Up to --parallel requests decode together, each step one batch of all of them (continuous\n"
    "  batching: docs/serve.md); --queue more wait (default 4 x parallel); beyond that: 503.\n"
    "  --host ADDR      an IPv4 or IPv6 address to listen on (default 127.0.0.1: this machine only)\n"
    "  --port N         (default 8080; 0: any free port, printed)\n"
    "  -c, --ctx N      each request's context: prompt and generated tokens (default: the model's, at most 4096)\n"
    "  -t, --threads N  threads for the kernels (default 1)\n"
    "  --api-key KEY    requests to /v1/ need the header \"Authorization: Bearer KEY\"\n"
    "  SIGTERM or SIGINT: stop accepting, let running requests finish (10 s at most), exit 0.\n";

enum { MAX_BODY = 1 << 20, DRAIN_S = 10 };
static const int HTTP_CODES[8] = {200, 400, 401, 404, 405, 413, 500, 503};

/* A Prometheus histogram of seconds. */
static const double BOUNDS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
enum { N_BOUNDS = sizeof BOUNDS / sizeof *BOUNDS };
typedef struct {
  long count[N_BOUNDS + 1];
  double sum;
} histo;

typedef struct {
  bn_engine *eng;
  const char *model_id, *api_key;
  bn_chat_template chat; /* bn_chat_pick's */
  int n_ctx;
  _Atomic int draining; /* set by the main thread at SIGTERM, read by the connections' */
  long http[8]; /* responses by status: HTTP_CODES */
  histo ttft, itl, total; /* time to first token, between tokens, of a request */
  pthread_mutex_t mu;
} server;

/* One completion: shared by its connection's thread and the engine's (refs). */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int refs, chat, stream, done, gone, phase; /* phase: the stream's next part (0 text, 1 the end, 2 [DONE]) */
  bn_serve_req req;
  char *text;
  size_t len, cap, taken;
  char *pending; /* formatted bytes not yet handed to the connection */
  size_t pending_len, pending_at;
  bn_engine_result r;
  char id[40];
  long created;
  server *srv;
  double t0, last; /* submitted; the last text */
} job;

typedef struct { /* a connection's request as it arrives */
  char *body;
  size_t len;
  int too_big;
} conn;

static void job_unref(job *j) {
  pthread_mutex_lock(&j->mu);
  int last = --j->refs == 0;
  pthread_mutex_unlock(&j->mu);
  if (!last) return;
  bn_serve_req_free(&j->req);
  free(j->text), free(j->pending);
  pthread_mutex_destroy(&j->mu), pthread_cond_destroy(&j->cv);
  free(j);
}

static void observe(server *s, histo *h, double x) {
  int k = 0;
  while (k < N_BOUNDS && x > BOUNDS[k]) k++;
  pthread_mutex_lock(&s->mu);
  h->count[k]++, h->sum += x;
  pthread_mutex_unlock(&s->mu);
}

static int on_text(const char *t, size_t n, void *user) {
  job *j = user;
  double now = bn_now();
  if (j->last > 0) observe(j->srv, &j->srv->itl, now - j->last);
  j->last = now;
  pthread_mutex_lock(&j->mu);
  if (j->len + n + 1 > j->cap) {
    size_t cap = (j->len + n + 1) * 2;
    char *p = realloc(j->text, cap);
    if (p) j->text = p, j->cap = cap;
  }
  if (j->len + n + 1 <= j->cap) memcpy(j->text + j->len, t, n), j->len += n, j->text[j->len] = 0;
  int gone = j->gone;
  pthread_cond_broadcast(&j->cv);
  pthread_mutex_unlock(&j->mu);
  return gone;
}

static void on_done(const bn_engine_result *r, void *user) {
  job *j = user;
  if (r->n_gen) observe(j->srv, &j->srv->ttft, r->ttft_s);
  if (r->finish != BN_FINISH_ERROR) observe(j->srv, &j->srv->total, bn_now() - j->t0);
  pthread_mutex_lock(&j->mu);
  j->r = *r, j->done = 1;
  pthread_cond_broadcast(&j->cv);
  pthread_mutex_unlock(&j->mu);
  job_unref(j);
}

static void count(server *s, int status) {
  int k = 0;
  while (k < 7 && HTTP_CODES[k] != status) k++;
  pthread_mutex_lock(&s->mu);
  s->http[k]++;
  pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result send_text(struct MHD_Connection *c, server *s, int status, const char *type, const char *body) {
  struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(r, "Content-Type", type);
  if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
  enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
  MHD_destroy_response(r);
  count(s, status);
  return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *c, server *s, int status, cJSON *o) {
  char *txt = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  enum MHD_Result ok = send_text(c, s, txt ? status : 500, "application/json", txt ? txt : "{}");
  free(txt);
  return ok;
}

/* An OpenAI-style error object. */
static enum MHD_Result send_error(struct MHD_Connection *c, server *s, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static enum MHD_Result send_error(struct MHD_Connection *c, server *s, int status, const char *param, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
  cJSON_AddStringToObject(e, "message", msg);
  cJSON_AddStringToObject(e, "type", status == 401   ? "authentication_error"
                                     : status == 503 ? "server_busy"
                                     : status >= 500 ? "server_error"
                                                     : "invalid_request_error");
  if (param) cJSON_AddStringToObject(e, "param", param);
  else cJSON_AddNullToObject(e, "param");
  cJSON_AddNullToObject(e, "code");
  return send_json(c, s, status, o);
}

static const char *finish_name(bn_finish f) { return f == BN_FINISH_LENGTH ? "length" : "stop"; }

/* A choice (or a stream chunk's): text, or a chat message / delta. */
static cJSON *envelope(const job *j, int chunk) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", j->id);
  cJSON_AddStringToObject(o, "object", j->chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
  cJSON_AddNumberToObject(o, "created", (double)j->created);
  cJSON_AddStringToObject(o, "model", j->srv->model_id);
  return o;
}

static cJSON *choice(const job *j, cJSON *o, const char *text, size_t n, const char *finish, int chunk) {
  cJSON *cs = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
  cJSON_AddItemToArray(cs, c);
  cJSON_AddNumberToObject(c, "index", 0);
  char *t = malloc(n + 1);
  if (t) memcpy(t, text, n), t[n] = 0;
  if (!j->chat) {
    cJSON_AddStringToObject(c, "text", t ? t : "");
    cJSON_AddNullToObject(c, "logprobs");
  } else {
    cJSON *m = cJSON_AddObjectToObject(c, chunk ? "delta" : "message");
    if (!chunk || !j->taken) cJSON_AddStringToObject(m, "role", "assistant");
    if (!chunk || n) cJSON_AddStringToObject(m, "content", t ? t : "");
  }
  free(t);
  if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
  else cJSON_AddNullToObject(c, "finish_reason");
  return o;
}

static void usage(cJSON *o, const bn_engine_result *r) {
  cJSON *u = cJSON_AddObjectToObject(o, "usage");
  cJSON_AddNumberToObject(u, "prompt_tokens", r->n_prompt);
  cJSON_AddNumberToObject(u, "completion_tokens", r->n_gen);
  cJSON_AddNumberToObject(u, "total_tokens", r->n_prompt + r->n_gen);
}

/* The stream's next bytes: "data: {chunk}\n\n" for new text, then the finishing chunk, then [DONE]. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  job *j = cls;
  pthread_mutex_lock(&j->mu);
  while (j->pending_at == j->pending_len) {
    free(j->pending), j->pending = NULL, j->pending_len = j->pending_at = 0;
    while (j->taken == j->len && !j->done) pthread_cond_wait(&j->cv, &j->mu);
    cJSON *o = NULL;
    if (j->taken < j->len) {
      o = choice(j, envelope(j, 1), j->text + j->taken, j->len - j->taken, NULL, 1);
      j->taken = j->len;
    } else if (j->phase == 0) {
      o = choice(j, envelope(j, 1), "", 0, finish_name(j->r.finish), 1);
      if (j->r.finish != BN_FINISH_ERROR) usage(o, &j->r);
      j->phase = 1;
    } else if (j->phase == 1) {
      j->pending = strdup("data: [DONE]\n\n"), j->phase = 2;
    } else {
      pthread_mutex_unlock(&j->mu);
      return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (o) {
      char *t = cJSON_PrintUnformatted(o);
      cJSON_Delete(o);
      size_t n = t ? strlen(t) : 0;
      if (t && (j->pending = malloc(n + 9))) memcpy(j->pending, "data: ", 6), memcpy(j->pending + 6, t, n), memcpy(j->pending + 6 + n, "\n\n", 3);
      free(t);
    }
    if (!j->pending) {
      pthread_mutex_unlock(&j->mu);
      return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    j->pending_len = strlen(j->pending);
  }
  size_t n = j->pending_len - j->pending_at < max ? j->pending_len - j->pending_at : max;
  memcpy(buf, j->pending + j->pending_at, n);
  j->pending_at += n;
  pthread_mutex_unlock(&j->mu);
  return (ssize_t)n;
}

static void stream_free(void *cls) { /* the connection is done with the stream: finished or gone */
  job *j = cls;
  pthread_mutex_lock(&j->mu);
  j->gone = 1;
  pthread_mutex_unlock(&j->mu);
  job_unref(j);
}

static enum MHD_Result complete(struct MHD_Connection *c, server *s, conn *cn, int chat) {
  char why[600];
  const char *param = NULL;
  job *j = calloc(1, sizeof *j);
  if (!j) return send_error(c, s, 500, NULL, "out of memory");
  pthread_mutex_init(&j->mu, NULL), pthread_cond_init(&j->cv, NULL);
  j->refs = 1, j->chat = chat, j->srv = s, j->created = (long)time(NULL);
  static long next_id;
  pthread_mutex_lock(&s->mu);
  snprintf(j->id, sizeof j->id, "%s-%ld", chat ? "chatcmpl" : "cmpl", ++next_id);
  pthread_mutex_unlock(&s->mu);
  if (bn_serve_parse(cn->body ? cn->body : "", cn->len, chat, s->chat, &j->req, why, sizeof why, &param)) {
    job_unref(j);
    return send_error(c, s, 400, param, "%s", why);
  }
  j->stream = j->req.stream;
  bn_engine_request r = {.prompt = j->req.prompt, .len = j->req.prompt ? strlen(j->req.prompt) : 0,
                         .parts = (const char *const *)j->req.parts, .special = j->req.special, .n_parts = j->req.n_parts,
                         .max_tokens = j->req.max_tokens ? j->req.max_tokens : chat ? s->n_ctx : 16,
                         .sampler = j->req.sampler, .stop = (const char *const *)j->req.stop, .n_stop = j->req.n_stop,
                         .on_text = on_text, .on_done = on_done, .user = j};
  bn_error err = {0};
  j->refs++, j->t0 = bn_now(); /* the engine's */
  bn_status st = s->draining ? bn_fail(&err, BN_E_BUSY, "the server is stopping") : bn_engine_submit(s->eng, &r, &err);
  if (st) {
    j->refs--;
    job_unref(j);
    return send_error(c, s, st == BN_E_BUSY ? 503 : 400, NULL, "%s", err.msg);
  }
  /* until the prompt was taken (a prompt the context cannot hold is a 400, not a stream), or a whole
   * response is done; a client that hangs up meanwhile cancels the request at its next piece */
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  pthread_mutex_lock(&j->mu);
  while (!j->done && (!j->stream || !j->len)) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 200000000, until.tv_sec += until.tv_nsec / 1000000000, until.tv_nsec %= 1000000000;
    pthread_cond_timedwait(&j->cv, &j->mu, &until);
    if (ci && !j->gone) { /* woken by a piece or the clock: has the client gone? */
      struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
      if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) j->gone = 1;
    }
  }
  int failed = j->done && j->r.finish == BN_FINISH_ERROR;
  pthread_mutex_unlock(&j->mu);
  if (failed) {
    enum MHD_Result ok = send_error(c, s, j->r.err.code == BN_E_RANGE || j->r.err.code == BN_E_INVALID ? 400 : 500,
                                    "prompt", "%s", j->r.err.msg);
    job_unref(j);
    return ok;
  }
  if (j->stream) {
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, j, stream_free);
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    enum MHD_Result ok = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    count(s, 200);
    return ok;
  }
  cJSON *o = choice(j, envelope(j, 0), j->text ? j->text : "", j->len, finish_name(j->r.finish), 0);
  usage(o, &j->r);
  job_unref(j);
  return send_json(c, s, 200, o);
}

static enum MHD_Result metrics(struct MHD_Connection *c, server *s) {
  bn_engine_stats st;
  bn_engine_stats_get(s->eng, &st);
  char buf[16384];
  size_t n = 0;
  pthread_mutex_lock(&s->mu);
  n += (size_t)snprintf(buf + n, sizeof buf - n, "# TYPE bnc_http_responses_total counter\n");
  for (int k = 0; k < 8; k++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "bnc_http_responses_total{status=\"%d\"} %ld\n", HTTP_CODES[k], s->http[k]);
  const char *names[3] = {"bnc_time_to_first_token_seconds", "bnc_inter_token_seconds", "bnc_request_seconds"};
  const histo *hs[3] = {&s->ttft, &s->itl, &s->total};
  for (int h = 0; h < 3; h++) {
    long cum = 0;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "# TYPE %s histogram\n", names[h]);
    for (int k = 0; k <= N_BOUNDS; k++) {
      cum += hs[h]->count[k];
      if (k < N_BOUNDS) n += (size_t)snprintf(buf + n, sizeof buf - n, "%s_bucket{le=\"%g\"} %ld\n", names[h], BOUNDS[k], cum);
      else n += (size_t)snprintf(buf + n, sizeof buf - n, "%s_bucket{le=\"+Inf\"} %ld\n", names[h], cum);
    }
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s_sum %.6f\n%s_count %ld\n", names[h], hs[h]->sum, names[h], cum);
  }
  pthread_mutex_unlock(&s->mu);
  snprintf(buf + n, sizeof buf - n,
           "# TYPE bnc_requests_total counter\nbnc_requests_total %ld\n"
           "# TYPE bnc_requests_cancelled_total counter\nbnc_requests_cancelled_total %ld\n"
           "# TYPE bnc_tokens_in_total counter\nbnc_tokens_in_total %ld\n"
           "# TYPE bnc_tokens_out_total counter\nbnc_tokens_out_total %ld\n"
           "# TYPE bnc_active_slots gauge\nbnc_active_slots %d\n"
           "# TYPE bnc_queue_depth gauge\nbnc_queue_depth %d\n"
           "# TYPE bnc_steps_total counter\nbnc_steps_total %ld\n"
           "# TYPE bnc_step_seconds_total counter\nbnc_step_seconds_total %.6f\n",
           st.requests, st.cancelled, st.tokens_in, st.tokens_out, st.active, st.queued, st.steps, st.step_s);
  n = strlen(buf);
  n += (size_t)snprintf(buf + n, sizeof buf - n, "# TYPE bnc_kernel_seconds_total counter\n");
  for (int k = 0; k < st.n_kinds && n < sizeof buf; k++) /* kinds are op names joined by '+': no quotes */
    n += (size_t)snprintf(buf + n, sizeof buf - n, "bnc_kernel_seconds_total{kind=\"%s\"} %.6f\n", st.kinds[k].kind,
                          st.kinds[k].seconds);
  return send_text(c, s, 200, "text/plain; version=0.0.4", buf);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *data, size_t *data_size, void **con_cls) {
  (void)version;
  server *s = cls;
  conn *cn = *con_cls;
  if (!cn) { /* the headers: the body follows */
    if (!(cn = calloc(1, sizeof *cn))) return MHD_NO;
    *con_cls = cn;
    return MHD_YES;
  }
  if (*data_size) { /* a piece of the body */
    if (cn->too_big || cn->len + *data_size > MAX_BODY) cn->too_big = 1;
    else {
      char *b = realloc(cn->body, cn->len + *data_size + 1);
      if (!b) return MHD_NO;
      memcpy(b + cn->len, data, *data_size), cn->body = b, cn->len += *data_size, b[cn->len] = 0;
    }
    *data_size = 0;
    return MHD_YES;
  }
  int post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
  if (cn->too_big) return send_error(c, s, 413, NULL, "the body exceeds %d bytes", MAX_BODY);
  if (!strcmp(url, "/health") && get) return send_text(c, s, 200, "application/json", "{\"status\":\"ok\"}");
  if (!strcmp(url, "/metrics") && get) return metrics(c, s);
  if (s->api_key && !strncmp(url, "/v1/", 4)) {
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!auth || strncmp(auth, "Bearer ", 7) || strcmp(auth + 7, s->api_key))
      return send_error(c, s, 401, NULL, "a missing or wrong API key (Authorization: Bearer KEY)");
  }
  if (!strcmp(url, "/v1/models") && get) {
    cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddStringToObject(m, "id", s->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "bnc");
    cJSON_AddItemToArray(d, m);
    return send_json(c, s, 200, o);
  }
  int chat = !strcmp(url, "/v1/chat/completions");
  if (chat || !strcmp(url, "/v1/completions")) {
    if (!post) return send_error(c, s, 405, NULL, "%s takes POST", url);
    return complete(c, s, cn, chat);
  }
  return send_error(c, s, 404, NULL, "no endpoint %s %.200s", method, url);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)c, (void)toe;
  conn *cn = *con_cls;
  if (cn) free(cn->body), free(cn);
  *con_cls = NULL;
}

/* bn_chat_pick's question: does the vocabulary have this control token? */
static int has_control(const char *name, void *tok) { return bn_tok_control(tok, name) >= 0; }

int bn_cmd_serve(int argc, char **argv) {
  const char *model = NULL, *host = "127.0.0.1", *api_key = NULL;
  long port = 8080, parallel = 4, queue = -1, ctx = 0, threads = 1;
  const bn_backend *backend = bn_backend_default();
  bn_dtype kv = BN_DT_F32;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), bn_cli_print_backends(stdout), 0;
    if (a[0] != '-') {
      if (model) return bn_cli_usage_error("serve", "unexpected argument '%s'", a);
      model = a;
      continue;
    }
    if (!bn_cli_has("--host --port --parallel --queue -c --ctx -t --threads --api-key --backend --kv", a))
      return bn_cli_usage_error("serve", "unknown option '%s'", a);
    if (!v) return bn_cli_usage_error("serve", "option %s needs a value", a);
    i++;
    if (!strcmp(a, "--host")) host = v;
    else if (!strcmp(a, "--api-key")) api_key = v;
    else if (!strcmp(a, "--port")) { if (bn_cli_int("serve", a, v, 0, 65535, &port)) return 2; }
    else if (!strcmp(a, "--parallel")) { if (bn_cli_int("serve", a, v, 1, BN_EXEC_MAX_SEQ, &parallel)) return 2; }
    else if (!strcmp(a, "--queue")) { if (bn_cli_int("serve", a, v, 0, 65536, &queue)) return 2; }
    else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (bn_cli_int("serve", a, v, 2, 1 << 20, &ctx)) return 2; }
    else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (bn_cli_int("serve", a, v, 1, 512, &threads)) return 2; }
    else if (!strcmp(a, "--backend")) { if (bn_cli_backend("serve", v, &backend)) return 2; }
    else if (!strcmp(a, "--kv")) { if (bn_cli_kv("serve", v, &kv)) return 2; }
  }
  if (!model) return bn_cli_usage_error("serve", "missing MODEL");
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  struct sockaddr_in6 addr6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
  int v6 = inet_pton(AF_INET, host, &addr.sin_addr) != 1;
  if (v6 && inet_pton(AF_INET6, host, &addr6.sin6_addr) != 1)
    return bn_cli_usage_error("serve", "--host must be an IPv4 or IPv6 address, got '%s'", host);
  /* the signals wait for the main thread alone: every thread started from here inherits the mask */
  sigset_t sigs;
  sigemptyset(&sigs), sigaddset(&sigs, SIGTERM), sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);
  bn_error err = {0};
  bn_cli_model cm;
  if (bn_cli_open_model(model, 0, &cm, &err)) return bn_cli_fail(&err);
  server s = {.api_key = api_key, .model_id = model};
  pthread_mutex_init(&s.mu, NULL);
  const char *slash = strrchr(model, '/');
  s.model_id = slash ? slash + 1 : model;
  bn_engine_params ep = {.slots = (int)parallel, .queue = queue < 0 ? 4 * (int)parallel : (int)queue,
                         .session = {.n_ctx = (int)(ctx ? ctx : cm.m->hp.n_ctx < 4096 ? cm.m->hp.n_ctx : 4096),
                                     .exec = bn_cli_exec_opts(backend, threads, kv, &cm)},
                         .step_pause_s = bn_cli_serve_delay_us() * 1e-6};
  if (bn_engine_create(cm.m, cm.mem, &ep, &s.eng, &err)) return bn_cli_close_model(&cm), bn_cli_fail(&err);
  s.n_ctx = bn_session_params_of(bn_engine_session(s.eng))->n_ctx;
  const bn_tokenizer *tok = bn_session_tokenizer(bn_engine_session(s.eng));
  const char *chosen;
  s.chat = bn_chat_pick(cm.m->vocab.chat_template, has_control, (void *)tok, &chosen);
  struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                                              (v6 ? MHD_USE_IPv6 : 0),
                                          (uint16_t)port, NULL, NULL, handle, &s, MHD_OPTION_SOCK_ADDR,
                                          v6 ? (struct sockaddr *)&addr6 : (struct sockaddr *)&addr,
                                          MHD_OPTION_NOTIFY_COMPLETED, completed, &s, MHD_OPTION_CONNECTION_TIMEOUT,
                                          (unsigned)120, MHD_OPTION_END);
  if (!d) {
    bn_engine_free(s.eng), bn_cli_close_model(&cm);
    fprintf(stderr, "bnc: serve: cannot listen on %s:%ld (in use, or not an address of this machine)\n", host, port);
    return 1;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  fprintf(stderr, "bnc serve: %s on http://%s%s%s:%u/v1 (%ld slots of %d tokens, a queue of %d, chat template %s: %s)\n",
          s.model_id, v6 ? "[" : "", host, v6 ? "]" : "", info ? info->port : (unsigned)port, parallel, s.n_ctx, ep.queue,
          bn_chat_template_name(s.chat), chosen);
  int sig;
  sigwait(&sigs, &sig);
  fprintf(stderr, "bnc serve: %s: no new requests; finishing those running\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  MHD_quiesce_daemon(d);
  s.draining = 1;
  for (int i = 0; i < DRAIN_S * 10; i++) {
    bn_engine_stats st;
    bn_engine_stats_get(s.eng, &st);
    if (!st.active && !st.queued) break;
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
  }
  bn_engine_free(s.eng); /* cancels what still runs: its streams end */
  MHD_stop_daemon(d);
  bn_cli_close_model(&cm);
  pthread_mutex_destroy(&s.mu);
  return 0;
}
