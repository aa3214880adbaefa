/* An in-process A/B of a runtime switch read from the environment when a
 * session starts (BNC_QKV_PHASE, BNC_ISA, ...).
 *
 * On a shared machine the bandwidth two threads get moves by ~1.8x from one
 * minute to the next, so two `bnc bench` runs of two binaries compare two
 * minutes as much as two builds. This program makes two sessions of one plan
 * on one pool, the first with VAR=A and the second with VAR=B, and times
 * tgN on each in turn (which goes first alternating), so each pair of runs
 * shares the same second; it prints every round and the median of B / A.
 * With --plans the two sessions run two plans (A and B) instead, e.g. one
 * model compiled two ways; with --kv one plan over K/V caches of two types; with --backends one plan
 * on two backends (e.g. asmjit llvm).
 *
 *   build/bench/ab PLAN VAR A B [-t THREADS] [-r ROUNDS] [-n TOKENS] [-d DEPTH] [-p PROMPT]
 *   build/bench/ab --plans A.bnplan B.bnplan [options]
 *   build/bench/ab --kv f32 f16 PLAN [options]
 *   build/bench/ab --backends asmjit llvm PLAN [options]
 *   e.g. build/bench/ab large.bnplan BNC_QKV_PHASE 0 1 -t 2 -r 20
 * -d: each tgN after DEPTH tokens of context (untimed, run once per session), as bnc bench -d;
 * -p: time a PROMPT-token prompt (ppN, in chunks of the plan's batch) instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/exec.h"
#include "../runtime/plan.h"
#include "../runtime/session.h"
#include "../tools/cli.h"

static int32_t *ctx_tokens; /* the untimed context: depth tokens */

