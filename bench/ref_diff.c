/* How far the generated kernels' logits stray from the reference kernels' on
 * random models: for each seed, a synth model of the given width, heads and
 * arch (2 layers, i2_s), 32 random tokens evaluated in one step by both
 * backends; prints every position whose largest difference exceeds 1e-5 of
 * that position's logit range, and the worst over all. Such positions are
 * int8 codes moved by one step at a rounding tie (README, Numerics).
 *
 *   build/bench/ref_diff EMBD HEADS SEEDS [ARCH] [FIRST_SEED]
 *   e.g. build/bench/ref_diff 64 1 200 bitnet-b1.58 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../frontend/synth.h"
#include "../passes/pass.h"
#include "../runtime/session.h"

enum { T = 32 };

static float *eval(bn_model *m, bn_memplan *mp, const bn_backend *be, const int32_t *tok) {
  bn_session_params sp = {.n_ctx = 64, .exec = {.backend = be, .threads = 1}, .sampler = bn_sampler_defaults()};
  bn_session *s;
  bn_error err;
  float *out = malloc((size_t)T * (size_t)m->hp.n_vocab * sizeof *out);
  if (!out || bn_session_create(m, mp, &sp, &s, &err)) return fprintf(stderr, "ref_diff: %s\n", err.msg), free(out), NULL;
  if (bn_session_eval(s, tok, T, out, &err)) fprintf(stderr, "ref_diff: %s\n", err.msg), free(out), out = NULL;
  bn_session_free(s);
  return out;
}

int main(int argc, char **argv) {
  if (argc < 4) return fputs("usage: ref_diff EMBD HEADS SEEDS [ARCH] [FIRST_SEED]\n", stderr), 2;
  int E = atoi(argv[1]), H = atoi(argv[2]), last = atoi(argv[3]), first = argc > 5 ? atoi(argv[5]) : 1;
  const char *arch = argc > 4 ? argv[4] : "bitnet-b1.58";
  bn_synth_shape shape = {"ref_diff", arch, E, 2, H, H, 2 * E, 512, 256, 10000.0f};
  double worst = 0;
  int moved = 0, seeds_moved = 0;
  for (int seed = first; seed <= last; seed++) {
    bn_synth_params p = {&shape, arch, BN_DT_I2_S, BN_DT_F16, (uint64_t)seed, 0, NULL, 0};
    bn_error err;
    bn_gguf f;
    bn_model m;
    bn_memplan mp;
    bn_pass_opts po = {.max_tokens = T, .verify = 1};
    if (bn_synth_write(&p, "ref_diff.gguf", &err) || bn_gguf_open(&f, "ref_diff.gguf", &err)) {
      fprintf(stderr, "ref_diff: %s\n", err.msg);
      return 1;
    }
    if (bn_import_gguf(&f, &m, &err) || bn_pass_run_pipeline(&m.graph, &po, &mp, NULL, NULL, &err)) {
      fprintf(stderr, "ref_diff: %s\n", err.msg);
      return 1;
    }
    int32_t tok[T];
    uint64_t r = (uint64_t)seed * 7919;
    for (int i = 0; i < T; i++) r = r * 6364136223846793005ull + 1, tok[i] = (int32_t)((r >> 33) % 512);
    float *a = eval(&m, &mp, bn_backend_find("ref"), tok), *b = eval(&m, &mp, bn_backend_default(), tok);
    if (!a || !b) return 1;
    int V = m.hp.n_vocab, any = 0;
    for (int t = 0; t < T; t++) {
      float lo = INFINITY, hi = -INFINITY;
      double md = 0;
      for (int v = 0; v < V; v++) {
        lo = fminf(lo, a[t * V + v]), hi = fmaxf(hi, a[t * V + v]);
        md = fmax(md, fabs((double)a[t * V + v] - b[t * V + v]));
      }
      double rel = md / (hi - lo);
      worst = fmax(worst, rel);
      if (rel > 1e-5) printf("seed %d position %d: %.3g of the logit range\n", seed, t, rel), moved++, any = 1;
    }
    seeds_moved += any;
    free(a), free(b);
    bn_memplan_free(&mp), bn_model_free(&m), bn_gguf_close(&f);
  }
  remove("ref_diff.gguf");
  printf("embd %d, %d heads, %s, seeds %d..%d: worst %.3g of the logit range; %d positions of %d seeds over 1e-5\n", E,
         H, arch, first, last, worst, moved, seeds_moved);
  return 0;
}
