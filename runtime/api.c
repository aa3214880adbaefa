/* The public C API (include/bnc.h) over plans and sessions. Every entry point
 * checks its arguments. Handles are registered while alive, so a stale or
 * foreign pointer (a plan freed twice, a session used after its free) is an
 * error, not a use after free; a plan lives on until its last session is freed. */
#include "../include/bnc.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../codegen/kcache.h"
#include "bn_version.h" /* generated in the build directory */
#include "plan.h"
#include "session.h"

struct bnc_plan {
  bn_plan p;
  double load_s;
  const bn_objcode *code; /* the plan's object code when its signer is trusted, else NULL */
  int sessions;            /* live sessions: they keep the plan */
  int released;            /* bnc_plan_free was called */
};

struct bnc_session {
  bnc_plan *plan;
  bn_session *s;
  const float *last;
  bn_kcache cache; /* when params->cache_dir: the executor keeps a pointer to it */
};

static _Thread_local char last_error[512];

const char *bnc_last_error(void) { return last_error; }
const char *bnc_version(void) { return BN_VERSION " (" BN_COMMIT ")"; }

static bnc_status fail(const bn_error *err) {
  snprintf(last_error, sizeof last_error, "%s", err->msg);
  return (bnc_status)err->code;
}

static bnc_status invalid(const char *fn, const char *what) {
  snprintf(last_error, sizeof last_error, "%s: %s", fn, what);
  return BNC_ERR_INVALID;
}

/* The live handles and their kinds. A linear list: programs hold a few. */
enum { PLAN = 1, SESSION = 2 };
typedef struct {
  const void *h;
  int kind;
} handle;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static handle *live;
static int n_live, cap_live;

static int reg(const void *h, int kind) {
  pthread_mutex_lock(&lock);
  if (n_live == cap_live) {
    int nc = cap_live ? 2 * cap_live : 16;
    handle *g = realloc(live, (size_t)nc * sizeof *g);
    if (g) live = g, cap_live = nc;
  }
  int ok = n_live < cap_live;
  if (ok) live[n_live++] = (handle){h, kind};
  pthread_mutex_unlock(&lock);
  return ok;
}

static int find(const void *h, int kind) { /* lock held */
  for (int i = 0; i < n_live; i++)
    if (live[i].h == h && live[i].kind == kind) return i;
  return -1;
}

static int alive(const void *h, int kind) {
  if (!h) return 0;
  pthread_mutex_lock(&lock);
  int i = find(h, kind);
  pthread_mutex_unlock(&lock);
  return i >= 0;
}

static void unreg(const void *h, int kind) { /* lock held */
  int i = find(h, kind);
  if (i >= 0) live[i] = live[--n_live];
}

/* 1 (and the error set) when h is not a live handle of the kind named. */
static int dead(const char *fn, const void *h, const char *kind) {
  if (alive(h, kind[0] == 'p' ? PLAN : SESSION)) return 0;
  char what[64];
  snprintf(what, sizeof what, h ? "not a live %s (freed?)" : "%s is NULL", kind);
  invalid(fn, what);
  return 1;
}

bnc_status bnc_plan_open(const char *path, bnc_plan **out) { return bnc_plan_open_trusted(path, NULL, out); }

bnc_status bnc_plan_open_trusted(const char *path, const char *trusted_keys, bnc_plan **out) {
  bn_error err = {0};
  if (!out) return invalid("bnc_plan_open", "out is NULL");
  *out = NULL;
  if (!path) return invalid("bnc_plan_open", "path is NULL");
  bnc_plan *p = calloc(1, sizeof *p);
  if (!p) return bn_fail(&err, BN_E_NOMEM, "out of memory"), fail(&err);
  double t0 = bn_now();
  if (bn_plan_open(&p->p, path, &err)) {
    free(p);
    return fail(&err);
  }
  p->load_s = bn_now() - t0;
  bn_trust t = {0};
  char why[160];
  bn_status st = trusted_keys ? bn_trust_read(trusted_keys, &t, &err) : BN_OK;
  if (!st && !reg(p, PLAN)) st = bn_fail(&err, BN_E_NOMEM, "out of memory");
  if (st) {
    bn_plan_close(&p->p);
    free(p);
    return fail(&err);
  }
  if (p->p.has_objects && bn_plan_code_trusted(&p->p, &t, why, sizeof why)) p->code = &p->p.code;
  bn_trust_free(&t);
  *out = p;
  return BNC_OK;
}

