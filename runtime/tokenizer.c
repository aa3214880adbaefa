/* Tokenizer construction, decoding and the parts both kinds share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "tok_internal.h"

bn_status bn_idbuf_push(bn_idbuf *b, int32_t id) {
  if (b->n >= b->cap) return BN_E_RANGE;
  b->ids[b->n++] = id;
  return BN_OK;
}

/* SPM piece text: U+2581 is a space, <0xXX> a raw byte. */
static size_t spm_piece(const bn_vocab *v, int id, char *out) {
  const char *s = v->tokens[id];
  unsigned hex;
  if (v->types[id] == BN_TOK_BYTE && sscanf(s, "<0x%2X>", &hex) == 1) {
    out[0] = (char)hex;
    return 1;
  }
  size_t n = 0;
  for (; *s; s++) {
    if (!strncmp(s, "\xe2\x96\x81", 3)) {
      out[n++] = ' ';
      s += 2;
    } else out[n++] = *s;
  }
  return n;
}

/* BPE piece text: every code point maps back through GPT-2's byte table. A
 * sequence cut short by the end of the token is kept as it is (the readers
 * refuse such vocabularies; this holds on any bytes regardless). */
static size_t bpe_piece(const bn_vocab *v, int id, char *out) {
  const unsigned char *s = (const unsigned char *)v->tokens[id];
  size_t n = 0;
  while (*s) {
    int l = bn_utf8_len(*s);
    for (int k = 1; k < l; k++)
      if (!s[k]) l = k;
    uint32_t cp = l == 1 ? *s : (uint32_t)(*s & (0x7f >> l));
    for (int k = 1; k < l; k++) cp = cp << 6 | (s[k] & 0x3f);
    int b = bn_bpe_cp_to_byte(cp);
    if (b < 0) { /* not byte-mapped (e.g. added tokens): keep the text */
      memcpy(out + n, s, (size_t)l);
      n += (size_t)l;
    } else out[n++] = (char)b;
    s += l;
  }
  return n;
}

bn_status bn_tok_create(const bn_vocab *v, bn_tokenizer **out, bn_error *err) {
  bn_tokenizer *t = calloc(1, sizeof *t);
  if (!t) return bn_fail(err, BN_E_NOMEM, "tokenizer: out of memory");
  t->v = v;
  t->piece = calloc((size_t)v->n_tokens, sizeof *t->piece);
  t->piece_len = calloc((size_t)v->n_tokens, sizeof *t->piece_len);
  if (!t->piece || !t->piece_len || bn_strmap_init(&t->tok, (size_t)v->n_tokens)) goto oom;
  for (int i = 0; i < 256; i++) t->byte_tok[i] = -1;
  for (int i = 0; i < v->n_tokens; i++) {
    bn_strmap_add(&t->tok, v->tokens[i], strlen(v->tokens[i]), i); /* the first of equal tokens wins */
    char *p = malloc(strlen(v->tokens[i]) + 1);
    if (!p) goto oom;
    int control = v->types[i] == BN_TOK_CONTROL || v->types[i] == BN_TOK_UNKNOWN;
    t->piece_len[i] = control ? 0 : v->kind == BN_VOCAB_SPM ? spm_piece(v, i, p) : bpe_piece(v, i, p);
    t->piece[i] = p;
    if (v->kind == BN_VOCAB_SPM && v->types[i] == BN_TOK_BYTE && t->piece_len[i] == 1)
      t->byte_tok[(unsigned char)p[0]] = i;
  }
  for (int i = 0; i < v->n_tokens; i++) { /* the added tokens' lengths, for bn_tok_encode_special */
    size_t l = strlen(v->tokens[i]);
    if ((v->types[i] != BN_TOK_CONTROL && v->types[i] != BN_TOK_USER) || !l || l > 256) continue;
    t->special_first[(unsigned char)v->tokens[i][0]] = 1;
    int k = 0;
    while (k < t->n_special_len && t->special_len[k] > (int)l) k++;
    if ((k < t->n_special_len && t->special_len[k] == (int)l) || t->n_special_len == 32) continue;
    memmove(t->special_len + k + 1, t->special_len + k, (size_t)(t->n_special_len - k) * sizeof *t->special_len);
    t->special_len[k] = (int)l, t->n_special_len++;
  }
  if (v->kind == BN_VOCAB_BPE)
    for (int b = 0; b < 256; b++) {
      char u[5] = {0};
      bn_utf8_encode(bn_bpe_byte_to_cp((unsigned char)b), u);
      t->byte_tok[b] = bn_strmap_get(&t->tok, u, strlen(u));
    }
  /* BPE: its merges and pre-tokenizer; SPM from tokenizer.json: its merges */
  bn_status st = v->kind == BN_VOCAB_BPE ? bn_tok_bpe_init(t, err) : v->n_merges ? bn_tok_merges_init(t, err) : BN_OK;
  if (st) {
    bn_tok_free(t);
    return st;
  }
  *out = t;
  return BN_OK;
oom:
  bn_tok_free(t);
  return bn_fail(err, BN_E_NOMEM, "tokenizer: out of memory");
}

