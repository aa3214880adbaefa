#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float bn_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) bits = sign;
    else { /* subnormal: value = man * 2^-24 */
      float f = (float)man * 5.9604644775390625e-8f;
      return sign ? -f : f;
    }
  } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
  else bits = sign | ((exp + 112) << 23) | (man << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t bn_float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffff;
  if (ax >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0));
  if (ax >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* rounds to inf */
  if (ax < 0x38800000) { /* subnormal or zero in half */
    float a;
    memcpy(&a, &ax, 4);
    return (uint16_t)(sign | (uint32_t)lrintf(a * 16777216.0f)); /* a / 2^-24 */
  }
  uint32_t r = ax + 0xfff + ((ax >> 13) & 1); /* round to nearest even */
  return (uint16_t)(sign | ((r - 0x38000000) >> 13));
}

float bn_bf16_to_float(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static float rdh(const uint8_t *p) { return bn_half_to_float(rd16(p)); }

float bn_i2s_scale(const void *tensor, uint64_t total) {
  float s;
  memcpy(&s, (const uint8_t *)tensor + total / 4, 4);
  return s;
}

static void deq_q6_k(const uint8_t *b, float *y) {
  const uint8_t *ql = b, *qh = b + 128;
  const int8_t *sc = (const int8_t *)(b + 192);
  float d = rdh(b + 208);
  for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128)
    for (int l = 0; l < 32; l++) {
      int is = l / 16;
      int q1 = ((ql[l] & 15) | ((qh[l] >> 0 & 3) << 4)) - 32;
      int q2 = ((ql[l + 32] & 15) | ((qh[l] >> 2 & 3) << 4)) - 32;
      int q3 = ((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32;
      int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32;
      y[l] = d * sc[is] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
}

/* TQ1_0 trit n of byte b: the byte is a base-3 fixed-point fraction. */
static int tq1_trit(uint8_t b, int n) {
  static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
  uint8_t q = (uint8_t)(b * pow3[n]);
  return (int)(((uint16_t)q * 3) >> 8);
}

/* TQ1_0 packs 5 (or 4, then one shift) trits as a base-3 number, first trit
 * most significant, scaled to a byte by ceiling division: the inverse of tq1_trit. */
static uint8_t tq1_pack(const int8_t *t, int count, int stride) {
  unsigned q = 0;
  for (int k = 0; k < count; k++) q = q * 3 + (unsigned)(t[k * stride] + 1);
  for (int k = count; k < 5; k++) q *= 3;
  return (uint8_t)((q * 256 + 242) / 243);
}

static void tern_tq1_0(const uint8_t *b, int8_t *t) {
  const uint8_t *qs = b, *qh = b + 48;
  for (int n = 0; n < 5; n++)
    for (int m = 0; m < 32; m++) *t++ = (int8_t)(tq1_trit(qs[m], n) - 1);
  for (int n = 0; n < 5; n++)
    for (int m = 0; m < 16; m++) *t++ = (int8_t)(tq1_trit(qs[32 + m], n) - 1);
  for (int n = 0; n < 4; n++)
    for (int j = 0; j < 4; j++) *t++ = (int8_t)(tq1_trit(qh[j], n) - 1);
}

/* Q2_0 / PQ2_0: d, then element j at bits 2 (j % 4) of byte j / 4; code 3 reads as +2 (not a trit:
 * the importer refuses tensors that use it). */
static void tern_q2(const uint8_t *b, int n, int8_t *t) {
  for (int j = 0; j < n; j++) *t++ = (int8_t)(((b[2 + j / 4] >> (2 * (j % 4))) & 3) - 1);
}

static void tern_tq2_0(const uint8_t *b, int8_t *t) {
  for (int j = 0; j < 64; j += 32)
    for (int l = 0; l < 4; l++)
      for (int m = 0; m < 32; m++) *t++ = (int8_t)(((b[j + m] >> (2 * l)) & 3) - 1);
}

/* I2_S element e: block e / 128, byte e % 32 of it, bits 6 - 2 * ((e % 128) / 32).
 * Code 0 -> -1, 1 -> 0, 2 -> +1 (3 is never written; read as 0). */
static int8_t i2s_trit(const uint8_t *base, uint64_t e) {
  static const int8_t val[4] = {-1, 0, 1, 0};
  uint64_t j = e % 128;
  return val[(base[e / 128 * 32 + j % 32] >> (6 - 2 * (j / 32))) & 3];
}

int64_t bn_ternary_group(bn_dtype t, int64_t k) {
  return t == BN_DT_I2_S || t == BN_DT_TP2 || t == BN_DT_TP1 || t == BN_DT_TL2 ? k : bn_dtype_table[t].block_elems;
}

static float rdf(const uint8_t *p) {
  float f;
  memcpy(&f, p, 4);
  return f;
}

void bn_tp2_write_row(void *tensor, uint64_t rows, uint64_t k, uint64_t row, const int8_t *trit, float scale) {
  for (uint64_t g = 0; g < k / 256; g++) {
    uint8_t *p = (uint8_t *)tensor + bn_tp2_group(rows, k, row, g);
    memset(p, 0, 64);
    for (uint64_t j = 0; j < 256; j++) p[j % 64] |= (uint8_t)((trit[g * 256 + j] + 1) << (2 * (j / 64)));
  }
  memcpy((uint8_t *)tensor + rows * k / 4 + 4 * row, &scale, 4);
}

void bn_tp2_copy_row(bn_dtype t, void *dst, uint64_t dst_rows, uint64_t dr, const void *src, uint64_t src_rows,
                     uint64_t sr, uint64_t k) {
  for (uint64_t g = 0; g < k / 256; g++)
    memcpy((uint8_t *)dst + bn_tp2_group(dst_rows, k, dr, g), (const uint8_t *)src + bn_tp2_group(src_rows, k, sr, g), 64);
  if (t == BN_DT_TP2) {
    memcpy((uint8_t *)dst + dst_rows * k / 4 + 4 * dr, (const uint8_t *)src + src_rows * k / 4 + 4 * sr, 4);
    return;
  }
  uint64_t group = t == BN_DT_TG2 ? 256 : 128;
  for (uint64_t g = 0; g < k / group; g++)
    memcpy((uint8_t *)dst + bn_tg2_scale(dst_rows, k, group, dr, g), (const uint8_t *)src + bn_tg2_scale(src_rows, k, group, sr, g), 2);
}

/* The 256 trits of the TP2 group at p: 64 bytes, 4 shifts of 64 elements. */
static void tern_group(const uint8_t *p, int8_t *t) {
  static const int8_t val[4] = {-1, 0, 1, 0};
  for (int sh = 0; sh < 4; sh++)
    for (int b = 0; b < 64; b++) t[sh * 64 + b] = val[(p[b] >> (2 * sh)) & 3];
}

/* The trits of row r (k of them) of a TP2 tensor of `rows` rows. */
static void tern_tp2(const uint8_t *tensor, uint64_t rows, uint64_t k, uint64_t r, int8_t *t) {
  for (uint64_t g = 0; g < k / 256; g++) tern_group(tensor + bn_tp2_group(rows, k, r, g), t + g * 256);
}

/* The trits of row r (k of them) of a TP1 tensor of `rows` rows. */
/* The positions of TP1 group g in a row of k: 5, or the last group's (k mod 320) / 64. */
static int tp1_positions(uint64_t k, uint64_t g) { return k - g * 320 < 320 ? (int)((k - g * 320) / 64) : 5; }

/* The 64 m trits of the TP1 group at p (m positions), in element order. */
static void tp1_group_trits(const uint8_t *p, int m, int8_t *t) {
  for (int j = 0; j < 64; j++) {
    unsigned x = p[j];
    for (int q = 0; q < m; q++, x = 3 * x & 255) t[q * 64 + j] = (int8_t)((3 * x >> 8) - 1);
  }
}

static void tern_tp1(const uint8_t *tensor, uint64_t rows, uint64_t k, uint64_t r, int8_t *t) {
  for (uint64_t g = 0; g * 320 < k; g++) tp1_group_trits(tensor + bn_tp1_group(rows, k, r, g), tp1_positions(k, g), t + g * 320);
}

void bn_tp1_from_tp2(const void *tp2, uint64_t rows, uint64_t k, void *tp1) {
  const uint8_t *src = tp2;
  uint8_t *dst = tp1;
  int8_t trit[320];
  for (uint64_t r = 0; r < rows; r++)
    for (uint64_t g = 0; g * 320 < k; g++) {
      int m = tp1_positions(k, g);
      for (int e = 0; e < 64 * m; e++) { /* element g 320 + e of the TP2 row */
        uint64_t i = g * 320 + (uint64_t)e;
        trit[e] = (int8_t)(((src[bn_tp2_group(rows, k, r, i / 256) + i % 64] >> (2 * (i % 256 / 64))) & 3) - 1);
      }
      uint8_t *p = dst + bn_tp1_group(rows, k, r, g);
      for (int j = 0; j < 64; j++) p[j] = tq1_pack(trit + j, m, 64);
    }
  memcpy(dst + rows * bn_tp1_row_bytes(k), src + rows * k / 4, rows * 4); /* the row scales */
}

/* Byte and shift of element e of row r in a TL2 tensor with rows of k. */
static void tl2_at(uint64_t r, uint64_t e, uint64_t k, uint64_t *byte, int *shift) {
  uint64_t p = e / 2, j = p / 8, q = p % 8;
  *byte = (r / 16 * (k / 16) + j) * 64 + q % 4 * 16 + r % 16;
  *shift = (int)(q / 4 * 4 + e % 2 * 2);
}

static void tern_tl2(const uint8_t *p, uint64_t k, uint64_t r, int8_t *t) {
  static const int8_t val[4] = {-1, 0, 1, 0};
  for (uint64_t e = 0; e < k; e++) {
    uint64_t byte;
    int sh;
    tl2_at(r, e, k, &byte, &sh);
    t[e] = val[(p[byte] >> sh) & 3];
  }
}

void bn_tl2_from_tp2(const void *tp2, uint64_t rows, uint64_t k, void *tl2) {
  uint8_t *dst = tl2;
  int8_t trit[256];
  memset(dst, 0, rows * k / 4);
  for (uint64_t r = 0; r < rows; r++)
    for (uint64_t g = 0; g < k / 256; g++) {
      tern_group((const uint8_t *)tp2 + bn_tp2_group(rows, k, r, g), trit);
      for (uint64_t e = g * 256; e < g * 256 + 256; e++) {
        uint64_t byte;
        int sh;
        tl2_at(r, e, k, &byte, &sh);
        dst[byte] |= (uint8_t)((trit[e - g * 256] + 1) << sh);
      }
    }
  memcpy(dst + rows * k / 4, (const uint8_t *)tp2 + rows * k / 4, rows * 4); /* the row scales */
}

int bn_tg2_groups_fit(bn_dtype t, const void *src, uint64_t rows, uint64_t k, uint64_t group) {
  uint64_t per = (uint64_t)bn_ternary_group(t, (int64_t)k);
  if (per >= group || k % group) return per % group == 0 && k % group == 0;
  float *sc = malloc((k / per + 1) * sizeof *sc);
  int8_t *trit = malloc(k);
  int ok = sc && trit;
  for (uint64_t r = 0; ok && r < rows; r++) { /* the source blocks of each group share one scale */
    bn_ternary_decode(t, src, rows * k, r * k, k, trit, sc);
    for (uint64_t b = 0; ok && b < k / per; b++) ok = sc[b] == sc[b / (group / per) * (group / per)];
  }
  free(sc), free(trit);
  return ok;
}

int bn_tg2_from_ternary(bn_dtype t, const void *src, uint64_t rows, uint64_t k, bn_dtype to, void *tg2) {
  uint64_t per = (uint64_t)bn_ternary_group(t, (int64_t)k), group = to == BN_DT_TG2H ? 128 : 256, ng = k / group;
  int8_t *trit = malloc(k);
  float *sc = malloc((k / per + 1) * sizeof *sc);
  uint16_t *gs = malloc((rows * ng + 1) * sizeof *gs); /* kept until every row's codes are down */
  uint8_t *out = tg2;
  if (!trit || !sc || !gs) return free(trit), free(sc), free(gs), -1;
  for (uint64_t r = 0; r < rows; r++) { /* a TP2 row write also puts a row scale where TG2's scales go: those last */
    bn_ternary_decode(t, src, rows * k, r * k, k, trit, sc);
    bn_tp2_write_row(tg2, rows, k, r, trit, 0);
    for (uint64_t g = 0; g < ng; g++) gs[r * ng + g] = bn_float_to_half(sc[g * group / per]); /* f16 sources: exact */
  }
  for (uint64_t r = 0; r < rows; r++)
    for (uint64_t g = 0; g < ng; g++) memcpy(out + bn_tg2_scale(rows, k, group, r, g), &gs[r * ng + g], 2);
  free(trit), free(sc), free(gs);
  return 0;
}

int64_t bn_q2_first_code3(bn_dtype t, const void *data, uint64_t n) {
  uint64_t be = (uint64_t)bn_dtype_table[t].block_elems, bb = (uint64_t)bn_dtype_table[t].block_bytes;
  const uint8_t *p = data;
  for (uint64_t b = 0; b < n / be; b++)
    for (uint64_t i = 0; i < be / 4; i++) {
      uint8_t x = p[b * bb + 2 + i];
      if ((x & (x >> 1) & 0x55) == 0) continue; /* no 2-bit field is 3 */
      for (int f = 0; f < 4; f++)
        if ((x >> (2 * f) & 3) == 3) return (int64_t)(b * be + 4 * i + (uint64_t)f);
    }
  return -1;
}

float bn_ternary_row_scale(bn_dtype t, const void *tensor, uint64_t total, uint64_t row, uint64_t k) {
  const uint8_t *p = tensor;
  switch (t) {
  case BN_DT_I2_S: return bn_i2s_scale(tensor, total);
  case BN_DT_TP2:
  case BN_DT_TL2: return rdf(p + total / 4 + 4 * row);
  case BN_DT_TP1: return rdf(p + total / k * bn_tp1_row_bytes(k) + 4 * row);
  case BN_DT_TQ1_0: return rdh(p + row * k / 256 * 54 + 52);
  case BN_DT_TQ2_0: return rdh(p + row * k / 256 * 66 + 64);
  case BN_DT_Q2_0: return rdh(p + row * k / 64 * 18);
  case BN_DT_PQ2_0: return rdh(p + row * k / 128 * 34);
  default: return 0;
  }
}

int bn_ternary_rows_uniform(bn_dtype t, const void *tensor, uint64_t rows, uint64_t k) {
  if (t != BN_DT_TQ1_0 && t != BN_DT_TQ2_0 && t != BN_DT_Q2_0 && t != BN_DT_PQ2_0) return 1;
  const uint8_t *p = tensor;
  int bb = bn_dtype_table[t].block_bytes, at = t == BN_DT_Q2_0 || t == BN_DT_PQ2_0 ? 0 : bb - 2; /* d's place */
  uint64_t per = k / (uint64_t)bn_dtype_table[t].block_elems;
  for (uint64_t r = 0; r < rows; r++)
    for (uint64_t b = 1; b < per; b++)
      if (memcmp(p + (r * per + b) * bb + at, p + (r * per) * bb + at, 2)) return 0;
  return 1;
}

void bn_ternary_decode(bn_dtype t, const void *tensor, uint64_t total, uint64_t start, uint64_t n,
                       int8_t *trit, float *scale) {
  const bn_dtype_info *info = &bn_dtype_table[t];
  if (t == BN_DT_I2_S) {
    for (uint64_t i = 0; i < n; i++) trit[i] = i2s_trit(tensor, start + i);
    scale[0] = bn_i2s_scale(tensor, total);
    return;
  }
  if (t == BN_DT_TP2) { /* one whole row: n is its length */
    tern_tp2(tensor, total / n, n, start / n, trit);
    scale[0] = rdf((const uint8_t *)tensor + total / 4 + 4 * (start / n));
    return;
  }
  if (t == BN_DT_TG2) { /* one whole row: n is its length; a scale per group */
    tern_tp2(tensor, total / n, n, start / n, trit);
    for (uint64_t g = 0; g < n / 256; g++) scale[g] = rdh((const uint8_t *)tensor + bn_tg2_scale(total / n, n, 256, start / n, g));
    return;
  }
  if (t == BN_DT_TG2H) { /* as TG2, a scale per 128 */
    tern_tp2(tensor, total / n, n, start / n, trit);
    for (uint64_t g = 0; g < n / 128; g++) scale[g] = rdh((const uint8_t *)tensor + bn_tg2_scale(total / n, n, 128, start / n, g));
    return;
  }
  if (t == BN_DT_TP1) { /* one whole row: n is its length */
    tern_tp1(tensor, total / n, n, start / n, trit);
    scale[0] = bn_ternary_row_scale(t, tensor, total, start / n, n);
    return;
  }
  if (t == BN_DT_TL2) { /* whole rows: n is the row length */
    tern_tl2(tensor, n, start / n, trit);
    scale[0] = rdf((const uint8_t *)tensor + total / 4 + 4 * (start / n));
    return;
  }
  const uint8_t *p = (const uint8_t *)tensor + start / info->block_elems * info->block_bytes;
  for (uint64_t i = 0; i < n; i += info->block_elems, p += info->block_bytes) {
    if (t == BN_DT_Q2_0 || t == BN_DT_PQ2_0) {
      tern_q2(p, info->block_elems, trit + i);
      *scale++ = rdh(p);
    } else if (t == BN_DT_TQ1_0) {
      tern_tq1_0(p, trit + i);
      *scale++ = rdh(p + 52);
    } else {
      tern_tq2_0(p, trit + i);
      *scale++ = rdh(p + 64);
    }
  }
}

void bn_q8_0_quantize(const float *x, uint64_t n, uint8_t *out) {
  for (uint64_t b = 0; b < n / 32; b++, x += 32, out += 34) {
    float amax = 0;
    for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(x[k]));
    float d = amax / 127, id = d ? 1 / d : 0;
    uint16_t h = bn_float_to_half(d);
    memcpy(out, &h, 2);
    for (int k = 0; k < 32; k++) out[2 + k] = (uint8_t)(int8_t)roundf(x[k] * id);
  }
}

void bn_q6_k_quantize(const float *x, uint64_t n, uint8_t *out) {
  for (uint64_t b = 0; b < n / 256; b++, x += 256, out += 210) {
    float scale[16], max_scale = 0;
    for (int s = 0; s < 16; s++) { /* the sub-block's scale: its largest |x| to -32 */
      float mx = 0;
      for (int k = 0; k < 16; k++)
        if (fabsf(x[16 * s + k]) > fabsf(mx)) mx = x[16 * s + k];
      scale[s] = mx / -32;
      if (fabsf(scale[s]) > fabsf(max_scale)) max_scale = scale[s];
    }
    float iscale = max_scale ? -128 / max_scale : 0;
    uint16_t h = bn_float_to_half(iscale ? 1 / iscale : 0);
    float d = bn_half_to_float(h);
    uint8_t *ql = out, *qh = out + 128;
    int8_t *sc = (int8_t *)(out + 192);
    memset(out, 0, 192);
    memcpy(out + 208, &h, 2);
    for (int s = 0; s < 16; s++) { /* |d sc| at least the sub-block's scale, so its codes fit */
      float v = d ? ceilf(fabsf(scale[s] / d)) * (scale[s] / d < 0 ? -1 : 1) : 0;
      sc[s] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
    }
    for (int e = 0; e < 256; e++) { /* half, quarter j, l within it: the layout deq_q6_k reads */
      int half = e / 128, j = e % 128 / 32, l = e % 32;
      float dsc = d * sc[half * 8 + j * 2 + l / 16], v = dsc ? roundf(x[e] / dsc) : 0;
      int q = (int)(v > 31 ? 31 : v < -32 ? -32 : v) + 32;
      ql[half * 64 + (j % 2) * 32 + l] |= (uint8_t)((q & 15) << (j >= 2 ? 4 : 0));
      qh[half * 32 + l] |= (uint8_t)((q >> 4) << (2 * j));
    }
  }
}

void bn_ternary_encode(bn_dtype t, const int8_t *trit, uint64_t n, float scale, void *out) {
  uint8_t *o = out;
  uint16_t d = bn_float_to_half(scale);
  if (t == BN_DT_I2_S) {
    memset(o, 0, n / 4 + 32);
    for (uint64_t e = 0; e < n; e++) {
      uint64_t j = e % 128;
      o[e / 128 * 32 + j % 32] |= (uint8_t)((trit[e] + 1) << (6 - 2 * (j / 32)));
    }
    memcpy(o + n / 4, &scale, 4);
    return;
  }
  if (t == BN_DT_Q2_0 || t == BN_DT_PQ2_0) { /* d first, then the codes */
    uint64_t be = (uint64_t)bn_dtype_table[t].block_elems, bb = (uint64_t)bn_dtype_table[t].block_bytes;
    memset(o, 0, n / be * bb);
    for (uint64_t e = 0; e < n; e++) o[e / be * bb + 2 + e % be / 4] |= (uint8_t)((trit[e] + 1) << (2 * (e % 4)));
    for (uint64_t b = 0; b < n / be; b++) memcpy(o + b * bb, &d, 2);
    return;
  }
  for (uint64_t b = 0; b < n / 256; b++, trit += 256) {
    if (t == BN_DT_TQ2_0) {
      uint8_t *qs = o + b * 66;
      for (int j = 0; j < 2; j++)
        for (int m = 0; m < 32; m++) {
          uint8_t q = 0;
          for (int l = 0; l < 4; l++) q |= (uint8_t)((trit[j * 128 + l * 32 + m] + 1) << (2 * l));
          qs[j * 32 + m] = q;
        }
      memcpy(qs + 64, &d, 2);
    } else {
      uint8_t *qs = o + b * 54;
      for (int m = 0; m < 32; m++) qs[m] = tq1_pack(trit + m, 5, 32);
      for (int m = 0; m < 16; m++) qs[32 + m] = tq1_pack(trit + 160 + m, 5, 16);
      for (int j = 0; j < 4; j++) qs[48 + j] = tq1_pack(trit + 240 + j, 4, 4);
      memcpy(qs + 52, &d, 2);
    }
  }
}

void bn_dequant(bn_dtype t, const void *tensor, uint64_t total, uint64_t start, uint64_t n, float *out) {
  const bn_dtype_info *info = &bn_dtype_table[t];
  const uint8_t *p = (const uint8_t *)tensor + start / info->block_elems * info->block_bytes;
  if (t == BN_DT_I2_S) {
    float sc = bn_i2s_scale(tensor, total);
    for (uint64_t i = 0; i < n; i++) out[i] = i2s_trit(tensor, start + i) * sc;
    return;
  }
  if (t == BN_DT_TL2) { /* one whole row: n is its length */
    static const int8_t val[4] = {-1, 0, 1, 0};
    uint64_t row = start / (n > 0 ? n : 1), byte;
    float sc = rdf((const uint8_t *)tensor + total / 4 + 4 * row);
    for (uint64_t e = 0; e < n; e++) {
      int sh;
      tl2_at(row, e, n, &byte, &sh);
      out[e] = val[(((const uint8_t *)tensor)[byte] >> sh) & 3] * sc;
    }
    return;
  }
  if (t == BN_DT_TP1) { /* one whole row: n is its length */
    uint64_t rows = total / (n > 0 ? n : 1), row = start / (n > 0 ? n : 1);
    float sc = bn_ternary_row_scale(t, tensor, total, row, n);
    int8_t trit[320];
    for (uint64_t g = 0; g * 320 < n; g++) {
      int m = tp1_positions(n, g);
      tp1_group_trits((const uint8_t *)tensor + bn_tp1_group(rows, n, row, g), m, trit);
      for (int e = 0; e < 64 * m; e++) out[g * 320 + (uint64_t)e] = trit[e] * sc;
    }
    return;
  }
  if (t == BN_DT_TP2) { /* one whole row: n is its length */
    int8_t trit[256];
    uint64_t row = start / (n > 0 ? n : 1);
    float sc = rdf((const uint8_t *)tensor + total / 4 + 4 * row);
    for (uint64_t g = 0; g < n / 256; g++) {
      tern_group((const uint8_t *)tensor + bn_tp2_group(total / n, n, row, g), trit);
      for (int e = 0; e < 256; e++) out[g * 256 + e] = trit[e] * sc;
    }
    return;
  }
  if (info->ternary) { /* in blocks (Q2_0's code 3 is +2 here, as ggml reads it) */
    int8_t trit[256];
    float sc[4];
    uint64_t be = (uint64_t)info->block_elems;
    for (uint64_t i = 0; i < n; i += be) {
      bn_ternary_decode(t, tensor, total, start + i, be, trit, sc);
      for (uint64_t k = 0; k < be; k++) out[i + k] = trit[k] * sc[0];
    }
    return;
  }
  for (uint64_t i = 0; i < n; i += info->block_elems, p += info->block_bytes) {
    float *y = out + i;
    switch (t) {
    case BN_DT_F32: memcpy(y, p, 4); break;
    case BN_DT_F16: *y = rdh(p); break;
    case BN_DT_BF16: *y = bn_bf16_to_float(rd16(p)); break;
    case BN_DT_I32: { int32_t v; memcpy(&v, p, 4); *y = (float)v; break; }
    case BN_DT_I8: *y = (float)(int8_t)p[0]; break;
    case BN_DT_Q4_0: {
      float d = rdh(p);
      for (int k = 0; k < 16; k++) {
        y[k] = d * ((p[2 + k] & 15) - 8);
        y[k + 16] = d * ((p[2 + k] >> 4) - 8);
      }
      break;
    }
    case BN_DT_Q8_0: {
      float d = rdh(p);
      for (int k = 0; k < 32; k++) y[k] = d * (int8_t)p[2 + k];
      break;
    }
    case BN_DT_Q6_K: deq_q6_k(p, y); break;
    default: break;
    }
  }
}
