/* A string -> int map for names read from untrusted files (GGUF keys and
 * tensors, IR values, vocabularies): open addressing over SipHash-1-3 keyed
 * per process, so no crafted set of names collides into quadratic time.
 * Keys are (pointer, length) pairs the caller keeps alive. */
#ifndef BN_STRMAP_H
#define BN_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *key; /* NULL: empty */
  uint32_t len;
  int32_t val;
} bn_strmap_slot;

typedef struct {
  bn_strmap_slot *slot;
  size_t cap, n; /* cap: a power of two, or 0 before the first insert */
} bn_strmap;

/* Room for n keys without growing; 0 on success, -1 out of memory. */
int bn_strmap_init(bn_strmap *m, size_t n);
void bn_strmap_free(bn_strmap *m);
/* Inserts key -> val unless the key is there: returns -1 if inserted, the value
 * already there if not, -2 out of memory. */
int bn_strmap_add(bn_strmap *m, const char *key, size_t len, int val);
/* Inserts or replaces; 0, or -2 out of memory. */
int bn_strmap_set(bn_strmap *m, const char *key, size_t len, int val);
/* The value of key, -1 if absent. */
int bn_strmap_get(const bn_strmap *m, const char *key, size_t len);

/* Whether word is one of the space-separated words of list ("native x86-64-v3"); an empty word is not. */
int bn_words_has(const char *list, const char *word);

#endif
