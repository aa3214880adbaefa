/* The on-disk kernel cache: one file per kernel object, named by its key.
 * A file is [magic "BNKCACHE"][u64 key][u64 size][u64 XXH3 of the payload]
 * then the payload. Writers write a private temporary file and rename it
 * into place, so a reader sees a whole entry or none, whoever else writes;
 * an entry whose header or checksum is wrong is ignored (and replaced by
 * the next store). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "kcache.h"

enum { HEADER = 32 };
static const char MAGIC[8] = {'B', 'N', 'K', 'C', 'A', 'C', 'H', 'E'};

static int mkdirs(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    int bad = mkdir(path, 0755) && errno != EEXIST;
    *p = '/';
    if (bad) return -1;
  }
  return mkdir(path, 0755) && errno != EEXIST ? -1 : 0;
}

int bn_kcache_dir(char *buf, size_t cap) {
  const char *dir = getenv("BNC_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int n;
  if (dir) {
    if (!*dir || !strcmp(dir, "off")) return 0;
    n = snprintf(buf, cap, "%s", dir);
  } else if (xdg && *xdg) n = snprintf(buf, cap, "%s/bnc/kernels", xdg);
  else if (home && *home) n = snprintf(buf, cap, "%s/.cache/bnc/kernels", home);
  else return 0;
  if (n <= 0 || (size_t)n >= cap - 32) return 0;
  return mkdirs(buf) == 0;
}

static void entry_path(char *path, size_t cap, const char *dir, uint64_t key) {
  snprintf(path, cap, "%s/%016llx.bnk", dir, (unsigned long long)key);
}

void *bn_kcache_load(const char *dir, uint64_t key, size_t *size) {
  char path[4200];
  entry_path(path, sizeof path, dir, key);
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  uint8_t h[HEADER];
  uint64_t k, n, sum;
  void *data = NULL;
  if (fread(h, 1, HEADER, fp) == HEADER && !memcmp(h, MAGIC, 8)) {
    memcpy(&k, h + 8, 8), memcpy(&n, h + 16, 8), memcpy(&sum, h + 24, 8);
    if (k == key && n > 0 && n < (1u << 30) && (data = malloc(n))) {
      if (fread(data, 1, n, fp) != n || fgetc(fp) != EOF || XXH3_64bits(data, n) != sum) free(data), data = NULL;
      else *size = n;
    }
  }
  fclose(fp);
  return data;
}

int bn_kcache_store(const char *dir, uint64_t key, const void *data, size_t size) {
  char path[4200], tmp[4300];
  entry_path(path, sizeof path, dir, key);
  snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) return -1;
  uint8_t h[HEADER];
  uint64_t n = size, sum = XXH3_64bits(data, size);
  memcpy(h, MAGIC, 8), memcpy(h + 8, &key, 8), memcpy(h + 16, &n, 8), memcpy(h + 24, &sum, 8);
  FILE *fp = fdopen(fd, "wb");
  int ok = fp && fwrite(h, 1, HEADER, fp) == HEADER && fwrite(data, 1, size, fp) == size;
  if (fp) ok = fclose(fp) == 0 && ok;
  else close(fd);
  if (ok) chmod(tmp, 0644);
  if (ok && rename(tmp, path) == 0) return 0;
  unlink(tmp);
  return -1;
}
