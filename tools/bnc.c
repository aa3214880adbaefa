/* bnc: the command-line driver. Each subcommand lives in its own cmd_*.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../include/bnc.h"
#include "../passes/pass.h"
#include "cli.h"

static const char USAGE[] =
    "usage: bnc <command> [options]\n"
    "\n"
    "commands:\n"
    "  inspect MODEL.gguf            print metadata and the tensor table\n"
    "  ir FILE [-o OUT]              print the graph IR of a GGUF, a .bnplan or a .bnir file\n"
    "  synth -o OUT.gguf [options]   write a model with random ternary weights\n"
    "  compile MODEL.gguf -o OUT.bnplan\n"
    "                                run the pass pipeline and write a plan\n"
    "  run MODEL -p TEXT [-n N]      generate text (MODEL: .bnplan or .gguf), then print the speed\n"
    "  eval MODEL --tokens IDS --logits-out FILE\n"
    "                                write the float32 logits of every position\n"
    "  perplexity MODEL -f FILE      perplexity of a text file, with its uncertainty and tokens/s\n"
    "  bench MODEL [-p 128] [-n 64] [-t 1,2]\n"
    "                                prompt / generation speed with the machine's limits beside it\n"
    "  trust KEYFILE | --list        trust the signer of plans whose object code may run\n"
    "  serve MODEL [--port 8080]     an OpenAI-style HTTP API, requests batched together\n"
    "\n"
    "Run `bnc <command> --help` for the options of one command; `bnc --version` says what this bnc is.\n";

/* The version and commit, the backends compiled in, and what this CPU has of what they use. */
static int version(void) {
  printf("bnc %s\nbackends: %s\ncpu:", bnc_version(), bn_backend_names());
#if defined(__x86_64__) || defined(__i386__)
  const struct {
    const char *name;
    int has;
  } f[] = {{"avx2", __builtin_cpu_supports("avx2")},         {"fma", __builtin_cpu_supports("fma")},
           {"f16c", __builtin_cpu_supports("f16c")},         {"avx512f", __builtin_cpu_supports("avx512f")},
           {"avx512bw", __builtin_cpu_supports("avx512bw")}, {"avx512vnni", __builtin_cpu_supports("avx512vnni")}};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++)
    if (f[i].has) printf(" %s", f[i].name);
#else
  printf(" (feature detection is x86's only)");
#endif
  printf("\n");
  return 0;
}

int bn_cli_fail(const bn_error *err) {
  fprintf(stderr, "bnc: %s\n", err->msg);
  return 1;
}

void bn_cli_print_passes(FILE *fp) {
  int n, col = 20;
  const bn_pass *p = bn_pass_list(&n);
  fputs("  Passes, in order:", fp);
  for (int i = 0; i <= n; i++) {
    const char *name = i < n ? p[i].name : "plan-memory";
    if (col + 1 + (int)strlen(name) > 96) fputs("\n ", fp), col = 1;
    col += fprintf(fp, " %s", name);
  }
  fputc('\n', fp);
}

int bn_cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "bnc %s: ", cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (see bnc %s --help)\n", cmd);
  return 2;
}

void bn_cli_say_fallbacks(const bn_exec *e, const bn_backend *backend) {
  char kinds[256];
  int n = bn_exec_ref_nodes(e, kinds, sizeof kinds);
  if (n && strcmp(backend->name, "ref"))
    fprintf(stderr, "bnc: %d nodes have no generated code and run the reference kernels on one thread: %s\n", n, kinds);
}

int bn_cli_backend(const char *cmd, const char *name, const bn_backend **out) {
  if ((*out = bn_backend_find(name))) return 0;
  return bn_cli_usage_error(cmd, "--backend must be one of %s, got '%s'", bn_backend_names(), name);
}

int bn_cli_kv(const char *cmd, const char *name, bn_dtype *out) {
  if (!strcmp(name, "f32") || !strcmp(name, "f16")) return *out = name[1] == '1' ? BN_DT_F16 : BN_DT_F32, 0;
  return bn_cli_usage_error(cmd, "--kv must be f32 or f16, got '%s'", name);
}

void bn_cli_print_backends(FILE *fp) {
  fprintf(fp, "  Backends (--backend NAME; default %s):\n", bn_backend_default()->name);
  for (int i = 0; i < bn_backend_count(); i++)
    fprintf(fp, "    %-6s %s\n", bn_backend_at(i)->name, bn_backend_at(i)->about);
}

int bn_cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
  char *end;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || !*s || *end || v < lo || v > hi)
    return bn_cli_usage_error(cmd, "%s needs an integer in %ld..%ld, got '%s'", opt, lo, hi, s ? s : "");
  *out = v;
  return 0;
}

int bn_cli_float(const char *cmd, const char *opt, const char *s, double *out) {
  char *end;
  double v = s ? strtod(s, &end) : 0;
  if (!s || !*s || *end || v != v) return bn_cli_usage_error(cmd, "%s needs a number, got '%s'", opt, s ? s : "");
  *out = v;
  return 0;
}

bn_status bn_cli_load(const char *path, bn_source *f, bn_model *m, bn_error *err) {
  return bn_source_import(path, f, m, err);
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    fputs(USAGE, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
#ifdef BN_WITH_ASMJIT
  extern const bn_backend bn_backend_asmjit;
  bn_backend_register(&bn_backend_asmjit, NULL); /* a library of its own (CMakeLists.txt says why): auto's first member */
#endif
  extern const bn_backend bn_backend_metal, bn_backend_metal_sim;
  bn_backend_register(&bn_backend_metal, NULL); /* metal/: a layer above codegen's registry */
  bn_backend_register(&bn_backend_metal_sim, NULL);
  if (!strcmp(argv[1], "--version")) return version();
  static const struct {
    const char *name;
    int (*fn)(int, char **);
  } cmds[] = {{"inspect", bn_cmd_inspect}, {"ir", bn_cmd_ir},     {"synth", bn_cmd_synth},
              {"run", bn_cmd_run},         {"eval", bn_cmd_eval},   {"compile", bn_cmd_compile},
              {"bench", bn_cmd_bench},     {"perplexity", bn_cmd_perplexity}, {"trust", bn_cmd_trust},
              {"serve", bn_cmd_serve}};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (!strcmp(argv[1], cmds[i].name)) return bn_cli_check_env() ? 2 : cmds[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "bnc: unknown command '%s' (see bnc --help)\n", argv[1]);
  return 2;
}
