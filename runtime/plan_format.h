/* The .bnplan layout, shared by the writer and the reader (docs/bnplan.md). */
#ifndef BN_RT_PLAN_FORMAT_H
#define BN_RT_PLAN_FORMAT_H

#define BN_PLAN_MAGIC "BNPLAN\r\n"

enum {
  BN_PLAN_HEADER = 64,  /* magic[8] version u32 header_bytes u32 file_bytes u64 hash u64 n_sections u32
                           reserved u32 target[24] */
  BN_PLAN_ENTRY = 32,   /* id u32, reserved u32, offset u64, bytes u64, reserved u64 */
  BN_PLAN_ALIGN = 64,
  BN_PLAN_SLOTS = 8,    /* entries the table has room for (sections 1..6, and 7, 8 when present) */
  BN_PLAN_SLOTS_V4 = 7  /* in plans of version 4 and before */
};

enum {
  BN_SEC_HPARAMS = 1, BN_SEC_VOCAB, BN_SEC_IR, BN_SEC_MEMPLAN, BN_SEC_WEIGHT_INDEX, BN_SEC_WEIGHTS,
  BN_SEC_OBJECTS, /* optional (bnc compile --aot): the kernels' object code; empty before a device section */
  BN_SEC_DEVICE,  /* optional (bnc compile --target metal): a GPU backend's library and dispatch table */
  BN_SEC_COUNT
};

#endif
