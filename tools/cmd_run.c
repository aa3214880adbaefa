/* bnc run: generate text; bnc eval: write the logits of given tokens.
 * Both take a .bnplan or a GGUF (compiled in memory first). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/session.h"
#include "cli.h"

static const char RUN_HELP[] =
    "usage: bnc run MODEL -p TEXT [-n N] [options]\n"
    "  MODEL is a .bnplan (from bnc compile) or a GGUF (compiled in memory first).\n"
    "  Streams the continuation of TEXT, then prints load time, prompt tokens/s and generation tokens/s.\n"
    "  -n N                 tokens to generate (default 32)\n"
    "  --temp T             temperature; 0 = greedy (default 0.8)\n"
    "  --top-k K            (default 40; 0 = off)\n"
    "  --top-p P            (default 0.95; 1 = off)\n"
    "  --repeat-penalty R   (default 1.1; 1 = off)\n"
    "  --seed S             sampler seed (default 42)\n"
    "  -c, --ctx N          context size (default: room for the prompt and -n tokens, at most the model's;\n"
    "                       the K/V cache for it is allocated up front)\n"
    "  -b, --batch N        prompt chunk size (default: the plan's, 128 for a GGUF)\n"
    "  --ignore-eos         do not stop at the end-of-sequence token\n"
    "  -t, --threads N      threads for the generated kernels (default 1)\n"
    "  --backend NAME       the code generator (below); nodes it has no kernel for run the reference\n"
    "                       kernels, said in one line\n"
    "  --kv f32|f16         the K/V cache's element type (default f32: exact; f16: half the bytes read at\n"
    "                       depth, each key and value rounded to half: docs/kv-cache.md gives its cost)\n"
    "  --stats              print time per stage and per kernel kind\n"
    "  --profile FILE       write a Chrome trace (chrome://tracing, ui.perfetto.dev) of every stage and kernel\n"
    "  BNC_ISA=avx2|avx512 in the environment forces an instruction set for the generated kernels.\n"
    "  BNC_QKV_PHASE=0 has decoding run the q/k/v slices, RoPEs and K/V store as nodes of their own\n"
    "  (by default each thread rotates and stores the heads it projected; --stats says where).\n";

static const char EVAL_HELP[] =
    "usage: bnc eval MODEL --tokens \"1 5 17\" --logits-out FILE [-b N] [-t N] [--backend NAME] [--kv f32|f16]\n"
    "                [--poison]\n"
    "  Runs the token ids from position 0 and writes the logits of every position as float32,\n"
    "  little-endian, row-major [tokens x vocab].\n"
    "  --poison   fill the arena regions of dead values with NaN after each kernel (checks the memory plan)\n";

typedef struct {
  const char *model, *prompt, *tokens, *logits_out, *profile;
  long n_predict, n_ctx, n_batch, threads;
  const bn_backend *backend;
  int ignore_eos, stats, poison;
  bn_dtype kv;
  bn_sampler_params sp;
} run_opts;

/* The options each command takes: any other is unknown to it, not silently ignored. */
static const char RUN_OPTS[] = "-p --prompt -n -c --ctx -b --batch --ignore-eos -t --threads --backend --kv --stats --profile "
                               "--temp --top-k --top-p --repeat-penalty --seed",
                  EVAL_OPTS[] = "--tokens --logits-out -b --batch -t --threads --backend --kv --poison";

