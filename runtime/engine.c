#include "engine.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer.h"

typedef struct {
  int used;
  bn_engine_request r;
  int32_t *toks;        /* n_ctx: the prompt, then what was generated */
  int n_prompt, n_fed, n_gen;
  bn_sampler *smp;
  char *text;           /* the generated text, valid UTF-8; on_text has had its first `sent` bytes */
  size_t len, cap, sent;
  unsigned char carry[4]; /* the start of a character the next piece may finish */
  int n_carry;
  double t0, ttft;
} slot;

struct bn_engine {
  bn_session *s;
  const bn_model *m;
  int n_slots, queue_cap, max_step, n_ctx, eot[2]; /* end of turn: <|eot_id|>'s and <|im_end|>'s ids, or -1 */
  double pause_s;
  slot *slots;
  bn_engine_request *queue; /* a ring of queue_cap */
  double *queued_at;
  int q_head, q_len, stop;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  float *logits;            /* a row the sampler may change */
  bn_seq_tokens *in;
  int *which;
  bn_engine_stats st;
};

/* How many bytes of c[0..have) begin a well-formed UTF-8 character (Unicode's table 3-7), and in *need how
 * many it takes (0: c[0] starts none). */
static int utf8_prefix(const unsigned char *c, int have, int *need) {
  unsigned b = c[0], lo = 0x80, hi = 0xbf;
  *need = b < 0x80 ? 1 : b < 0xc2 ? 0 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : b < 0xf5 ? 4 : 0;
  if (b == 0xe0) lo = 0xa0;
  else if (b == 0xed) hi = 0x9f;
  else if (b == 0xf0) lo = 0x90;
  else if (b == 0xf4) hi = 0x8f;
  int k = *need ? 1 : 0;
  for (; k < *need && k < have; k++, lo = 0x80, hi = 0xbf)
    if (c[k] < lo || c[k] > hi) break;
  return k;
}

/* Appends n bytes to the slot's text (room for 3 n + 12 more is there), keeping it valid UTF-8: whole
 * characters as they are, each maximal ill-formed part as one U+FFFD (as Unicode recommends and Python's
 * "replace" does), a character still unfinished at the end kept in carry (at the request's end, final,
 * it too becomes U+FFFD). A random model's byte tokens make all of these. */
static void append_utf8(slot *sl, const char *piece, size_t n, int final) {
  while (n || sl->n_carry) {
    while (n && sl->n_carry < 4) sl->carry[sl->n_carry++] = (unsigned char)*piece++, n--;
    int need, k = utf8_prefix(sl->carry, sl->n_carry, &need);
    if (need && k == need) memcpy(sl->text + sl->len, sl->carry, (size_t)k), sl->len += (size_t)k; /* whole */
    else if (need && k == sl->n_carry && !n && !final) break; /* unfinished: wait for the next piece */
    else memcpy(sl->text + sl->len, "\xef\xbf\xbd", 3), sl->len += 3, k = k ? k : 1; /* ill-formed */
    memmove(sl->carry, sl->carry + k, (size_t)(sl->n_carry - k)), sl->n_carry -= k;
  }
}

/* The slot's request ends: the rest of its text, the slot freed (a request submitted from on_done finds
 * it free), then on_done. */
static void finish(bn_engine *e, slot *sl, bn_finish why, const bn_error *err) {
  bn_engine_result r = {.finish = why, .n_prompt = sl->n_prompt, .n_gen = sl->n_gen, .ttft_s = sl->ttft};
  if (err) r.err = *err;
  if (sl->n_carry && sl->len + 12 <= sl->cap) append_utf8(sl, "", 0, 1); /* an unfinished last character */
  sl->n_carry = 0;
  if (why != BN_FINISH_CANCELLED && why != BN_FINISH_ERROR && sl->len > sl->sent)
    sl->r.on_text(sl->text + sl->sent, sl->len - sl->sent, sl->r.user);
  bn_sampler_free(sl->smp);
  sl->smp = NULL;
  void (*done)(const bn_engine_result *, void *) = sl->r.on_done;
  void *user = sl->r.user;
  pthread_mutex_lock(&e->mu);
  sl->used = 0;
  e->st.active--, e->st.done++, e->st.tokens_out += sl->n_gen;
  e->st.cancelled += why == BN_FINISH_CANCELLED, e->st.errors += why == BN_FINISH_ERROR;
  pthread_mutex_unlock(&e->mu);
  done(&r, user);
}

/* Gives on_text what can no longer turn into a stop string, in whole characters; 1: generation ends here
 * (a stop string was found: the text is cut before it). */
