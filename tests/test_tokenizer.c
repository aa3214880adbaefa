/* Tokenizers on hand-built vocabularies, with tokenizations worked out by
 * hand from SentencePiece's and GPT-2 BPE's rules (docs/gguf.md); tokenizer.json
 * files against the ids Hugging Face's tokenizers library gives (tests/data/hf); the pair merging
 * against a plain quadratic merge written here; vocabularies the readers
 * must refuse; and the tokenizer on bytes no reader would let through. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "../frontend/hf.h"
#include "../frontend/import.h"
#include "../frontend/synth.h"
#include "../ir/rng.h"
#include "../runtime/tokenizer.h"
#include "testutil.h"

static void add_token(bn_vocab *v, const char *text, float score, int type) {
  v->tokens = realloc(v->tokens, (size_t)(v->n_tokens + 1) * sizeof *v->tokens);
  v->scores = realloc(v->scores, (size_t)(v->n_tokens + 1) * sizeof *v->scores);
  v->types = realloc(v->types, (size_t)(v->n_tokens + 1) * sizeof *v->types);
  v->tokens[v->n_tokens] = strdup(text);
  v->scores[v->n_tokens] = score;
  v->types[v->n_tokens] = type;
  v->n_tokens++;
}

static int find(const bn_vocab *v, const char *text) {
  for (int i = 0; i < v->n_tokens; i++)
    if (!strcmp(v->tokens[i], text)) return i;
  fail_msg("no token '%s'", text);
  return -1;
}

#define SP "\xe2\x96\x81" /* U+2581 */

/* <unk> <s> </s>, 256 byte tokens, then pieces with scores. */
static void spm_vocab(bn_vocab *v) {
  memset(v, 0, sizeof *v);
  v->kind = BN_VOCAB_SPM;
  add_token(v, "<unk>", 0, BN_TOK_UNKNOWN);
  add_token(v, "<s>", 0, BN_TOK_CONTROL);
  add_token(v, "</s>", 0, BN_TOK_CONTROL);
  for (int b = 0; b < 256; b++) {
    char t[8];
    snprintf(t, sizeof t, "<0x%02X>", b);
    add_token(v, t, 0, BN_TOK_BYTE);
  }
  const char *pieces[] = {SP, "h", "e", "l", "o", "w", "r", "d", "ll", "or", "he", "hell", "hello", "wor", SP "wor",
                          SP "hello", "ld"};
  const float scores[] = {-1, -2, -3, -4, -5, -6, -7, -8, 5.0f, 4.5f, 4.0f, 3.0f, 2.5f, 2.0f, 1.5f, 1.0f, 0.5f};
  for (size_t i = 0; i < sizeof pieces / sizeof *pieces; i++) add_token(v, pieces[i], scores[i], BN_TOK_NORMAL);
  v->bos = 1, v->eos = 2, v->unk = 0, v->add_bos = 1;
}

static void encode(const bn_tokenizer *t, const char *text, int add_bos, int32_t *ids, int *n) {
  bn_error err = {0};
  if (bn_tok_encode(t, text, strlen(text), add_bos, ids, 64, n, &err)) fail_msg("%s", err.msg);
}

/* "▁hello▁world": ll (5) > or (4.5) > he (4) > hell (3) > hello (2.5) > wor (2) > ▁wor (1.5) > ▁hello (1) > ld (0.5). */
static void test_spm_known_tokenization(void **state) {
  (void)state;
  bn_vocab v;
  spm_vocab(&v);
  bn_tokenizer *t;
  bn_error err = {0};
  assert_int_equal(bn_tok_create(&v, &t, &err), BN_OK);
  int32_t ids[64];
  int n;
  encode(t, "hello world", 1, ids, &n);
  int32_t want[4] = {1, find(&v, SP "hello"), find(&v, SP "wor"), find(&v, "ld")};
  assert_int_equal(n, 4);
  assert_memory_equal(ids, want, sizeof want);
  /* é has no piece: its two UTF-8 bytes fall back to byte tokens */
  encode(t, "h\xc3\xa9", 0, ids, &n);
  int32_t want2[4] = {find(&v, SP), find(&v, "h"), 3 + 0xc3, 3 + 0xa9};
  assert_int_equal(n, 4);
  assert_memory_equal(ids, want2, sizeof want2);
  char out[64];
  const char *texts[] = {"hello world", "h\xc3\xa9", "  two  spaces ", "wor\nld"};
  for (int i = 0; i < 4; i++) {
    encode(t, texts[i], 1, ids, &n);
    bn_tok_decode(t, ids, n, out, sizeof out);
    assert_string_equal(out, texts[i]);
  }
  bn_tok_free(t);
  bn_vocab_free(&v);
}

