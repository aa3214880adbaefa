/* The on-disk kernel cache: one file per kernel object, named by its key.
 * A file is [magic "BNKCACH2"][u64 key][u64 size][32-byte HMAC-SHA-512-256 of
 * the header's first 24 bytes and the payload] then the payload. Writers write
 * a private temporary file and rename it into place, so a reader sees a whole
 * entry or none, whoever else writes. */
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../ir/files.h"
#include "kcache.h"

enum { HEADER = 24 + crypto_auth_hmacsha512256_BYTES };
static const char MAGIC[8] = {'B', 'N', 'K', 'C', 'A', 'C', 'H', '2'};

bn_status bn_kcache_open(bn_kcache *c, const char *dir, bn_error *err) {
  memset(c, 0, sizeof *c);
  if (strlen(dir) >= sizeof c->dir - 64) return bn_fail(err, BN_E_INVALID, "%s: cache directory name too long", dir);
  if (sodium_init() < 0) return bn_fail(err, BN_E_UNSUPPORTED, "libsodium failed to start");
  char keyfile[4200];
  snprintf(keyfile, sizeof keyfile, "%s/mac.key", dir);
  bn_status st = bn_private_dir(dir, 1, err);
  if (!st) st = bn_secret_file(keyfile, c->mac_key, BN_KCACHE_KEY_BYTES, err);
  if (!st) strcpy(c->dir, dir);
  return st;
}

static void entry_path(char *path, size_t cap, const char *dir, uint64_t key) {
  snprintf(path, cap, "%s/%016llx.bnk", dir, (unsigned long long)key);
}

static void mac(const bn_kcache *c, const uint8_t *head, const void *data, size_t n, uint8_t out[32]) {
  crypto_auth_hmacsha512256_state st;
  crypto_auth_hmacsha512256_init(&st, c->mac_key, BN_KCACHE_KEY_BYTES);
  crypto_auth_hmacsha512256_update(&st, head, 24);
  crypto_auth_hmacsha512256_update(&st, data, n);
  crypto_auth_hmacsha512256_final(&st, out);
}

void bn_kcache_drop(const bn_kcache *c, uint64_t key) {
  char path[4200];
  entry_path(path, sizeof path, c->dir, key);
  unlink(path);
}

void *bn_kcache_load(const bn_kcache *c, uint64_t key, size_t *size) {
  char path[4200];
  entry_path(path, sizeof path, c->dir, key);
  int fd = open(path, O_RDONLY | O_NOFOLLOW);
  FILE *fp = fd < 0 ? NULL : fdopen(fd, "rb");
  if (!fp) {
    if (fd >= 0) close(fd);
    return NULL;
  }
  uint8_t h[HEADER], want[32];
  uint64_t k, n;
  void *data = NULL;
  struct stat sb;
  if (!fstat(fd, &sb) && S_ISREG(sb.st_mode) && fread(h, 1, HEADER, fp) == HEADER && !memcmp(h, MAGIC, 8)) {
    memcpy(&k, h + 8, 8), memcpy(&n, h + 16, 8);
    if (k == key && n > 0 && n == (uint64_t)sb.st_size - HEADER && n < (1u << 30) && (data = malloc(n))) {
      if (fread(data, 1, n, fp) != n) free(data), data = NULL;
      else if (mac(c, h, data, n, want), sodium_memcmp(want, h + 24, 32)) free(data), data = NULL;
      else *size = n;
    }
  }
  fclose(fp);
  if (!data) unlink(path); /* damaged, foreign or forged: rebuilt and stored anew */
  return data;
}

int bn_kcache_store(const bn_kcache *c, uint64_t key, const void *data, size_t size) {
  char path[4200], tmp[4300];
  entry_path(path, sizeof path, c->dir, key);
  snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) return -1;
  uint8_t h[HEADER];
  uint64_t n = size;
  memcpy(h, MAGIC, 8), memcpy(h + 8, &key, 8), memcpy(h + 16, &n, 8);
  mac(c, h, data, size, h + 24);
  FILE *fp = fdopen(fd, "wb");
  int ok = fp && fwrite(h, 1, HEADER, fp) == HEADER && fwrite(data, 1, size, fp) == size;
  if (fp) ok = fclose(fp) == 0 && ok;
  else close(fd);
  if (ok && rename(tmp, path) == 0) return 0;
  unlink(tmp);
  return -1;
}
