/* bnc perplexity: how well a model predicts a text file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/session.h"
#include "cli.h"

static const char HELP[] =
    "usage: bnc perplexity MODEL -f FILE [-c CTX] [--stride N] [-b N] [-t N] [--backend NAME] [--kv f32|f16]\n"
    "  Tokenizes FILE (with BOS only if the model asks for one; - reads standard input; pipes and files of\n"
    "  any kind, up to 1 GiB), evaluates it in windows of CTX tokens (default 256, at most the model's\n"
    "  context), each from position 0, moving by --stride (default CTX);\n"
    "  a window scores its last `stride` tokens (the first window all but its first token).\n"
    "  Prints exp(mean negative log-likelihood) with its standard error, and tokens/s.\n";

static void progress(long done, long total, void *user) {
  fprintf(stderr, "\r\033[K  perplexity: %ld of %ld tokens (%.0f %%)", done, total, 100.0 * done / total);
}

int bn_cmd_perplexity(int argc, char **argv) {
  const char *model = NULL, *file = NULL;
  long ctx = 256, stride = 0, batch = 0, threads = 1;
  const bn_backend *backend = bn_backend_default();
  bn_dtype kv = BN_DT_F32;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(HELP, stdout), bn_cli_print_backends(stdout), 0;
    if (a[0] != '-') {
      if (model) return bn_cli_usage_error("perplexity", "unexpected argument '%s'", a);
      model = a;
      continue;
    }
    if (!bn_cli_has("-f -c --ctx --stride -b --batch -t --threads --backend --kv", a))
      return bn_cli_usage_error("perplexity", "unknown option '%s'", a);
    if (!v) return bn_cli_usage_error("perplexity", "option %s needs a value", a);
    i++;
    if (!strcmp(a, "-f")) file = v;
    else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (bn_cli_int("perplexity", a, v, 2, 1 << 20, &ctx)) return 2; }
    else if (!strcmp(a, "--stride")) { if (bn_cli_int("perplexity", a, v, 1, 1 << 20, &stride)) return 2; }
    else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) { if (bn_cli_int("perplexity", a, v, 1, 4096, &batch)) return 2; }
    else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (bn_cli_int("perplexity", a, v, 1, 512, &threads)) return 2; }
    else if (!strcmp(a, "--backend")) { if (bn_cli_backend("perplexity", v, &backend)) return 2; }
    else if (!strcmp(a, "--kv")) { if (bn_cli_kv("perplexity", v, &kv)) return 2; }
    else return bn_cli_usage_error("perplexity", "unknown option '%s'", a);
  }
  if (!model || !file) return bn_cli_usage_error("perplexity", "needs MODEL and -f FILE");
  bn_error err = {0};
  FILE *fp = !strcmp(file, "-") ? stdin : fopen(file, "rb");
  if (!fp) return bn_fail(&err, BN_E_IO, "%s: cannot open: %s", file, strerror(errno)), bn_cli_fail(&err);
  /* read to the end in growing steps: pipes and /proc files have no size to ask for */
  size_t len = 0, cap = 1 << 16;
  char *text = malloc(cap + 1);
  for (size_t got; text && (got = fread(text + len, 1, cap - len, fp)) > 0;) {
    len += got;
    if (len == cap && cap < ((size_t)1 << 30)) {
      char *bigger = realloc(text, 2 * cap + 1);
      if (!bigger) free(text), text = NULL;
      else text = bigger, cap *= 2;
    } else if (len == cap) break;
  }
  int bad = !text || ferror(fp) || (len == cap && !feof(fp));
  if (fp != stdin) fclose(fp);
  if (bad) {
    free(text);
    return bn_fail(&err, BN_E_IO, "%s: cannot read (or longer than 1 GiB)", file), bn_cli_fail(&err);
  }
  text[len] = 0;
  bn_cli_model cm;
  if (bn_cli_open_model(model, (int)batch, &cm, &err)) return free(text), bn_cli_fail(&err);
  if (ctx > cm.m->hp.n_ctx) ctx = cm.m->hp.n_ctx;
  bn_session_params sp = {.n_ctx = (int)ctx, .n_batch = (int)batch, .exec = bn_cli_exec_opts(backend, threads, kv, &cm),
                          .sampler = bn_sampler_defaults(), .progress = bn_cli_progress() ? progress : NULL};
  bn_session *s = NULL;
  int32_t *ids = malloc(((size_t)len + 2) * sizeof *ids); /* a token takes at least one byte */
  float *logits = malloc((size_t)ctx * (size_t)cm.m->hp.n_vocab * sizeof *logits);
  int n = 0;
  bn_ppl_result r;
  bn_status st = ids && logits ? bn_session_create(cm.m, cm.mem, &sp, &s, &err) : bn_fail(&err, BN_E_NOMEM, "out of memory");
  if (!st) {
    double t0 = bn_now();
    st = bn_tok_encode(bn_session_tokenizer(s), text, (size_t)len, cm.m->vocab.add_bos, ids, (int)len + 2, &n, &err);
    if (st) snprintf(err.msg + strlen(err.msg), sizeof err.msg - strlen(err.msg), " (in %s)", file);
    else fprintf(stderr, "%s: %d tokens (%.1f ms)\n", file, n, (bn_now() - t0) * 1e3);
  }
  if (!st) st = bn_session_perplexity(s, ids, n, (int)ctx, stride ? (int)stride : (int)ctx, logits, &r, &err);
  if (sp.progress) fprintf(stderr, "\r\033[K");
  if (!st)
    printf("perplexity: %.4f +/- %.4f over %ld scored tokens (context %ld, stride %ld) | %.1f tokens/s\n", r.ppl,
           r.ppl_err, r.scored, ctx, stride ? stride : ctx, r.evaluated / r.seconds);
  bn_session_free(s);
  free(ids), free(logits), free(text);
  bn_cli_close_model(&cm);
  return st ? bn_cli_fail(&err) : 0;
}
