/* The graph IR: print -> parse -> print is byte-identical for every arch,
 * shape and ternary type; the verifier names the bad node; parse errors
 * give line and column. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../ir/irparse.h"
#include "../frontend/synth.h"
#include "testutil.h"

static void roundtrip(const bn_graph *g, const char *what) {
  char *a = bn_graph_print(g);
  assert_non_null(a);
  bn_graph h;
  bn_error err = {0};
  if (bn_ir_parse(a, strlen(a), what, &h, &err)) fail_msg("%s: %s", what, err.msg);
  char *b = bn_graph_print(&h);
  assert_string_equal(a, b);
  assert_int_equal(h.n_nodes, g->n_nodes);
  assert_int_equal(h.n_values, g->n_values);
  for (int i = 0; i < g->n_nodes; i++) {
    assert_int_equal(h.nodes[i].op, g->nodes[i].op);
    assert_memory_equal(h.nodes[i].attr, g->nodes[i].attr, sizeof g->nodes[i].attr);
  }
  free(a), free(b);
  bn_graph_free(&h);
}

static void test_roundtrip_all_shapes(void **state) {
  (void)state;
  const char *shapes[] = {"tiny", "large", "3b", "2b4t"};
  const char *archs[] = {"bitnet", "bitnet-b1.58", "bitnet-25"};
  const bn_dtype types[] = {BN_DT_I2_S, BN_DT_TQ1_0, BN_DT_TQ2_0};
  int done = 0;
  for (int s = 0; s < 4; s++)
    for (int a = 0; a < 3; a++)
      for (int t = 0; t < 3; t++) {
        bn_synth_params p = {bn_synth_find_shape(shapes[s]), archs[a], types[t], BN_DT_F16, 1, 0, NULL, 0};
        bn_hparams hp;
        bn_synth_hparams(&p, &hp);
        bn_tensor_src src = bn_synth_tensor_src(&p);
        bn_graph g;
        bn_error err = {0};
        bn_status st = bn_import_graph(&hp, &src, &g, &err);
        if (st) { /* only 3b's rows of 3200/8640 cannot hold whole TQ blocks */
          assert_string_equal(shapes[s], "3b");
          assert_true(types[t] != BN_DT_I2_S);
          continue;
        }
        char what[64];
        snprintf(what, sizeof what, "%s/%s/%s", shapes[s], archs[a], bn_dtype_table[types[t]].name);
        roundtrip(&g, what);
        bn_graph_free(&g);
        done++;
      }
  assert_int_equal(done, 4 * 3 * 3 - 2 * 3);
}

static void test_roundtrip_real_files(void **state) {
  (void)state;
  const char *names[] = {"t2-I2_S", "b158-TQ1_0"};
  for (int i = 0; i < 2; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", BNC_TEST_DATA, names[i]);
    bn_gguf f;
    bn_model m;
    bn_error err = {0};
    assert_int_equal(bn_gguf_open(&f, path, &err), BN_OK);
    assert_int_equal(bn_import_gguf(&f, &m, &err), BN_OK);
    roundtrip(&m.graph, names[i]);
    bn_model_free(&m);
    bn_gguf_close(&f);
  }
}

static const char GOOD[] =
    "bnc.ir 1\n"
    "graph \"bitnet\" {\n"
    "  input %tokens : i32[T]\n"
    "  weight %emb : f16[10, 4]\n"
    "  weight %n : f32[4]\n"
    "  %x = embed %tokens, %emb : f32[T, 4]\n"
    "  %h = rmsnorm %x, %n {eps = 1.0000000000000001e-05} : f32[T, 4]\n"
    "  %l = output_proj %h, %emb : f32[T, 10]\n"
    "  output %l\n"
    "}\n";