static double tg(bn_session *s, int n, int depth, int prompt) {
  const float *last;
  bn_error err;
  int32_t t = 5;
  if (prompt) {
    bn_session_reset(s);
    double t0 = bn_now();
    if (bn_session_append(s, ctx_tokens, prompt, &last, &err)) return fprintf(stderr, "ab: %s\n", err.msg), -1;
    return prompt / (bn_now() - t0);
  }
  bn_session_truncate(s, depth); /* the context is run once, then kept */
  if (bn_session_n_past(s) < depth) {
    bn_session_reset(s);
    if (bn_session_append(s, ctx_tokens, depth, &last, &err)) return fprintf(stderr, "ab: %s\n", err.msg), -1;
  }
  double t0 = bn_now();
  for (int i = 0; i < n; i++)
    if (bn_session_append(s, &t, 1, &last, &err)) return fprintf(stderr, "ab: %s\n", err.msg), -1;
  return n / (bn_now() - t0);
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
#ifdef BN_WITH_ASMJIT
  extern const bn_backend bn_backend_asmjit;
  bn_backend_register(&bn_backend_asmjit, NULL); /* auto's first member, as bnc registers it */
#endif
  int plans = argc > 1 && !strcmp(argv[1], "--plans"), kvs = argc > 1 && !strcmp(argv[1], "--kv");
  int bks = argc > 1 && !strcmp(argv[1], "--backends"), first = plans ? 4 : 5;
  bn_dtype kv[2] = {BN_DT_F32, BN_DT_F32};
  const bn_backend *be[2] = {bn_backend_default(), bn_backend_default()};
  for (int v = 0; v < 2 && argc > 3; v++) {
    if (kvs) kv[v] = !strcmp(argv[2 + v], "f16") ? BN_DT_F16 : strcmp(argv[2 + v], "f32") ? BN_DT_COUNT : BN_DT_F32;
    if (bks) be[v] = bn_backend_find(argv[2 + v]);
  }
  if (argc < first || kv[0] == BN_DT_COUNT || kv[1] == BN_DT_COUNT || !be[0] || !be[1]) {
    fputs("usage: ab PLAN VAR A B [-t THREADS] [-r ROUNDS] [-n TOKENS] [-d DEPTH] [-p PROMPT]\n"
          "       ab --plans A.bnplan B.bnplan [options]\n"
          "       ab --kv f32 f16 PLAN [options]\n"
          "       ab --backends asmjit llvm PLAN [options]\n", stderr);
    return 2;
  }
  const char *plan = kvs || bks ? argv[4] : argv[1];
  int threads = 2, rounds = 20, n = 64, depth = 0, prompt = 0;
  for (int i = first; i + 1 < argc; i += 2) {
    int v = atoi(argv[i + 1]);
    if (!strcmp(argv[i], "-t") && v > 0) threads = v;
    else if (!strcmp(argv[i], "-r") && v > 0 && v <= 1000) rounds = v;
    else if (!strcmp(argv[i], "-n") && v > 0) n = v;
    else if (!strcmp(argv[i], "-d") && v >= 0) depth = v;
    else if (!strcmp(argv[i], "-p") && v > 0) prompt = v;
    else return fprintf(stderr, "ab: bad option %s %s\n", argv[i], argv[i + 1]), 2;
  }
  bn_plan p[2];
  bn_pool *pool;
  bn_error err = {0};
  for (int v = 0; v < 1 + plans; v++)
    if (bn_plan_open(&p[v], plans ? argv[2 + v] : plan, &err)) return fprintf(stderr, "ab: %s\n", err.msg), 1;
  if (bn_pool_create(threads, &pool, &err)) return fprintf(stderr, "ab: %s\n", err.msg), 1;
  int ctx = depth > prompt ? depth : prompt;
  if (!(ctx_tokens = malloc((size_t)(ctx + 1) * sizeof *ctx_tokens))) return fputs("ab: out of memory\n", stderr), 1;
  for (int i = 0; i < ctx; i++) ctx_tokens[i] = 3 + i % 97;
  bn_session *s[2];
  for (int v = 0; v < 2; v++) {
    bn_plan *pv = &p[plans ? v : 0];
    if (!plans && !kvs && !bks) setenv(argv[2], argv[3 + v], 1);
    bn_session_params sp = {
        .n_ctx = ctx + n + 8,
        .exec = {.backend = be[v], .threads = threads, .kv = kv[v], .target = pv->target, .pool = pool},
        .sampler = bn_sampler_defaults()};
    bn_cli_exec_env(&sp.exec); /* VAR as bnc maps it */
    if (bn_session_create(&pv->model, &pv->mem, &sp, &s[v], &err)) return fprintf(stderr, "ab: %s\n", err.msg), 1;
    if (tg(s[v], 8, 0, 0) < 0) return 1; /* warm-up */
  }
  double *ratio = malloc((size_t)rounds * sizeof *ratio), x[2];
  int wins = 0;
  char what[64];
  if (prompt) snprintf(what, sizeof what, "pp%d", prompt);
  else snprintf(what, sizeof what, "tg%d after %d tokens", n, depth);
  if (plans) printf("%s on %d thread(s), %s (A) against %s (B)\n", what, threads, argv[2], argv[3]);
  else if (kvs) printf("%s: %s on %d thread(s), K/V cache %s (A) against %s (B)\n", plan, what, threads, argv[2], argv[3]);
  else if (bks) printf("%s: %s on %d thread(s), backend %s (A) against %s (B)\n", plan, what, threads, argv[2], argv[3]);
  else printf("%s: %s on %d thread(s), %s=%s (A) against %s=%s (B)\n", argv[1], what, threads, argv[2], argv[3], argv[2], argv[4]);
  for (int r = 0; r < rounds; r++) {
    for (int k = 0; k < 2; k++) {
      int v = r % 2 ? 1 - k : k;
      if ((x[v] = tg(s[v], n, depth, prompt)) < 0) return 1;
    }
    ratio[r] = x[1] / x[0], wins += x[1] > x[0];
    printf("round %3d: A %7.2f t/s  B %7.2f t/s  B/A %.3f\n", r, x[0], x[1], ratio[r]);
  }
  qsort(ratio, (size_t)rounds, sizeof *ratio, by_value);
  printf("B/A: median %.3f, quartiles %.3f .. %.3f; B faster in %d of %d rounds\n", ratio[rounds / 2],
         ratio[rounds / 4], ratio[3 * rounds / 4], wins, rounds);
  for (int v = 0; v < 2; v++) bn_session_free(s[v]);
  bn_pool_free(pool);
  for (int v = 0; v < 1 + plans; v++) bn_plan_close(&p[v]);
  free(ratio), free(ctx_tokens);
  return 0;
}
