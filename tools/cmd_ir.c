/* bnc ir: print the graph IR of a GGUF model or a .bnir file. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#include "../ir/irparse.h"
#include "../frontend/synth.h"
#include "../metal/emit.h"
#include "../passes/pass.h"
#include "cli.h"

static const char HELP[] =
    "usage: bnc ir FILE [-o OUT] [--after=PASS|all] [--dot|--svg [--layers A-B]] [--emit=FORM [--backend NAME]]\n"
    "       bnc ir --shape tiny|large|3b|2b4t [--arch ARCH] [--type tq1_0|tq2_0|i2_s] [-o OUT]\n"
    "  FILE is a GGUF model (imported), a .bnir text file (parsed and verified) or a .bnplan (its compiled\n"
    "  graph; --emit prints its kernels for the plan's target, e.g. the 1.6-bit ones of --weights t1).\n"
    "  --shape prints the graph of a `bnc synth` shape without any file (weights have no data).\n"
    "  --after=PASS  run the compiler pipeline and print the IR after PASS (parseable);\n"
    "  --after=all   print it after every pass, each graph headed by a '# after PASS' comment.\n"
    "  --dot          print the graph as Graphviz DOT instead: a box per node coloured by the kind of its op,\n"
    "                 fused nodes as clusters holding their bodies, edges labelled with their types\n"
    "  --svg          the same drawn by Graphviz's dot program as SVG (apt-get install graphviz)\n"
    "  --layers A-B   with --dot/--svg: show layers A..B (or one, N); the others collapse into a box each run\n"
    "  --emit=FORM    compile, then print every generated kernel the model uses (one per unique kernel,\n"
    "                 with the nodes that share it) in a form the backend prints: llvm (optimized LLVM\n"
    "                 IR) or asm (assembly) for the llvm backend; --backend picks it (default: %s)\n"
    "  --emit=metal   compile, then print the model's Metal library: the MSL of every kernel it\n"
    "                 dispatches (docs/metal.md), with the dispatch table as a comment\n"
    "  Prints the textual IR, which `bnc ir` reads back: print -> parse -> print is byte-identical.\n";

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

typedef struct {
  FILE *fp;
  const char *after;
  int ok;
  int dot, lo, hi; /* --dot or --svg: DOT, layers lo..hi expanded (lo > hi: all) */
} dump_ctx;

static char *text_of(const dump_ctx *d, const bn_graph *g) { return d->dot ? bn_graph_dot(g, d->lo, d->hi) : bn_graph_print(g); }

static void dump(const char *pass, const bn_graph *g, double seconds, void *user) {
  dump_ctx *d = user;
  (void)seconds;
  if (strcmp(d->after, "all") && strcmp(d->after, pass)) return;
  char *text = text_of(d, g);
  if (!strcmp(d->after, "all")) fprintf(d->fp, "%s after %s\n", d->dot ? "//" : "#", pass);
  d->ok = d->ok && text && fputs(text, d->fp) >= 0;
  free(text);
}

/* Graphviz's dot rendering what is written to the returned stream as SVG, into out (NULL: stdout);
 * run without a shell, so no name is interpreted. NULL: dot could not be started. */
static FILE *svg_pipe(const char *out, pid_t *pid) {
  int fd[2];
  if (pipe(fd)) return NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fd[0], 0);
  posix_spawn_file_actions_addclose(&fa, fd[1]);
  if (out) posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0666);
  char *args[] = {"dot", "-Tsvg", NULL};
  int bad = posix_spawnp(pid, "dot", &fa, NULL, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fd[0]);
  if (bad) return close(fd[1]), NULL;
  return fdopen(fd[1], "w");
}

/* Every kernel of the compiled graph g that cg builds, once per key, with the nodes that use it, in
 * the form emit names; 1 if all was written. */
static int emit_kernels(FILE *fp, const bn_graph *g, bn_codegen *cg, const char *emit, bn_error *err) {
  int ok = 1;
  bn_kkey *seen = calloc((size_t)g->n_nodes + 1, sizeof *seen);
  int n_seen = 0;
  for (int i = 0; i < g->n_nodes && ok && seen; i++) {
    bn_kkey key;
    if (!bn_kernel_select(g, i, &key) || !bn_codegen_supports(cg, &key)) continue;
    int dup = 0;
    for (int k = 0; k < n_seen; k++) dup |= bn_kkey_eq(&seen[k], &key);
    if (dup) continue;
    seen[n_seen++] = key;
    char name[96];
    bn_kkey_describe(&key, name, sizeof name);
    fprintf(fp, "%s kernel %s, used by:", !strcmp(emit, "asm") ? "#" : ";", name);
    for (int k = i; k < g->n_nodes; k++) {
      bn_kkey other;
      if (bn_kernel_select(g, k, &other) && bn_kkey_eq(&other, &key)) fprintf(fp, " %%%s", g->values[g->nodes[k].out].name);
    }
    fprintf(fp, "\n");
    char *text = bn_codegen_text(cg, &key, emit, err);
    ok = text && fputs(text, fp) >= 0;
    free(text);
  }
  ok = ok && seen != NULL;
  free(seen);
  return ok;
}

