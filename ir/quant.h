/* Element-type semantics: half/bfloat conversion, dequantization to float
 * for every dtype, and ternary decoding (codes + block scales) for the
 * ternary types. Block layouts follow ggml (see docs/formats.md). */
#ifndef BN_QUANT_H
#define BN_QUANT_H

#include <stdint.h>

#include "ir.h"

float bn_half_to_float(uint16_t h);
uint16_t bn_float_to_half(float f); /* round to nearest even */
float bn_bf16_to_float(uint16_t h);

/* Dequantizes elements [start, start+n) of a tensor holding `total`
 * elements of type t. start and n must be multiples of the block size. */
void bn_dequant(bn_dtype t, const void *tensor, uint64_t total, uint64_t start, uint64_t n, float *out);

/* Quantizes n floats (n a multiple of 32) to Q8_0 blocks at out (34 bytes each), as ggml's reference
 * quantizer does: d = max |x| / 127 (stored as f16), q = round(x / d) (0 where d = 0). */
void bn_q8_0_quantize(const float *x, uint64_t n, uint8_t *out);
/* Quantizes n floats (n a multiple of 256) to Q6_K blocks at out (210 bytes each: ql, qh, 16 int8
 * sub-block scales, f16 d), as ggml lays them out: per 16 elements a scale that maps the largest
 * |x| to -32, the 16 scales as int8 multiples of d = -max scale / 128 (rounded away from zero, so
 * no code is clipped by more than a step), codes round(x / (d sc)) in [-32, 31]. */
void bn_q6_k_quantize(const float *x, uint64_t n, uint8_t *out);

/* Decodes elements [start, start+n) of a ternary tensor into trits
 * (-1, 0, +1) and one scale per block (n / block_elems entries): element i
 * is trit[i] * scale[i / block_elems]. */
void bn_ternary_decode(bn_dtype t, const void *tensor, uint64_t total, uint64_t start, uint64_t n,
                       int8_t *trit, float *scale);

/* Elements sharing one scale in a row of K: the block size, or K for I2_S
 * (one scale per tensor; its 128-blocks may straddle rows) and TP2 (one per row). */
int64_t bn_ternary_group(bn_dtype t, int64_t k);

/* Encodes n trits (-1, 0, +1) as a whole tensor of type t with one scale
 * (written as every block's d for TQ types). out: bn_dtype_nbytes(t, n). */
void bn_ternary_encode(bn_dtype t, const int8_t *trit, uint64_t n, float scale, void *out);

/* The scale of row `row` (K elements) when all of its blocks share one (the
 * first block's otherwise). */
float bn_ternary_row_scale(bn_dtype t, const void *tensor, uint64_t total, uint64_t row, uint64_t k);
/* Returns 1 if every row of the tensor uses a single scale. */
int bn_ternary_rows_uniform(bn_dtype t, const void *tensor, uint64_t rows, uint64_t k);

/* TP2, bnc's packed ternary layout: rows in blocks of 4 (the last block holds
 * the N % 4 left over, if any), each row K/256 groups of 64 bytes (element j
 * of a group at byte j % 64, bits 2 (j / 64), code t + 1), the groups of a
 * block's m rows interleaved: group g of row 4b + i at b K + (g m + i) 64
 * (bn_tp2_group). Then one f32 scale per row. One 64-byte load, shifted by 0,
 * 2, 4, 6 and masked, gives the codes of 64 consecutive elements each: what a
 * VNNI (64 lanes) or AVX2 (2 x 32) kernel multiplies with the activations as
 * they are; a tile of 4 rows reads one stream front to back. Writes row `row`
 * of a tensor of `rows` rows. */
void bn_tp2_write_row(void *tensor, uint64_t rows, uint64_t k, uint64_t row, const int8_t *trit, float scale);
/* TG2: TP2's codes, then one f16 scale per 256-element group (rows x k / 256 of them; TG2H: per 128: the
 * TQ and PQ2_0 blocks' d, as they are), laid as TP2
 * lays the codes: the scales of group g of a block's m rows side by side (bn_tg2_scale), one load
 * for a tile of rows. For TQ tensors whose blocks within a row differ in scale. Writes a whole
 * tensor from one; -1 out of memory. */