/* GPT-2 byte symbols (in byte order) plus merges, ranked by position. */
static void bpe_vocab(bn_vocab *v, const char *const *merges, int n_merges) {
  memset(v, 0, sizeof *v);
  v->kind = BN_VOCAB_BPE;
  for (int b = 0; b < 256; b++) {
    char u[5] = {0};
    bn_utf8_encode(bn_bpe_byte_to_cp((unsigned char)b), u);
    add_token(v, u, 0, BN_TOK_NORMAL);
  }
  v->merges = calloc((size_t)n_merges, sizeof *v->merges);
  for (int i = 0; i < n_merges; i++) {
    v->merges[v->n_merges++] = strdup(merges[i]);
    char joined[64];
    const char *sp = strchr(merges[i], ' ');
    snprintf(joined, sizeof joined, "%.*s%s", (int)(sp - merges[i]), merges[i], sp + 1);
    add_token(v, joined, 0, BN_TOK_NORMAL);
  }
  add_token(v, "<|begin_of_text|>", 0, BN_TOK_CONTROL);
  v->bos = v->n_tokens - 1, v->eos = -1, v->unk = -1, v->add_bos = 1;
}

static void test_bpe_known_tokenization(void **state) {
  (void)state;
  const char *merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 w", "o r", "\xc4\xa0w or", "l d",
                          "m \xc4\xa0", "1 2", "12 3", "3 4", "\xc4\x8a \xc4\x8a"};
  bn_vocab v;
  bpe_vocab(&v, merges, 13);
  bn_tokenizer *t;
  bn_error err = {0};
  assert_int_equal(bn_tok_create(&v, &t, &err), BN_OK);
  int32_t ids[64];
  int n;
  encode(t, "hello world!", 1, ids, &n);
  int32_t want[5] = {v.bos, find(&v, "hello"), find(&v, "\xc4\xa0wor"), find(&v, "ld"), find(&v, "!")};
  assert_int_equal(n, 5);
  assert_memory_equal(ids, want, sizeof want);
  /* pre-tokenizer pieces: I | 'm | ' ' | 123 | 45 | ' ok' | \n\n — so "m Ġ" and "3 4" never merge */
  encode(t, "I'm 12345 ok\n\n", 0, ids, &n);
  const char *pieces[] = {"I", "'", "m", "\xc4\xa0", "123", "4", "5", "\xc4\xa0", "o", "k", "\xc4\x8a\xc4\x8a"};
  assert_int_equal(n, 11);
  for (int i = 0; i < 11; i++) assert_int_equal(ids[i], find(&v, pieces[i]));
  char out[64];
  const char *texts[] = {"hello world!", "I'm 12345 ok\n\n", "caf\xc3\xa9 \xe2\x82\xac 3.14\ttab", " lead"};
  for (int i = 0; i < 4; i++) {
    encode(t, texts[i], 1, ids, &n);
    bn_tok_decode(t, ids, n, out, sizeof out);
    assert_string_equal(out, texts[i]);
  }
  bn_tok_free(t);
  bn_vocab_free(&v);
}

static void test_invalid_utf8_and_overflow(void **state) {
  (void)state;
  bn_vocab v;
  spm_vocab(&v);
  bn_tokenizer *t;
  bn_error err = {0};
  assert_int_equal(bn_tok_create(&v, &t, &err), BN_OK);
  int32_t ids[4];
  int n;
  const char *bad[] = {"ab\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80"};
  for (int i = 0; i < 5; i++) {
    assert_int_equal(bn_tok_encode(t, bad[i], strlen(bad[i]), 1, ids, 4, &n, &err), BN_E_INVALID);
    assert_non_null(strstr(err.msg, "invalid UTF-8"));
  }
  assert_int_equal(bn_tok_encode(t, "hello world hello world", 23, 1, ids, 4, &n, &err), BN_E_RANGE);
  bn_tok_free(t);
  bn_vocab_free(&v);
}

