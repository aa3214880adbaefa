/* bnc run: generate text; bnc eval: write the logits of given tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/session.h"
#include "cli.h"

static const char RUN_HELP[] =
    "usage: bnc run MODEL.gguf -p TEXT [-n N] [options]\n"
    "  Streams the continuation of TEXT, then prints load time, prompt tokens/s and generation tokens/s.\n"
    "  -n N                 tokens to generate (default 32)\n"
    "  --temp T             temperature; 0 = greedy (default 0.8)\n"
    "  --top-k K            (default 40; 0 = off)\n"
    "  --top-p P            (default 0.95; 1 = off)\n"
    "  --repeat-penalty R   (default 1.1; 1 = off)\n"
    "  --seed S             sampler seed (default 42)\n"
    "  -c, --ctx N          context size (default: the model's)\n"
    "  -b, --batch N        prompt chunk size (default 32)\n"
    "  --ignore-eos         do not stop at the end-of-sequence token\n"
    "  Executes with the reference interpreter (codegen/ref), the exact but slow oracle.\n";

static const char EVAL_HELP[] =
    "usage: bnc eval MODEL.gguf --tokens \"1 5 17\" --logits-out FILE [-b N]\n"
    "  Runs the token ids from position 0 and writes the logits of every position as float32,\n"
    "  little-endian, row-major [tokens x vocab].\n";

typedef struct {
  const char *model, *prompt, *tokens, *logits_out;
  long n_predict, n_ctx, n_batch;
  int ignore_eos;
  bn_sampler_params sp;
} run_opts;

static int parse(const char *cmd, int argc, char **argv, run_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (a[0] != '-') {
      if (o->model) return bn_cli_usage_error(cmd, "unexpected argument '%s'", a);
      o->model = a;
      continue;
    }
    if (!strcmp(a, "--ignore-eos")) {
      o->ignore_eos = 1;
      continue;
    }
    if (!v) return bn_cli_usage_error(cmd, "option %s needs a value", a);
    i++;
    double d;
    long l;
    if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
    else if (!strcmp(a, "--tokens")) o->tokens = v;
    else if (!strcmp(a, "--logits-out")) o->logits_out = v;
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
  if (!o->model) return bn_cli_usage_error(cmd, "missing MODEL.gguf");
  return 0;
}

static int wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  return 0;
}

static void print_piece(const char *text, size_t len, void *user) {
  (void)user;
  fwrite(text, 1, len, stdout);
  fflush(stdout);
}

int bn_cmd_run(int argc, char **argv) {
  if (wants_help(argc, argv)) return fputs(RUN_HELP, stdout), 0;
  run_opts o = {.n_predict = 32, .sp = bn_sampler_defaults()};
  int rc = parse("run", argc, argv, &o);
  if (rc) return rc;
  if (!o.prompt) return bn_cli_usage_error("run", "missing -p TEXT");
  bn_error err = {0};
  bn_gguf f;
  bn_model m;
  double t0 = bn_now();
  if (bn_cli_load(o.model, &f, &m, &err)) return bn_cli_fail(&err);
  bn_session_params sp = {(int)o.n_ctx, (int)o.n_batch, o.ignore_eos, o.sp};
  bn_session *s;
  if (bn_session_create(&m, &sp, &s, &err)) {
    bn_model_free(&m), bn_gguf_close(&f);
    return bn_cli_fail(&err);
  }
  double load = bn_now() - t0;
  fputs(o.prompt, stdout);
  fflush(stdout);
  bn_status st = bn_session_generate(s, o.prompt, (int)o.n_predict, print_piece, NULL, &err);
  printf("\n");
  const bn_timings *t = bn_session_timings(s);
  if (!st)
    fprintf(stderr, "\nload %.3f s | prompt %d tokens, %.2f tokens/s | generation %d tokens, %.2f tokens/s | "
                    "tokenize %.3f ms, sampling %.3f ms\n",
            load, t->n_prompt, t->n_prompt / (t->prompt_s > 0 ? t->prompt_s : 1e-9), t->n_gen,
            t->n_gen / (t->gen_s > 0 ? t->gen_s : 1e-9), t->tokenize_s * 1e3, t->sample_s * 1e3);
  bn_session_free(s);
  bn_model_free(&m);
  bn_gguf_close(&f);
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
  if (wants_help(argc, argv)) return fputs(EVAL_HELP, stdout), 0;
  run_opts o = {.sp = bn_sampler_defaults()};
  int rc = parse("eval", argc, argv, &o);
  if (rc) return rc;
  if (!o.tokens || !o.logits_out) return bn_cli_usage_error("eval", "needs --tokens and --logits-out");
  int32_t *ids;
  int n = parse_tokens(o.tokens, &ids);
  if (n < 0) return 2;
  bn_error err = {0};
  bn_gguf f;
  bn_model m;
  if (bn_cli_load(o.model, &f, &m, &err)) return free(ids), bn_cli_fail(&err);
  bn_session_params sp = {(int)o.n_ctx, (int)o.n_batch, o.ignore_eos, o.sp};
  bn_session *s = NULL;
  size_t V = (size_t)m.hp.n_vocab;
  float *logits = malloc((size_t)n * V * sizeof *logits);
  bn_status st = logits ? bn_session_create(&m, &sp, &s, &err) : bn_fail(&err, BN_E_NOMEM, "out of memory");
  if (!st) st = bn_session_eval(s, ids, n, logits, &err);
  if (!st) {
    FILE *fp = fopen(o.logits_out, "wb");
    if (!fp || fwrite(logits, sizeof *logits, (size_t)n * V, fp) != (size_t)n * V)
      st = bn_fail(&err, BN_E_IO, "%s: cannot write the logits", o.logits_out);
    if (fp && fclose(fp)) st = bn_fail(&err, BN_E_IO, "%s: cannot write the logits", o.logits_out);
  }
  if (!st) fprintf(stderr, "wrote %d x %zu logits to %s\n", n, V, o.logits_out);
  bn_session_free(s);
  free(logits);
  free(ids);
  bn_model_free(&m);
  bn_gguf_close(&f);
  return st ? bn_cli_fail(&err) : 0;
}