/* Frees the plan once it is released and has no sessions; called with the lock held. */
static void plan_drop(bnc_plan *p) {
  if (!p->released || p->sessions) return;
  unreg(p, PLAN);
  bn_plan_close(&p->p);
  free(p);
}

void bnc_plan_free(bnc_plan *plan) {
  if (!plan) return;
  pthread_mutex_lock(&lock);
  if (find(plan, PLAN) < 0 || plan->released) invalid("bnc_plan_free", "not a live plan (freed twice?)");
  else plan->released = 1, plan_drop(plan);
  pthread_mutex_unlock(&lock);
}

int bnc_plan_vocab_size(const bnc_plan *plan) {
  if (dead("bnc_plan_vocab_size", plan, "plan")) return 0;
  return plan->p.model.hp.n_vocab;
}
int bnc_plan_context_length(const bnc_plan *plan) {
  if (dead("bnc_plan_context_length", plan, "plan")) return 0;
  return plan->p.model.hp.n_ctx;
}
const char *bnc_plan_arch(const bnc_plan *plan) {
  if (dead("bnc_plan_arch", plan, "plan")) return "";
  return plan->p.model.hp.arch;
}

bnc_session_params bnc_session_default_params(void) {
  bn_sampler_params d = bn_sampler_defaults();
  return (bnc_session_params){.threads = 1, .temperature = d.temperature, .top_k = d.top_k, .top_p = d.top_p,
                              .repeat_penalty = d.repeat_penalty, .seed = d.seed};
}

bnc_status bnc_session_create(bnc_plan *plan, const bnc_session_params *params, bnc_session **out) {
  bn_error err = {0};
  if (!out) return invalid("bnc_session_create", "out is NULL");
  *out = NULL;
  if (dead("bnc_session_create", plan, "plan")) return BNC_ERR_INVALID;
  if (plan->released) return invalid("bnc_session_create", "the plan was freed");
  if (!params) return invalid("bnc_session_create", "params is NULL");
  if (params->threads < 0 || params->threads > 512)
    return bn_fail(&err, BN_E_INVALID, "bnc_session_create: threads = %d (0..512)", params->threads), fail(&err);
  if (params->kv != BNC_KV_F32 && params->kv != BNC_KV_F16)
    return bn_fail(&err, BN_E_INVALID, "bnc_session_create: kv = %d (BNC_KV_F32 or BNC_KV_F16)", (int)params->kv),
           fail(&err);
  if (params->n_ctx < 0 || params->n_batch < 0)
    return bn_fail(&err, BN_E_INVALID, "bnc_session_create: n_ctx = %d, n_batch = %d (0 or more)", params->n_ctx,
                   params->n_batch), fail(&err);
  int threads = params->threads < 1 ? 1 : params->threads > bn_pool_cpus() ? bn_pool_cpus() : params->threads;
  bn_session_params sp = {.n_ctx = params->n_ctx, .n_batch = params->n_batch, .ignore_eos = params->ignore_eos,
                          .exec = {.backend = bn_backend_default(), .threads = threads,
                                   .kv = params->kv == BNC_KV_F16 ? BN_DT_F16 : BN_DT_F32,
                                   .target = plan->p.target, .code = plan->code},
                          .sampler = {.temperature = params->temperature, .top_k = params->top_k,
                                      .top_p = params->top_p, .repeat_penalty = params->repeat_penalty,
                                      .repeat_last_n = 64, .seed = params->seed}};
  bnc_session *s = calloc(1, sizeof *s);
  if (!s) return bn_fail(&err, BN_E_NOMEM, "out of memory"), fail(&err);
  s->plan = plan;
  if (params->cache_dir) {
    if (bn_kcache_open(&s->cache, params->cache_dir, &err)) return free(s), fail(&err);
    sp.exec.cache = &s->cache;
  }
  if (bn_session_create(&plan->p.model, &plan->p.mem, &sp, &s->s, &err)) {
    free(s);
    return fail(&err);
  }
  if (!reg(s, SESSION)) {
    bn_session_free(s->s), free(s);
    return bn_fail(&err, BN_E_NOMEM, "out of memory"), fail(&err);
  }
  pthread_mutex_lock(&lock);
  plan->sessions++;
  pthread_mutex_unlock(&lock);
  *out = s;
  return BNC_OK;
}