static int parse(const char *cmd, const char *allowed, int argc, char **argv, run_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (a[0] != '-') {
      if (o->model) return bn_cli_usage_error(cmd, "unexpected argument '%s'", a);
      o->model = a;
      continue;
    }
    if (!bn_cli_has(allowed, a)) return bn_cli_usage_error(cmd, "unknown option '%s'", a);
    int *flag = !strcmp(a, "--ignore-eos") ? &o->ignore_eos : !strcmp(a, "--stats") ? &o->stats
                : !strcmp(a, "--poison") ? &o->poison : NULL;
    if (flag) {
      *flag = 1;
      continue;
    }
    if (!v) return bn_cli_usage_error(cmd, "option %s needs a value", a);
    i++;
    double d;
    long l;
    if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
    else if (!strcmp(a, "--tokens")) o->tokens = v;
    else if (!strcmp(a, "--logits-out")) o->logits_out = v;
    else if (!strcmp(a, "--profile")) o->profile = v;
    else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (bn_cli_int(cmd, a, v, 1, 512, &o->threads)) return 2; }
    else if (!strcmp(a, "--backend")) { if (bn_cli_backend(cmd, v, &o->backend)) return 2; }
    else if (!strcmp(a, "--kv")) { if (bn_cli_kv(cmd, v, &o->kv)) return 2; }
    else if (!strcmp(a, "-n")) { if (bn_cli_int(cmd, a, v, 0, 1 << 20, &o->n_predict)) return 2; }
    else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (bn_cli_int(cmd, a, v, 1, 1 << 20, &o->n_ctx)) return 2; }
    else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) { if (bn_cli_int(cmd, a, v, 1, 4096, &o->n_batch)) return 2; }
    else if (!strcmp(a, "--temp")) { if (bn_cli_float(cmd, a, v, &d)) return 2; o->sp.temperature = (float)d; }
    else if (!strcmp(a, "--top-k")) { if (bn_cli_int(cmd, a, v, 0, 1 << 24, &l)) return 2; o->sp.top_k = (int)l; }
    else if (!strcmp(a, "--top-p")) { if (bn_cli_float(cmd, a, v, &d)) return 2; o->sp.top_p = (float)d; }
    else if (!strcmp(a, "--repeat-penalty")) {
      if (bn_cli_float(cmd, a, v, &d)) return 2;
      if (d <= 0) return bn_cli_usage_error(cmd, "--repeat-penalty must be positive, got %s", v);
      o->sp.repeat_penalty = (float)d;
    } else if (!strcmp(a, "--seed")) { if (bn_cli_int(cmd, a, v, 0, 0x7fffffffL, &l)) return 2; o->sp.seed = (uint64_t)l; }
    else return bn_cli_usage_error(cmd, "unknown option '%s'", a);
  }
  if (!o->model) return bn_cli_usage_error(cmd, "missing MODEL");
  return 0;
}

static int wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  return 0;
}

/* When each generated token arrived: the gaps are the per-token latencies --stats reports. */
typedef struct {
  double *at;
  int n, cap;
} arrivals;

