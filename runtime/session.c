#include "session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


struct bn_session {
  const bn_model *m;
  bn_session_params p;
  bn_exec *exec;
  bn_trace *trace;
  bn_tokenizer *tok;
  bn_sampler *sampler;
  int32_t *hist; /* n_ctx tokens */
  float *logits; /* one row, for the sampler to modify */
  bn_timings t;
  int *past; /* positions in each sequence's K/V caches (sequence 0: bn_session_append's) */
};

double bn_now(void) { return (double)bn_trace_now_ns() * 1e-9; } /* one clock for timings and traces */

bn_status bn_session_create(const bn_model *m, const bn_memplan *mp, const bn_session_params *p, bn_session **out,
                            bn_error *err) {
  double t0 = bn_now();
  bn_session *s = calloc(1, sizeof *s);
  if (!s) return bn_fail(err, BN_E_NOMEM, "session: out of memory");
  s->m = m;
  s->p = *p;
  if (s->p.n_ctx <= 0 || s->p.n_ctx > m->hp.n_ctx) s->p.n_ctx = m->hp.n_ctx;
  if (s->p.n_batch <= 0 || s->p.n_batch > mp->max_tokens) s->p.n_batch = mp->max_tokens;
  if (s->p.n_batch > s->p.n_ctx) s->p.n_batch = s->p.n_ctx;
  bn_status st;
  if ((st = bn_exec_check(&m->graph, m->hp.n_vocab, err)) ||
      (st = bn_exec_create(&m->graph, mp, s->p.n_ctx, &s->p.exec, &s->exec, err))) {
    bn_session_free(s);
    return st;
  }
  double t1 = bn_now();
  if ((st = bn_tok_create(&m->vocab, &s->tok, err)) ||
      (st = bn_sampler_create(&s->p.sampler, m->hp.n_vocab, &s->sampler, err))) {
    bn_session_free(s);
    return st;
  }
  s->t.tok_tables_s = bn_now() - t1;
  s->hist = malloc((size_t)s->p.n_ctx * sizeof *s->hist);
  s->logits = malloc((size_t)m->hp.n_vocab * sizeof *s->logits);
  s->past = calloc((size_t)(s->p.exec.n_seq > 1 ? s->p.exec.n_seq : 1), sizeof *s->past);
  if (!s->hist || !s->logits || !s->past) {
    bn_session_free(s);
    return bn_fail(err, BN_E_NOMEM, "session: out of memory");
  }
  s->t.prepare_s = bn_now() - t0;
  *out = s;
  return BN_OK;
}

void bn_session_free(bn_session *s) {
  if (!s) return;
  bn_exec_free(s->exec);
  bn_tok_free(s->tok);
  bn_sampler_free(s->sampler);
  free(s->hist);
  free(s->logits);
  free(s->past);
  free(s);
}

/* Runs tokens[0..n) at positions pos.. in chunks; *last gets the final row (without `all`, the chunks
 * before the last compute no logits). */
static bn_status run_chunks(bn_session *s, const int32_t *tokens, int n, int pos, float *all, const float **last,
                            bn_error *err) {
  int V = s->m->hp.n_vocab;
  for (int i = 0; i < n; i += s->p.n_batch) {
    int c = n - i < s->p.n_batch ? n - i : s->p.n_batch;
    const float *out;
    int64_t t0 = bn_trace_now_ns();
    int rows = all ? BN_ROWS_ALL : i + c < n ? BN_ROWS_NONE : BN_ROWS_LAST;
    bn_status st = bn_exec_run(s->exec, tokens + i, c, pos + i, rows, &out, err);
    if (s->trace) bn_trace_add(s->trace, "prompt chunk", "stage", t0, bn_trace_now_ns(), 0, c);
    if (st) return st;
    if (all) memcpy(all + (size_t)i * V, out, (size_t)c * V * sizeof *out);
    *last = all ? out + (size_t)(c - 1) * V : out;
  }
  return BN_OK;
}

