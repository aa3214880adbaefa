/* A program that uses only the public API (include/bnc.h): open a plan,
 * generate a continuation with a token callback, then evaluate the same
 * prompt token by token and check the greedy choice agrees.
 *
 *   bnc compile examples/tiny-bitnet-i2_s.gguf -o tiny.bnplan
 *   ./bnc_example_simple tiny.bnplan "Once upon a time"
 */
#include <stdio.h>
#include <stdlib.h>

#include <bnc.h>

typedef struct {
  int count;
  int32_t first;
} seen;

static int print_token(int32_t token, const char *text, size_t len, void *user) {
  seen *s = user;
  if (s->count == 0) s->first = token;
  fwrite(text, 1, len, stdout);
  return ++s->count >= 1000; /* a callback may stop generation early */
}

static int argmax(const float *x, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PLAN [PROMPT]\n", argv[0]);
    return 2;
  }
  const char *prompt = argc > 2 ? argv[2] : "Once upon a time";
  bnc_plan *plan;
  if (bnc_plan_open(argv[1], &plan) != BNC_OK) {
    fprintf(stderr, "error: %s\n", bnc_last_error());
    return 1;
  }
  bnc_session_params sp = bnc_session_default_params();
  sp.temperature = 0; /* greedy, so the two paths below must agree */
  sp.repeat_penalty = 1;
  bnc_session *s;
  if (bnc_session_create(plan, &sp, &s) != BNC_OK) {
    fprintf(stderr, "error: %s\n", bnc_last_error());
    bnc_plan_free(plan);
    return 1;
  }
  printf("%s model, vocabulary %d, context %d\n%s", bnc_plan_arch(plan), bnc_plan_vocab_size(plan),
         bnc_plan_context_length(plan), prompt);
  seen got = {0, -1};
  if (bnc_generate(s, prompt, 16, print_token, &got) != BNC_OK) {
    fprintf(stderr, "\nerror: %s\n", bnc_last_error());
    return 1;
  }
  bnc_timings t;
  bnc_session_timings(s, &t);
  printf("\n%d prompt tokens in %.2f ms, %d generated in %.2f ms\n", t.prompt_tokens, t.prompt_s * 1e3,
         t.generated_tokens, t.generate_s * 1e3);

  /* The same prompt one token at a time: the greedy next token must match the first one generated. */
  int32_t ids[256];
  int n;
  if (bnc_tokenize(s, prompt, ids, 256, &n) != BNC_OK) return fprintf(stderr, "error: %s\n", bnc_last_error()), 1;
  bnc_reset(s);
  for (int i = 0; i < n; i++)
    if (bnc_eval(s, &ids[i], 1) != BNC_OK) return fprintf(stderr, "error: %s\n", bnc_last_error()), 1;
  int next = argmax(bnc_logits(s), bnc_plan_vocab_size(plan));
  size_t len;
  const char *text = bnc_token_text(s, next, &len);
  printf("greedy next token after %d evaluated one by one: %d '%.*s'\n", n, next, (int)len, text);
  if (got.count > 0 && next != got.first) {
    fprintf(stderr, "error: bnc_generate began with token %d, bnc_eval predicts %d\n", got.first, next);
    return 1;
  }

  /* Errors come back as a status and a message, never an abort. */
  int32_t bad = -5;
  if (bnc_eval(s, &bad, 1) == BNC_OK) return fprintf(stderr, "error: a bad token id was accepted\n"), 1;
  printf("bad token id: %s\n", bnc_last_error());
  bnc_session_free(s);
  bnc_plan_free(plan);
  return 0;
}