static int emit(slot *sl, int *cancel) {
  size_t longest = 0, cut = sl->len;
  for (int k = 0; k < sl->r.n_stop; k++) {
    size_t n = strlen(sl->r.stop[k]), from = sl->sent > n ? sl->sent - n : 0;
    longest = n > longest ? n : longest;
    for (size_t p = from; n && p + n <= sl->len && p < cut; p++)
      if (!memcmp(sl->text + p, sl->r.stop[k], n)) {
        cut = p;
        break;
      }
  }
  while (cut < sl->len && cut > 0 && ((unsigned char)sl->text[cut] & 0xc0) == 0x80) cut--; /* a stop's bytes mid-character */
  int stopped = cut < sl->len;
  size_t upto = stopped ? cut : sl->len > longest ? sl->len - (longest ? longest - 1 : 0) : 0;
  if (stopped) sl->len = cut;
  if (upto < sl->sent) upto = sl->sent;
  while (upto > sl->sent && upto < sl->len && ((unsigned char)sl->text[upto] & 0xc0) == 0x80) upto--; /* whole characters */
  if (upto > sl->sent && sl->r.on_text(sl->text + sl->sent, upto - sl->sent, sl->r.user)) *cancel = 1;
  sl->sent = upto > sl->sent ? upto : sl->sent;
  return stopped;
}

/* Slot i's request admitted: its prompt tokenized and its sampler made; 0, or it finished already. */
static int admit(bn_engine *e, int i, const bn_engine_request *r, double t0) {
  slot *sl = &e->slots[i];
  bn_error err = {0};
  sl->r = *r, sl->n_fed = sl->n_gen = 0, sl->len = sl->sent = 0, sl->t0 = t0, sl->ttft = 0, sl->n_carry = 0;
  bn_session_seq_truncate(e->s, i, 0);
  const bn_tokenizer *tok = bn_session_tokenizer(e->s);
  bn_status st = BN_OK;
  sl->n_prompt = 0;
  if (r->prompt) st = bn_tok_encode(tok, r->prompt, r->len, e->m->vocab.add_bos, sl->toks, e->n_ctx, &sl->n_prompt, &err);
  else if (e->m->vocab.add_bos && e->m->vocab.bos >= 0) sl->toks[sl->n_prompt++] = e->m->vocab.bos;
  for (int k = 0; !st && k < r->n_parts; k++) { /* a template's pieces */
    int n = 0, id = r->special[k] ? bn_tok_control(tok, r->parts[k]) : 0;
    if (r->special[k] && id < 0) st = bn_fail(&err, BN_E_INVALID, "the model has no control token '%.60s'", r->parts[k]);
    else if (r->special[k] && sl->n_prompt >= e->n_ctx) st = BN_E_RANGE;
    else if (r->special[k]) sl->toks[sl->n_prompt++] = id;
    else st = bn_tok_encode(tok, r->parts[k], strlen(r->parts[k]), 0, sl->toks + sl->n_prompt, e->n_ctx - sl->n_prompt,
                            &n, &err);
    sl->n_prompt += n;
  }
  if (!st && sl->n_prompt >= e->n_ctx) st = BN_E_RANGE;
  if (st == BN_E_RANGE)
    bn_fail(&err, BN_E_RANGE, "the prompt's %d+ tokens do not fit the context of %d (leave room to generate)",
            sl->n_prompt, e->n_ctx);
  else if (!st && sl->n_prompt < 1) st = bn_fail(&err, BN_E_INVALID, "the prompt is empty");
  if (!st) st = bn_sampler_create(&r->sampler, e->m->hp.n_vocab, &sl->smp, &err);
  if (st) finish(e, sl, BN_FINISH_ERROR, &err);
  else pthread_mutex_lock(&e->mu), e->st.tokens_in += sl->n_prompt, pthread_mutex_unlock(&e->mu);
  return st != BN_OK;
}

