/* The GGUF reader and writer: a writer round trip of every value type,
 * files from other tools, the malformed-file corpus of tests/bad, every
 * truncation of a real header, and random byte flips (no crash, under ASan
 * in CI). Hugging Face directories with one defect each: one clear error line. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../frontend/import.h"
#include "../frontend/synth.h"
#include "../ir/rng.h"
#include "testutil.h"

static void test_writer_roundtrip(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/roundtrip.gguf", BNC_TEST_TMP);
  bn_gguf_writer *w = bn_gguf_writer_new();
  const char *strs[3] = {"a", "", "\xe2\x96\x81x"};
  float fv[2] = {1.5f, -2.0f};
  int32_t iv[3] = {-1, 0, 7};
  bn_gguf_w_u32(w, "u", 4000000000u);
  bn_gguf_w_i32(w, "i", -5);
  bn_gguf_w_f32(w, "f", 0.125f);
  bn_gguf_w_bool(w, "b", 1);
  bn_gguf_w_str(w, "s", "hello");
  bn_gguf_w_arr_str(w, "as", strs, 3);
  bn_gguf_w_arr_f32(w, "af", fv, 2);
  bn_gguf_w_arr_i32(w, "ai", iv, 3);
  float t1[5] = {1, 2, 3, 4, 5};
  uint8_t t2[66 * 2];
  for (int i = 0; i < (int)sizeof t2; i++) t2[i] = (uint8_t)i;
  uint64_t d1[1] = {5}, d2[2] = {256, 2};
  bn_gguf_w_tensor(w, "t1", 0, 1, d1, t1, sizeof t1);
  bn_gguf_w_tensor(w, "t2", 35, 2, d2, t2, sizeof t2);
  bn_error err = {0};
  assert_int_equal(bn_gguf_writer_write(w, path, &err), BN_OK);
  bn_gguf_writer_free(w);

  bn_gguf f;
  assert_int_equal(bn_gguf_open(&f, path, &err), BN_OK);
  assert_int_equal(f.version, 3);
  assert_int_equal(f.n_kv, 8);
  uint64_t u;
  assert_int_equal(bn_gguf_get_u64(&f, "u", &u, &err), BN_OK);
  assert_true(u == 4000000000u);
  assert_int_equal(bn_gguf_find(&f, "i")->num.i, -5);
  float fl;
  assert_int_equal(bn_gguf_get_f32(&f, "f", &fl, &err), BN_OK);
  assert_true(fl == 0.125f);
  assert_int_equal(bn_gguf_find(&f, "b")->num.u, 1);
  char s[16];
  assert_int_equal(bn_gguf_get_str(&f, "s", s, sizeof s, &err), BN_OK);
  assert_string_equal(s, "hello");
  const bn_gguf_kv *as = bn_gguf_find(&f, "as");
  assert_int_equal(as->arr_count, 3);
  assert_true(bn_gguf_str_eq(as->arr_strs[2], "\xe2\x96\x81x") && bn_gguf_str_eq(as->arr_strs[1], ""));
  assert_memory_equal(bn_gguf_find(&f, "af")->arr_data, fv, sizeof fv);
  assert_memory_equal(bn_gguf_find(&f, "ai")->arr_data, iv, sizeof iv);
  /* wrong-type getters name the key and the type found */
  assert_int_equal(bn_gguf_get_u64(&f, "s", &u, &err), BN_E_FORMAT);
  assert_non_null(strstr(err.msg, "key 's' has type string"));
  const bn_gguf_tensor *a = bn_gguf_tensor_find(&f, "t1"), *b = bn_gguf_tensor_find(&f, "t2");
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(a->dtype, BN_DT_F32);
  assert_int_equal(b->dtype, BN_DT_TQ2_0);
  assert_int_equal(b->nelems, 512);
  assert_int_equal(b->nbytes, sizeof t2);
  assert_int_equal((a->data - f.base) % 32, 0);
  assert_int_equal((b->data - f.base) % 32, 0);
  assert_memory_equal(a->data, t1, sizeof t1);
  assert_memory_equal(b->data, t2, sizeof t2);
  bn_gguf_close(&f);
  remove(path);
}

