#include "strmap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static uint64_t sip_key[2];
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void make_key(void) {
  /* without entropy the clock: still unknown to a file's author */
  if (getrandom(sip_key, sizeof sip_key, 0) != (ssize_t)sizeof sip_key) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sip_key[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&ts;
    sip_key[1] = (uint64_t)ts.tv_sec * 0xbf58476d1ce4e5b9ull ^ (uint64_t)(uintptr_t)sip_key;
  }
}

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                  \
  do {                                                                                            \
    v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32), v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2; \
    v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0, v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32); \
  } while (0)

/* SipHash-1-3 (one compression round, three finalization rounds). */
static uint64_t siphash(const char *p, size_t len) {
  uint64_t k0 = sip_key[0], k1 = sip_key[1];
  uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t m;
    memcpy(&m, p + i, 8);
    v3 ^= m;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t k = 0; i + k < len; k++) b |= (uint64_t)(unsigned char)p[i + k] << (8 * k);
  v3 ^= b;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

int bn_strmap_init(bn_strmap *m, size_t n) {
  pthread_once(&key_once, make_key);
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  m->slot = calloc(cap, sizeof *m->slot);
  m->cap = m->slot ? cap : 0, m->n = 0;
  return m->slot ? 0 : -1;
}

void bn_strmap_free(bn_strmap *m) {
  free(m->slot);
  memset(m, 0, sizeof *m);
}

/* The slot holding key, or the empty slot where it would go. */
static bn_strmap_slot *probe(const bn_strmap *m, const char *key, size_t len) {
  size_t i = siphash(key, len) & (m->cap - 1);
  for (;; i = (i + 1) & (m->cap - 1)) {
    bn_strmap_slot *s = &m->slot[i];
    if (!s->key || (s->len == len && !memcmp(s->key, key, len))) return s;
  }
}

static int grow(bn_strmap *m) {
  bn_strmap bigger;
  if (bn_strmap_init(&bigger, m->cap)) return -1; /* twice the slots */
  for (size_t i = 0; i < m->cap; i++)
    if (m->slot[i].key) *probe(&bigger, m->slot[i].key, m->slot[i].len) = m->slot[i];
  bigger.n = m->n;
  free(m->slot);
  *m = bigger;
  return 0;
}

static bn_strmap_slot *place(bn_strmap *m, const char *key, size_t len) {
  if (len > UINT32_MAX || (!m->cap && bn_strmap_init(m, 8)) || (2 * (m->n + 1) > m->cap && grow(m))) return NULL;
  return probe(m, key, len);
}

int bn_strmap_add(bn_strmap *m, const char *key, size_t len, int val) {
  bn_strmap_slot *s = place(m, key, len);
  if (!s) return -2;
  if (s->key) return s->val;
  *s = (bn_strmap_slot){key, (uint32_t)len, val};
  m->n++;
  return -1;
}

int bn_strmap_set(bn_strmap *m, const char *key, size_t len, int val) {
  bn_strmap_slot *s = place(m, key, len);
  if (!s) return -2;
  if (!s->key) m->n++;
  *s = (bn_strmap_slot){key, (uint32_t)len, val};
  return 0;
}

int bn_strmap_get(const bn_strmap *m, const char *key, size_t len) {
  if (!m->cap) return -1;
  const bn_strmap_slot *s = probe(m, key, len);
  return s->key ? s->val : -1;
}

int bn_words_has(const char *list, const char *word) {
  size_t n = strlen(word);
  for (const char *k = list; n && k && (k = strstr(k, word)); k += n)
    if ((k == list || k[-1] == ' ') && (k[n] == ' ' || !k[n])) return 1;
  return 0;
}