void bnc_session_free(bnc_session *s) {
  if (!s) return;
  pthread_mutex_lock(&lock);
  if (find(s, SESSION) < 0) {
    pthread_mutex_unlock(&lock);
    invalid("bnc_session_free", "not a live session (freed twice?)");
    return;
  }
  unreg(s, SESSION);
  pthread_mutex_unlock(&lock);
  bnc_plan *plan = s->plan;
  bn_session_free(s->s); /* before its plan, whose graph it reads while freeing */
  free(s);
  pthread_mutex_lock(&lock);
  plan->sessions--;
  plan_drop(plan);
  pthread_mutex_unlock(&lock);
}

bnc_status bnc_tokenize(bnc_session *s, const char *text, int32_t *ids, int cap, int *n) {
  bn_error err = {0};
  if (dead("bnc_tokenize", s, "session")) return BNC_ERR_INVALID;
  if (!text || !n || cap < 0 || (!ids && cap > 0))
    return invalid("bnc_tokenize", "text and n must not be NULL, cap not negative, ids not NULL when cap > 0");
  const bn_vocab *v = &s->plan->p.model.vocab;
  if (bn_tok_encode(bn_session_tokenizer(s->s), text, strlen(text), v->add_bos, ids, cap, n, &err)) return fail(&err);
  return BNC_OK;
}

const char *bnc_token_text(bnc_session *s, int32_t token, size_t *len) {
  size_t ignored;
  if (!len) len = &ignored;
  *len = 0;
  if (dead("bnc_token_text", s, "session")) return "";
  return bn_tok_piece(bn_session_tokenizer(s->s), token, len);
}

bnc_status bnc_eval(bnc_session *s, const int32_t *tokens, int n) {
  bn_error err = {0};
  if (dead("bnc_eval", s, "session")) return BNC_ERR_INVALID;
  if (!tokens || n < 1) return invalid("bnc_eval", "tokens must not be NULL and n must be at least 1");
  if (bn_session_append(s->s, tokens, n, &s->last, &err)) return fail(&err);
  return BNC_OK;
}

const float *bnc_logits(bnc_session *s) {
  if (dead("bnc_logits", s, "session")) return NULL;
  return s->last;
}

void bnc_reset(bnc_session *s) {
  if (dead("bnc_reset", s, "session")) return;
  bn_session_reset(s->s);
  s->last = NULL;
}

typedef struct {
  bnc_token_cb cb;
  void *user;
} cb_ctx;

static int forward(int32_t token, const char *text, size_t len, void *user) {
  cb_ctx *c = user;
  return c->cb ? c->cb(token, text, len, c->user) : 0;
}

bnc_status bnc_generate(bnc_session *s, const char *prompt, int n_predict, bnc_token_cb cb, void *user) {
  bn_error err = {0};
  cb_ctx c = {cb, user};
  if (dead("bnc_generate", s, "session")) return BNC_ERR_INVALID;
  if (!prompt) return invalid("bnc_generate", "prompt is NULL");
  if (n_predict < 0) return invalid("bnc_generate", "n_predict is negative");
  bnc_reset(s);
  if (bn_session_generate(s->s, prompt, n_predict, forward, &c, &err)) return fail(&err);
  return BNC_OK;
}

void bnc_session_timings(const bnc_session *s, bnc_timings *out) {
  if (!out) return (void)invalid("bnc_session_timings", "out is NULL");
  memset(out, 0, sizeof *out);
  if (dead("bnc_session_timings", s, "session")) return;
  const bn_timings *t = bn_session_timings(s->s);
  *out = (bnc_timings){s->plan->load_s, t->prepare_s, t->tokenize_s, t->prompt_s, t->gen_s, t->sample_s,
                       t->n_prompt, t->n_gen, t->context_full};
}