/* Files written by gguf-py and bitnet.cpp's llama-quantize. */
static void test_reads_other_tools(void **state) {
  (void)state;
  const char *names[] = {"t2-TQ2_0", "t2-TQ1_0", "t2-I2_S", "b158-TQ2_0", "b158-TQ1_0"};
  const bn_dtype types[] = {BN_DT_TQ2_0, BN_DT_TQ1_0, BN_DT_I2_S, BN_DT_TQ2_0, BN_DT_TQ1_0};
  for (int i = 0; i < 5; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", BNC_TEST_DATA, names[i]);
    bn_gguf f;
    bn_error err = {0};
    assert_int_equal(bn_gguf_open(&f, path, &err), BN_OK);
    assert_int_equal(f.n_tensors, 2 + 3 * 11);
    const bn_gguf_tensor *q = bn_gguf_tensor_find(&f, "blk.2.ffn_down.weight");
    assert_non_null(q);
    assert_int_equal(q->dtype, types[i]);
    assert_int_equal(q->dims[0], 768);
    assert_int_equal(q->dims[1], 256);
    bn_model m;
    assert_int_equal(bn_import_gguf(&f, &m, &err), BN_OK);
    assert_int_equal(m.hp.n_layer, 3);
    assert_int_equal(m.hp.n_head_kv, i < 3 ? 4 : 1);
    assert_int_equal(m.vocab.kind, i < 3 ? BN_VOCAB_SPM : BN_VOCAB_BPE);
    bn_model_free(&m);
    bn_gguf_close(&f);
  }
}

/* GGUF v2 shares v3's layout: the same bytes with version 2 read the same. */
static void test_reads_version_2(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/t2-TQ1_0.gguf", BNC_TEST_DATA);
  size_t len;
  uint8_t *buf = tu_read(path, &len);
  assert_non_null(buf);
  buf[4] = 2;
  bn_gguf f;
  bn_model m;
  bn_error err = {0};
  assert_int_equal(bn_gguf_parse(&f, buf, len, "v2", &err), BN_OK);
  assert_int_equal(f.version, 2);
  assert_int_equal(bn_import_gguf(&f, &m, &err), BN_OK);
  assert_int_equal(m.hp.n_embd, 256);
  bn_model_free(&m);
  bn_gguf_close(&f);
  free(buf);
}

static void test_bad_corpus(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/gguf.expect", BNC_TEST_BAD);
  char *man = tu_read(path, NULL);
  assert_non_null(man);
  int count = 0;
  for (char *line = strtok(man, "\n"); line; line = strtok(NULL, "\n")) {
    char *tab = strchr(line, '\t');
    assert_non_null(tab);
    *tab = 0;
    snprintf(path, sizeof path, "%s/%s", BNC_TEST_BAD, line);
    bn_gguf f;
    bn_model m;
    bn_error err = {0};
    bn_status st = bn_gguf_open(&f, path, &err);
    if (!st) {
      st = bn_import_gguf(&f, &m, &err);
      if (!st) bn_model_free(&m);
      bn_gguf_close(&f);
    }
    if (st == BN_OK || !strstr(err.msg, tab + 1) || !strstr(err.msg, line))
      fail_msg("%s: expected an error containing '%s', got: %s", line, tab + 1, st ? err.msg : "success");
    count++;
  }
  assert_true(count >= 30);
  free(man);
}

