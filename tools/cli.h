/* Shared by the bnc subcommands. */
#ifndef BN_CLI_H
#define BN_CLI_H

#include <stdio.h>

#include "../frontend/gguf.h"
#include "../frontend/import.h"
#include "../runtime/exec.h"
#include "../runtime/plan.h"

/* The prompt chunk a plan serves when --batch is not given: 128 tokens, the
 * weights reused by as many (the arena grows to 16 MiB; against 32: bench/README.md). */
enum { BN_CLI_BATCH = 128 };

int bn_cmd_inspect(int argc, char **argv);
int bn_cmd_ir(int argc, char **argv);
int bn_cmd_synth(int argc, char **argv);
int bn_cmd_run(int argc, char **argv);
int bn_cmd_eval(int argc, char **argv);
int bn_cmd_compile(int argc, char **argv);
int bn_cmd_bench(int argc, char **argv);
int bn_cmd_perplexity(int argc, char **argv);
int bn_cmd_serve(int argc, char **argv);

/* Prints "bnc: <message>" to stderr and returns 1 (the exit status). */
int bn_cli_fail(const bn_error *err);
int bn_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "  Passes, in order: ..." from the pipeline itself (for --help). */
void bn_cli_print_passes(FILE *fp);
/* Opens a GGUF or a Hugging Face directory and imports it. */
bn_status bn_cli_load(const char *path, bn_source *f, bn_model *m, bn_error *err);

/* A model ready to run: from a .bnplan, or a GGUF or Hugging Face directory compiled in memory. */
typedef struct {
  int is_plan;
  bn_plan plan;
  bn_source f;
  bn_model gm;
  bn_memplan mp;
  bn_model *m;    /* the model to run */
  const char *target; /* the plan's target, or NULL (native) */
  const bn_objcode *code; /* the plan's object code, or NULL */
  bn_memplan *mem;
} bn_cli_model;

/* env.c: the environment, mapped onto options (the libraries read none): a value bnc does not
 * know is an error (2); BNC_ISA, the instruction set asked for (NULL: the host's best); BNC_ISA and
 * BNC_QKV_PHASE into executor options; BNC_MMAP=1; the kernel cache BNC_CACHE_DIR (or the XDG
 * default) names (NULL: off or refused, said in one line). */
int bn_cli_check_env(void);
const char *bn_cli_isa(void);
/* A backend opened for target (NULL: native) with BNC_ISA and the kernel cache. */
bn_status bn_cli_codegen(const bn_backend *be, const char *target, bn_codegen **out, bn_error *err);
void bn_cli_exec_env(bn_exec_opts *o);
int bn_cli_map_plans(void);
/* BNC_BENCH_DELAY_US: a slowdown bench plants per token (its tests' only; 0: none). */
double bn_cli_bench_delay_us(void);
/* BNC_SERVE_DELAY_US: a pause serve's engine takes after each step (its tests' only: a fast model made slow). */
double bn_cli_serve_delay_us(void);
/* Whether to draw progress lines: standard error is a terminal. */
int bn_cli_progress(void);
/* A bench baseline's file: NAME.json in BNC_BENCH_DIR, else $XDG_DATA_HOME/bnc/bench, else
 * ~/.local/share/bnc/bench (made if absent); -1: not a name (1..64 of [A-Za-z0-9._-], not first '.'). */
int bn_cli_bench_path(const char *name, char *path, size_t cap);
const bn_kcache *bn_cli_cache(void);

/* keys.c: the user's key directory (NULL: no HOME), a plan's object code if it may run
 * (else NULL, said in one line), the signing key (made on first use). */
const char *bn_cli_key_dir(void);
const bn_objcode *bn_cli_trusted_code(const bn_plan *p);
bn_status bn_cli_signing_key(uint8_t sk[BN_SK_BYTES], bn_error *err);
int bn_cmd_trust(int argc, char **argv);

bn_status bn_cli_open_model(const char *path, int n_batch, bn_cli_model *cm, bn_error *err);
void bn_cli_close_model(bn_cli_model *cm);
/* The executor options of a command: backend, threads (bn_cli_threads), the K/V cache type, cm's
 * target and trusted object code, the kernel cache and the environment's switches (bn_cli_exec_env). */
bn_exec_opts bn_cli_exec_opts(const bn_backend *backend, long threads, bn_dtype kv, const bn_cli_model *cm);
/* The threads to run for -t asked: at most the CPUs this process may use (said once, on stderr). */
int bn_cli_threads(long asked);
/* One line on stderr when some nodes run the reference kernels although generated code was asked for. */
void bn_cli_say_fallbacks(const bn_exec *e, const bn_backend *backend);
/* --backend NAME, the same for every command (a name of the registry); on error prints and returns nonzero. */
int bn_cli_backend(const char *cmd, const char *name, const bn_backend **out);
/* --kv f32|f16, the K/V cache's element type, the same for every command; on error prints and returns nonzero. */
int bn_cli_kv(const char *cmd, const char *name, bn_dtype *out);
/* The registered backends, a line each, for --help. */
void bn_cli_print_backends(FILE *fp);
/* Is opt one of the space-separated options of list? */
int bn_cli_has(const char *list, const char *opt);
/* Parses an integer/float option value; on error prints and returns nonzero. */
int bn_cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int bn_cli_float(const char *cmd, const char *opt, const char *s, double *out);

#endif