/* The tokenizers that bnc synth writes round-trip ordinary text. */
static void test_synth_vocabs_roundtrip(void **state) {
  (void)state;
  const char *archs[] = {"bitnet", "bitnet-b1.58"};
  for (int a = 0; a < 2; a++) {
    char path[512];
    snprintf(path, sizeof path, "%s/tok-%s.gguf", BNC_TEST_TMP, archs[a]);
    bn_synth_params p = {bn_synth_find_shape("tiny"), archs[a], BN_DT_I2_S, BN_DT_F16, 1, 0, NULL, 0};
    bn_error err = {0};
    assert_int_equal(bn_synth_write(&p, path, &err), BN_OK);
    bn_gguf f;
    bn_vocab v;
    assert_int_equal(bn_gguf_open(&f, path, &err), BN_OK);
    assert_int_equal(bn_import_vocab(&f, &v, &err), BN_OK);
    assert_int_equal(v.n_tokens, 512);
    bn_tokenizer *t;
    assert_int_equal(bn_tok_create(&v, &t, &err), BN_OK);
    const char *text = "The quick brown fox, 42 times: na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac!\n";
    int32_t ids[256];
    int n;
    assert_int_equal(bn_tok_encode(t, text, strlen(text), 1, ids, 256, &n, &err), BN_OK);
    assert_int_equal(ids[0], v.bos);
    assert_true(n < (int)strlen(text)); /* merges happened */
    char out[256];
    bn_tok_decode(t, ids, n, out, sizeof out);
    assert_string_equal(out, text);
    bn_tok_free(t);
    bn_vocab_free(&v);
    bn_gguf_close(&f);
    remove(path);
  }
}

/* The readers' check: each defect is refused, naming the entry. */
static void test_vocab_check(void **state) {
  (void)state;
  struct {
    const char *token, *merge, *want;
    int type;
    float score;
  } bad[] = {
      {"ab\xe2\x96", NULL, "token 259 is not UTF-8 at byte 2", 1, 0},
      {"\xc0\xaf", NULL, "token 259 is not UTF-8 at byte 0", 1, 0},
      {"ok", NULL, "token 259 has type 9", 9, 0},
      {"ok", NULL, "token 259 has score nan", 1, NAN},
      {"ok", "ab", "merge 0 'ab' is not two symbols joined by a space", 1, 0},
      {"ok", " b", "merge 0 ' b' is not two symbols", 1, 0},
      {"ok", "a \xff", "merge 0 is not UTF-8 at byte 2", 1, 0},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    bn_vocab v;
    spm_vocab(&v);
    bn_error err = {0};
    assert_int_equal(bn_vocab_check(&v, "v.gguf", &err), BN_OK);
    free(v.tokens[259]);
    v.tokens[259] = strdup(bad[i].token), v.types[259] = bad[i].type, v.scores[259] = bad[i].score;
    if (bad[i].merge) v.merges = malloc(sizeof *v.merges), v.merges[0] = strdup(bad[i].merge), v.n_merges = 1;
    assert_int_equal(bn_vocab_check(&v, "v.gguf", &err), BN_E_FORMAT);
    if (!strstr(err.msg, bad[i].want)) fail_msg("case %zu: %s", i, err.msg);
    bn_vocab_free(&v);
  }
  bn_vocab v;
  spm_vocab(&v);
  char *longest = malloc(BN_VOCAB_MAX_BYTES + 2);
  memset(longest, 'a', BN_VOCAB_MAX_BYTES + 1), longest[BN_VOCAB_MAX_BYTES + 1] = 0;
  free(v.tokens[5]), v.tokens[5] = longest;
  bn_error err = {0};
  assert_int_equal(bn_vocab_check(&v, "v.gguf", &err), BN_E_FORMAT);
  assert_non_null(strstr(err.msg, "token 5 has 4097 bytes"));
  bn_vocab_free(&v);
}

/* A vocabulary of cut-off UTF-8 sequences, as no reader lets through: the tokenizer
 * builds, encodes, decodes and gives pieces without leaving its buffers (ASan checks). */
