/* The on-disk kernel cache (object code of generated kernels, keyed by an
 * XXH3 of the kernel's IR and the target). Directory: $BNC_CACHE_DIR, else
 * $XDG_CACHE_HOME/bnc/kernels, else ~/.cache/bnc/kernels; BNC_CACHE_DIR=off
 * (or empty) turns it off. Safe with concurrent writers; corrupt entries
 * are ignored. */
#ifndef BN_LLVM_KCACHE_H
#define BN_LLVM_KCACHE_H

#include <stddef.h>
#include <stdint.h>

/* Resolves (and creates) the directory: 1, or 0 when the cache is off or unusable. */
int bn_kcache_dir(char *buf, size_t cap);
/* The payload of key's entry (malloc'd) and its size; NULL if missing or damaged. */
void *bn_kcache_load(const char *dir, uint64_t key, size_t *size);
/* Stores an entry atomically; 0 on success. */
int bn_kcache_store(const char *dir, uint64_t key, const void *data, size_t size);

#endif