bn_status bn_session_eval(bn_session *s, const int32_t *tokens, int n, float *out, bn_error *err) {
  if (n < 1 || n > s->p.n_ctx)
    return bn_fail(err, BN_E_RANGE, "eval: %d tokens do not fit the context of %d", n, s->p.n_ctx);
  const float *last;
  double t0 = bn_now();
  bn_status st = run_chunks(s, tokens, n, 0, out, &last, err);
  s->t.prompt_s += bn_now() - t0;
  s->t.n_prompt += n;
  return st;
}

bn_status bn_session_generate(bn_session *s, const char *prompt, int n_predict, bn_piece_fn fn, void *user,
                              bn_error *err) {
  size_t len = strlen(prompt);
  if (len == 0) return bn_fail(err, BN_E_INVALID, "prompt: empty (give some text with -p)");
  double t0 = bn_now();
  int n = 0;
  bn_status st = bn_tok_encode(s->tok, prompt, len, s->m->vocab.add_bos, s->hist, s->p.n_ctx, &n, err);
  s->t.tokenize_s += bn_now() - t0;
  if (s->trace) bn_trace_add(s->trace, "tokenize", "stage", (int64_t)(t0 * 1e9), bn_trace_now_ns(), 0, n);
  if (st == BN_E_RANGE || (!st && n >= s->p.n_ctx))
    return bn_fail(err, BN_E_RANGE, "prompt: %d+ tokens do not fit the context of %d (leave room to generate)",
                   n, s->p.n_ctx);
  if (st) return st;
  const float *last;
  t0 = bn_now();
  if ((st = run_chunks(s, s->hist, n, 0, NULL, &last, err))) return st;
  s->t.prompt_s += bn_now() - t0;
  s->t.n_prompt += n;
  int V = s->m->hp.n_vocab;
  s->t.context_full = 0;
  for (int i = 0; i < n_predict; i++) {
    if (n >= s->p.n_ctx) {
      s->t.context_full = 1;
      break;
    }
    double ts = bn_now();
    memcpy(s->logits, last, (size_t)V * sizeof *last);
    int32_t tok = bn_sampler_sample(s->sampler, s->logits, s->hist, n);
    s->t.sample_s += bn_now() - ts;
    if (s->trace) bn_trace_add(s->trace, "sample", "stage", (int64_t)(ts * 1e9), bn_trace_now_ns(), 0, 1);
    if (tok == s->m->vocab.eos && !s->p.ignore_eos) break;
    s->hist[n] = tok;
    size_t plen;
    const char *piece = bn_tok_piece(s->tok, tok, &plen);
    if (fn && fn(tok, piece, plen, user)) break;
    double tg = bn_now();
    int64_t t0 = bn_trace_now_ns();
    st = bn_exec_run(s->exec, &s->hist[n], 1, n, BN_ROWS_LAST, &last, err);
    if (s->trace) bn_trace_add(s->trace, "decode step", "stage", t0, bn_trace_now_ns(), 0, 1);
    s->t.gen_s += bn_now() - tg;
    n++;
    s->t.n_gen++;
    if (st) return st;
  }
  s->past[0] = n;
  return BN_OK;
}

bn_status bn_session_append(bn_session *s, const int32_t *tokens, int n, const float **last, bn_error *err) {
  if (n < 1 || s->past[0] + n > s->p.n_ctx)
    return bn_fail(err, BN_E_RANGE, "eval: %d more tokens after %d do not fit the context of %d", n, s->past[0], s->p.n_ctx);
  double t0 = bn_now();
  bn_status st = run_chunks(s, tokens, n, s->past[0], NULL, last, err);
  s->t.prompt_s += bn_now() - t0;
  if (!st) s->past[0] += n, s->t.n_prompt += n;
  return st;
}

void bn_session_reset(bn_session *s) { s->past[0] = 0; }
void bn_session_truncate(bn_session *s, int n) { s->past[0] = n >= 0 && n < s->past[0] ? n : s->past[0]; }
int bn_session_n_past(const bn_session *s) { return s->past[0]; }
const bn_session_params *bn_session_params_of(const bn_session *s) { return &s->p; }

static int n_seq(const bn_session *s) { return s->p.exec.n_seq > 1 ? s->p.exec.n_seq : 1; }

