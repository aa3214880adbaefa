#include "pool.h"

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

struct bn_pool {
  int n;
  pthread_t *threads;
  _Atomic unsigned generation; /* bumped once per job */
  _Atomic int pending;         /* workers still running the current job */
  _Atomic int stop;
  _Atomic int arrived;       /* threads at the barrier */
  _Atomic unsigned crossed;  /* bumped each time the barrier opens */
  bn_pool_fn fn;
  void *ctx;
};

typedef struct {
  bn_pool *p;
  int id;
} worker_arg;

static void wait_change(_Atomic unsigned *v, unsigned old, _Atomic int *stop) {
  for (unsigned spins = 0; atomic_load_explicit(v, memory_order_acquire) == old && !atomic_load(stop); spins++) {
    _mm_pause();
    if (spins > 20000) sched_yield(); /* idle between tokens: give the core away now and then */
  }
}

static void *worker(void *a) {
  worker_arg w = *(worker_arg *)a;
  free(a);
  unsigned seen = 0;
  for (;;) {
    wait_change(&w.p->generation, seen, &w.p->stop);
    if (atomic_load(&w.p->stop)) return NULL;
    seen = atomic_load_explicit(&w.p->generation, memory_order_acquire);
    w.p->fn(w.p->ctx, w.id, w.p->n);
    atomic_fetch_sub_explicit(&w.p->pending, 1, memory_order_release);
  }
}

bn_status bn_pool_create(int n, bn_pool **out, bn_error *err) {
  *out = NULL;
  if (n < 1 || n > 512) return bn_fail(err, BN_E_INVALID, "threads = %d (1..512)", n);
  bn_pool *p = calloc(1, sizeof *p);
  if (!p || !(p->threads = calloc((size_t)n, sizeof *p->threads))) {
    free(p);
    return bn_fail(err, BN_E_NOMEM, "out of memory");
  }
  p->n = n;
  for (int i = 1; i < n; i++) {
    worker_arg *a = malloc(sizeof *a);
    if (!a) break;
    *a = (worker_arg){p, i};
    if (pthread_create(&p->threads[i], NULL, worker, a)) {
      free(a);
      p->n = i; /* run with the threads that started */
      break;
    }
  }
  *out = p;
  return BN_OK;
}

void bn_pool_free(bn_pool *p) {
  if (!p) return;
  atomic_store(&p->stop, 1);
  for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
  free(p->threads);
  free(p);
}

int bn_pool_size(const bn_pool *p) { return p->n; }

void bn_pool_run(bn_pool *p, bn_pool_fn fn, void *ctx) {
  if (p->n == 1) {
    fn(ctx, 0, 1);
    return;
  }
  p->fn = fn;
  p->ctx = ctx;
  atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
  fn(ctx, 0, p->n);
  while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) _mm_pause();
}

void bn_pool_barrier(bn_pool *p) {
  if (p->n == 1) return;
  unsigned gen = atomic_load_explicit(&p->crossed, memory_order_acquire);
  if (atomic_fetch_add_explicit(&p->arrived, 1, memory_order_acq_rel) == p->n - 1) {
    atomic_store_explicit(&p->arrived, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->crossed, 1, memory_order_release); /* the last one opens it */
    return;
  }
  while (atomic_load_explicit(&p->crossed, memory_order_acquire) == gen) _mm_pause();
}