/* The token after slot i's last row of logits: sampled, its text given out, the slot finished if it ends. */
static void next_token(bn_engine *e, int i, const float *row) {
  slot *sl = &e->slots[i];
  memcpy(e->logits, row, (size_t)e->m->hp.n_vocab * sizeof *row);
  int32_t tok = bn_sampler_sample(sl->smp, e->logits, sl->toks, sl->n_fed);
  if (!sl->n_gen) sl->ttft = bn_now() - sl->t0;
  if (tok == e->m->vocab.eos || tok == e->eot[0] || tok == e->eot[1]) {
    finish(e, sl, BN_FINISH_STOP, NULL);
    return;
  }
  sl->toks[sl->n_prompt + sl->n_gen++] = tok;
  size_t plen;
  const char *piece = bn_tok_piece(bn_session_tokenizer(e->s), tok, &plen);
  if (sl->len + 3 * plen + 12 > sl->cap) { /* append_utf8's worst case: every byte a replacement */
    size_t cap = (sl->len + 3 * plen + 12) * 2 + 64;
    char *t = realloc(sl->text, cap);
    if (!t) {
      bn_error err;
      bn_fail(&err, BN_E_NOMEM, "out of memory for the text");
      finish(e, sl, BN_FINISH_ERROR, &err);
      return;
    }
    sl->text = t, sl->cap = cap;
  }
  append_utf8(sl, piece, plen, 0);
  int cancel = 0, stopped = emit(sl, &cancel);
  if (cancel) finish(e, sl, BN_FINISH_CANCELLED, NULL);
  else if (stopped) finish(e, sl, BN_FINISH_STOP, NULL);
  else if (sl->n_gen >= sl->r.max_tokens || sl->n_prompt + sl->n_gen >= e->n_ctx) finish(e, sl, BN_FINISH_LENGTH, NULL);
}

/* One step over every busy slot: decoding slots first (one token each), then prompt chunks in the room left. */
static void step(bn_engine *e) {
  int n = 0, room = e->max_step;
  for (int pass = 0; pass < 2; pass++) {
    if (pass && n && room > e->max_step / 8) room = e->max_step / 8 > 0 ? e->max_step / 8 : 1; /* others decode: small chunks */
    for (int i = 0; i < e->n_slots && room > 0; i++) {
      slot *sl = &e->slots[i];
      int left = sl->n_prompt + sl->n_gen - sl->n_fed, decoding = sl->n_fed >= sl->n_prompt;
      if (!sl->used || left <= 0 || decoding != !pass) continue;
      int c = left < room ? left : room;
      e->in[n] = (bn_seq_tokens){.seq = i, .tokens = sl->toks + sl->n_fed, .n = c};
      e->which[n++] = i, room -= c;
    }
  }
  if (!n) return;
  const float *out;
  bn_error err = {0};
  double t0 = bn_now();
  bn_status st = bn_session_step(e->s, e->in, n, &out, &err);
  const bn_exec_stat *ks;
  int nk = bn_exec_stats(bn_session_exec(e->s), &ks);
  pthread_mutex_lock(&e->mu);
  e->st.steps++, e->st.step_s += bn_now() - t0;
  e->st.n_kinds = nk < BN_ENGINE_KINDS ? nk : BN_ENGINE_KINDS;
  memcpy(e->st.kinds, ks, (size_t)e->st.n_kinds * sizeof *ks);
  pthread_mutex_unlock(&e->mu);
  if (e->pause_s > 0) nanosleep(&(struct timespec){(time_t)e->pause_s, (long)((e->pause_s - (time_t)e->pause_s) * 1e9)}, NULL);
  for (int k = 0; k < n; k++) {
    slot *sl = &e->slots[e->which[k]];
    if (st) {
      finish(e, sl, BN_FINISH_ERROR, &err);
      continue;
    }
    sl->n_fed += e->in[k].n;
    if (sl->n_fed == sl->n_prompt + sl->n_gen) next_token(e, e->which[k], out + (size_t)k * (size_t)e->m->hp.n_vocab);
  }
}

static void *run(void *arg) {
  bn_engine *e = arg;
  pthread_mutex_lock(&e->mu);
  for (;;) {
    int busy = 0;
    for (int i = 0; i < e->n_slots; i++) busy += e->slots[i].used;
    while (!e->stop && e->q_len && busy < e->n_slots) { /* admit the queue's head into a free slot */
      int i = 0;
      while (e->slots[i].used) i++;
      bn_engine_request r = e->queue[e->q_head];
      double t0 = e->queued_at[e->q_head];
      e->q_head = (e->q_head + 1) % e->queue_cap, e->q_len--, e->st.queued--;
      e->slots[i].used = 1, e->st.active++, busy++;
      pthread_mutex_unlock(&e->mu);
      if (admit(e, i, &r, t0)) busy--;
      pthread_mutex_lock(&e->mu);
    }
    if (e->stop) break;
    if (!busy) {
      pthread_cond_wait(&e->cv, &e->mu);
      continue;
    }
    pthread_mutex_unlock(&e->mu);
    step(e);
    pthread_mutex_lock(&e->mu);
  }
  pthread_mutex_unlock(&e->mu);
  return NULL;
}