static void test_tokenizer_on_any_bytes(void **state) {
  (void)state;
  const char *merges[] = {"h e", "l l"};
  bn_vocab v;
  bpe_vocab(&v, merges, 2);
  const char *cut[] = {"\xc4", "ab\xe2\x82", "\xf0\x9f", "x\xf0", "\xe2", "\xff\xfe"};
  for (int i = 0; i < 6; i++) add_token(&v, cut[i], 0, BN_TOK_NORMAL);
  bn_tokenizer *t;
  bn_error err = {0};
  assert_int_equal(bn_tok_create(&v, &t, &err), BN_OK);
  for (int i = 0; i < v.n_tokens; i++) {
    size_t len;
    const char *p = bn_tok_piece(t, i, &len);
    assert_true(len <= strlen(v.tokens[i]));
    (void)p;
  }
  int32_t ids[64];
  int n;
  encode(t, "hello \xe2\x82\xac x", 1, ids, &n);
  char out[128];
  bn_tok_decode(t, ids, n, out, sizeof out);
  bn_tok_free(t);
  bn_vocab_free(&v);
}

/* A quadratic reference of the greedy merge: the leftmost adjacent pair of highest
 * score whose join is a token merges, until none does; then each symbol is its token
 * or its bytes' tokens. */
static int naive_spm(const bn_vocab *v, const char *text, int32_t *ids) {
  static char sym[4096][32];
  int ns = 0, n = 0;
  char buf[4096];
  size_t len = 0;
  memcpy(buf, SP, 3), len = 3;
  for (const char *p = text; *p; p++) {
    if (*p == ' ') memcpy(buf + len, SP, 3), len += 3;
    else buf[len++] = *p;
  }
  for (size_t i = 0; i < len;) {
    size_t l = (unsigned char)buf[i] == 0xe2 ? 3 : 1;
    memcpy(sym[ns], buf + i, l), sym[ns][l] = 0, ns++, i += l;
  }
  for (;;) {
    int best = -1;
    float bs = 0;
    for (int i = 0; i + 1 < ns; i++) {
      char j[64];
      size_t la = strlen(sym[i]), lb = strlen(sym[i + 1]);
      memcpy(j, sym[i], la), memcpy(j + la, sym[i + 1], lb + 1);
      for (int k = 0; k < v->n_tokens; k++)
        if (!strcmp(v->tokens[k], j) && (best < 0 || v->scores[k] > bs)) best = i, bs = v->scores[k];
    }
    if (best < 0) break;
    size_t la = strlen(sym[best]), lb = strlen(sym[best + 1]);
    assert_true(la + lb < sizeof sym[0]);
    memcpy(sym[best] + la, sym[best + 1], lb + 1);
    memmove(sym[best + 1], sym[best + 2], (size_t)(ns - best - 2) * sizeof sym[0]);
    ns--;
  }
  for (int i = 0; i < ns; i++) {
    int id = -1;
    for (int k = 0; k < v->n_tokens && id < 0; k++)
      if (!strcmp(v->tokens[k], sym[i])) id = k;
    if (id >= 0) ids[n++] = id;
    else
      for (const char *c = sym[i]; *c; c++) ids[n++] = 3 + (unsigned char)*c;
  }
  return n;
}

