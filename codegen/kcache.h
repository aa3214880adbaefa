/* The on-disk kernel cache: object code of generated kernels, keyed by an
 * XXH3 of the kernel's IR and the target. Every entry carries a MAC under a
 * secret key kept in the directory (mac.key, mode 0600, made on first use), so
 * bnc executes only code it wrote itself: an entry
 * copied in from elsewhere, damaged or forged is dropped and rebuilt. The
 * directory must belong to the user and be closed to others' writes
 * (bn_private_dir). The caller names the directory (tools/ reads
 * BNC_CACHE_DIR and friends). Safe with concurrent writers. */
#ifndef BN_KCACHE_H
#define BN_KCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "../ir/status.h"

enum { BN_KCACHE_KEY_BYTES = 32 };

struct bn_kcache {
  char dir[4096];
  uint8_t mac_key[BN_KCACHE_KEY_BYTES];
};
typedef struct bn_kcache bn_kcache;

/* Checks the directory (creating it with mode 0700 if absent) and reads its key. */
bn_status bn_kcache_open(bn_kcache *c, const char *dir, bn_error *err);
/* The payload of key's entry (malloc'd) and its size; NULL if missing. An entry
 * whose header or MAC is wrong is removed. */
void *bn_kcache_load(const bn_kcache *c, uint64_t key, size_t *size);
/* Stores an entry atomically; 0 on success. */
int bn_kcache_store(const bn_kcache *c, uint64_t key, const void *data, size_t size);
/* Removes key's entry (its code failed to load). */
void bn_kcache_drop(const bn_kcache *c, uint64_t key);

#endif
