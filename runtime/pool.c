#define _GNU_SOURCE /* sched_getaffinity */
#include "pool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct bn_pool {
  int n;
  int spin;                    /* polls before a waiter sleeps */
  pthread_t *threads;
  _Atomic unsigned generation; /* bumped once per job */
  _Atomic unsigned pending;    /* workers still running the current job */
  _Atomic int stop;
  _Atomic unsigned arrived;    /* threads at the barrier */
  _Atomic unsigned crossed;    /* bumped each time the barrier opens */
  _Atomic int sleepers;        /* threads asleep on one of the words above */
  bn_pool_fn fn;
  void *ctx;
};

typedef struct {
  bn_pool *p;
  int id;
} worker_arg;

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

static void futex(_Atomic unsigned *word, int op, unsigned val) {
  syscall(SYS_futex, (unsigned *)word, op, val, NULL, NULL, 0);
}

/* Waits until *word differs from old: polls p->spin times, then sleeps in the kernel
 * (a thread that keeps spinning takes the core from the one it waits for when
 * there are more threads than cores, or another process needs one). */
static void await_change(bn_pool *p, _Atomic unsigned *word, unsigned old) {
  for (int i = 0; i < p->spin; i++) {
    if (atomic_load_explicit(word, memory_order_acquire) != old) return;
    relax();
  }
  atomic_fetch_add(&p->sleepers, 1);
  while (atomic_load(word) == old && !atomic_load(&p->stop)) futex(word, FUTEX_WAIT_PRIVATE, old);
  atomic_fetch_sub(&p->sleepers, 1);
}

/* After changing *word: wakes its sleepers (a sleeper registers before it checks the word, so
 * either it sees the change or it is counted here). */
static void wake(bn_pool *p, _Atomic unsigned *word) {
  if (atomic_load(&p->sleepers)) futex(word, FUTEX_WAKE_PRIVATE, INT_MAX);
}

static void *worker(void *a) {
  worker_arg w = *(worker_arg *)a;
  bn_pool *p = w.p;
  free(a);
  unsigned seen = 0;
  for (;;) {
    await_change(p, &p->generation, seen);
    if (atomic_load(&p->stop)) return NULL;
    seen = atomic_load_explicit(&p->generation, memory_order_acquire);
    p->fn(p->ctx, w.id, p->n);
    if (atomic_fetch_sub(&p->pending, 1) == 1) wake(p, &p->pending);
  }
}

int bn_pool_cpus(void) {
  cpu_set_t set;
  if (!sched_getaffinity(0, sizeof set, &set) && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
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
  /* a short poll with a core each (tens of microseconds); with more threads than cores, hardly any */
  p->spin = n <= bn_pool_cpus() ? 1 << 13 : 16;
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
  atomic_fetch_add(&p->generation, 1);
  futex(&p->generation, FUTEX_WAKE_PRIVATE, INT_MAX);
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
  atomic_store(&p->pending, (unsigned)p->n - 1);
  atomic_fetch_add(&p->generation, 1);
  wake(p, &p->generation);
  fn(ctx, 0, p->n);
  for (unsigned left; (left = atomic_load(&p->pending)) > 0;) await_change(p, &p->pending, left);
}

void bn_pool_barrier(bn_pool *p) {
  if (p->n == 1) return;
  unsigned gen = atomic_load_explicit(&p->crossed, memory_order_acquire);
  if (atomic_fetch_add(&p->arrived, 1) == (unsigned)p->n - 1) {
    atomic_store_explicit(&p->arrived, 0, memory_order_relaxed);
    atomic_fetch_add(&p->crossed, 1); /* the last one opens it */
    wake(p, &p->crossed);
    return;
  }
  await_change(p, &p->crossed, gen);
}
