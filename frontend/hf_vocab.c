/* tokenizer.json (+ tokenizer_config.json) -> bn_vocab: a byte-level BPE
 * (model.vocab, model.merges as "a b" or ["a", "b"]), its added tokens
 * (special -> control, else user-defined), the pre-tokenizer recognised by its
 * regex (llama3's or qwen2's: bnc never compiles a regex a file brings); or a
 * SentencePiece-style BPE (byte_fallback, U+2581 for spaces: Llama 2's, Mistral's)
 * in either form transformers writes; and
 * bos/eos, add_bos and the chat template from tokenizer_config.json (or
 * chat_template.jinja). Ids the files leave unused up to config.json's
 * vocab_size become unused placeholder tokens. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf.h"

static const char *LLAMA3_RE = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                               "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *QWEN2_RE = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                              "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const cJSON *item(const cJSON *j, const char *k) { return j ? cJSON_GetObjectItemCaseSensitive(j, k) : NULL; }
static int is_str(const cJSON *v, const char *s) { return cJSON_IsString(v) && !strcmp(v->valuestring, s); }

/* The pre-tokenizer: a Split on a regex bnc knows, then ByteLevel without its own regex. */
static bn_status pre_tokenizer(const char *dir, const cJSON *pt, bn_vocab_pre *pre, bn_error *err) {
  const cJSON *split = NULL, *bl = NULL;
  if (is_str(item(pt, "type"), "Sequence")) {
    const cJSON *seq = item(pt, "pretokenizers");
    for (const cJSON *p = seq ? seq->child : NULL; p; p = p->next) {
      if (is_str(item(p, "type"), "Split") && !split) split = p;
      else if (is_str(item(p, "type"), "ByteLevel") && !bl) bl = p;
      else split = bl = NULL, p = NULL; /* anything else: not a form bnc knows */
      if (!p) break;
    }
  } else if (is_str(item(pt, "type"), "ByteLevel")) bl = pt;
  const cJSON *re = item(item(split, "pattern"), "Regex");
  if (bl && !split && !cJSON_IsFalse(item(bl, "use_regex")))
    return bn_fail(err, BN_E_UNSUPPORTED, "%s/tokenizer.json: GPT-2's ByteLevel pre-tokenizer regex is not supported "
                   "(bnc knows llama3's and qwen2's)", dir);
  if (!split || !bl || !cJSON_IsString(re) || !cJSON_IsFalse(item(bl, "use_regex")) ||
      (!is_str(re, LLAMA3_RE) && !is_str(re, QWEN2_RE)) || !is_str(item(split, "behavior"), "Isolated"))
    return bn_fail(err, BN_E_UNSUPPORTED, "%s/tokenizer.json: the pre_tokenizer is not one bnc knows (a Split on llama3's "
                   "or qwen2's regex, then ByteLevel)", dir);
  *pre = is_str(re, QWEN2_RE) ? BN_PRE_QWEN2 : BN_PRE_LLAMA3;
  return BN_OK;
}

/* A byte-fallback BPE's form: Llama 2's file (normalizer Prepend U+2581, Replace " " by it; no
 * pre-tokenizer) or transformers' newer one (no normalizer; Metaspace, prepend_scheme "first", no split). */
static bn_status spm_form(const char *dir, const cJSON *norm, const cJSON *pt, bn_vocab_pre *pre, bn_error *err) {
  const cJSON *n0 = cJSON_GetArrayItem(item(norm, "normalizers"), 0), *n1 = cJSON_GetArrayItem(item(norm, "normalizers"), 1);
  if ((!pt || cJSON_IsNull(pt)) && is_str(item(norm, "type"), "Sequence") && cJSON_GetArraySize(item(norm, "normalizers")) == 2 &&
      is_str(item(n0, "type"), "Prepend") && is_str(item(n0, "prepend"), "\xe2\x96\x81") && is_str(item(n1, "type"), "Replace") &&
      is_str(item(item(n1, "pattern"), "String"), " ") && is_str(item(n1, "content"), "\xe2\x96\x81"))
    return *pre = BN_PRE_LLAMA3, BN_OK;
  if ((!norm || cJSON_IsNull(norm)) && is_str(item(pt, "type"), "Metaspace") && is_str(item(pt, "replacement"), "\xe2\x96\x81") &&
      is_str(item(pt, "prepend_scheme"), "first") && cJSON_IsFalse(item(pt, "split")))
    return *pre = BN_PRE_SPM_FIRST, BN_OK;
  return bn_fail(err, BN_E_UNSUPPORTED, "%s/tokenizer.json: a byte-fallback BPE whose normalizer and pre_tokenizer are not "
                 "Llama 2's (Prepend and Replace with U+2581) or Metaspace's (prepend_scheme \"first\", split false)", dir);
}

