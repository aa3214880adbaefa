/* .bnplan: a compiled model in one file (format in docs/bnplan.md).
 * Little-endian, sectioned, content-hashed; packed weights are 64-byte
 * aligned and used in place from the mapping. The reader validates every
 * field and bound: a damaged plan is an error naming the field, never a crash. */
#ifndef BN_RT_PLAN_H
#define BN_RT_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "../codegen/backend.h"
#include "../ir/memplan.h"
#include "../ir/model.h"
#include "trust.h"

/* 2: TP2 rows interleaved in blocks of 4; 3: the object code is signed (version 2 is read, its code ignored);
 * 4: the object code names its backend (version 3's is LLVM's); 5: a table of 8 sections, the 8th a
 * device section (the Metal library) */
enum { BN_PLAN_VERSION = 6 };
enum { BN_PLAN_MAX_CTX = 1 << 20 }; /* the context lengths a plan may state */

typedef struct {
  char path[256];
  bn_model model;      /* hyperparameters, vocabulary, graph (weights point into the mapping) */
  bn_memplan mem;
  char target[24];
  uint64_t hash;
  uint32_t version;
  bn_objcode code;     /* the object code section (n = 0 without one); bytes point into the mapping */
  int has_objects;     /* the file has an object code section (of a version 2 plan: not read) */
  const uint8_t *device; /* the device section (bnc compile --target metal), in the plan's bytes; NULL: none */
  uint64_t device_bytes;
  uint8_t signer[BN_PK_BYTES], signature[BN_SIG_BYTES]; /* who signed it (all zero: nobody) */
  uint64_t sig_off;    /* where the signature block lies in the file */
  uint64_t weights_off, weights_bytes; /* the weights section (not signed: plan_sign.c) */
  const uint8_t *base; /* the plan's bytes: read into memory, mapped, or the caller's buffer */
  size_t size;
  int mapped;          /* base is ours: mapped_size bytes to unmap */
  size_t mapped_size;
} bn_plan;

typedef struct {
  const char *target;     /* the kernels' target (bn_backend_opts.target); NULL: native */
  const bn_objcode *code; /* object code to store (NULL or n = 0: none) */
  const uint8_t *sign_sk; /* the Ed25519 secret key (BN_SK_BYTES) that signs it; NULL: unsigned, never run */
  const char *input;      /* the file the plan is made from, refused as the destination (NULL: none) */
  const void *device;     /* a device section to store (metal/plan.c makes Metal's); NULL: none */
  size_t device_bytes;
} bn_plan_write_opts;

/* Writes atomically (bn_outfile). Deterministic: the same inputs give the same bytes. */
bn_status bn_plan_write(const bn_model *m, const bn_memplan *mp, const bn_plan_write_opts *o, const char *path,
                        bn_error *err);
/* Reads the file into memory advised for 2 MiB pages (faster weight streaming),
 * or maps it where the copy cannot be made. */
bn_status bn_plan_open(bn_plan *p, const char *path, bn_error *err);
/* Maps the file instead: pages shared through the page cache, nothing copied (bnc: BNC_MMAP=1). */
bn_status bn_plan_map(bn_plan *p, const char *path, bn_error *err);
/* Parses a buffer the caller keeps alive (fuzzing, tests). */
bn_status bn_plan_parse(bn_plan *p, const void *buf, size_t size, const char *name, bn_error *err);
void bn_plan_close(bn_plan *p);
/* May p's object code run? Only when signed by a key in t (NULL: none) and the signature
 * matches the file; otherwise 0 and why, in words, for the one line that says so. */
int bn_plan_code_trusted(const bn_plan *p, const bn_trust *t, char *why, size_t cap);

/* The signed digest, fed the file's bytes in order (plan_sign.c). */
enum { BN_PLAN_DIGEST = 64, BN_PLAN_SIGBLOCK = BN_PK_BYTES + BN_SIG_BYTES };
typedef struct {
  crypto_generichash_state st;
  uint64_t pos, skip[3][2]; /* [from, to) ranges left out: the content hash, the signature block, the weights */
} bn_plan_digest;
void bn_plan_digest_init(bn_plan_digest *d, uint64_t sig_off, uint64_t weights_off, uint64_t weights_bytes);
void bn_plan_digest_update(bn_plan_digest *d, const uint8_t *p, size_t n);
void bn_plan_digest_final(bn_plan_digest *d, uint8_t out[BN_PLAN_DIGEST]);

/* Is this file a plan? (checks the magic only) */
int bn_plan_sniff(const char *path);

#endif
