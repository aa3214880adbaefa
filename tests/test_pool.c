/* The thread pool: every job runs on every thread; a barrier holds each thread
 * until all have arrived (checked by counters each thread bumps between
 * barriers); with four times as many threads as CPUs, waiters sleep instead of
 * spinning, so 20 000 barriers take well under the bound here (spinning
 * waiters took the cores from the threads they waited for: bnc bench -t 8 on
 * 2 cores ran tg 6 700x slower than -t 2). The bound is far above the cost, so
 * only waiting that spins through whole time slices fails it. */
#include <setjmp.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "../runtime/pool.h"

enum { MAX_T = 64, ROUNDS = 10 };

typedef struct {
  bn_pool *pool;
  _Atomic long count[MAX_T];
  _Atomic int bad;
} job;

static void barriers(void *ctx, int i, int n) {
  job *j = ctx;
  for (int r = 1; r <= ROUNDS; r++) {
    atomic_fetch_add(&j->count[i], 1);
    bn_pool_barrier(j->pool);
    for (int k = 0; k < n; k++) /* everyone has bumped their counter r times this job */
      if (atomic_load(&j->count[k]) % ROUNDS != r % ROUNDS) atomic_store(&j->bad, 1);
    bn_pool_barrier(j->pool);
  }
}

static void test_pool_barriers(void **state) {
  (void)state;
  int cpus = bn_pool_cpus();
  int sizes[3] = {1, cpus, 4 * cpus > MAX_T ? MAX_T : 4 * cpus};
  for (int s = 0; s < 3; s++) {
    bn_pool *p;
    bn_error err;
    assert_int_equal(bn_pool_create(sizes[s], &p, &err), BN_OK);
    static job j;
    memset(&j, 0, sizeof j);
    j.pool = p;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    enum { JOBS = 1000 };
    for (int k = 0; k < JOBS; k++) bn_pool_run(p, barriers, &j);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("  %d threads on %d CPUs: %d barriers in %.3f s\n", sizes[s], cpus, JOBS * ROUNDS * 2, dt);
    assert_false(atomic_load(&j.bad));
    for (int i = 0; i < sizes[s]; i++) assert_int_equal(atomic_load(&j.count[i]), JOBS * ROUNDS);
    assert_true(dt < 20);
    bn_pool_free(p);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_pool_barriers)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
