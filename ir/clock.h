/* The monotonic clock every layer times itself with (passes, JIT, tuner, traces). */
#ifndef BN_CLOCK_H
#define BN_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t bn_clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline double bn_clock_s(void) { return (double)bn_clock_ns() * 1e-9; }

#endif