/* "<0xAB>": Llama 2's byte tokens. */
static int byte_token(const char *s) {
  return strlen(s) == 6 && !strncmp(s, "<0x", 3) && strchr("0123456789ABCDEF", s[3]) && strchr("0123456789ABCDEF", s[4]) &&
         s[3] && s[4] && s[5] == '>';
}

/* An id from a token's text ("<|begin_of_text|>" or {"content": ...}) or a number; -1 if none. */
static int token_id(const bn_vocab *v, const cJSON *j) {
  if (cJSON_IsObject(j)) j = item(j, "content");
  if (cJSON_IsNumber(j)) return j->valuedouble >= 0 && j->valuedouble < v->n_tokens ? (int)j->valuedouble : -1;
  if (cJSON_IsArray(j)) return token_id(v, cJSON_GetArrayItem(j, 0));
  if (!cJSON_IsString(j)) return -1;
  for (int i = 0; i < v->n_tokens; i++) /* once per model, not per token */
    if (v->tokens[i] && !strcmp(v->tokens[i], j->valuestring)) return i;
  return -1;
}

static bn_status fill(const char *dir, const cJSON *tok, const cJSON *tc, const cJSON *config, int n_vocab, bn_vocab *v,
                      bn_error *err) {
  const cJSON *model = item(tok, "model"), *vocab = item(model, "vocab"), *merges = item(model, "merges"),
              *added = item(tok, "added_tokens"), *norm = item(tok, "normalizer");
  if (!is_str(item(model, "type"), "BPE") || !cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
    return bn_fail(err, BN_E_UNSUPPORTED, "%s/tokenizer.json: model is not a BPE with vocab and merges (the form bnc reads)", dir);
  int spm = cJSON_IsTrue(item(model, "byte_fallback"));
  if (!spm && norm && !cJSON_IsNull(norm) && !is_str(item(norm, "type"), "NFC"))
    return bn_fail(err, BN_E_UNSUPPORTED, "%s/tokenizer.json: normalizer '%.40s' is not supported", dir,
                   cJSON_IsString(item(norm, "type")) ? item(norm, "type")->valuestring : "?");
  bn_status st = spm ? spm_form(dir, norm, item(tok, "pre_tokenizer"), &v->pre, err)
                     : pre_tokenizer(dir, item(tok, "pre_tokenizer"), &v->pre, err);
  if (st) return st;
  v->kind = spm ? BN_VOCAB_SPM : BN_VOCAB_BPE;
  v->n_tokens = n_vocab;
  v->tokens = calloc((size_t)n_vocab, sizeof *v->tokens);
  v->scores = calloc((size_t)n_vocab, sizeof *v->scores);
  v->types = calloc((size_t)n_vocab, sizeof *v->types);
  int nm = cJSON_GetArraySize(merges);
  v->merges = calloc((size_t)nm + 1, sizeof *v->merges);
  if (!v->tokens || !v->scores || !v->types || !v->merges) return bn_fail(err, BN_E_NOMEM, "out of memory");
  for (int pass = 0; pass < 2; pass++) /* the vocabulary, then the added tokens over it */
    for (const cJSON *e = pass ? (cJSON_IsArray(added) ? added->child : NULL) : vocab->child; e; e = e->next) {
      const cJSON *idj = pass ? item(e, "id") : e, *txt = pass ? item(e, "content") : NULL;
      const char *s = pass ? (cJSON_IsString(txt) ? txt->valuestring : NULL) : e->string;
      double id = cJSON_IsNumber(idj) ? idj->valuedouble : -1;
      if (!s || !(id >= 0 && id < n_vocab) || id != (int)id)
        return bn_fail(err, BN_E_FORMAT, "%s/tokenizer.json: token '%.60s' has id %g, outside config.json's vocab_size %d",
                       dir, s ? s : "?", id, n_vocab);
      int i = (int)id;
      if (v->tokens[i] && (!pass || strcmp(v->tokens[i], s)))
        return bn_fail(err, BN_E_FORMAT, "%s/tokenizer.json: id %d is given twice", dir, i);
      if (!v->tokens[i] && !(v->tokens[i] = strdup(s))) return bn_fail(err, BN_E_NOMEM, "out of memory");
      v->types[i] = pass ? (cJSON_IsTrue(item(e, "special")) ? BN_TOK_CONTROL : BN_TOK_USER)
                    : spm && byte_token(s) ? BN_TOK_BYTE : BN_TOK_NORMAL;
    }
  for (int i = 0; i < n_vocab; i++) /* ids nobody named: placeholders */
    if (!v->tokens[i]) {
      char pad[32];
      snprintf(pad, sizeof pad, "<|bnc_unused_%d|>", i);
      if (!(v->tokens[i] = strdup(pad))) return bn_fail(err, BN_E_NOMEM, "out of memory");
      v->types[i] = BN_TOK_UNUSED;
    }
  for (const cJSON *m = merges->child; m; m = m->next, v->n_merges++) {
    const cJSON *a = cJSON_GetArrayItem(m, 0), *b = cJSON_GetArrayItem(m, 1);
    if (cJSON_IsString(m)) v->merges[v->n_merges] = strdup(m->valuestring);
    else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(a) && cJSON_IsString(b)) {
      size_t la = strlen(a->valuestring), lb = strlen(b->valuestring);
      char *s = malloc(la + lb + 2);
      if (s) memcpy(s, a->valuestring, la), s[la] = ' ', memcpy(s + la + 1, b->valuestring, lb + 1);
      v->merges[v->n_merges] = s;
    } else return bn_fail(err, BN_E_FORMAT, "%s/tokenizer.json: merge %d is not \"a b\" or [\"a\", \"b\"]", dir, v->n_merges);
    if (!v->merges[v->n_merges]) return bn_fail(err, BN_E_NOMEM, "out of memory");
  }
  /* bos/eos: tokenizer_config.json's texts, else config.json's ids */
  v->bos = token_id(v, item(tc, "bos_token"));
  if (v->bos < 0) v->bos = token_id(v, item(config, "bos_token_id"));
  v->eos = token_id(v, item(tc, "eos_token"));
  if (v->eos < 0) v->eos = token_id(v, item(config, "eos_token_id"));
  v->unk = spm ? token_id(v, item(model, "unk_token")) : -1;
  const cJSON *ab = item(tc, "add_bos_token"), *pp = item(tok, "post_processor");
  if (cJSON_IsBool(ab)) v->add_bos = cJSON_IsTrue(ab) && v->bos >= 0;
  else { /* a TemplateProcessing that puts bos first, as llama3's does */
    const cJSON *first = cJSON_GetArrayItem(item(pp, "single"), 0);
    v->add_bos = v->bos >= 0 && is_str(item(pp, "type"), "TemplateProcessing") && item(first, "SpecialToken") &&
                 is_str(item(item(first, "SpecialToken"), "id"), v->tokens[v->bos]);
  }
  return BN_OK;
}