void bn_tok_free(bn_tokenizer *t) {
  if (!t) return;
  if (t->piece)
    for (int i = 0; i < t->v->n_tokens; i++) free(t->piece[i]);
  free(t->piece);
  free(t->piece_len);
  bn_strmap_free(&t->tok);
  bn_tok_bpe_fini(t);
  free(t);
}

/* Text that starts the prompt (first) or follows an added token. */
static bn_status encode(const bn_tokenizer *t, const char *text, size_t len, int add_bos, int first, int32_t *ids,
                        int cap, int *n, bn_error *err) {
  long bad = bn_utf8_invalid_at(text, len);
  *n = 0;
  if (bad >= 0)
    return bn_fail(err, BN_E_INVALID, "prompt: invalid UTF-8 at byte %ld (0x%02x)", bad, (unsigned char)text[bad]);
  bn_idbuf b = {ids, cap, 0};
  if (add_bos && t->v->bos >= 0 && bn_idbuf_push(&b, t->v->bos))
    return bn_fail(err, BN_E_RANGE, "prompt: more than %d tokens", cap);
  bn_status st = t->v->kind == BN_VOCAB_SPM ? bn_tok_spm_encode(t, text, len, first, &b, err)
                                            : bn_tok_bpe_encode(t, text, len, &b, err);
  *n = b.n;
  return st;
}

bn_status bn_tok_encode(const bn_tokenizer *t, const char *text, size_t len, int add_bos, int32_t *ids, int cap,
                        int *n, bn_error *err) {
  return encode(t, text, len, add_bos, 1, ids, cap, n, err);
}

/* The added token at text[i], longest first: its id, or -1. */
static int special_at(const bn_tokenizer *t, const char *text, size_t len, size_t i, int *l) {
  if (!t->special_first[(unsigned char)text[i]]) return -1;
  for (int k = 0; k < t->n_special_len; k++) {
    *l = t->special_len[k];
    if ((size_t)*l > len - i) continue;
    int id = bn_strmap_get(&t->tok, text + i, (size_t)*l);
    if (id >= 0 && (t->v->types[id] == BN_TOK_CONTROL || t->v->types[id] == BN_TOK_USER)) return id;
  }
  return -1;
}

bn_status bn_tok_encode_special(const bn_tokenizer *t, const char *text, size_t len, int add_bos, int32_t *ids, int cap,
                                int *n, bn_error *err) {
  long bad = bn_utf8_invalid_at(text, len);
  *n = 0;
  if (bad >= 0)
    return bn_fail(err, BN_E_INVALID, "prompt: invalid UTF-8 at byte %ld (0x%02x)", bad, (unsigned char)text[bad]);
  if (add_bos && t->v->bos >= 0) {
    if (cap < 1) return bn_fail(err, BN_E_RANGE, "prompt: more than %d tokens", cap);
    ids[(*n)++] = t->v->bos;
  }
  size_t seg = 0;
  for (size_t i = 0; i <= len; i++) {
    int l = 0, id = i < len ? special_at(t, text, len, i, &l) : -1;
    if (id < 0 && i < len) continue;
    int got = 0;
    if (i > seg) { /* the plain text before it */
      bn_status st = encode(t, text + seg, i - seg, 0, seg == 0, ids + *n, cap - *n, &got, err);
      *n += got;
      if (st) return st;
    }
    if (id >= 0) {
      if (*n >= cap) return bn_fail(err, BN_E_RANGE, "prompt: more than %d tokens", cap);
      ids[(*n)++] = id;
      i += (size_t)l - 1;
    }
    seg = i + 1;
  }
  return BN_OK;
}

const char *bn_tok_piece(const bn_tokenizer *t, int32_t id, size_t *len) {
  if (id < 0 || id >= t->v->n_tokens) {
    *len = 0;
    return "";
  }
  *len = t->piece_len[id];
  return t->piece[id];
}