bn_status bn_engine_create(const bn_model *m, const bn_memplan *mp, const bn_engine_params *p, bn_engine **out,
                           bn_error *err) {
  *out = NULL;
  if (p->slots < 1 || p->slots > BN_EXEC_MAX_SEQ || p->queue < 0 || p->queue > 1 << 16)
    return bn_fail(err, BN_E_INVALID, "engine: %d slots (1..%d), a queue of %d (0..65536)", p->slots, BN_EXEC_MAX_SEQ,
                   p->queue);
  bn_engine *e = calloc(1, sizeof *e);
  if (!e) return bn_fail(err, BN_E_NOMEM, "engine: out of memory");
  bn_session_params sp = p->session;
  sp.exec.n_seq = p->slots;
  sp.sampler = bn_sampler_defaults(); /* the session's own sampler is not used: each request brings one */
  bn_status st = bn_session_create(m, mp, &sp, &e->s, err);
  if (st) return free(e), st;
  e->m = m, e->n_slots = p->slots, e->queue_cap = p->queue + p->slots, e->pause_s = p->step_pause_s;
  e->n_ctx = bn_session_params_of(e->s)->n_ctx, e->max_step = bn_exec_max_tokens(bn_session_exec(e->s));
  e->eot[0] = bn_tok_control(bn_session_tokenizer(e->s), "<|eot_id|>");
  e->eot[1] = bn_tok_control(bn_session_tokenizer(e->s), "<|im_end|>");
  e->slots = calloc((size_t)e->n_slots, sizeof *e->slots);
  e->queue = calloc((size_t)e->queue_cap, sizeof *e->queue);
  e->queued_at = calloc((size_t)e->queue_cap, sizeof *e->queued_at);
  e->logits = malloc((size_t)m->hp.n_vocab * sizeof *e->logits);
  e->in = calloc((size_t)e->n_slots, sizeof *e->in);
  e->which = calloc((size_t)e->n_slots, sizeof *e->which);
  int ok = e->slots && e->queue && e->queued_at && e->logits && e->in && e->which;
  for (int i = 0; ok && i < e->n_slots; i++) ok = (e->slots[i].toks = malloc((size_t)e->n_ctx * sizeof(int32_t))) != NULL;
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->cv, NULL);
  if (!ok || pthread_create(&e->th, NULL, run, e)) {
    e->stop = 1, e->th = 0;
    bn_engine_free(e);
    return bn_fail(err, BN_E_NOMEM, "engine: out of memory or threads");
  }
  *out = e;
  return BN_OK;
}

bn_status bn_engine_submit(bn_engine *e, const bn_engine_request *r, bn_error *err) {
  if ((!r->prompt && (r->n_parts < 1 || !r->parts || !r->special)) || !r->on_text || !r->on_done || r->max_tokens < 1 ||
      r->n_stop < 0 || (r->n_stop && !r->stop))
    return bn_fail(err, BN_E_INVALID, "engine: a request needs a prompt, callbacks and max_tokens of 1 or more");
  pthread_mutex_lock(&e->mu);
  if (e->stop || e->q_len == e->queue_cap || e->st.active + e->q_len >= e->queue_cap) {
    pthread_mutex_unlock(&e->mu);
    return bn_fail(err, BN_E_BUSY, "all %d slots and the queue's %d places are taken", e->n_slots,
                   e->queue_cap - e->n_slots);
  }
  int at = (e->q_head + e->q_len++) % e->queue_cap;
  e->queue[at] = *r, e->queued_at[at] = bn_now();
  e->st.requests++, e->st.queued++;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  return BN_OK;
}

void bn_engine_stats_get(bn_engine *e, bn_engine_stats *s) {
  pthread_mutex_lock(&e->mu);
  *s = e->st;
  pthread_mutex_unlock(&e->mu);
}

const bn_session *bn_engine_session(const bn_engine *e) { return e->s; }

void bn_engine_free(bn_engine *e) {
  if (!e) return;
  pthread_mutex_lock(&e->mu);
  e->stop = 1;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  if (e->th) pthread_join(e->th, NULL);
  for (int i = 0; e->slots && i < e->n_slots; i++)
    if (e->slots[i].used) finish(e, &e->slots[i], BN_FINISH_CANCELLED, NULL);
  for (; e->q_len; e->q_head = (e->q_head + 1) % e->queue_cap, e->q_len--) {
    bn_engine_result r = {.finish = BN_FINISH_CANCELLED};
    e->queue[e->q_head].on_done(&r, e->queue[e->q_head].user);
  }
  for (int i = 0; e->slots && i < e->n_slots; i++) free(e->slots[i].toks), free(e->slots[i].text);
  bn_session_free(e->s);
  pthread_mutex_destroy(&e->mu);
  pthread_cond_destroy(&e->cv);
  free(e->slots), free(e->queue), free(e->queued_at), free(e->logits), free(e->in), free(e->which);
  free(e);
}
