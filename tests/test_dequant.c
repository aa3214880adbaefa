/* Every dequantizer against hand-built blocks, half-float conversion, and
 * the ternary encoders against the decoders. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../ir/quant.h"
#include "../ir/rng.h"

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }

static void test_half_conversion(void **state) {
  (void)state;
  assert_true(bn_half_to_float(0x3c00) == 1.0f);
  assert_true(bn_half_to_float(0xc000) == -2.0f);
  assert_true(bn_half_to_float(0x7bff) == 65504.0f);
  assert_true(bn_half_to_float(0x0001) == ldexpf(1, -24)); /* smallest subnormal */
  assert_true(bn_half_to_float(0x0400) == ldexpf(1, -14)); /* smallest normal */
  assert_true(isinf(bn_half_to_float(0x7c00)));
  assert_true(isnan(bn_half_to_float(0x7e00)));
  assert_int_equal(bn_float_to_half(1.0f), 0x3c00);
  assert_int_equal(bn_float_to_half(-2.0f), 0xc000);
  assert_int_equal(bn_float_to_half(65504.0f), 0x7bff);
  assert_int_equal(bn_float_to_half(1e6f), 0x7c00);
  assert_int_equal(bn_float_to_half(ldexpf(1, -24)), 0x0001);
  /* halfway between 1 and 1 + 2^-10 rounds to even (1); 3/4 of the way rounds up */
  assert_int_equal(bn_float_to_half(1.0f + ldexpf(1, -11)), 0x3c00);
  assert_int_equal(bn_float_to_half(1.0f + 3 * ldexpf(1, -12)), 0x3c01);
  assert_true(bn_bf16_to_float(0x3f80) == 1.0f);
  assert_true(bn_bf16_to_float(0xc040) == -3.0f);
}

static void test_f32_f16_bf16(void **state) {
  (void)state;
  float in[3] = {1.5f, -0.25f, 1e-3f}, out[3];
  bn_dequant(BN_DT_F32, in, 3, 0, 3, out);
  assert_memory_equal(in, out, sizeof in);
  uint8_t h[6];
  put16(h, 0x3e00), put16(h + 2, 0xb400), put16(h + 4, 0x0000); /* 1.5, -0.25, 0 */
  bn_dequant(BN_DT_F16, h, 3, 1, 2, out);
  assert_true(out[0] == -0.25f && out[1] == 0.0f);
  put16(h, 0x4049), put16(h + 2, 0xbf00); /* bf16 3.140625, -0.5 */
  bn_dequant(BN_DT_BF16, h, 2, 0, 2, out);
  assert_true(out[0] == 3.140625f && out[1] == -0.5f);
}

static void test_q4_0(void **state) {
  (void)state;
  uint8_t b[18];
  put16(b, 0x3800); /* d = 0.5 */
  for (int i = 0; i < 16; i++) b[2 + i] = (uint8_t)(i | (15 - i) << 4);
  float y[32];
  bn_dequant(BN_DT_Q4_0, b, 32, 0, 32, y);
  for (int i = 0; i < 16; i++) {
    assert_true(y[i] == 0.5f * (i - 8));
    assert_true(y[i + 16] == 0.5f * (15 - i - 8));
  }
}

static void test_q8_0(void **state) {
  (void)state;
  uint8_t b[68];
  put16(b, 0x3400); /* 0.25 */
  put16(b + 34, 0xc000); /* -2 */
  for (int i = 0; i < 32; i++) b[2 + i] = (uint8_t)(int8_t)(i - 16), b[36 + i] = (uint8_t)(int8_t)(i * 4 - 128);
  float y[64];
  bn_dequant(BN_DT_Q8_0, b, 64, 0, 64, y);
  for (int i = 0; i < 32; i++) {
    assert_true(y[i] == 0.25f * (i - 16));
    assert_true(y[32 + i] == -2.0f * (i * 4 - 128));
  }
}

/* Q6_K: pack chosen 6-bit values the way ggml's quantizer lays them out,
 * then expect d * scale[group] * (q - 32) back. */