int bn_tg2_from_ternary(bn_dtype t, const void *src, uint64_t rows, uint64_t k, bn_dtype to, void *tg2);
/* Whether every run of `group` elements of each row shares one scale in the ternary tensor. */
int bn_tg2_groups_fit(bn_dtype t, const void *src, uint64_t rows, uint64_t k, uint64_t group);
/* Q2_0 / PQ2_0: the first element whose code is 3 (+2, not a trit), or -1. */
int64_t bn_q2_first_code3(bn_dtype t, const void *data, uint64_t n);
/* The byte offset of row r's scale of group g (of `group` elements: 256 TG2, 128 TG2H) from the
 * tensor's start. */
static inline uint64_t bn_tg2_scale(uint64_t rows, uint64_t k, uint64_t group, uint64_t r, uint64_t g) {
  uint64_t b = r / 4, m = rows - 4 * b < 4 ? rows - 4 * b : 4;
  return rows * k / 4 + 2 * (b * 4 * (k / group) + g * m + r % 4);
}
/* The byte offset of group g of row r. */
static inline uint64_t bn_tp2_group(uint64_t rows, uint64_t k, uint64_t r, uint64_t g) {
  uint64_t b = r / 4, m = rows - 4 * b < 4 ? rows - 4 * b : 4;
  return b * k + (g * m + r % 4) * 64;
}
/* Copies row sr of src (src_rows rows) to row dr of dst (dst_rows rows), codes and scale(s): t is TP2,
 * TG2 or TG2H. */
void bn_tp2_copy_row(bn_dtype t, void *dst, uint64_t dst_rows, uint64_t dr, const void *src, uint64_t src_rows,
                     uint64_t sr, uint64_t k);

/* TP1, bnc's 1.6-bit packed ternary layout (bnc compile --weights t1): as TP2 but
 * each row in groups of 320 elements, 64 bytes each (bn_tp1_row_bytes: the last
 * group holds the K % 320 left over, a multiple of 64), element j of a group at
 * byte j % 64, position p = j / 64. A byte holds its positions' codes c (trit + 1)
 * as the base-3 number c0 c1 c2 c3 c4 (c0 most significant, missing positions 0)
 * scaled to a byte by ceiling division, as TQ1_0 does: x0 = the byte, c_p =
 * (3 x_p) >> 8, x_(p+1) = 3 x_p mod 256. So 256 c_p = 3 x_p - x_(p+1), and a
 * kernel may multiply the bytes x_p themselves with the activations (docs/ir.md).
 * Groups of a block's m rows interleaved as TP2's (bn_tp1_group); then one f32
 * scale per row, at rows * bn_tp1_row_bytes(k). Converts a whole TP2 tensor. */
static inline uint64_t bn_tp1_row_bytes(uint64_t k) { return (k + 319) / 320 * 64; }
static inline uint64_t bn_tp1_group(uint64_t rows, uint64_t k, uint64_t r, uint64_t g) {
  uint64_t b = r / 4, m = rows - 4 * b < 4 ? rows - 4 * b : 4;
  return b * 4 * bn_tp1_row_bytes(k) + (g * m + r % 4) * 64;
}
void bn_tp1_from_tp2(const void *tp2, uint64_t rows, uint64_t k, void *tp1);

/* TL2, the layout of the lookup-table kernels: rows in blocks of 16 (N a
 * multiple of 16), elements in pairs (2p, 2p+1) whose codes c0 + 4 c1 form a
 * 4-bit index; pairs in chunks of 8. Chunk j of block b is 64 bytes at
 * (b * K/16 + j) * 64: byte 16 L + i holds row 16 b + i's pair 8j + L in its
 * low nibble and pair 8j + 4 + L in its high one (L = 0..3): each 16-byte
 * lane is 16 rows of one pair, the operand of one vpshufb against that
 * pair's table. Then one f32 scale per row, as TP2. Converts a whole TP2
 * tensor of rows x k. */
void bn_tl2_from_tp2(const void *tp2, uint64_t rows, uint64_t k, void *tl2);

/* The per-tensor scale stored after an I2_S code array. */
float bn_i2s_scale(const void *tensor, uint64_t total);

#endif