bn_status bn_hf_vocab(const char *dir, const cJSON *config, int n_vocab, bn_vocab *v, bn_error *err) {
  memset(v, 0, sizeof *v);
  v->bos = v->eos = v->unk = -1;
  bn_status st;
  cJSON *tok = bn_hf_read_json(dir, "tokenizer.json", 0, err, &st), *tc = NULL;
  if (!tok) return st ? st : bn_fail(err, BN_E_FORMAT, "%s: no tokenizer.json (bnc reads the tokenizer from it)", dir);
  tc = bn_hf_read_json(dir, "tokenizer_config.json", 0, err, &st);
  if (!st) st = fill(dir, tok, tc, config, n_vocab, v, err);
  const cJSON *ct = item(tc, "chat_template");
  if (cJSON_IsArray(ct)) /* [{name, template}]: the default one */
    for (const cJSON *e = ct->child; e; e = e->next)
      if (is_str(item(e, "name"), "default")) ct = item(e, "template");
  char *jinja = NULL;
  if (!st && !cJSON_IsString(ct)) jinja = bn_hf_read_text(dir, "chat_template.jinja", NULL, err, &st);
  const char *tmpl = cJSON_IsString(ct) ? ct->valuestring : jinja;
  if (!st && tmpl && strlen(tmpl) > BN_CHAT_TEMPLATE_MAX)
    st = bn_fail(err, BN_E_FORMAT, "%s: the chat template is longer than %d bytes", dir, BN_CHAT_TEMPLATE_MAX);
  if (!st && tmpl && !(v->chat_template = strdup(tmpl))) st = bn_fail(err, BN_E_NOMEM, "out of memory");
  free(jinja);
  cJSON_Delete(tok), cJSON_Delete(tc);
  char where[600];
  snprintf(where, sizeof where, "%s/tokenizer.json", dir);
  if (!st) st = bn_vocab_check(v, where, err);
  if (st) bn_vocab_free(v);
  return st;
}
