/* A session: one compiled model (graph + memory plan), its executor (arena,
 * KV cache), tokenizer and sampler. Prompt processing runs in chunks of
 * n_batch tokens, then one token per step; every stage is timed. */
#ifndef BN_RT_SESSION_H
#define BN_RT_SESSION_H

#include "../ir/memplan.h"
#include "../ir/model.h"
#include "exec.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct {
  double prepare_s, tokenize_s, prompt_s, gen_s, sample_s;
  double tok_tables_s; /* of prepare_s: the tokenizer's tables and the sampler */
  int n_prompt, n_gen;
  int context_full; /* the last generation stopped because the context was full */
} bn_timings;

typedef struct {
  int n_ctx;   /* 0: the model's context length */
  int n_batch; /* prompt chunk size; 0 or more than the plan serves: the plan's */
  int ignore_eos; /* keep generating past the end-of-sequence token */
  bn_exec_opts exec; /* backend and threads */
  bn_sampler_params sampler;
  /* called by long work (perplexity: after each window) with its progress; NULL: none */
  void (*progress)(long done, long total, void *user);
  void *progress_user;
} bn_session_params;

typedef struct bn_session bn_session;
/* Gets each generated token and its text; returning nonzero stops generation. */
typedef int (*bn_piece_fn)(int32_t token, const char *text, size_t len, void *user);

bn_status bn_session_create(const bn_model *m, const bn_memplan *mp, const bn_session_params *p, bn_session **out,
                            bn_error *err);
void bn_session_free(bn_session *s);
/* Tokenizes prompt, processes it, then samples up to n_predict tokens
 * (stopping at EOS or a full context), passing each token's text to fn. */
bn_status bn_session_generate(bn_session *s, const char *prompt, int n_predict, bn_piece_fn fn, void *user,
                              bn_error *err);
/* Evaluates tokens from position 0 and copies every position's logits into
 * out[n][n_vocab]. */
bn_status bn_session_eval(bn_session *s, const int32_t *tokens, int n, float *out, bn_error *err);
/* Evaluates tokens after the n_past already in the KV cache; *last points
 * at the logits of the last one. bn_session_reset empties the cache. */
bn_status bn_session_append(bn_session *s, const int32_t *tokens, int n, const float **last, bn_error *err);
void bn_session_reset(bn_session *s);
/* Keeps the first n positions of the KV cache (n >= n_past: no change); the next append goes on from n. */
void bn_session_truncate(bn_session *s, int n);
int bn_session_n_past(const bn_session *s);
/* Several sequences (params exec.n_seq of them, each with its own K/V caches; sequence 0 is the one
 * the calls above use) advanced in one step: in[i] appends n tokens to sequence seq, every matmul
 * reading its weights once for all of them (at most the plan's step of tokens in all). *logits: n rows
 * of n_vocab, row i the logits of in[i]'s last token, valid until the next call. A sequence's logits
 * are the bits it gets alone, whatever it shares a step with. */
typedef struct {
  int seq;
  const int32_t *tokens;
  int n;
} bn_seq_tokens;
bn_status bn_session_step(bn_session *s, const bn_seq_tokens *in, int n, const float **logits, bn_error *err);
int bn_session_seq_past(const bn_session *s, int seq); /* its positions so far; -1: no such sequence */
void bn_session_seq_truncate(bn_session *s, int seq, int n); /* keeps its first n positions */
const bn_session_params *bn_session_params_of(const bn_session *s);
/* Perplexity of tokens[0..n) in windows of ctx tokens, each evaluated from
 * position 0, moving by stride: a window scores its last `stride` tokens (the
 * first window every token but its first). logits: a buffer of ctx x n_vocab
 * floats. Sets exp(mean NLL), its standard error and the tokens scored. */
typedef struct {
  double ppl, ppl_err, seconds;
  long scored, evaluated;
} bn_ppl_result;
bn_status bn_session_perplexity(bn_session *s, const int32_t *tokens, long n, int ctx, int stride, float *logits,
                                bn_ppl_result *out, bn_error *err);
const bn_timings *bn_session_timings(const bn_session *s);
const bn_tokenizer *bn_session_tokenizer(const bn_session *s);
bn_exec *bn_session_exec(bn_session *s);
/* Records stages (and, through the executor, kernels) into t; NULL stops. */
void bn_session_set_trace(bn_session *s, bn_trace *t);
double bn_now(void);

#endif