/* Every prefix of a real file's header must fail cleanly, never read past it. */
static void test_every_truncation(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/b158-TQ1_0.gguf", BNC_TEST_DATA);
  size_t len;
  uint8_t *all = tu_read(path, &len);
  assert_non_null(all);
  size_t header = 17574 + 64; /* past the tensor infos */
  for (size_t n = 0; n < header; n++) {
    uint8_t *cut = malloc(n ? n : 1); /* exact size, so ASan sees any overread */
    memcpy(cut, all, n);
    bn_gguf f;
    bn_error err = {0};
    bn_status st = bn_gguf_parse(&f, cut, n, "cut", &err);
    if (st == BN_OK) fail_msg("a %zu-byte prefix parsed", n);
    free(cut);
  }
  free(all);
}

/* Random single- and multi-byte corruption of a header: any outcome but a crash. */
static void test_byte_flips(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/t2-I2_S.gguf", BNC_TEST_DATA);
  size_t len = 0;
  uint8_t *orig = tu_read(path, &len);
  assert_non_null(orig);
  uint8_t *buf = malloc(len);
  uint64_t rng = 99;
  int ok = 0;
  for (int iter = 0; iter < 3000; iter++) {
    memcpy(buf, orig, len);
    int flips = 1 + (int)(bn_rng_next(&rng) % 4);
    for (int k = 0; k < flips; k++) buf[bn_rng_next(&rng) % 16100] = (uint8_t)bn_rng_next(&rng);
    bn_gguf f;
    bn_model m;
    bn_error err = {0};
    if (bn_gguf_parse(&f, buf, len, "flip", &err) == BN_OK) {
      if (bn_import_gguf(&f, &m, &err) == BN_OK) {
        ok++;
        bn_model_free(&m);
      }
      bn_gguf_close(&f);
    }
  }
  printf("  %d of 3000 corrupted files still imported\n", ok);
  free(buf);
  free(orig);
}

/* Replaces the first "X" after `after` in buf by a NUL byte. */
static void nul_at(uint8_t *buf, size_t len, const char *after) {
  uint8_t *p = memmem(buf, len, after, strlen(after));
  assert_non_null(p);
  p = memchr(p, 'X', len - (size_t)(p - buf));
  assert_non_null(p);
  *p = 0;
}

/* A NUL inside a name (a key, a tensor, a string that names something) is refused: names are
 * compared and printed as C strings, and "a\0b" would pass for "a". */
static void test_nul_in_names(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/nul.gguf", BNC_TEST_TMP);
  bn_gguf_writer *w = bn_gguf_writer_new();
  bn_gguf_w_str(w, "general.architecture", "bitXnet");
  bn_gguf_w_u32(w, "my.keyX", 1);
  float t[4] = {1, 2, 3, 4};
  uint64_t dims[1] = {4};
  bn_gguf_w_tensor(w, "tensXor", 0, 1, dims, t, sizeof t);
  bn_error err = {0};
  assert_int_equal(bn_gguf_writer_write(w, path, &err), BN_OK);
  bn_gguf_writer_free(w);
  size_t len = 0;
  uint8_t *orig = tu_read(path, &len), *buf = malloc(len);
  const char *where[3] = {"my.key", "tens", "bit"};
  const char *want[3] = {"key of kv pair 1 contains a NUL byte", "name of tensor 0 contains a NUL byte",
                         "key 'general.architecture' contains a NUL byte"};
  for (int i = 0; i < 3; i++) {
    memcpy(buf, orig, len);
    nul_at(buf, len, where[i]);
    bn_gguf f;
    bn_status st = bn_gguf_parse(&f, buf, len, "nul.gguf", &err);
    if (i == 2) { /* the file is well formed; the name is refused where it is read */
      assert_int_equal(st, BN_OK);
      char arch[32];
      st = bn_gguf_get_str(&f, "general.architecture", arch, sizeof arch, &err);
      bn_gguf_close(&f);
    }
    assert_int_equal(st, BN_E_FORMAT);
    if (!strstr(err.msg, want[i])) fail_msg("%s", err.msg);
  }
  free(orig), free(buf);
}

/* NaN or infinity in a norm's or the embedding's float weights is reported at import, by tensor
 * and element (every logit would be NaN). */