static void test_parse_small_graph(void **state) {
  (void)state;
  bn_graph g;
  bn_error err = {0};
  assert_int_equal(bn_ir_parse(GOOD, strlen(GOOD), "good", &g, &err), BN_OK);
  assert_int_equal(g.n_nodes, 3);
  assert_int_equal(g.nodes[1].op, BN_OP_RMSNORM);
  assert_true(g.nodes[1].attr[0] == 1e-5);
  assert_int_equal(g.values[g.outputs[0]].shape.d[1], 10);
  assert_int_equal(g.values[g.outputs[0]].shape.d[0], BN_DIM_T);
  char *p = bn_graph_print(&g);
  assert_string_equal(p, GOOD);
  free(p);
  bn_graph_free(&g);
}

/* Replaces the first occurrence of `from` in GOOD by `to` and expects a parse error containing `want`. */
static void expect_error(const char *from, const char *to, const char *want) {
  char text[2048];
  const char *at = strstr(GOOD, from);
  assert_non_null(at);
  snprintf(text, sizeof text, "%.*s%s%s", (int)(at - GOOD), GOOD, to, at + strlen(from));
  bn_graph g;
  bn_error err = {0};
  if (bn_ir_parse(text, strlen(text), "t.bnir", &g, &err) == BN_OK) fail_msg("parsed: %s -> %s", from, to);
  if (!strstr(err.msg, want)) fail_msg("'%s': expected '%s' in: %s", to, want, err.msg);
}

static void test_parse_errors_have_positions(void **state) {
  (void)state;
  expect_error("embed", "embedd", "t.bnir:6:8: unknown op 'embedd'");
  expect_error("rmsnorm %x, %n", "rmsnorm %y, %n", "t.bnir:7:16: unknown value %y");
  expect_error("{eps", "{epsilon", "t.bnir:7:24: unknown attribute 'epsilon'");
  expect_error("f16[10, 4]", "f17[10, 4]", "t.bnir:4:17: unknown element type 'f17'");
  expect_error("f16[10, 4]", "f16[10, 0]", "t.bnir:4:25: bad dimension '0'");
  expect_error("  output %l\n", "  output %l\n  output %zz\n", "t.bnir:10:10: unknown value %zz");
  expect_error("bnc.ir 1", "bnc.ir 2", "t.bnir:1:8: unsupported IR version 2");
  expect_error(": f32[T, 10]", "f32[T, 10]", "t.bnir:8:29: syntax error, unexpected identifier, expecting ':'");
  expect_error("%h = rmsnorm", "%x = rmsnorm", "t.bnir:7:3: value %x is defined twice");
  expect_error("}\n", "} $", "t.bnir:10:3: syntax error, unexpected invalid character, expecting end of file");
  expect_error("%x, %n {", "%x {", "wrong number of operands for 'rmsnorm'");
}

/* The verifier (run after parsing) names the node whose type is wrong. */
static void test_verifier_names_node(void **state) {
  (void)state;
  expect_error("%h = rmsnorm %x, %n {eps = 1.0000000000000001e-05} : f32[T, 4]",
               "%h = rmsnorm %x, %n {eps = 1.0000000000000001e-05} : f32[T, 5]",
               "node %h (rmsnorm): declared type does not match the shape rule");
  expect_error("weight %n : f32[4]", "weight %n : f32[3]", "node %h: rmsnorm: weight %n does not match");
  expect_error("%l = output_proj %h, %emb", "%l = output_proj %h, %n", "node %l: output_proj");
  expect_error("  output %l\n", "", "graph has no outputs");
  /* a bitlinear over a float weight is rejected by the shape rule */
  bn_graph g;
  bn_graph_init(&g, "x");
  int64_t T = BN_DIM_T, d[2] = {4, 4};
  int x = bn_graph_add_input(&g, "x", BN_DT_I32, bn_shape_make(1, &T));
  int w = bn_graph_add_weight(&g, "w", BN_DT_F32, bn_shape_make(2, d), NULL, 0);
  int in[2] = {x, w};
  bn_error err = {0};
  int e = bn_graph_add_node(&g, BN_OP_EMBED, "e", in, 2, NULL, &err);
  assert_true(e >= 0);
  in[0] = e;
  assert_int_equal(bn_graph_add_node(&g, BN_OP_BITLINEAR, "b", in, 2, NULL, &err), -1);
  assert_non_null(strstr(err.msg, "weight %w has non-ternary type f32"));
  bn_graph_free(&g);
}

