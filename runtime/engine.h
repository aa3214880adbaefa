/* The serving engine: continuous batching over one session of several sequences (slots). Requests
 * queue until a slot is free; a thread then runs every step for all the slots at once: each decoding
 * slot gives its last token, slots with prompt left give chunks of it in what the step has room for
 * (an eighth of the plan's step while others decode: a long step delays their next token), so one long
 * prompt does not stall the others (bn_session_step: every matmul reads its weights once
 * a step; a sequence's logits are the bits it gets alone). Each slot samples with its own sampler,
 * streams complete UTF-8 text, stops at its stop strings, end of sequence, max_tokens or a full
 * context, and frees its slot at once. */
#ifndef BN_RT_ENGINE_H
#define BN_RT_ENGINE_H

#include "session.h"

typedef struct bn_engine bn_engine;

/* STOP: the end of sequence or of a turn (<|eot_id|> where the vocabulary has it), or a stop string. */
typedef enum { BN_FINISH_LENGTH, BN_FINISH_STOP, BN_FINISH_CANCELLED, BN_FINISH_ERROR } bn_finish;

typedef struct {
  bn_finish finish;
  int n_prompt, n_gen;
  double ttft_s;    /* submit to first token */
  bn_error err;     /* finish == BN_FINISH_ERROR: why (e.g. the prompt does not fit the context) */
} bn_engine_result;

/* The caller keeps prompt, parts and stop alive until on_done. Both callbacks run on the engine's thread. */
typedef struct {
  const char *prompt;              /* UTF-8, tokenized with the model's BOS rule; or NULL and parts: */
  size_t len;
  const char *const *parts;        /* n_parts pieces of a prompt (a chat template's): text tokenized on its own, */
  const unsigned char *special;    /* or where special[i], the name of a control token ("<|eot_id|>") */
  int n_parts;
  int max_tokens;                  /* 1 or more; the context bounds it too */
  bn_sampler_params sampler;
  const char *const *stop;         /* generation ends before the first of these (not given out) */
  int n_stop;
  int (*on_text)(const char *text, size_t len, void *user); /* more text; nonzero cancels */
  void (*on_done)(const bn_engine_result *r, void *user);   /* the last call for the request */
  void *user;
} bn_engine_request;

typedef struct {
  int slots;                /* sequences decoded together (1..BN_EXEC_MAX_SEQ) */
  int queue;                /* requests that may wait for a slot */
  bn_session_params session; /* n_ctx is each slot's context; exec.n_seq is set to slots */
  double step_pause_s;      /* tests: a pause after each step, so a tiny model's requests last a while */
} bn_engine_params;

enum { BN_ENGINE_KINDS = 32 };
typedef struct {
  long requests, done, cancelled, errors, tokens_in, tokens_out, steps;
  int active, queued;
  double step_s; /* time in steps */
  int n_kinds;   /* the executor's time per kernel kind, as of the last step */
  bn_exec_stat kinds[BN_ENGINE_KINDS];
} bn_engine_stats;

bn_status bn_engine_create(const bn_model *m, const bn_memplan *mp, const bn_engine_params *p, bn_engine **out,
                           bn_error *err);
/* Queues r; BN_E_BUSY when every slot and queue place is taken, BN_E_INVALID for a bad request. */
bn_status bn_engine_submit(bn_engine *e, const bn_engine_request *r, bn_error *err);
void bn_engine_stats_get(bn_engine *e, bn_engine_stats *s);
const bn_session *bn_engine_session(const bn_engine *e);
/* Cancels what is queued or running (each gets on_done), then stops the thread. */
void bn_engine_free(bn_engine *e);

#endif