static void test_nonfinite_float_weights(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/nan.gguf", BNC_TEST_TMP);
  bn_synth_params p = {bn_synth_find_shape("tiny"), "bitnet-b1.58", BN_DT_TQ2_0, BN_DT_F16, 2, 0, NULL, 0};
  bn_error err = {0};
  assert_int_equal(bn_synth_write(&p, path, &err), BN_OK);
  size_t len = 0;
  uint8_t *buf = tu_read(path, &len);
  const char *names[2] = {"output_norm.weight", "token_embd.weight"};
  for (int i = 0; i < 2; i++) {
    for (int k = 0; k < 2; k++) {
      bn_gguf f;
      bn_model m;
      assert_int_equal(bn_gguf_parse(&f, buf, len, "nan.gguf", &err), BN_OK);
      const bn_gguf_tensor *t = bn_gguf_tensor_find(&f, names[i]);
      assert_non_null(t);
      uint8_t *at = (uint8_t *)t->data + (t->dtype == 0 ? 4 * 7 : 2 * 7), saved[4];
      memcpy(saved, at, 4);
      if (t->dtype == 0) memcpy(at, k ? &(uint32_t){0x7f800000u} : &(uint32_t){0x7fc00000u}, 4); /* inf, NaN */
      else memcpy(at, k ? &(uint16_t){0x7c00u} : &(uint16_t){0x7e00u}, 2);
      assert_int_equal(bn_import_gguf(&f, &m, &err), BN_E_FORMAT);
      char want[128];
      snprintf(want, sizeof want, "tensor %s: element 7 is NaN or infinite", names[i]);
      if (!strstr(err.msg, want)) fail_msg("%s", err.msg);
      memcpy(at, saved, 4);
      assert_int_equal(bn_import_gguf(&f, &m, &err), BN_OK);
      bn_model_free(&m);
      bn_gguf_close(&f);
    }
  }
  free(buf);
}

/* ---- Hugging Face directories: a copy of tests/data/hf/<src> with one file replaced ---- */

static void hf_copy(const char *src, const char *dst) {
  const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                         "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                         "model-00002-of-00002.safetensors"};
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dst, dst);
  assert_int_equal(system(cmd), 0);
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char from[600], to[600];
    snprintf(from, sizeof from, "%s/hf/%s/%s", BNC_TEST_DATA, src, files[i]);
    snprintf(to, sizeof to, "%s/%s", dst, files[i]);
    size_t n;
    void *b = tu_read(from, &n);
    if (b) assert_int_equal(tu_write(to, b, n), 0), free(b);
  }
}

/* Replaces the first `from` in dir/file by `to` (same length or not). */
static void hf_edit(const char *dir, const char *file, const char *from, const char *to) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  size_t n = 0;
  char *b = tu_read(path, &n);
  assert_non_null(b);
  char *at = memmem(b, n, from, strlen(from));
  assert_non_null(at);
  size_t lf = strlen(from), lt = strlen(to), off = (size_t)(at - b);
  char *o = malloc(n - lf + lt);
  memcpy(o, b, off), memcpy(o + off, to, lt), memcpy(o + off + lt, b + off + lf, n - off - lf);
  assert_int_equal(tu_write(path, o, n - lf + lt), 0);
  free(b), free(o);
}

static void hf_expect(const char *dir, const char *want) {
  bn_source s;
  bn_model m;
  bn_error err = {0};
  bn_status st = bn_source_import(dir, &s, &m, &err);
  if (st == BN_OK) {
    bn_model_free(&m), bn_source_close(&s);
    fail_msg("%s: loaded; expected '%s'", dir, want);
  }
  if (!strstr(err.msg, want) || strchr(err.msg, '\n')) fail_msg("%s: expected '%s', got '%s'", dir, want, err.msg);
  printf("  %s\n", err.msg);
}

