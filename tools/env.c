/* The environment switches of bnc and the machine's CPUs, mapped onto library
 * options here: the libraries themselves read no environment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../codegen/kcache.h"
#include <sys/stat.h>
#include <unistd.h>

#include "../runtime/pool.h"
#include "cli.h"

int bn_cli_has(const char *list, const char *opt) { return bn_words_has(list, opt); }

static const struct {
  const char *name, *values;
} VARS[] = {{"BNC_ISA", "avx2 avx512"}, {"BNC_QKV_PHASE", "0 1"}, {"BNC_MMAP", "0 1"},
             {"BNC_BENCH_DELAY_US", NULL}, {"BNC_SERVE_DELAY_US", NULL}}; /* NULL: microseconds, 0..1000000 */

static int microseconds(const char *v) {
  char *end;
  long x = strtol(v, &end, 10);
  return *v && !*end && x >= 0 && x <= 1000000;
}

int bn_cli_check_env(void) {
  for (size_t i = 0; i < sizeof VARS / sizeof *VARS; i++) {
    const char *v = getenv(VARS[i].name);
    if (v && !VARS[i].values && !microseconds(v)) {
      fprintf(stderr, "bnc: %s=%s is not a number of microseconds (0..1000000)\n", VARS[i].name, v);
      return 2;
    }
    if (v && VARS[i].values && !bn_cli_has(VARS[i].values, v)) {
      fprintf(stderr, "bnc: %s=%s is unknown (%s)\n", VARS[i].name, v, VARS[i].values);
      return 2;
    }
  }
  return 0;
}

const char *bn_cli_isa(void) { return getenv("BNC_ISA"); } /* bn_cli_check_env knows its values */

double bn_cli_bench_delay_us(void) {
  const char *v = getenv("BNC_BENCH_DELAY_US");
  return v ? strtod(v, NULL) : 0;
}

double bn_cli_serve_delay_us(void) {
  const char *v = getenv("BNC_SERVE_DELAY_US");
  return v ? strtod(v, NULL) : 0;
}

int bn_cli_progress(void) { return isatty(2); }

int bn_cli_bench_path(const char *name, char *path, size_t cap) {
  size_t n = strlen(name);
  if (!n || n > 64 || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n || name[0] == '.')
    return -1;
  const char *env = getenv("BNC_BENCH_DIR"), *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
  char dir[4096];
  if (env && *env) snprintf(dir, sizeof dir, "%s", env);
  else if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/bnc/bench", xdg);
  else if (home && *home) snprintf(dir, sizeof dir, "%s/.local/share/bnc/bench", home);
  else snprintf(dir, sizeof dir, ".bnc-bench");
  for (char *p = dir + 1; *p; p++) /* mkdir -p */
    if (*p == '/') *p = 0, mkdir(dir, 0755), *p = '/';
  mkdir(dir, 0755);
  snprintf(path, cap, "%s/%s.json", dir, name);
  return 0;
}

bn_status bn_cli_codegen(const bn_backend *be, const char *target, bn_codegen **out, bn_error *err) {
  bn_backend_opts o = {.target = target, .isa = bn_cli_isa(), .cache = bn_cli_cache()};
  return bn_codegen_open(be, &o, out, err);
}

void bn_cli_exec_env(bn_exec_opts *o) {
  const char *qkv = getenv("BNC_QKV_PHASE");
  o->isa = bn_cli_isa();
  o->no_qkv_phase = qkv && !strcmp(qkv, "0");
}

int bn_cli_threads(long asked) {
  static int said;
  int cpus = bn_pool_cpus();
  if (asked <= cpus) return (int)asked;
  if (!said++)
    fprintf(stderr, "bnc: -t %ld exceeds the %d CPUs this process may use: running %d threads (more would only take "
            "turns on them, meeting at every kernel's barrier)\n", asked, cpus, cpus);
  return cpus;
}

bn_exec_opts bn_cli_exec_opts(const bn_backend *backend, long threads, bn_dtype kv, const bn_cli_model *cm) {
  /* a Metal plan's graph and TP2 weights run on the CPU backends too, at their native target */
  const char *target = cm->target && !strcmp(cm->target, "metal") && backend && !bn_cli_has(backend->targets, "metal")
                           ? NULL : cm->target;
  bn_exec_opts o = {.backend = backend, .threads = bn_cli_threads(threads), .kv = kv, .target = target,
                    .code = cm->code, .cache = bn_cli_cache(), .device = cm->is_plan ? cm->plan.device : NULL,
                    .device_bytes = cm->is_plan ? cm->plan.device_bytes : 0};
  bn_cli_exec_env(&o);
  return o;
}

int bn_cli_map_plans(void) {
  const char *v = getenv("BNC_MMAP");
  return v && !strcmp(v, "1");
}

const bn_kcache *bn_cli_cache(void) {
  static bn_kcache cache;
  static int state; /* 0: not yet, 1: on, 2: off */
  if (state) return state == 1 ? &cache : NULL;
  state = 2;
  const char *env = getenv("BNC_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  char dir[4096];
  if (env && (!*env || !strcmp(env, "off"))) return NULL;
  if (env) snprintf(dir, sizeof dir, "%s", env);
  else if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/bnc/kernels", xdg);
  else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/bnc/kernels", home);
  else return NULL;
  bn_error err;
  if (bn_kcache_open(&cache, dir, &err)) {
    fprintf(stderr, "bnc: %s: kernel cache off\n", err.msg);
    return NULL;
  }
  state = 1;
  return &cache;
}