static void test_merge_matches_quadratic(void **state) {
  (void)state;
  uint64_t rng = 99;
  for (int round = 0; round < 20; round++) {
    bn_vocab v;
    memset(&v, 0, sizeof v);
    v.kind = BN_VOCAB_SPM;
    add_token(&v, "<unk>", 0, BN_TOK_UNKNOWN);
    add_token(&v, "<s>", 0, BN_TOK_CONTROL);
    add_token(&v, "</s>", 0, BN_TOK_CONTROL);
    for (int b = 0; b < 256; b++) {
      char t[8];
      snprintf(t, sizeof t, "<0x%02X>", b);
      add_token(&v, t, 0, BN_TOK_BYTE);
    }
    const char *alpha[] = {"a", "b", "c", SP};
    for (int k = 0; k < 60; k++) { /* random pieces of 2..5 symbols; scores with many ties */
      char piece[32] = "";
      int len = 2 + (int)(bn_rng_next(&rng) % 4);
      for (int c = 0; c < len; c++) strcat(piece, alpha[bn_rng_next(&rng) % 4]);
      int dup = 0;
      for (int i = 0; i < v.n_tokens; i++) dup |= !strcmp(v.tokens[i], piece);
      if (!dup) add_token(&v, piece, (float)(bn_rng_next(&rng) % 5), BN_TOK_NORMAL);
    }
    for (int k = 0; k < 4; k++) add_token(&v, alpha[k], -10, BN_TOK_NORMAL);
    bn_tokenizer *t;
    bn_error err = {0};
    assert_int_equal(bn_tok_create(&v, &t, &err), BN_OK);
    char text[400];
    int tl = 1 + (int)(bn_rng_next(&rng) % 300);
    for (int i = 0; i < tl; i++) text[i] = "abc "[bn_rng_next(&rng) % 4];
    text[tl] = 0;
    static int32_t got[2048], want[2048];
    int n;
    assert_int_equal(bn_tok_encode(t, text, (size_t)tl, 0, got, 2048, &n, &err), BN_OK);
    int nw = naive_spm(&v, text, want);
    assert_int_equal(n, nw);
    assert_memory_equal(got, want, (size_t)n * sizeof *got);
    bn_tok_free(t);
    bn_vocab_free(&v);
  }
}

/* tokens.json: the ids tokenizers 0.23 gives its text (added tokens written in it included), per
 * tokenizer; each model's vocabulary, read from its tokenizer.json and from the GGUF make.py wrote,
 * must give the same. */
static void test_hf_tokenizer_ids(void **state) {
  (void)state;
  size_t len = 0;
  char *js = (char *)tu_read(BNC_TEST_DATA "/hf/tokens.json", &len);
  assert_non_null(js);
  cJSON *ref = cJSON_ParseWithLength(js, len);
  assert_non_null(ref);
  const char *text = cJSON_GetObjectItem(ref, "text")->valuestring;
  const char *models[][2] = {{"hf/llama-packed", "llama3"}, {"hf/llama-packed.gguf", "llama3"},
                             {"hf/qwen3-packed", "qwen2"}, {"hf/qwen3-packed.gguf", "qwen2"}};
  for (int m = 0; m < 4; m++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", BNC_TEST_DATA, models[m][0]);
    bn_source src;
    bn_model model;
    bn_error err = {0};
    if (bn_source_import(path, &src, &model, &err)) fail_msg("%s", err.msg);
    bn_tokenizer *t;
    assert_int_equal(bn_tok_create(&model.vocab, &t, &err), BN_OK);
    int32_t ids[512];
    int n;
    assert_int_equal(bn_tok_encode_special(t, text, strlen(text), 0, ids, 512, &n, &err), BN_OK);
    const cJSON *want = cJSON_GetObjectItem(ref, models[m][1]);
    assert_int_equal(n, cJSON_GetArraySize(want));
    for (int i = 0; i < n; i++) assert_int_equal(ids[i], cJSON_GetArrayItem(want, i)->valueint);
    printf("  %s: %d ids as tokenizers gives them\n", models[m][0], n);
    int plain;
    assert_int_equal(bn_tok_encode(t, text, strlen(text), 0, ids, 512, &plain, &err), BN_OK);
    assert_true(plain > n); /* without the split, "<|begin_of_text|>" is text */
    bn_tok_free(t);
    bn_model_free(&model);
    bn_source_close(&src);
  }
  cJSON_Delete(ref);
  free(js);
}

/* spm-tokens.json: the ids tokenizers 0.23 gives its texts through SentencePiece-style tokenizer.json files
 * (byte-fallback BPE over U+2581, in Llama 2's form and in transformers' Metaspace form, which differ in
 * where the U+2581 goes), and its decoding of them; bnc's, from the same files, must be equal. */