static int print_piece(int32_t token, const char *text, size_t len, void *user) {
  arrivals *a = user;
  (void)token;
  fwrite(text, 1, len, stdout);
  fflush(stdout);
  if (a->n < a->cap) a->at[a->n++] = bn_now();
  return 0;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void print_latency(arrivals *a) {
  int n = a->n - 1;
  if (n < 1) return;
  for (int i = 0; i < n; i++) a->at[i] = (a->at[i + 1] - a->at[i]) * 1e3;
  qsort(a->at, (size_t)n, sizeof *a->at, by_value);
  fprintf(stderr, "per-token latency, ms (%d tokens after the first): p50 %.3f, p95 %.3f, p99 %.3f, slowest %.3f\n", n,
          a->at[(n - 1) / 2], a->at[(int)(0.95 * (n - 1))], a->at[(int)(0.99 * (n - 1))], a->at[n - 1]);
}

static int by_time(const void *a, const void *b) {
  double x = ((const bn_exec_stat *)a)->seconds, y = ((const bn_exec_stat *)b)->seconds;
  return x < y ? 1 : x > y ? -1 : 0;
}

static void print_stats(bn_session *s, double load) {
  const bn_timings *t = bn_session_timings(s);
  bn_exec *e = bn_session_exec(s);
  fprintf(stderr, "\n%-34s %10s %8s\n", "stage", "ms", "tokens");
  fprintf(stderr, "%-34s %10.2f\n", "load (map/import/compile)", load * 1e3);
  fprintf(stderr, "%-34s %10.2f\n", "session set-up", t->prepare_s * 1e3);
  fprintf(stderr, "  executor and kernels %.2f ms, tokenizer tables %.2f ms\n", (t->prepare_s - t->tok_tables_s) * 1e3,
          t->tok_tables_s * 1e3);
  bn_codegen_counts kc;
  int jit_nodes = bn_exec_jit_nodes(e, &kc);
  if (jit_nodes) {
    bn_codegen_part one = {bn_exec_backend(e), kc.built, kc.stored, kc.cached, kc.aot, kc.seconds};
    fprintf(stderr, "  %d nodes run generated code\n", jit_nodes);
    for (int i = 0; i < (kc.n_parts ? kc.n_parts : 1); i++) {
      const bn_codegen_part *p = kc.n_parts ? &kc.part[i] : &one;
      fprintf(stderr, "  %-6s kernels: %d built (%d stored in the disk cache), %d from the disk cache, %d from the plan (%.2f ms)\n",
              p->backend, p->built, p->stored, p->cached, p->aot, p->seconds * 1e3);
    }
  }
  char kinds[256];
  int ref_nodes = bn_exec_ref_nodes(e, kinds, sizeof kinds);
  if (ref_nodes) fprintf(stderr, "  %d nodes run the reference kernels: %s\n", ref_nodes, kinds);
  if (bn_exec_aot_missing(e)) fprintf(stderr, "  the plan's object code was not used: %s\n", bn_exec_aot_missing(e));
  fprintf(stderr, "%-34s %10.3f %8d\n", "tokenize", t->tokenize_s * 1e3, t->n_prompt);
  fprintf(stderr, "%-34s %10.2f %8d\n", "prompt (prefill)", t->prompt_s * 1e3, t->n_prompt);
  fprintf(stderr, "%-34s %10.2f %8d\n", "generation (decode)", t->gen_s * 1e3, t->n_gen);
  fprintf(stderr, "%-34s %10.3f %8d\n", "sampling", t->sample_s * 1e3, t->n_gen);
  const bn_exec_stat *st;
  int n = bn_exec_stats(e, &st);
  bn_exec_stat sorted[256];
  double total = 0;
  if (n > 256) n = 256;
  memcpy(sorted, st, (size_t)n * sizeof *st);
  qsort(sorted, (size_t)n, sizeof *sorted, by_time);
  int w = 34; /* the kind column: as wide as the longest name */
  for (int i = 0; i < n; i++) {
    total += sorted[i].seconds;
    if ((int)strlen(sorted[i].kind) > w) w = (int)strlen(sorted[i].kind);
  }
  fprintf(stderr, "\n%-*s %8s %10s %7s %10s\n", w, "kernel kind", "calls", "ms", "%", "us/call");
  for (int i = 0; i < n; i++)
    fprintf(stderr, "%-*s %8ld %10.2f %6.1f%% %10.1f\n", w, sorted[i].kind, sorted[i].calls, sorted[i].seconds * 1e3,
            total > 0 ? 100 * sorted[i].seconds / total : 0, sorted[i].calls ? sorted[i].seconds * 1e6 / sorted[i].calls : 0);
  fprintf(stderr, "%-*s %8s %10.2f\n", w, "all kernels", "", total * 1e3);
  if (bn_exec_qkv_phases(e)) /* the skipped nodes have no rows; the phase's time is in the projection's */
    fprintf(stderr, "q/k/v: %d layers rotate and store q/k/v right after their projection (no slice or rope nodes)\n",
            bn_exec_qkv_phases(e));
  fprintf(stderr, "arena %.2f MiB, KV cache %.2f MiB\n", bn_exec_arena_bytes(e) / 1048576.0, bn_exec_kv_bytes(e) / 1048576.0);
}

int bn_cmd_run(int argc, char **argv) {
  if (wants_help(argc, argv)) return fputs(RUN_HELP, stdout), bn_cli_print_backends(stdout), 0;
  run_opts o = {.n_predict = 32, .threads = 1, .backend = bn_backend_default(), .sp = bn_sampler_defaults()};
  int rc = parse("run", RUN_OPTS, argc, argv, &o);
  if (rc) return rc;
  if (!o.prompt) return bn_cli_usage_error("run", "missing -p TEXT");
  bn_error err = {0};
  bn_cli_model cm;
  bn_trace trace = {0};
  double t0 = bn_now();
  if (o.profile && bn_trace_init(&trace, 1 << 22, &err)) return bn_cli_fail(&err);
  int64_t load0 = bn_trace_now_ns();
  if (bn_cli_open_model(o.model, (int)o.n_batch, &cm, &err)) return bn_trace_free(&trace), bn_cli_fail(&err);
  if (!o.n_ctx) /* a token is at least a byte: room for the prompt (with BOS and a leading space) and -n;
                   the session caps it at the model's */
    o.n_ctx = (long)strlen(o.prompt) + 4 + o.n_predict;
  bn_session_params sp = {.n_ctx = (int)o.n_ctx, .n_batch = (int)o.n_batch, .ignore_eos = o.ignore_eos,
                          .exec = bn_cli_exec_opts(o.backend, o.threads, o.kv, &cm), .sampler = o.sp};
  bn_session *s;
  if (bn_session_create(cm.m, cm.mem, &sp, &s, &err)) {
    bn_cli_close_model(&cm);
    bn_trace_free(&trace);
    return bn_cli_fail(&err);
  }
  double load = bn_now() - t0;
  bn_cli_say_fallbacks(bn_session_exec(s), o.backend);
  if (o.profile) {
    bn_trace_add(&trace, "load", "stage", load0, bn_trace_now_ns(), 0, 0);
    bn_session_set_trace(s, &trace);
  }
  fputs(o.prompt, stdout);
  fflush(stdout);
  arrivals arr = {malloc((size_t)o.n_predict * sizeof(double) + 1), 0, (int)o.n_predict};
  bn_status st = bn_session_generate(s, o.prompt, (int)o.n_predict, print_piece, &arr, &err);
  printf("\n");
  const bn_timings *t = bn_session_timings(s);
  if (!st && t->context_full)
    fprintf(stderr, "bnc: stopped after %d tokens: the context of %d tokens is full (-c sets it)\n", t->n_gen,
            bn_session_params_of(s)->n_ctx);
  if (!st)
    fprintf(stderr, "\nload %.3f s | prompt %d tokens, %.2f tokens/s | generation %d tokens, %.2f tokens/s\n", load,
            t->n_prompt, t->n_prompt / (t->prompt_s > 0 ? t->prompt_s : 1e-9), t->n_gen,
            t->n_gen / (t->gen_s > 0 ? t->gen_s : 1e-9));
  if (!st && o.stats) print_stats(s, load), print_latency(&arr);
  free(arr.at);
  if (!st && o.profile) {
    st = bn_trace_write(&trace, o.profile, &err);
    if (!st) fprintf(stderr, "trace: %d events in %s\n", trace.n, o.profile);
  }
  bn_session_free(s);
  bn_cli_close_model(&cm);
  bn_trace_free(&trace);
  return st ? bn_cli_fail(&err) : 0;
}

/* "1 5 17" or "1,5,17" -> ids; returns the count or -1 (message printed). */
static int parse_tokens(const char *s, int32_t **out) {
  int cap = 16, n = 0;
  int32_t *ids = malloc((size_t)cap * sizeof *ids);
  while (ids && *s) {
    while (*s == ' ' || *s == ',') s++;
    if (!*s) break;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0 || v > 0x7fffffff) {
      free(ids);
      return bn_cli_usage_error("eval", "--tokens: '%s' is not a list of token ids", s), -1;
    }
    if (n == cap) {
      int32_t *p = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
      if (!p) break;
      ids = p;
    }
    ids[n++] = (int32_t)v;
    s = end;
  }
  if (!n) {
    free(ids);
    return bn_cli_usage_error("eval", "--tokens is empty"), -1;
  }
  *out = ids;
  return n;
}

