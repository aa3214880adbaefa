#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bn_status bn_outfile_open(bn_outfile *o, const char *path, const char *input, bn_error *err) {
  memset(o, 0, sizeof *o);
  size_t len = strlen(path);
  if (!len || len >= sizeof o->path - 16) return bn_fail(err, BN_E_INVALID, "%s: output path empty or too long", path);
  struct stat sb;
  if (!stat(path, &sb) && !S_ISREG(sb.st_mode))
    return bn_fail(err, BN_E_INVALID, "%s: output is not a regular file (refusing to replace it)", path);
  if (input && same_file(path, input))
    return bn_fail(err, BN_E_INVALID, "%s: output is the input file %s (refusing to replace it)", path, input);
  memcpy(o->path, path, len + 1);
  snprintf(o->tmp, sizeof o->tmp, "%s.XXXXXX", path);
  int fd = mkstemp(o->tmp);
  if (fd < 0) return bn_fail(err, BN_E_IO, "%s: cannot create a file beside it: %s", path, strerror(errno));
  if (!(o->fp = fdopen(fd, "w+b"))) {
    close(fd);
    unlink(o->tmp);
    return bn_fail(err, BN_E_NOMEM, "%s: out of memory", path);
  }
  return BN_OK;
}

bn_status bn_outfile_commit(bn_outfile *o, bn_error *err) {
  mode_t mask = umask(0);
  umask(mask);
  int bad = fflush(o->fp) || ferror(o->fp) || fchmod(fileno(o->fp), 0666 & ~mask);
  bad = fclose(o->fp) || bad;
  o->fp = NULL;
  if (bad || rename(o->tmp, o->path)) {
    unlink(o->tmp);
    return bn_fail(err, BN_E_IO, "%s: write failed: %s", o->path, strerror(errno));
  }
  return BN_OK;
}

void bn_outfile_abort(bn_outfile *o) {
  if (o->fp) fclose(o->fp), o->fp = NULL;
  if (o->tmp[0]) unlink(o->tmp);
}

static int mkdirs(char *path, mode_t last) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    int bad = mkdir(path, 0755) && errno != EEXIST;
    *p = '/';
    if (bad) return -1;
  }
  return mkdir(path, last) && errno != EEXIST ? -1 : 0;
}

bn_status bn_private_dir(const char *path, int create, bn_error *err) {
  char buf[4096];
  if (!*path || strlen(path) >= sizeof buf) return bn_fail(err, BN_E_INVALID, "%s: directory name empty or too long", path);
  strcpy(buf, path);
  if (create && mkdirs(buf, 0700)) return bn_fail(err, BN_E_IO, "%s: cannot create: %s", path, strerror(errno));
  struct stat sb;
  if (lstat(path, &sb)) return bn_fail(err, BN_E_IO, "%s: %s", path, strerror(errno));
  if (!S_ISDIR(sb.st_mode)) return bn_fail(err, BN_E_INVALID, "%s: not a directory (a link or a file)", path);
  if (sb.st_uid != geteuid())
    return bn_fail(err, BN_E_INVALID, "%s: belongs to user %u, not to you (%u): refusing to use it", path,
                   (unsigned)sb.st_uid, (unsigned)geteuid());
  if (sb.st_mode & (S_IWGRP | S_IWOTH))
    return bn_fail(err, BN_E_INVALID, "%s: others may write to it (mode %03o): refusing to use it (chmod go-w)", path,
                   (unsigned)(sb.st_mode & 0777));
  return BN_OK;
}

bn_status bn_dir_of(const char *path, char *dir, size_t cap, bn_error *err) {
  const char *slash = strrchr(path, '/');
  size_t len = slash ? (size_t)(slash - path) : 1;
  if (len >= cap) return bn_fail(err, BN_E_INVALID, "%s: path too long", path);
  if (slash) memcpy(dir, path, len), dir[len] = 0;
  else strcpy(dir, ".");
  if (!dir[0]) strcpy(dir, "/");
  return BN_OK;
}