/* Integer attributes out of any integer's range (a fuzzer's find: head_dim = 1.1e72, which the
 * attention rule cast to int64) or not whole, and float attributes beyond a float, are refused
 * with the op's message. */
static void test_attr_ranges(void **state) {
  (void)state;
  bn_graph g;
  bn_graph_init(&g, "x");
  int64_t d[2] = {BN_DIM_T, 8};
  int x = bn_graph_add_input(&g, "x", BN_DT_F32, bn_shape_make(2, d));
  int in[3] = {x, x, x};
  bn_error err = {0};
  double ok[BN_MAX_ATTR] = {0, 2, 2, 4}, slice_ok[BN_MAX_ATTR] = {2, 6};
  assert_true(bn_graph_add_node(&g, BN_OP_ATTENTION, "a", in, 3, ok, &err) >= 0);
  assert_true(bn_graph_add_node(&g, BN_OP_SLICE, "s", in, 1, slice_ok, &err) >= 0);
  const double bad[][BN_MAX_ATTR] = {{0, 2, 2, 1.1e72}, {0, 1e300, 2, 4}, {1e19, 2, 2, 4}, {0, 2, 2, NAN},
                                     {0, 2.5, 2, 4},    {-1, 2, 2, 4},   {0, -2, -1, -4}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err.msg[0] = 0;
    assert_int_equal(bn_graph_add_node(&g, BN_OP_ATTENTION, "b", in, 3, bad[i], &err), -1);
    assert_non_null(strstr(err.msg, "attention: bad layer"));
  }
  const double bad_slice[][BN_MAX_ATTR] = {{1e30, 2}, {0, 1e19}, {-1e19, 2}, {0.5, 2}, {2, 7}, {NAN, 1}};
  for (size_t i = 0; i < sizeof bad_slice / sizeof *bad_slice; i++) {
    err.msg[0] = 0;
    assert_int_equal(bn_graph_add_node(&g, BN_OP_SLICE, "t", in, 1, bad_slice[i], &err), -1);
    assert_non_null(strstr(err.msg, "slice: columns"));
  }
  /* rope: heads x head_dim columns, an even dims of at most head_dim, a base a float can hold */
  double rope_ok[BN_MAX_ATTR] = {2, 4, 4, 10000}, rope_partial[BN_MAX_ATTR] = {2, 4, 2, 10000};
  assert_true(bn_graph_add_node(&g, BN_OP_ROPE, "r", in, 1, rope_ok, &err) >= 0);
  assert_true(bn_graph_add_node(&g, BN_OP_ROPE, "r2", in, 1, rope_partial, &err) >= 0);
  const double bad_rope[][BN_MAX_ATTR] = {{1e72, 4, 4, 1e4}, {2, 4, 6, 1e4}, {2, 4, 3, 1e4},
                                          {2, 4, 4, 1e300}, {2, 4, 4, NAN},  {2, 0.5, 0, 1e4}};
  for (size_t i = 0; i < sizeof bad_rope / sizeof *bad_rope; i++) {
    err.msg[0] = 0;
    assert_int_equal(bn_graph_add_node(&g, BN_OP_ROPE, "q", in, 1, bad_rope[i], &err), -1);
    assert_non_null(strstr(err.msg, "rope: bad heads"));
  }
  double rope_wide[BN_MAX_ATTR] = {4, 4, 4, 10000}; /* 16 columns of an 8-wide x */
  assert_int_equal(bn_graph_add_node(&g, BN_OP_ROPE, "q", in, 1, rope_wide, &err), -1);
  assert_non_null(strstr(err.msg, "rope: %x has 8 columns, not heads x head_dim = 16"));
  /* rmsnorm's eps, taken as a float by the kernels */
  int64_t w8 = 8;
  int nw[2] = {x, bn_graph_add_weight(&g, "w", BN_DT_F32, bn_shape_make(1, &w8), NULL, 0)};
  double eps_ok[BN_MAX_ATTR] = {1e-5}, eps_bad[BN_MAX_ATTR] = {1e300};
  assert_true(bn_graph_add_node(&g, BN_OP_RMSNORM, "n", nw, 2, eps_ok, &err) >= 0);
  assert_int_equal(bn_graph_add_node(&g, BN_OP_RMSNORM, "m", nw, 2, eps_bad, &err), -1);
  assert_non_null(strstr(err.msg, "rmsnorm: eps=1e+300 is not a positive float"));
  const double eps_nonpositive[][BN_MAX_ATTR] = {{0}, {-1e-5}, {1e-60}, {NAN}}; /* 1e-60 is 0 as a float */
  for (size_t i = 0; i < sizeof eps_nonpositive / sizeof *eps_nonpositive; i++) {
    err.msg[0] = 0;
    assert_int_equal(bn_graph_add_node(&g, BN_OP_RMSNORM, "m", nw, 2, eps_nonpositive[i], &err), -1);
    assert_non_null(strstr(err.msg, "is not a positive float"));
  }
  const double base_bad[][BN_MAX_ATTR] = {{2, 4, 4, 0}, {2, 4, 4, -10000}, {2, 4, 4, 1e-60}};
  for (size_t i = 0; i < sizeof base_bad / sizeof *base_bad; i++) {
    err.msg[0] = 0;
    assert_int_equal(bn_graph_add_node(&g, BN_OP_ROPE, "q", in, 1, base_bad[i], &err), -1);
    assert_non_null(strstr(err.msg, "rope: bad heads"));
  }
  bn_graph_free(&g);
}