static void test_hf_spm_ids(void **state) {
  (void)state;
  size_t len = 0;
  char *js = (char *)tu_read(BNC_TEST_DATA "/hf/spm-tokens.json", &len);
  assert_non_null(js);
  cJSON *ref = cJSON_ParseWithLength(js, len);
  assert_non_null(ref);
  const cJSON *texts = cJSON_GetObjectItem(ref, "texts");
  int n_vocab = cJSON_GetObjectItem(ref, "n_vocab")->valueint, checked = 0, bytes = 0;
  static const char *const forms[] = {"legacy", "metaspace"};
  for (int f = 0; f < 2; f++) {
    char dir[512], key[32];
    snprintf(dir, sizeof dir, "%s/hf/spm-%s", BNC_TEST_DATA, forms[f]);
    bn_vocab v;
    bn_error err = {0};
    if (bn_hf_vocab(dir, NULL, n_vocab, &v, &err)) fail_msg("%s", err.msg);
    assert_int_equal(v.kind, BN_VOCAB_SPM);
    bn_tokenizer *t;
    assert_int_equal(bn_tok_create(&v, &t, &err), BN_OK);
    snprintf(key, sizeof key, "%s_decoded", forms[f]);
    const cJSON *want = cJSON_GetObjectItem(ref, forms[f]), *dec = cJSON_GetObjectItem(ref, key);
    for (int k = 0; k < cJSON_GetArraySize(texts); k++) {
      const char *text = cJSON_GetArrayItem(texts, k)->valuestring;
      const cJSON *w = cJSON_GetArrayItem(want, k);
      int32_t ids[512];
      int n;
      assert_int_equal(bn_tok_encode_special(t, text, strlen(text), 0, ids, 512, &n, &err), BN_OK);
      if (n != cJSON_GetArraySize(w)) fail_msg("spm-%s text %d: %d ids, tokenizers %d", forms[f], k, n, cJSON_GetArraySize(w));
      for (int i = 0; i < n; i++) {
        if (ids[i] != cJSON_GetArrayItem(w, i)->valueint)
          fail_msg("spm-%s text %d: id %d is %d, tokenizers' %d", forms[f], k, i, ids[i], cJSON_GetArrayItem(w, i)->valueint);
        bytes += v.types[ids[i]] == BN_TOK_BYTE;
      }
      char out[1024];
      bn_tok_decode(t, ids, n, out, sizeof out);
      if (strcmp(out, cJSON_GetArrayItem(dec, k)->valuestring))
        fail_msg("spm-%s text %d decodes to '%s', tokenizers to '%s'", forms[f], k, out, cJSON_GetArrayItem(dec, k)->valuestring);
      checked++;
    }
    bn_tok_free(t);
    bn_vocab_free(&v);
  }
  printf("  %d texts through 2 SentencePiece-style tokenizer.json forms: ids and text as tokenizers gives them (%d byte-fallback ids)\n",
         checked, bytes);
  assert_true(bytes > 10); /* the fallback was exercised */
  /* a form bnc does not read (Metaspace splitting words) is refused by name */
  char tmpl[] = "/tmp/bnc-spm-XXXXXX", path[600];
  assert_non_null(mkdtemp(tmpl));
  size_t tl = 0;
  char *tj = (char *)tu_read(BNC_TEST_DATA "/hf/spm-metaspace/tokenizer.json", &tl), *at = strstr(tj, "\"split\": false");
  assert_non_null(at);
  memcpy(at, "\"split\":  true", 15);
  snprintf(path, sizeof path, "%s/tokenizer.json", tmpl);
  assert_int_equal(tu_write(path, tj, tl), 0);
  bn_vocab v;
  bn_error err = {0};
  assert_int_equal(bn_hf_vocab(tmpl, NULL, n_vocab, &v, &err), BN_E_UNSUPPORTED);
  assert_non_null(strstr(err.msg, "Metaspace"));
  printf("  %s\n", err.msg);
  remove(path), rmdir(tmpl), free(tj);
  cJSON_Delete(ref);
  free(js);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spm_known_tokenization), cmocka_unit_test(test_bpe_known_tokenization),
      cmocka_unit_test(test_invalid_utf8_and_overflow), cmocka_unit_test(test_synth_vocabs_roundtrip),
      cmocka_unit_test(test_vocab_check),            cmocka_unit_test(test_tokenizer_on_any_bytes),
      cmocka_unit_test(test_merge_matches_quadratic), cmocka_unit_test(test_hf_tokenizer_ids), cmocka_unit_test(test_hf_spm_ids),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