static void test_q6_k(void **state) {
  (void)state;
  uint8_t b[210] = {0};
  uint8_t *ql = b, *qh = b + 128;
  int8_t *sc = (int8_t *)(b + 192);
  int q[256];
  for (int j = 0; j < 256; j++) q[j] = (j * 7 + 3) % 64; /* stored value 0..63 */
  for (int k = 0; k < 16; k++) sc[k] = (int8_t)(k % 2 ? -(k + 1) : k + 1);
  put16(b + 208, 0x3800); /* d = 0.5 */
  for (int h = 0; h < 2; h++)
    for (int l = 0; l < 32; l++) {
      int q1 = q[h * 128 + l], q2 = q[h * 128 + l + 32], q3 = q[h * 128 + l + 64], q4 = q[h * 128 + l + 96];
      ql[h * 64 + l] = (uint8_t)((q1 & 15) | (q3 & 15) << 4);
      ql[h * 64 + l + 32] = (uint8_t)((q2 & 15) | (q4 & 15) << 4);
      qh[h * 32 + l] = (uint8_t)((q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
    }
  float y[256];
  bn_dequant(BN_DT_Q6_K, b, 256, 0, 256, y);
  for (int j = 0; j < 256; j++) {
    int h = j / 128, p = j % 128;
    int s = sc[h * 8 + (p % 32) / 16 + 2 * (p / 32)];
    assert_true(y[j] == 0.5f * s * (q[j] - 32));
  }
}

/* TQ2_0: byte 0x92 = codes (2, 0, 1, 2) from the low bits up: +1, -1, 0, +1. */
static void test_tq2_0(void **state) {
  (void)state;
  uint8_t b[66];
  memset(b, 0x92, 64);
  b[5] = 0x01; /* codes (1, 0, 0, 0): element 5 -> 0, 37, 69, 101 -> -1 */
  put16(b + 64, 0x4000); /* d = 2 */
  float y[256];
  bn_dequant(BN_DT_TQ2_0, b, 256, 0, 256, y);
  for (int j = 0; j < 256; j++) {
    int quarter = (j % 128) / 32, m = j % 32;
    float want = (float[]){2, -2, 0, 2}[quarter];
    if (j < 128 && m == 5) want = quarter == 0 ? 0 : -2;
    assert_true(y[j] == want);
  }
}

/* TQ1_0: 128 encodes five zero trits, 171 the trits (+1, -1, -1, -1, -1),
 * 0 five -1s; in qh, 127 encodes four zeros. */
static void test_tq1_0(void **state) {
  (void)state;
  uint8_t b[54];
  memset(b, 128, 48);
  memset(b + 48, 127, 4);
  b[0] = 171;
  b[40] = 0;
  b[48 + 2] = 0;
  put16(b + 52, 0x3800); /* 0.5 */
  float want[256] = {0}, y[256];
  want[0] = 0.5f;
  want[32] = want[64] = want[96] = want[128] = -0.5f;
  for (int n = 0; n < 5; n++) want[160 + n * 16 + 8] = -0.5f;
  for (int n = 0; n < 4; n++) want[240 + n * 4 + 2] = -0.5f;
  bn_dequant(BN_DT_TQ1_0, b, 256, 0, 256, y);
  for (int j = 0; j < 256; j++) assert_true(y[j] == want[j]);
}

/* I2_S: element j of a 128-block sits in byte j % 32 at bits 6 - 2 (j / 32). */
static void test_i2_s(void **state) {
  (void)state;
  uint8_t b[256 / 4 + 32] = {0};
  memset(b, 0x55, 64); /* code 1 everywhere: 0 */
  b[0] = 0x92;         /* elements 0, 32, 64, 96: codes 2, 1, 0, 2 -> +1, 0, -1, +1 */
  b[32 + 31] = 0x80;   /* block 1: elements 31, 63, 95, 127: codes 2, 0, 0, 0 */
  float scale = 3.0f;
  memcpy(b + 64, &scale, 4);
  float want[256] = {0}, y[256];
  want[0] = 3, want[64] = -3, want[96] = 3;
  want[128 + 31] = 3, want[128 + 63] = want[128 + 95] = want[128 + 127] = -3;
  bn_dequant(BN_DT_I2_S, b, 256, 0, 256, y);
  for (int j = 0; j < 256; j++) assert_true(y[j] == want[j]);
  /* a row that starts inside a 128-block (K = 64) */
  int8_t t[64];
  float s;
  bn_ternary_decode(BN_DT_I2_S, b, 256, 64, 64, t, &s);
  assert_int_equal(t[0], -1);
  assert_int_equal(t[32], 1);
  assert_true(s == 3.0f);
}

/* TP2's blocks of 4 rows, groups interleaved; the last block holds N % 4 rows. Hand-computed. */
static void test_tp2_layout(void **state) {
  (void)state;
  assert_int_equal(bn_tp2_group(8, 512, 0, 0), 0);
  assert_int_equal(bn_tp2_group(8, 512, 1, 0), 64);   /* the next row's group 0 follows row 0's */
  assert_int_equal(bn_tp2_group(8, 512, 0, 1), 256);  /* row 0's group 1 after the block's 4 groups 0 */
  assert_int_equal(bn_tp2_group(8, 512, 2, 1), 384);
  assert_int_equal(bn_tp2_group(8, 512, 4, 0), 512);  /* block 1: 4 rows of 128 bytes later */
  assert_int_equal(bn_tp2_group(8, 512, 5, 0), 576);
  assert_int_equal(bn_tp2_group(6, 256, 5, 0), 320);  /* last block of 2 rows: 256 + 1 x 64 */
  assert_int_equal(bn_tp2_group(6, 512, 4, 1), 512 + 128);
  /* a 6 x 512 tensor: element 300 of row 5 (group 1, byte 300 % 64 = 44, shift 2 x ((300 % 256) / 64) = 0) */
  uint8_t t[6 * 512 / 4 + 6 * 4];
  int8_t trit[512] = {0}, back[512];
  trit[300] = 1;
  for (int r = 0; r < 6; r++) bn_tp2_write_row(t, 6, 512, (uint64_t)r, trit, 1.0f + (float)r);
  assert_int_equal(t[512 + (1 * 2 + 1) * 64 + 44], 0x54 | 2); /* code 2 at shift 0, the rest code 1 (trit 0) */
  float sc;
  bn_ternary_decode(BN_DT_TP2, t, 6 * 512, 5 * 512, 512, back, &sc);
  assert_memory_equal(back, trit, 512);
  assert_true(sc == 6.0f);
}

/* TP1: 5 trits a byte as a ceiling-scaled base-3 number, groups of 320, blocks of 4 rows as TP2. Hand-computed
 * offsets and bytes, every one of the 243 five-trit values decoded back, and whole tensors re-laid from TP2. */
static void test_tp1_layout(void **state) {
  (void)state;
  assert_int_equal(bn_tp1_row_bytes(256), 64);   /* one group of 4 positions */
  assert_int_equal(bn_tp1_row_bytes(2560), 512); /* 8 whole groups */
  assert_int_equal(bn_tp1_row_bytes(6912), 22 * 64);
  assert_int_equal(bn_tp1_group(8, 2560, 1, 0), 64);
  assert_int_equal(bn_tp1_group(8, 2560, 0, 1), 256);
  assert_int_equal(bn_tp1_group(8, 2560, 4, 0), 4 * 512);
  assert_int_equal(bn_tp1_group(6, 512, 5, 1), 4 * 128 + (1 * 2 + 1) * 64); /* a last block of 2 rows */
  int64_t dims[2] = {6, 512};
  bn_shape sh = bn_shape_make(2, dims);
  assert_int_equal(bn_value_bytes(BN_DT_TP1, &sh, 0), 6 * 128 + 6 * 4);
  /* every value of 5 positions: row 0's first 320 elements at byte j = the value's index, position p */
  static uint8_t tp2[4 * 1280 / 4 + 16], tp1[4 * 256 + 16];
  static int8_t trit[1280], back[1280];
  for (int r = 0; r < 4; r++) {
    for (int e = 0; e < 1280; e++) {
      int j = e % 320 % 64, p = e % 320 / 64, v = (j + 64 * (e / 320) + 17 * r) % 243, d = v;
      for (int q = 4; q > p; q--) d /= 3;
      trit[e] = (int8_t)(d % 3 - 1); /* digit p of v, most significant first */
    }
    bn_tp2_write_row(tp2, 4, 1280, (uint64_t)r, trit, 0.5f + (float)r);
  }
  bn_tp1_from_tp2(tp2, 4, 1280, tp1);
  for (int j = 0; j < 64; j++) { /* row 0, group 0, byte j holds value j: ceil(256 j / 243) */
    assert_int_equal(tp1[j], (256 * j + 242) / 243);
    assert_int_equal(tp1[(3 * 4 + 2) * 64 + j], (256 * ((j + 64 * 3 + 34) % 243) + 242) / 243); /* row 2, group 3 */
  }
  for (int r = 0; r < 4; r++) {
    float sc;
    bn_ternary_decode(BN_DT_TP2, tp2, 4 * 1280, (uint64_t)r * 1280, 1280, trit, &sc);
    bn_ternary_decode(BN_DT_TP1, tp1, 4 * 1280, (uint64_t)r * 1280, 1280, back, &sc);
    assert_memory_equal(back, trit, 1280);
    assert_true(sc == 0.5f + (float)r);
    assert_true(bn_ternary_row_scale(BN_DT_TP1, tp1, 4 * 1280, (uint64_t)r, 1280) == sc);
  }
  /* a tail group of 3 positions (K = 512: 320 + 192), N % 4 rows */
  uint64_t rng = 3;
  static int8_t t6[6 * 512];
  static uint8_t a2[6 * 128 + 24], a1[6 * 128 + 24];
  for (int i = 0; i < 6 * 512; i++) t6[i] = (int8_t)(bn_rng_next(&rng) % 3) - 1;
  for (int r = 0; r < 6; r++) bn_tp2_write_row(a2, 6, 512, (uint64_t)r, t6 + r * 512, 1.0f);
  bn_tp1_from_tp2(a2, 6, 512, a1);
  for (int r = 0; r < 6; r++) {
    float sc, y[512];
    bn_ternary_decode(BN_DT_TP1, a1, 6 * 512, (uint64_t)r * 512, 512, back, &sc);
    assert_memory_equal(back, t6 + r * 512, 512);
    bn_dequant(BN_DT_TP1, a1, 6 * 512, (uint64_t)r * 512, 512, y);
    for (int e = 0; e < 512; e++) assert_true(y[e] == (float)t6[r * 512 + e]);
  }
}

static void test_ternary_encode_roundtrip(void **state) {
  (void)state;
  bn_dtype types[] = {BN_DT_TQ1_0, BN_DT_TQ2_0, BN_DT_I2_S};
  uint64_t rng = 7;
  enum { N = 1024 };
  int8_t trit[N], back[N];
  static uint8_t buf[N];
  for (int i = 0; i < N; i++) trit[i] = (int8_t)(bn_rng_next(&rng) % 3) - 1;
  for (int k = 0; k < 3; k++) {
    float sc[N / 128];
    bn_ternary_encode(types[k], trit, N, 0.75f, buf);
    int64_t g = bn_ternary_group(types[k], 512);
    for (int r = 0; r < 2; r++) bn_ternary_decode(types[k], buf, N, (uint64_t)r * 512, 512, back + r * 512, sc);
    assert_memory_equal(trit, back, N);
    for (int i = 0; i < 512 / g; i++) assert_true(sc[i] == 0.75f);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_half_conversion), cmocka_unit_test(test_f32_f16_bf16), cmocka_unit_test(test_q4_0),
      cmocka_unit_test(test_q8_0),           cmocka_unit_test(test_q6_k),         cmocka_unit_test(test_tq2_0),
      cmocka_unit_test(test_tq1_0),          cmocka_unit_test(test_i2_s),         cmocka_unit_test(test_ternary_encode_roundtrip),
      cmocka_unit_test(test_tp2_layout),
      cmocka_unit_test(test_tp1_layout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
