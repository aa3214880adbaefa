/* Steps of several sequences (bnc serve's batched decode) timed alone: S sequences, each given DEPTH
 * tokens of context first (untimed), then N steps of one token each for all S at once; prints ms a
 * step, tokens/s and each kernel kind's ms a step (the executor's statistics).
 *
 *   build/bench/steps PLAN [-s SEQS] [-d DEPTH] [-n STEPS] [-t THREADS] [-b BACKEND] [-k f32|f16 (K/V cache)]
 *   e.g. build/bench/steps large.bnplan -s 8 -d 40 -n 20 -t 2 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/exec.h"
#include "../runtime/plan.h"
#include "../runtime/session.h"

int main(int argc, char **argv) {
#ifdef BN_WITH_ASMJIT
  extern const bn_backend bn_backend_asmjit;
  bn_backend_register(&bn_backend_asmjit, NULL); /* auto's first member, as bnc registers it */
#endif
  int S = 8, depth = 40, steps = 20, threads = 2;
  bn_dtype kv = BN_DT_F32;
  const bn_backend *be = bn_backend_default();
  for (int i = 2; i + 1 < argc; i += 2) {
    int v = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "-b")) {
      if (!(be = bn_backend_find(argv[i + 1]))) return fprintf(stderr, "steps: no backend %s\n", argv[i + 1]), 2;
    } else if (!strcmp(argv[i], "-k") && (!strcmp(argv[i + 1], "f16") || !strcmp(argv[i + 1], "f32")))
      kv = argv[i + 1][1] == '1' ? BN_DT_F16 : BN_DT_F32;
    else if (!strcmp(argv[i], "-s") && v > 0 && v <= 64) S = v;
    else if (!strcmp(argv[i], "-d") && v >= 0 && v <= 65536) depth = v;
    else if (!strcmp(argv[i], "-n") && v > 0 && v <= 100000) steps = v;
    else if (!strcmp(argv[i], "-t") && v > 0 && v <= 256) threads = v;
    else return fprintf(stderr, "steps: bad option %s %s\n", argv[i], argv[i + 1]), 2;
  }
  if (argc < 2 || argc % 2) return fputs("usage: steps PLAN [-s SEQS] [-d DEPTH] [-n STEPS] [-t THREADS] [-b BACKEND] [-k f32|f16]\n", stderr), 2;
  bn_plan p;
  bn_error err = {0};
  if (bn_plan_open(&p, argv[1], &err)) return fprintf(stderr, "steps: %s\n", err.msg), 1;
  bn_session_params sp = {.n_ctx = depth + steps + 8,
                          .exec = {.backend = be, .threads = threads, .target = p.target, .n_seq = S, .kv = kv},
                          .sampler = bn_sampler_defaults()};
  bn_session *s;
  if (bn_session_create(&p.model, &p.mem, &sp, &s, &err)) return fprintf(stderr, "steps: %s\n", err.msg), 1;
  int32_t *ctx = malloc(sizeof *ctx * (size_t)(depth + S)), *tok = ctx + depth;
  bn_seq_tokens *in = malloc(sizeof *in * (size_t)S);
  if (!ctx || !in) return fputs("steps: out of memory\n", stderr), 1;
  for (int i = 0; i < depth; i++) ctx[i] = 3 + i % 97;
  const float *logits;
  int chunk = bn_exec_max_tokens(bn_session_exec(s));
  for (int q = 0; q < S; q++) /* each sequence's context, a step of the plan's tokens at a time */
    for (int at = 0; at < depth; at += chunk) {
      bn_seq_tokens one = {.seq = q, .tokens = ctx + at, .n = depth - at < chunk ? depth - at : chunk};
      if (bn_session_step(s, &one, 1, &logits, &err)) return fprintf(stderr, "steps: %s\n", err.msg), 1;
    }
  const bn_exec_stat *st;
  int nk = bn_exec_stats(bn_session_exec(s), &st);
  double *before = malloc(sizeof *before * (size_t)nk);
  for (int k = 0; k < nk; k++) before[k] = st[k].seconds;
  for (int q = 0; q < S; q++) tok[q] = 5 + q, in[q] = (bn_seq_tokens){.seq = q, .tokens = &tok[q], .n = 1};
  double t0 = bn_now();
  for (int i = 0; i < steps; i++)
    if (bn_session_step(s, in, S, &logits, &err)) return fprintf(stderr, "steps: %s\n", err.msg), 1;
  double t = bn_now() - t0;
  printf("%s: %d sequences after %d tokens, %d threads: %.2f ms a step, %.1f tokens/s\n", argv[1], S, depth, threads,
         1e3 * t / steps, S * steps / t);
  for (int k = 0; k < nk; k++)
    if (st[k].seconds > before[k]) printf("  %-72s %8.3f ms a step\n", st[k].kind, 1e3 * (st[k].seconds - before[k]) / steps);
  bn_session_free(s), bn_plan_close(&p);
  free(ctx), free(in), free(before);
  return 0;
}
