/* The public C API (include/bnc.h) over plans and sessions. */
#include "../include/bnc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "session.h"

struct bnc_plan {
  bn_plan p;
  double load_s;
  const bn_llvm_aot *code; /* the plan's object code when its signer is trusted, else NULL */
};

struct bnc_session {
  bnc_plan *plan;
  bn_session *s;
  const float *last;
};

static _Thread_local char last_error[512];

const char *bnc_last_error(void) { return last_error; }

static bnc_status fail(const bn_error *err) {
  snprintf(last_error, sizeof last_error, "%s", err->msg);
  return (bnc_status)err->code;
}

bnc_status bnc_plan_open(const char *path, bnc_plan **out) { return bnc_plan_open_trusted(path, NULL, out); }

bnc_status bnc_plan_open_trusted(const char *path, const char *trusted_keys, bnc_plan **out) {
  bn_error err = {0};
  if (!out) return bn_fail(&err, BN_E_INVALID, "bnc_plan_open: no place for the plan (out is NULL)"), fail(&err);
  *out = NULL;
  if (!path) return bn_fail(&err, BN_E_INVALID, "bnc_plan_open: no path"), fail(&err);
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
  if (trusted_keys && bn_trust_read(trusted_keys, &t, &err)) {
    bnc_plan_free(p);
    return fail(&err);
  }
  if (p->p.has_objects && bn_plan_code_trusted(&p->p, &t, why, sizeof why)) p->code = &p->p.aot;
  bn_trust_free(&t);
  *out = p;
  return BNC_OK;
}

void bnc_plan_free(bnc_plan *plan) {
  if (!plan) return;
  bn_plan_close(&plan->p);
  free(plan);
}

int bnc_plan_vocab_size(const bnc_plan *plan) { return plan->p.model.hp.n_vocab; }
int bnc_plan_context_length(const bnc_plan *plan) { return plan->p.model.hp.n_ctx; }
const char *bnc_plan_arch(const bnc_plan *plan) { return plan->p.model.hp.arch; }

bnc_session_params bnc_session_default_params(void) {
  bn_sampler_params d = bn_sampler_defaults();
  return (bnc_session_params){1, 0, 0, d.temperature, d.top_k, d.top_p, d.repeat_penalty, d.seed, 0};
}

bnc_status bnc_session_create(bnc_plan *plan, const bnc_session_params *params, bnc_session **out) {
  bn_error err = {0};
  *out = NULL;
  if (!plan || !params) return bn_fail(&err, BN_E_INVALID, "bnc_session_create: no plan or parameters"), fail(&err);
  if (params->threads < 0 || params->threads > 512)
    return bn_fail(&err, BN_E_INVALID, "threads = %d (0..512)", params->threads), fail(&err);
  bn_session_params sp = {.n_ctx = params->n_ctx, .n_batch = params->n_batch, .ignore_eos = params->ignore_eos,
                          .exec = {.backend = BN_BACKEND_LLVM, .threads = params->threads > 0 ? params->threads : 1,
                                   .target = plan->p.target, .aot = plan->code},
                          .sampler = {params->temperature, params->top_k, params->top_p, params->repeat_penalty, 64,
                                      params->seed}};
  bnc_session *s = calloc(1, sizeof *s);
  if (!s) return bn_fail(&err, BN_E_NOMEM, "out of memory"), fail(&err);
  s->plan = plan;
  if (bn_session_create(&plan->p.model, &plan->p.mem, &sp, &s->s, &err)) {
    free(s);
    return fail(&err);
  }
  *out = s;
  return BNC_OK;
}

void bnc_session_free(bnc_session *s) {
  if (!s) return;
  bn_session_free(s->s);
  free(s);
}

bnc_status bnc_tokenize(bnc_session *s, const char *text, int32_t *ids, int cap, int *n) {
  bn_error err = {0};
  const bn_vocab *v = &s->plan->p.model.vocab;
  if (bn_tok_encode(bn_session_tokenizer(s->s), text, strlen(text), v->add_bos, ids, cap, n, &err)) return fail(&err);
  return BNC_OK;
}

const char *bnc_token_text(bnc_session *s, int32_t token, size_t *len) {
  return bn_tok_piece(bn_session_tokenizer(s->s), token, len);
}

bnc_status bnc_eval(bnc_session *s, const int32_t *tokens, int n) {
  bn_error err = {0};
  if (bn_session_append(s->s, tokens, n, &s->last, &err)) return fail(&err);
  return BNC_OK;
}

const float *bnc_logits(bnc_session *s) { return s->last; }

void bnc_reset(bnc_session *s) {
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
  bnc_reset(s);
  if (!prompt) return bn_fail(&err, BN_E_INVALID, "bnc_generate: no prompt"), fail(&err);
  if (bn_session_generate(s->s, prompt, n_predict, forward, &c, &err)) return fail(&err);
  return BNC_OK;
}

void bnc_session_timings(const bnc_session *s, bnc_timings *out) {
  const bn_timings *t = bn_session_timings(s->s);
  *out = (bnc_timings){s->plan->load_s, t->prepare_s, t->tokenize_s, t->prompt_s, t->gen_s, t->sample_s,
                       t->n_prompt, t->n_gen};
}