int bn_cmd_eval(int argc, char **argv) {
  if (wants_help(argc, argv)) return fputs(EVAL_HELP, stdout), bn_cli_print_backends(stdout), 0;
  run_opts o = {.threads = 1, .backend = bn_backend_default(), .sp = bn_sampler_defaults()};
  int rc = parse("eval", EVAL_OPTS, argc, argv, &o);
  if (rc) return rc;
  if (!o.tokens || !o.logits_out) return bn_cli_usage_error("eval", "needs --tokens and --logits-out");
  int32_t *ids;
  int n = parse_tokens(o.tokens, &ids);
  if (n < 0) return 2;
  bn_error err = {0};
  bn_cli_model cm;
  if (bn_cli_open_model(o.model, (int)o.n_batch, &cm, &err)) return free(ids), bn_cli_fail(&err);
  if (!o.n_ctx) o.n_ctx = n; /* the positions it runs */
  bn_session_params sp = {.n_ctx = (int)o.n_ctx, .n_batch = (int)o.n_batch,
                          .exec = bn_cli_exec_opts(o.backend, o.threads, o.kv, &cm), .sampler = o.sp};
  bn_session *s = NULL;
  size_t V = (size_t)cm.m->hp.n_vocab;
  float *logits = malloc((size_t)n * V * sizeof *logits);
  bn_status st = logits ? bn_session_create(cm.m, cm.mem, &sp, &s, &err) : bn_fail(&err, BN_E_NOMEM, "out of memory");
  if (!st) bn_cli_say_fallbacks(bn_session_exec(s), o.backend);
  if (!st && o.poison) bn_exec_set_poison(bn_session_exec(s), 1);
  if (!st) st = bn_session_eval(s, ids, n, logits, &err);
  if (!st) {
    FILE *fp = fopen(o.logits_out, "wb");
    if (!fp || fwrite(logits, sizeof *logits, (size_t)n * V, fp) != (size_t)n * V)
      st = bn_fail(&err, BN_E_IO, "%s: cannot write the logits: %s", o.logits_out, strerror(errno));
    if (fp && fclose(fp) && !st) st = bn_fail(&err, BN_E_IO, "%s: cannot write the logits: %s", o.logits_out, strerror(errno));
  }
  if (!st) fprintf(stderr, "wrote %d x %zu logits to %s\n", n, V, o.logits_out);
  bn_session_free(s);
  free(logits);
  free(ids);
  bn_cli_close_model(&cm);
  return st ? bn_cli_fail(&err) : 0;
}
