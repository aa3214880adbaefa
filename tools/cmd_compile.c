/* bnc compile: GGUF -> optimized IR -> .bnplan. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../codegen/tune.h"
#include "../metal/emit.h"
#include "../passes/pass.h"
#include "../runtime/session.h"
#include "cli.h"

static const char HELP[] =
    "usage: bnc compile MODEL.gguf -o OUT.bnplan [--target T] [--backend NAME] [--tune|--lut] [--aot] [--batch N]\n"
    "                   [--weights t2|t1] [--head exact|q8_0|q6_k] [--dump-after=PASS|all] [--time-passes]\n"
    "  Imports the model, runs the pass pipeline (verifying after every pass), plans memory and writes\n"
    "  a plan that bnc run / bnc eval / the C API execute. The same input and options give the same bytes\n"
    "  (but --tune, whose choices are measurements).\n"
    "  --target T         the instruction set of the kernels, one of the backend's targets; llvm's: native\n"
    "                     (default: the best this CPU has when the plan runs), x86-64-v3 (AVX2) or\n"
    "                     x86-64-v4 (AVX-512 VNNI); or metal: the plan also carries its Metal library (MSL)\n"
    "                     and dispatch table for Apple GPUs (--backend metal on macOS, metal-sim anywhere;\n"
    "                     the CPU backends run it as native; docs/metal.md)\n"
    "  --backend NAME     the backend whose targets, tuning and object code the plan gets (below)\n"
    "  --tune             time the packed, lookup-table and 1.6-bit matmul kernels of every matmul shape\n"
    "                     on this machine (one thread; pp128 + tg64's work) and store each shape's weights\n"
    "                     in the layout of the fastest: the choice is recorded in the plan (tl2, tp1 weights)\n"
    "  --lut              use the lookup-table kernels for every matmul whose rows are a multiple of 16\n"
    "  --aot              also store the kernels' object code, compiled for the target, in the plan, signed\n"
    "                     with your key (made on first use; see bnc trust --help): a host whose user trusts\n"
    "                     the key and whose CPU has the target's features loads it instead of generating code\n"
    "  --weights t1       store the ternary matmul weights at 1.6 bits (TP1: five trits a byte, exact, the\n"
    "                     same results; 17-20 % fewer of their bytes for rows of 1280 or more, decode\n"
    "                     faster with AVX-512 VNNI, slower on AVX2: docs/t1.md); t2 (the default): 2\n"
    "                     bits (TP2). Shapes --lut gives the lookup-table layout keep it; --tune chooses\n"
    "  --batch N          the largest step the memory plan serves: the prompt chunk (default 128)\n"
    "  --head q8_0|q6_k   store the output projection's weights as Q8_0 or Q6_K (lossy: decode reads fewer\n"
    "                     bytes; a tied embedding keeps its exact table for the gather); the summary line\n"
    "                     gives the head's bytes before and after and its relative rms error; exact (the\n"
    "                     default) keeps the file's weights. q6_k is 23 % smaller than q8_0, with 3.5x its\n"
    "                     error, and not faster: its kernel is bound by float work (docs/passes.md)\n"
    "  --dump-after=PASS  write the IR after PASS to OUT.PASS.bnir (all: after every pass)\n"
    "  --time-passes      print each pass's time\n";

typedef struct {
  const char *out, *dump;
  int time, aot, tune, lut, progress;
  int failed;
} hook_ctx;

static void hook(const char *pass, const bn_graph *g, double seconds, void *user) {
  hook_ctx *h = user;
  if (h->progress) fprintf(stderr, "\r\033[K  compile: after %s, %d nodes", pass, g->n_nodes);
  if (h->time) fprintf(stderr, "  %-18s %9.3f ms  %4d nodes\n", pass, seconds * 1e3, g->n_nodes);
  if (!h->dump || (strcmp(h->dump, "all") && strcmp(h->dump, pass))) return;
  char path[4096];
  snprintf(path, sizeof path, "%s.%s.bnir", h->out, pass);
  char *text = bn_graph_print(g);
  FILE *fp = text ? fopen(path, "wb") : NULL;
  int ok = fp && fputs(text, fp) >= 0;
  if (fp) ok = fclose(fp) == 0 && ok;
  free(text);
  if (!ok) {
    fprintf(stderr, "bnc: %s: cannot write\n", path);
    h->failed = 1;
  } else fprintf(stderr, "wrote %s\n", path);
}

/* The bytes of the packed ternary weights (what decode reads of them a token). */
static double ternary_bytes(const bn_graph *g) {
  double b = 0;
  for (int i = 0; i < g->n_values; i++) {
    const bn_value *v = &g->values[i];
    if (v->kind == BN_VAL_WEIGHT && (v->dtype == BN_DT_TP2 || v->dtype == BN_DT_TP1 || v->dtype == BN_DT_TL2))
      b += (double)bn_value_bytes(v->dtype, &v->shape, 0);
  }
  return b;
}