static void test_hf_bad_dirs(void **state) {
  (void)state;
  char d[512];
  snprintf(d, sizeof d, "%s/hf-bad", BNC_TEST_TMP);
  char st_path[600];
  snprintf(st_path, sizeof st_path, "%s/model.safetensors", d);
  size_t n = 0;

  hf_copy("llama-packed", d); /* truncated weights */
  uint8_t *b = tu_read(st_path, &n);
  assert_int_equal(tu_write(st_path, b, n / 2), 0);
  hf_expect(d, "lie outside the");
  assert_int_equal(tu_write(st_path, b, 6), 0); /* shorter than its header length */
  hf_expect(d, "too short");
  uint64_t hl;
  memcpy(&hl, b, 8);
  uint64_t big = hl + 100000000; /* a header length past the end */
  memcpy(b, &big, 8);
  assert_int_equal(tu_write(st_path, b, n), 0);
  hf_expect(d, "header length");
  free(b);

  hf_copy("llama-packed", d); /* a header offset past the end: the last tensor's end offset, made larger */
  b = tu_read(st_path, &n);
  memcpy(&hl, b, 8);
  char *hdr = (char *)b + 8, *last = NULL;
  for (char *p = hdr; (p = memmem(p, hl - (size_t)(p - hdr), "\"data_offsets\":[", 16)); p++) last = p;
  assert_non_null(last);
  char *comma = memchr(last, ',', 64);
  assert_non_null(comma);
  comma[1] = '9'; /* one more digit's worth: far past the data */
  assert_int_equal(tu_write(st_path, b, n), 0);
  free(b);
  hf_expect(d, "data_offsets lie outside");

  static const struct { /* one edit of a copy of llama-packed each, and the error it must give */
    const char *file, *from, *to, *want;
  } edits[] = {
      {"model.safetensors", "\"dtype\":\"U8\"", "\"dtype\":\"I8\"", "has dtype I8"},
      {"config.json", "\"intermediate_size\": 512", "\"intermediate_size\": 768", /* the shapes disagree */
       "config.json says [64, 768] (packed: four rows a byte)"},
      {"config.json", "\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"", "model_type 'gpt2' is not supported"},
      {"config.json", "\"rope_type\": \"default\"", "\"rope_type\": \"yarn\"", "RoPE scaling ('yarn') is not supported"},
      {"config.json", "\"quant_method\": \"bitnet\"", "\"quant_method\": \"gptq\"", "quant_method 'gptq'"},
      {"config.json", "{", "[", "config.json: not a JSON object"},
      {"tokenizer.json", "\\p{N}{1,3}", "\\p{N}{1,4}", "the pre_tokenizer is not one bnc knows"},
  };
  for (size_t i = 0; i < sizeof edits / sizeof *edits; i++) {
    hf_copy("llama-packed", d);
    hf_edit(d, edits[i].file, edits[i].from, edits[i].to);
    hf_expect(d, edits[i].want);
  }

  hf_copy("llama-packed", d);
  snprintf(st_path, sizeof st_path, "%s/tokenizer.json", d);
  remove(st_path);
  hf_expect(d, "no tokenizer.json");

  hf_copy("qwen3-packed", d); /* a missing shard */
  snprintf(st_path, sizeof st_path, "%s/model-00002-of-00002.safetensors", d);
  remove(st_path);
  hf_expect(d, "model-00002-of-00002.safetensors");

  hf_copy("qwen3-packed", d); /* the index names a tensor its shard lacks */
  hf_edit(d, "model.safetensors.index.json", "\"model.norm.weight\"", "\"model.nrom.weight\"");
  hf_expect(d, "'model.nrom.weight' is not in");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_writer_roundtrip), cmocka_unit_test(test_reads_other_tools),
      cmocka_unit_test(test_reads_version_2), cmocka_unit_test(test_bad_corpus),       cmocka_unit_test(test_every_truncation),
      cmocka_unit_test(test_byte_flips), cmocka_unit_test(test_nul_in_names), cmocka_unit_test(test_nonfinite_float_weights),
      cmocka_unit_test(test_hf_bad_dirs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