/* The Metal library of g (planned as mp), then its dispatch table as a comment; 1 if all was written. */
static int emit_metal(FILE *fp, const bn_graph *g, const bn_memplan *mp, bn_error *err) {
  bn_mtl_lib lib;
  if (bn_metal_build(g, mp, BN_DT_F32, &lib, err)) return 0;
  static const char *space[] = {"step", "arena", "weight", "tokens", "kcache", "vcache", "rope"};
  int ok = fputs(lib.source, fp) >= 0 && fprintf(fp, "\n/* dispatch table: %d dispatches a step\n", lib.n_steps) > 0;
  for (int i = 0; ok && i < lib.n_steps; i++) {
    const bn_mtl_dispatch *d = &lib.steps[i];
    const bn_mtl_kernel *k = &lib.kernels[d->kernel];
    ok = fprintf(fp, " * %%%s: %s grid %u x ceil(T/%u) groups of %u threads, %u bytes threadgroup,", g->values[g->nodes[d->node].out].name,
                 k->name, k->groups_x, k->tok_tile, k->threads, k->tg_bytes) > 0;
    if (ok && d->many >= 0)
      ok = fprintf(fp, " (from %u tokens: %s)", lib.kernels[d->many].tok_tile, lib.kernels[d->many].name) > 0;
    for (int b = 1; ok && b < d->n_bind; b++) {
      const bn_mtl_bind *x = &d->bind[b];
      ok = x->space == BN_MTL_ARENA    ? fprintf(fp, " %d:arena+%lld", b, (long long)x->offset) > 0
           : x->space == BN_MTL_WEIGHT ? fprintf(fp, " %d:%%%s", b, g->values[g->nodes[d->node].in[x->index]].name) > 0
                                       : fprintf(fp, " %d:%s%d", b, space[x->space], x->index) > 0;
    }
    ok = ok && fputc('\n', fp) != EOF;
  }
  ok = ok && fputs(" */\n", fp) >= 0;
  bn_metal_lib_free(&lib);
  return ok;
}

/* Where the IR goes: the file out (created or truncated), else standard output; NULL with the reason. */
static FILE *open_out(const char *out, bn_error *err) {
  FILE *fp = out ? fopen(out, "wb") : stdout;
  if (!fp) bn_fail(err, BN_E_IO, "ir: %s: cannot write: %s", out, strerror(errno));
  return fp;
}

