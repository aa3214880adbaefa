/* bnc serve's chat templates (tools/serve_req.c): which family a model's GGUF template is, and the
 * pieces each family renders messages into, against the families' definitions written out by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../frontend/synth.h"
#include "../tools/serve_req.h"

/* a vocabulary's control tokens: llama3's, and ChatML's when *user says so */
static int has(const char *name, void *user) {
  int chatml = *(int *)user;
  return !strcmp(name, "<|start_header_id|>") || !strcmp(name, "<|end_header_id|>") || !strcmp(name, "<|eot_id|>") ||
         (chatml && (!strcmp(name, "<|im_start|>") || !strcmp(name, "<|im_end|>")));
}

static void test_pick(void **state) {
  (void)state;
  int chatml = 1, none = 0;
  const char *why;
  assert_int_equal(bn_chat_pick(bn_synth_chat_template("llama3"), has, &none, &why), BN_CHAT_LLAMA3);
  assert_string_equal(why, "the model's chat template");
  assert_int_equal(bn_chat_pick(bn_synth_chat_template("bitnet"), has, &none, &why), BN_CHAT_BITNET);
  assert_int_equal(bn_chat_pick(bn_synth_chat_template("chatml"), has, &chatml, &why), BN_CHAT_CHATML);
  assert_int_equal(bn_chat_pick(bn_synth_chat_template("chatml"), has, &none, &why), BN_CHAT_PLAIN);
  assert_non_null(strstr(why, "lacks the template's control tokens"));
  assert_int_equal(bn_chat_pick("{% for m in messages %}{{ m['content'] }}{% endfor %}", has, &none, &why), BN_CHAT_PLAIN);
  assert_non_null(strstr(why, "none of the families"));
  assert_int_equal(bn_chat_pick(NULL, has, &none, &why), BN_CHAT_LLAMA3); /* no template: llama3 by its tokens */
  assert_string_equal(why, "the model has no chat template");
}

static const char body[] = "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
                           " {\"role\": \"user\", \"content\": \"  hi \\n\"}]}";

/* want: the pieces, a control token's name prefixed by '@' */
static void expect(bn_chat_template t, const char *const *want, int n) {
  bn_serve_req r;
  char why[256];
  const char *param;
  assert_null(bn_serve_parse(body, strlen(body), 1, t, &r, why, sizeof why, &param));
  assert_null(r.prompt);
  assert_int_equal(r.n_parts, n);
  for (int i = 0; i < n; i++) {
    assert_int_equal(r.special[i], want[i][0] == '@');
    assert_string_equal(r.parts[i], want[i] + (want[i][0] == '@'));
  }
  bn_serve_req_free(&r);
}

static void test_render(void **state) {
  (void)state;
  /* llama3: header tokens around the role, the content trimmed after "\n\n", end of turn; then the assistant's header */
  const char *llama3[] = {"@<|start_header_id|>", "system", "@<|end_header_id|>", "\n\nBe brief.", "@<|eot_id|>",
                          "@<|start_header_id|>", "user",   "@<|end_header_id|>", "\n\nhi",       "@<|eot_id|>",
                          "@<|start_header_id|>", "assistant", "@<|end_header_id|>", "\n\n"};
  expect(BN_CHAT_LLAMA3, llama3, 14);
  /* BitNet 2B-4T: "Role: content" and end of turn; then "Assistant: " */
  const char *bitnet[] = {"System: Be brief.", "@<|eot_id|>", "User:   hi \n", "@<|eot_id|>", "Assistant: "};
  expect(BN_CHAT_BITNET, bitnet, 5);
  /* ChatML */
  const char *chatml[] = {"@<|im_start|>", "system\nBe brief.", "@<|im_end|>", "\n", "@<|im_start|>", "user\n  hi \n",
                          "@<|im_end|>",   "\n",                "@<|im_start|>", "assistant\n"};
  expect(BN_CHAT_CHATML, chatml, 10);
  /* plain: one prompt */
  bn_serve_req r;
  char why[256];
  const char *param;
  assert_null(bn_serve_parse(body, strlen(body), 1, BN_CHAT_PLAIN, &r, why, sizeof why, &param));
  assert_string_equal(r.prompt, "system: Be brief.\nuser:   hi \n\nassistant:");
  assert_int_equal(r.n_parts, 0);
  bn_serve_req_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_pick), cmocka_unit_test(test_render)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