/* The bytes of the output projection's weights (what decode reads of the head a token). */
static double head_bytes(const bn_graph *g) {
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == BN_OP_OUTPUT_PROJ) {
      const bn_value *w = &g->values[g->nodes[i].in[1]];
      return (double)bn_value_bytes(w->dtype, &w->shape, 0);
    }
  return 0;
}

/* Each matmul shape's weight layout, then relayout-lut and relayout-t1: --tune measures the packed, lookup-table
 * and 1.6-bit kernels and takes the fastest; else lut: the tables where rows are whole blocks of 16, and t1
 * (--weights t1): 1.6 bits for the others. */
static bn_status choose_layouts(bn_graph *g, const bn_backend *be, const char *target, int batch, int tune, int lut, int t1,
                                bn_error *err) {
  int64_t *shapes = malloc((size_t)g->n_nodes * 2 * sizeof *shapes), *pick[BN_LAYOUTS] = {NULL};
  int n_pick[BN_LAYOUTS] = {0}, fail = !shapes;
  for (int l = 0; l < BN_LAYOUTS; l++) fail |= !(pick[l] = malloc((size_t)g->n_nodes * 2 * sizeof *shapes));
  bn_status st = fail ? bn_fail(err, BN_E_NOMEM, "out of memory") : BN_OK;
  int n = st ? 0 : bn_pass_matmul_shapes(g, shapes);
  bn_codegen *jit = NULL;
  if (!st && tune) st = bn_cli_codegen(be, target, &jit, err);
  if (!st && tune)
    fprintf(stderr, "tune: %s %s, 1 thread, us per call (decode: 1 token; prefill: %d tokens; -: no kernel)\n"
            "  %6s %6s  %9s %9s %9s  %9s %9s %9s  choice\n", be->name, bn_codegen_get_info(jit).isa, batch, "K", "N",
            "packed tg", "lut tg", "t1 tg", "packed pp", "lut pp", "t1 pp");
  for (int k = 0; k < n && !st; k++) {
    int64_t K = shapes[2 * k], N = shapes[2 * k + 1];
    int use = lut && N % 16 == 0 ? BN_LAYOUT_TL2 : t1 ? BN_LAYOUT_TP1 : BN_LAYOUT_TP2;
    if (tune) {
      bn_tune r;
      if ((st = bn_tune_matmul(jit, K, N, batch, &r, err))) break;
      use = r.best;
      char cell[2 * BN_LAYOUTS][16];
      for (int c = 0; c < 2 * BN_LAYOUTS; c++) {
        double us = c < BN_LAYOUTS ? r.decode_us[c] : r.prefill_us[c - BN_LAYOUTS];
        snprintf(cell[c], sizeof cell[c], us > 0 ? "%.1f" : "-", us);
      }
      fprintf(stderr, "  %6lld %6lld  %9s %9s %9s  %9s %9s %9s  %s\n", (long long)K, (long long)N, cell[0], cell[1], cell[2],
              cell[3], cell[4], cell[5], bn_layout_name[use]);
    }
    pick[use][2 * n_pick[use]] = K, pick[use][2 * n_pick[use] + 1] = N, n_pick[use]++;
  }
  bn_codegen_close(jit);
  bn_pass_opts po = {.max_tokens = batch, .verify = 1, .lut = pick[BN_LAYOUT_TL2], .n_lut = n_pick[BN_LAYOUT_TL2],
                     .t1 = pick[BN_LAYOUT_TP1], .n_t1 = n_pick[BN_LAYOUT_TP1]};
  if (!st) st = bn_pass_relayout_lut(g, &po, err);
  if (!st) st = bn_pass_relayout_t1(g, &po, err);
  free(shapes);
  for (int l = 0; l < BN_LAYOUTS; l++) free(pick[l]);
  return st;
}