/* Reads exactly n bytes of a private file: regular, ours, unreadable by others. 1: absent. */
int bn_private_read(const char *path, uint8_t *buf, size_t n, bn_error *err, bn_status *st) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return 1;
    return *st = bn_fail(err, BN_E_IO, "%s: cannot open: %s", path, strerror(errno)), 0;
  }
  struct stat sb;
  if (fstat(fd, &sb) || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid() || (sb.st_mode & 077))
    *st = bn_fail(err, BN_E_INVALID, "%s: a secret must be a file of yours that nobody else may read (chmod 600)", path);
  else if (sb.st_size != (off_t)n || read(fd, buf, n) != (ssize_t)n)
    *st = bn_fail(err, BN_E_FORMAT, "%s: %lld bytes, a key has %zu", path, (long long)sb.st_size, n);
  else *st = BN_OK;
  close(fd);
  return 0;
}

/* Creates path with n bytes, mode 0600, failing if it exists (another process made it: read that). */
bn_status bn_private_write(const char *path, const uint8_t *buf, size_t n, bn_error *err) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
  if (fd < 0) return bn_fail(err, BN_E_IO, "%s: cannot create: %s", path, strerror(errno));
  int ok = write(fd, buf, n) == (ssize_t)n && !fsync(fd);
  if (close(fd) || !ok) {
    unlink(path);
    return bn_fail(err, BN_E_IO, "%s: write failed", path);
  }
  return BN_OK;
}

bn_status bn_secret_file(const char *path, uint8_t *key, size_t n, bn_error *err) {
  char dir[4096];
  bn_status st;
  if ((st = bn_dir_of(path, dir, sizeof dir, err)) || (st = bn_private_dir(dir, 1, err))) return st;
  if (!bn_private_read(path, key, n, err, &st)) return st;
  if (getrandom(key, n, 0) != (ssize_t)n) return bn_fail(err, BN_E_IO, "%s: no random bytes: %s", path, strerror(errno));
  if ((st = bn_private_write(path, key, n, err)) && errno == EEXIST && !bn_private_read(path, key, n, err, &st)) return st;
  return st;
}

/* The file's bytes in anonymous memory advised for 2 MiB pages; NULL where that fails. */
static void *read_huge(int fd, size_t size, size_t *mapped) {
  size_t huge = (size_t)2 << 20, sz = (size + huge - 1) / huge * huge;
  uint8_t *a = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a == MAP_FAILED) return NULL;
  madvise(a, sz, MADV_HUGEPAGE); /* advice: without transparent huge pages it still works */
  for (size_t got = 0; got < size;) {
    ssize_t n = pread(fd, a + got, size - got, (off_t)got);
    if (n <= 0) {
      munmap(a, sz);
      return NULL;
    }
    got += (size_t)n;
  }
  mprotect(a, sz, PROT_READ);
  *mapped = sz;
  return a;
}

bn_status bn_file_load(const char *path, size_t min_size, int huge_copy, const char *what, bn_file_view *v,
                       bn_error *err) {
  memset(v, 0, sizeof *v);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return bn_fail(err, BN_E_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
    close(fd);
    return bn_fail(err, BN_E_IO, "%s: not a regular file", path);
  }
  if ((uint64_t)sb.st_size < min_size) {
    close(fd);
    return bn_fail(err, BN_E_FORMAT, "%s: not %s (%lld bytes is too short)", path, what, (long long)sb.st_size);
  }
  size_t size = (size_t)sb.st_size, mapped = size;
  void *m = huge_copy ? read_huge(fd, size, &mapped) : NULL;
  if (!m) {
    mapped = size;
    m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  }
  close(fd);
  if (m == MAP_FAILED) return bn_fail(err, BN_E_IO, "%s: mmap failed", path);
  *v = (bn_file_view){m, size, mapped};
  return BN_OK;
}

void bn_file_release(bn_file_view *v) {
  if (v->base) munmap((void *)v->base, v->mapped);
  memset(v, 0, sizeof *v);
}
