/* A pool of worker threads for splitting kernels by rows. The caller is
 * thread 0; workers poll a generation counter between jobs for a while, so
 * handing out a job costs a cache line, not a system call, then sleep on it
 * (futex). A job may be a whole step: its threads meet at bn_pool_barrier
 * between kernels, which likewise polls briefly, then sleeps. */
#ifndef BN_RT_POOL_H
#define BN_RT_POOL_H

#include <stdint.h>

#include "../ir/status.h"

typedef struct bn_pool bn_pool;
typedef void (*bn_pool_fn)(void *ctx, int thread, int n_threads);

bn_status bn_pool_create(int n_threads, bn_pool **out, bn_error *err);
/* The CPUs this process may run on (its affinity mask). */
int bn_pool_cpus(void);
void bn_pool_free(bn_pool *p);
int bn_pool_size(const bn_pool *p);
/* Runs fn(ctx, i, n) on every thread i (the caller is 0) and returns when all are done. */
void bn_pool_run(bn_pool *p, bn_pool_fn fn, void *ctx);
/* Inside a job: returns once every thread of the pool has called it (a
 * counter barrier; a no-op for one thread). */
void bn_pool_barrier(bn_pool *p);
/* Thread i of n's share [*lo, *hi) of N rows split in multiples of G (the last thread also
 * takes the rows past the last whole multiple). */
static inline void bn_pool_share(int64_t N, int64_t G, int i, int n, int64_t *lo, int64_t *hi) {
  *lo = N / G * i / n * G;
  *hi = i == n - 1 ? N : N / G * (i + 1) / n * G;
}

#endif