int bn_cmd_compile(int argc, char **argv) {
  const char *in = NULL;
  long batch = BN_CLI_BATCH;
  const char *target = "native";
  const bn_backend *backend = bn_backend_default();
  const char *head = "exact", *weights = "t2";
  hook_ctx h = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h"))
      return fputs(HELP, stdout), bn_cli_print_backends(stdout), bn_cli_print_passes(stdout), 0;
    if (!strcmp(a, "-o") && v) h.out = argv[++i];
    else if (!strcmp(a, "--target") && v) target = argv[++i];
    else if (!strncmp(a, "--target=", 9)) target = a + 9;
    else if (!strcmp(a, "--backend") && v) {
      if (bn_cli_backend("compile", argv[++i], &backend)) return 2;
    }
    else if (!strcmp(a, "--batch") && v) {
      if (bn_cli_int("compile", a, argv[++i], 1, 4096, &batch)) return 2;
    } else if (!strncmp(a, "--dump-after=", 13)) {
      h.dump = a + 13;
      if (strcmp(h.dump, "all") && !bn_pass_find(h.dump)) return bn_cli_usage_error("compile", "no pass named '%s'", h.dump);
    } else if (!strcmp(a, "--time-passes")) h.time = 1;
    else if (!strcmp(a, "--aot")) h.aot = 1;
    else if (!strcmp(a, "--tune")) h.tune = 1;
    else if (!strcmp(a, "--lut")) h.lut = 1;
    else if (!strcmp(a, "--weights") && v) {
      weights = argv[++i];
      if (strcmp(weights, "t2") && strcmp(weights, "t1")) return bn_cli_usage_error("compile", "--weights must be t2 or t1, got '%s'", weights);
    } else if (!strcmp(a, "--head") && v) {
      head = argv[++i];
      if (strcmp(head, "exact") && strcmp(head, "q8_0") && strcmp(head, "q6_k"))
        return bn_cli_usage_error("compile", "--head must be exact, q8_0 or q6_k, got '%s'", head);
    } else if (a[0] != '-' && !in) in = a;
    else return bn_cli_usage_error("compile", a[0] == '-' ? "unknown option '%s'" : "unexpected argument '%s'", a);
  }
  if (!in || !h.out) return bn_cli_usage_error("compile", "needs MODEL.gguf and -o OUT.bnplan");
  int metal = !strcmp(target, "metal"); /* the Metal library, made by metal/ whatever --backend says */
  if (metal && (h.aot || h.tune || h.lut || !strcmp(weights, "t1")))
    return bn_cli_usage_error("compile", "--target metal stores MSL for TP2 weights: it takes no --aot, --tune, --lut "
                              "or --weights t1");
  if (!metal && !bn_cli_has(backend->targets, target))
    return bn_cli_usage_error("compile", "--target must be one of %s for the %s backend, got '%s'", backend->targets,
                              backend->name, target);
  if (bn_plan_sniff(in)) {
    fprintf(stderr, "bnc: %s is a bnc plan already: compile reads a GGUF or a Hugging Face model directory\n", in);
    return 1;
  }
  bn_error err = {0};
  bn_source f;
  bn_model m;
  double t0 = bn_now();
  if (bn_cli_load(in, &f, &m, &err)) return bn_cli_fail(&err);
  double head_error = 0, head_before = head_bytes(&m.graph);
  bn_pass_opts po = {.max_tokens = (int)batch, .verify = 1, .head = head, .head_error = &head_error};
  bn_memplan mp;
  if (h.time) fprintf(stderr, "passes:\n");
  h.progress = !h.time && bn_cli_progress();
  bn_status st = bn_pass_run_pipeline(&m.graph, &po, &mp, hook, &h, &err);
  int have_mp = !st;
  if (h.progress) fprintf(stderr, "\r\033[K");
  double t2_bytes = have_mp ? ternary_bytes(&m.graph) : 0;
  int t1 = !strcmp(weights, "t1");
  if (t1 && (!strcmp(target, "x86-64-v3") || (!strcmp(target, "native") && !__builtin_cpu_supports("avx512vnni"))))
    fprintf(stderr, "bnc compile: note: AVX2 (x86-64-v3, or a native CPU without AVX-512 VNNI) has no vpdpbusd: its "
                    "kernels extract 1.6-bit weights' codes and decode at about 0.65x the speed of 2 bits (docs/t1.md)\n");
  if (!st && (h.tune || h.lut || t1)) st = choose_layouts(&m.graph, backend, target, (int)batch, h.tune, h.lut, t1, &err);
  bn_objcode aot = {0};
  if (!st && h.aot) {
    double t1 = bn_now();
    bn_codegen *cg = NULL;
    if (!(st = bn_cli_codegen(backend, target, &cg, &err))) st = bn_codegen_objects(cg, &m.graph, &aot, &err);
    bn_codegen_counts kc = cg ? bn_codegen_get_counts(cg) : (bn_codegen_counts){0};
    bn_codegen_close(cg);
    if (!st) {
      size_t bytes = 0;
      for (int i = 0; i < aot.n; i++) bytes += aot.objs[i].size;
      fprintf(stderr, "aot: %d %s kernels for %s (%d built, %d from the disk cache), %.1f KiB of object code, %.2f s\n",
              aot.n, aot.backend, aot.cpu, kc.built, kc.cached, bytes / 1024.0, bn_now() - t1);
    }
  }
  uint8_t sk[BN_SK_BYTES], *dev = NULL;
  size_t dev_bytes = 0;
  if (!st && metal) {
    double t1 = bn_now();
    if (!(st = bn_metal_section(&m.graph, &mp, &dev, &dev_bytes, &err)))
      fprintf(stderr, "metal: the Metal library and dispatch table, for f32 and f16 K/V caches: %.1f KiB, %.2f s\n",
              dev_bytes / 1024.0, bn_now() - t1);
  }
  if (!st && h.aot) st = bn_cli_signing_key(sk, &err);
  if (!st)
    st = bn_plan_write(&m, &mp, &(bn_plan_write_opts){.target = target, .code = &aot, .sign_sk = sk, .input = in,
                                                      .device = dev, .device_bytes = dev_bytes},
                       h.out, &err);
  free(dev);
  sodium_memzero(sk, sizeof sk);
  if (have_mp) bn_memplan_free(&mp);
  bn_objcode_free(&aot);
  if (!st && !h.failed) {
    struct stat sb;
    stat(h.out, &sb);
    fprintf(stderr, "bnc compile: %s -> %s: %.1f MiB, %d nodes, arena %.2f MiB for %ld tokens (%.2f MiB unplanned), %.2f s\n",
            in, h.out, sb.st_size / 1048576.0, m.graph.n_nodes, mp.arena_bytes / 1048576.0, batch,
            mp.sum_bytes / 1048576.0, bn_now() - t0);
    if (t1 || h.tune)
      fprintf(stderr, "  weights %s: %.1f MiB of ternary weights a token (%.1f MiB at 2 bits)\n", h.tune ? "tuned" : "t1",
              ternary_bytes(&m.graph) / 1048576.0, t2_bytes / 1048576.0);
    if (strcmp(head, "exact"))
      fprintf(stderr, "  head %s: %.1f MiB a token (%.1f MiB exact), relative rms error of its weights %.3f %%\n", head,
              head_bytes(&m.graph) / 1048576.0, head_before / 1048576.0, 100 * head_error);
  }
  bn_model_free(&m);
  bn_source_close(&f);
  if (st) return bn_cli_fail(&err);
  return h.failed;
}
