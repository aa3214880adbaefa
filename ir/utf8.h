/* UTF-8 helpers (ir/utf8.c). */
#ifndef BN_UTF8_H
#define BN_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Returns the byte offset of the first invalid sequence, or -1 if valid. */
long bn_utf8_invalid_at(const char *s, size_t len);
int bn_utf8_len(unsigned char lead); /* bytes of the sequence starting with lead (1 for invalid) */
int bn_utf8_encode(uint32_t cp, char out[4]);

#endif