/* The text form refuses what it could not print back the same: an attribute given twice,
 * a graph name longer than the 31 bytes it is kept in, a NUL inside a string. A name of
 * exactly 31 bytes round-trips. */
static void test_text_refusals(void **state) {
  (void)state;
  expect_error("{eps = 1.0000000000000001e-05}", "{eps = 1e-5, eps = 2e-5}", "attribute 'eps' is given twice");
  expect_error("graph \"", "graph \"a-name-of-thirty-two-bytes-long!", "is longer than 31 bytes");
  char text[2048];
  const char *q = strstr(GOOD, "graph \"") + 7;
  size_t head = (size_t)(q - GOOD);
  memcpy(text, GOOD, head);
  memcpy(text + head, "a\0b", 3);
  size_t rest = strlen(GOOD) - head;
  memcpy(text + head + 3, q, rest);
  bn_graph g;
  bn_error err = {0};
  assert_int_not_equal(bn_ir_parse(text, head + 3 + rest, "t.bnir", &g, &err), BN_OK);
  assert_non_null(strstr(err.msg, "syntax error"));
  char longest[2048];
  snprintf(longest, sizeof longest, "%.*sthirty-one-bytes-of-graph-name!%s", (int)head, GOOD, strchr(q, '"'));
  if (bn_ir_parse(longest, strlen(longest), "t.bnir", &g, &err)) fail_msg("%s", err.msg);
  char *again = bn_graph_print(&g);
  assert_string_equal(again, longest);
  free(again);
  bn_graph_free(&g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_all_shapes), cmocka_unit_test(test_roundtrip_real_files),
      cmocka_unit_test(test_parse_small_graph),    cmocka_unit_test(test_parse_errors_have_positions),
      cmocka_unit_test(test_verifier_names_node),  cmocka_unit_test(test_attr_ranges),
      cmocka_unit_test(test_text_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