int bn_cmd_ir(int argc, char **argv) {
  const char *in = NULL, *out = NULL, *after = NULL, *emit = NULL;
  int dot = 0, svg = 0, lo = 1, hi = 0;
  const bn_backend *backend = bn_backend_default();
  bn_synth_params sp = {NULL, NULL, BN_DT_I2_S, BN_DT_F16, 1, 0, NULL, 0};
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
      return printf(HELP, bn_backend_default()->name), bn_cli_print_backends(stdout), bn_cli_print_passes(stdout), 0;
    if (!strcmp(argv[i], "-o") && v) out = argv[++i];
    else if (!strcmp(argv[i], "--shape") && v) {
      if (!(sp.shape = bn_synth_find_shape(argv[++i])))
        return bn_cli_usage_error("ir", "unknown --shape '%s' (%s)", v, bn_synth_shape_names());
    } else if (!strncmp(argv[i], "--emit=", 7)) emit = argv[i] + 7;
    else if (!strcmp(argv[i], "--dot")) dot = 1;
    else if (!strcmp(argv[i], "--svg")) dot = svg = 1;
    else if (!strcmp(argv[i], "--layers") && v) {
      char *end;
      long a = strtol(argv[++i], &end, 10), b = *end == '-' ? strtol(end + 1, &end, 10) : a;
      if (!*v || *end || a < 0 || b < a || b > 100000)
        return bn_cli_usage_error("ir", "--layers needs N or A-B (0 <= A <= B), got '%s'", v);
      lo = (int)a, hi = (int)b;
    }
    else if (!strcmp(argv[i], "--backend") && v) {
      if (bn_cli_backend("ir", argv[++i], &backend)) return 2;
    } else if (!strncmp(argv[i], "--after=", 8)) {
      after = argv[i] + 8;
      if (strcmp(after, "all") && !bn_pass_find(after)) return bn_cli_usage_error("ir", "no pass named '%s'", after);
    } else if (!strcmp(argv[i], "--arch") && v) sp.arch = argv[++i];
    else if (!strcmp(argv[i], "--type") && v) {
      int t = bn_dtype_from_name(v, strlen(v));
      if (t < 0 || !bn_dtype_table[t].ternary) return bn_cli_usage_error("ir", "--type '%s' is not ternary", v);
      sp.ternary = (bn_dtype)t;
      i++;
    }
    else if (argv[i][0] != '-' && !in) in = argv[i];
    else return bn_cli_usage_error("ir", argv[i][0] == '-' ? "unknown option '%s'" : "unexpected argument '%s'", argv[i]);
  }
  if (!in == !sp.shape) return bn_cli_usage_error("ir", "give one FILE or --shape");
  int metal = emit && !strcmp(emit, "metal");
  if (emit && !metal && (!backend->emits || !bn_cli_has(backend->emits, emit)))
    return bn_cli_usage_error("ir", "--emit must be %s for the %s backend, got '%s'",
                              backend->emits ? backend->emits : "(none: it prints no kernels)", backend->name, emit);
  bn_error err = {0};
  bn_source f = {0};
  bn_model m = {0};
  bn_graph *g = &m.graph;
  bn_status st;
  if (sp.shape) {
    bn_tensor_src src = bn_synth_tensor_src(&sp);
    bn_synth_hparams(&sp, &m.hp);
    st = bn_import_graph(&m.hp, &src, g, &err);
  } else if (bn_plan_sniff(in)) {
    if (svg) return bn_cli_usage_error("ir", "--svg takes a GGUF or .bnir (for a plan: --dot, then dot -Tsvg)");
    if (after) return bn_cli_usage_error("ir", "--after takes a GGUF or .bnir: a plan is compiled already");
    bn_plan plan;
    bn_codegen *cg = NULL;
    if ((st = bn_plan_open(&plan, in, &err))) return bn_cli_fail(&err);
    FILE *fp = open_out(out, &err);
    if (!fp) return bn_plan_close(&plan), bn_cli_fail(&err);
    int ok = 1;
    if (metal) ok = emit_metal(fp, &plan.model.graph, &plan.mem, &err);
    else if (emit) { /* the plan's kernels, for its target */
      if (!(st = bn_cli_codegen(backend, plan.target, &cg, &err))) ok = emit_kernels(fp, &plan.model.graph, cg, emit, &err);
      bn_codegen_close(cg);
    } else {
      char *text = text_of(&(dump_ctx){.dot = dot, .lo = lo, .hi = hi}, &plan.model.graph);
      ok = text && fputs(text, fp) >= 0;
      free(text);
    }
    if (out) ok = fclose(fp) == 0 && ok;
    bn_plan_close(&plan);
    if (st) return bn_cli_fail(&err);
    if (!ok) fprintf(stderr, "bnc: ir: %s: cannot write%s%s\n", out ? out : "standard output", err.msg[0] ? ": " : "", err.msg);
    return ok ? 0 : 1;
  } else st = ends_with(in, ".bnir") ? bn_ir_parse_file(in, g, &err) : bn_cli_load(in, &f, &m, &err);
  if (st) return bn_cli_fail(&err);
  pid_t dot_pid = 0;
  FILE *fp = svg ? svg_pipe(out, &dot_pid) : open_out(out, &err);
  if (!fp) { /* open_out said why */
    if (svg) bn_fail(&err, BN_E_UNSUPPORTED, "--svg needs Graphviz's dot program (apt-get install graphviz), or use --dot");
    bn_model_free(&m);
    bn_source_close(&f);
    return bn_cli_fail(&err);
  }
  int ok = 1;
  if (emit) {
    bn_pass_opts po = {.max_tokens = 32, .verify = 1};
    bn_memplan mp;
    bn_codegen *cg = NULL;
    if ((st = bn_pass_run_pipeline(g, &po, &mp, NULL, NULL, &err)) ||
        (!metal && (st = bn_cli_codegen(backend, NULL, &cg, &err)))) {
      if (out) fclose(fp);
      bn_model_free(&m);
      bn_source_close(&f);
      return bn_cli_fail(&err);
    }
    ok = metal ? emit_metal(fp, g, &mp, &err) : emit_kernels(fp, g, cg, emit, &err);
    bn_memplan_free(&mp);
    bn_codegen_close(cg);
  } else if (after) {
    dump_ctx d = {fp, after, 1, dot, lo, hi};
    bn_pass_opts po = {.max_tokens = 32, .verify = 1};
    bn_memplan mp;
    if ((st = bn_pass_run_pipeline(g, &po, &mp, dump, &d, &err))) {
      if (out) fclose(fp);
      bn_model_free(&m);
      bn_source_close(&f);
      return bn_cli_fail(&err);
    }
    bn_memplan_free(&mp);
    ok = d.ok;
  } else {
    char *text = text_of(&(dump_ctx){.dot = dot, .lo = lo, .hi = hi}, g);
    ok = text && fputs(text, fp) >= 0;
    free(text);
  }
  if (out || svg) ok = fclose(fp) == 0 && ok;
  int status = 0;
  if (svg && (waitpid(dot_pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))) {
    ok = 1; /* said below */
    bn_fail(&err, BN_E_IO, "Graphviz's dot failed on the graph (bnc ir --dot writes what it read)");
  }
  bn_model_free(&m);
  bn_source_close(&f);
  if (!ok) return bn_fail(&err, BN_E_IO, "%s: cannot write", out ? out : "stdout"), bn_cli_fail(&err);
  return err.code ? bn_cli_fail(&err) : 0;
}