bn_status bn_session_step(bn_session *s, const bn_seq_tokens *in, int n, const float **logits, bn_error *err) {
  bn_exec_seg segs[BN_EXEC_MAX_SEQ];
  if (n < 1 || n > n_seq(s)) return bn_fail(err, BN_E_RANGE, "step: %d sequences (1..%d)", n, n_seq(s));
  for (int i = 0; i < n; i++) {
    int q = in[i].seq;
    if (q < 0 || q >= n_seq(s)) return bn_fail(err, BN_E_RANGE, "step: sequence %d (0..%d)", q, n_seq(s) - 1);
    if (in[i].n < 1 || in[i].n > s->p.n_ctx - s->past[q])
      return bn_fail(err, BN_E_RANGE, "step: sequence %d: %d more tokens after %d do not fit the context of %d", q,
                     in[i].n, s->past[q], s->p.n_ctx);
    segs[i] = (bn_exec_seg){.tokens = in[i].tokens, .n = in[i].n, .pos = s->past[q], .seq = q};
  }
  bn_status st = bn_exec_run_batch(s->exec, segs, n, logits, err);
  for (int i = 0; !st && i < n; i++) s->past[in[i].seq] += in[i].n;
  return st;
}

int bn_session_seq_past(const bn_session *s, int seq) { return seq >= 0 && seq < n_seq(s) ? s->past[seq] : -1; }
void bn_session_seq_truncate(bn_session *s, int seq, int n) {
  if (seq >= 0 && seq < n_seq(s) && n >= 0 && n < s->past[seq]) s->past[seq] = n;
}

const bn_timings *bn_session_timings(const bn_session *s) { return &s->t; }
const bn_tokenizer *bn_session_tokenizer(const bn_session *s) { return s->tok; }
bn_exec *bn_session_exec(bn_session *s) { return s->exec; }
void bn_session_set_trace(bn_session *s, bn_trace *t) {
  s->trace = t;
  bn_exec_set_trace(s->exec, t);
}

bn_status bn_session_perplexity(bn_session *s, const int32_t *tokens, long n, int ctx, int stride, float *logits,
                                bn_ppl_result *out, bn_error *err) {
  int V = s->m->hp.n_vocab;
  if (ctx < 2 || ctx > s->p.n_ctx) return bn_fail(err, BN_E_RANGE, "perplexity: context %d (2..%d)", ctx, s->p.n_ctx);
  if (stride < 1 || stride > ctx) return bn_fail(err, BN_E_RANGE, "perplexity: stride %d (1..%d)", stride, ctx);
  if (n < 2) return bn_fail(err, BN_E_RANGE, "perplexity: %ld tokens is too few", n);
  double sum = 0, sum2 = 0, t0 = bn_now();
  long scored = 0, evaluated = 0;
  for (long start = 0; start + 1 < n; start += stride) {
    int len = (int)(n - start < ctx ? n - start : ctx);
    bn_status st = bn_session_eval(s, tokens + start, len, logits, err);
    if (st) return st;
    evaluated += len;
    int first = start == 0 ? 1 : len - stride < 1 ? 1 : len - stride; /* the first position scored */
    for (int i = first; i < len; i++) {
      const float *row = logits + (size_t)(i - 1) * V; /* position i - 1 predicts token i */
      double mx = row[0], z = 0;
      for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
      for (int v = 0; v < V; v++) z += exp((double)row[v] - mx);
      double nll = log(z) + mx - row[tokens[start + i]];
      sum += nll, sum2 += nll * nll, scored++;
    }
    if (s->p.progress) s->p.progress(start + len, n, s->p.progress_user);
    if (start + len >= n) break;
  }
  double mean = sum / scored, var = scored > 1 ? (sum2 - sum * sum / scored) / (scored - 1) : 0;
  out->ppl = exp(mean);
  out->ppl_err = out->ppl * sqrt(var > 0 ? var : 0) / sqrt((double)scored);
  out->scored = scored, out->evaluated = evaluated, out->seconds = bn_now() - t0;
  return BN_OK;
}