size_t bn_tok_decode(const bn_tokenizer *t, const int32_t *ids, int n, char *out, size_t cap) {
  size_t total = 0;
  int first = 1;
  for (int i = 0; i < n; i++) {
    size_t len;
    const char *p = bn_tok_piece(t, ids[i], &len);
    if (!len) continue;
    if (first && t->v->kind == BN_VOCAB_SPM && p[0] == ' ') p++, len--; /* the prefixed space */
    first = 0;
    for (size_t k = 0; k < len; k++, total++)
      if (total + 1 < cap) out[total] = p[k];
  }
  if (cap) out[total < cap ? total : cap - 1] = 0;
  return total;
}

int bn_tok_bos(const bn_tokenizer *t) { return t->v->bos; }
int bn_tok_control(const bn_tokenizer *t, const char *text) {
  int id = bn_strmap_get(&t->tok, text, strlen(text));
  return id >= 0 && t->v->types[id] == BN_TOK_CONTROL ? id : -1;
}
int bn_tok_eos(const bn_tokenizer *t) { return t->v->eos; }

/* The merge candidates: a max-heap by priority, then leftmost (smallest start).
 * An entry is stale when either symbol changed since it was pushed (SentencePiece's
 * scheme), so each merge costs O(log n) and a text O(n log n). */
typedef struct {
  double prio;
  int left, right, llen, rlen;
} cand;

static int before(const cand *a, const cand *b, const int *start) {
  return a->prio > b->prio || (a->prio == b->prio && start[a->left] < start[b->left]);
}

static void heap_push(cand *h, int *n, cand c, const int *start) {
  int i = (*n)++;
  for (; i > 0 && before(&c, &h[(i - 1) / 2], start); i = (i - 1) / 2) h[i] = h[(i - 1) / 2];
  h[i] = c;
}

static cand heap_pop(cand *h, int *n, const int *start) {
  cand top = h[0], last = h[--*n];
  int i = 0;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && before(&h[c + 1], &h[c], start)) c++;
    if (!before(&h[c], &last, start)) break;
    h[i] = h[c], i = c;
  }
  h[i] = last;
  return top;
}

static void push_pair(const bn_tokenizer *t, const char *buf, bn_symbols *s, cand *h, int *nh, int i, bn_pair_prio prio) {
  int r = i < 0 ? -1 : s->next[i];
  if (r < 0) return;
  double p = prio(t, buf + s->start[i], (size_t)s->len[i], (size_t)s->len[r]);
  if (p > -INFINITY) heap_push(h, nh, (cand){p, i, r, s->len[i], s->len[r]}, s->start);
}

bn_status bn_symbols_merge(const bn_tokenizer *t, const char *buf, size_t len, bn_pair_prio prio,
                           bn_status (*emit)(const bn_tokenizer *, const char *, size_t, bn_idbuf *), bn_idbuf *out) {
  if (!len) return BN_OK;
  if (len > (size_t)INT32_MAX / 4) return BN_E_RANGE;
  bn_symbols s = {0};
  int *prev = malloc(len * sizeof(int)), nh = 0;
  cand *heap = malloc(3 * len * sizeof *heap); /* n pairs at first, at most 2 more per merge */
  s.start = malloc(len * sizeof(int));
  s.len = malloc(len * sizeof(int));
  s.next = malloc(len * sizeof(int));
  bn_status st = BN_OK;
  if (!s.start || !s.len || !s.next || !prev || !heap) {
    st = BN_E_NOMEM;
    goto done;
  }
  for (size_t i = 0; i < len; s.n++) {
    int l = bn_utf8_len((unsigned char)buf[i]);
    if (i + (size_t)l > len) l = (int)(len - i);
    s.start[s.n] = (int)i;
    s.len[s.n] = l;
    s.next[s.n] = s.n + 1;
    prev[s.n] = s.n - 1;
    i += (size_t)l;
  }
  s.next[s.n - 1] = -1;
  for (int i = 0; i < s.n; i++) push_pair(t, buf, &s, heap, &nh, i, prio);
  while (nh) {
    cand c = heap_pop(heap, &nh, s.start);
    if (s.len[c.left] != c.llen || s.next[c.left] != c.right || s.len[c.right] != c.rlen) continue; /* stale */
    int nx = c.right;
    s.len[c.left] += s.len[nx];
    s.len[nx] = 0; /* gone: every entry naming it is stale */
    s.next[c.left] = s.next[nx];
    if (s.next[nx] >= 0) prev[s.next[nx]] = c.left;
    push_pair(t, buf, &s, heap, &nh, c.left, prio);
    push_pair(t, buf, &s, heap, &nh, prev[c.left], prio);
  }
  for (int i = 0; i >= 0 && !st; i = s.next[i]) st = emit(t, buf + s.start[i], (size_t)s.len[i], out);
done:
  free(s.start), free(s.len), free(s.next), free(prev), free(heap);
  return st;
}
