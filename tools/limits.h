/* This machine's limits, measured by bnc bench beside every figure it reports:
 * memory read bandwidth and the int8 multiply-add peak, on a given pool of
 * threads. The machine is shared and its neighbours change what it gives
 * from one second to the next, so bench measures them just before each
 * repetition it times. */
#ifndef BN_CLI_LIMITS_H
#define BN_CLI_LIMITS_H

#include "../codegen/backend.h"
#include "../runtime/pool.h"

typedef struct bn_cli_limits bn_cli_limits;

/* Maps and fills the 512 MiB the bandwidth loop reads (2 MiB pages, as plans' weights); the
 * peak loop is cg's (a backend without one: the peak reads 0). */
bn_status bn_cli_limits_open(bn_codegen *cg, bn_cli_limits **out, bn_error *err);
void bn_cli_limits_close(bn_cli_limits *l);
/* The limits now, on the pool's threads (what bench measures before each repetition): read
 * bandwidth in GB/s, the best of 3 passes over the buffer, and int8 multiply-adds per second
 * (G), the best of 3 runs of the peak loop. */
void bn_cli_limits_now(bn_cli_limits *l, bn_pool *pool, double *gbs, double *gmacs);
/* Read bandwidth (GB/s, the best of 3) over the first `bytes` of the buffer, read again and again:
 * against the whole buffer's, whether that much fits in a cache these threads use. */
double bn_cli_limits_read(bn_cli_limits *l, bn_pool *pool, size_t bytes);
/* The size of the last-level cache cpu0 sits behind, in bytes (sysfs, else sysconf), or 0 if unknown. */
size_t bn_cli_llc_bytes(void);

#endif
