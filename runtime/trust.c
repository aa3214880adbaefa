#include "trust.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../ir/files.h"

static const char KEY_TAG[] = "bnc-ed25519";

void bn_key_hex(const uint8_t pk[BN_PK_BYTES], char out[2 * BN_PK_BYTES + 1]) {
  sodium_bin2hex(out, 2 * BN_PK_BYTES + 1, pk, BN_PK_BYTES);
}

/* Writes "bnc-ed25519 <hex> <comment>" (the comment on one line); 1 on success. */
static int put_key_line(FILE *fp, const uint8_t pk[BN_PK_BYTES], const char *comment) {
  char hex[2 * BN_PK_BYTES + 1], clean[128];
  bn_key_hex(pk, hex);
  snprintf(clean, sizeof clean, "%s", comment ? comment : "");
  for (char *c = clean; *c; c++)
    if (*c == '\n' || *c == '\r') *c = ' ';
  return fprintf(fp, "%s %s %s\n", KEY_TAG, hex, clean) > 0;
}

static int parse_key_line(const char *line, uint8_t pk[BN_PK_BYTES]) {
  size_t tl = strlen(KEY_TAG), used;
  while (*line == ' ' || *line == '\t') line++;
  if (strncmp(line, KEY_TAG, tl) || (line[tl] != ' ' && line[tl] != '\t')) return 0;
  line += tl;
  while (*line == ' ' || *line == '\t') line++;
  const char *end;
  if (sodium_hex2bin(pk, BN_PK_BYTES, line, strlen(line), NULL, &used, &end) || used != BN_PK_BYTES) return 0;
  return *end == 0 || *end == ' ' || *end == '\t' || *end == '\n' || *end == '\r';
}

/* Calls fn on each key line of path; a line that is neither a key, blank nor a comment is an error. */
static bn_status each_key(const char *path, int missing_ok, bn_status (*fn)(const uint8_t *, void *), void *user,
                          bn_error *err) {
  FILE *fp = fopen(path, "r");
  if (!fp) {
    if (missing_ok && errno == ENOENT) return BN_OK;
    return bn_fail(err, BN_E_IO, "%s: cannot open: %s", path, strerror(errno));
  }
  char line[1024];
  bn_status st = BN_OK;
  for (int no = 1; !st && fgets(line, sizeof line, fp); no++) {
    uint8_t pk[BN_PK_BYTES];
    const char *p = line + strspn(line, " \t\r\n");
    if (!*p || *p == '#') continue;
    if (!parse_key_line(p, pk))
      st = bn_fail(err, BN_E_FORMAT, "%s:%d: not a key line (\"%s <64 hex digits> [comment]\")", path, no, KEY_TAG);
    else st = fn(pk, user);
  }
  fclose(fp);
  return st;
}

static bn_status first_key(const uint8_t *pk, void *user) {
  memcpy(user, pk, BN_PK_BYTES);
  return BN_E_RANGE; /* stop */
}

bn_status bn_key_read_public(const char *path, uint8_t pk[BN_PK_BYTES], bn_error *err) {
  bn_status st = each_key(path, 0, first_key, pk, err);
  if (st == BN_E_RANGE && (sodium_init() < 0 || !crypto_core_ed25519_is_valid_point(pk)))
    return bn_fail(err, BN_E_FORMAT, "%s: not an Ed25519 public key (an invalid or small-order point)", path);
  if (st == BN_E_RANGE) return BN_OK;
  return st ? st : bn_fail(err, BN_E_FORMAT, "%s: holds no %s public key", path, KEY_TAG);
}

static bn_status collect(const uint8_t *pk, void *user) {
  bn_trust *t = user;
  void *grown = realloc(t->pk, (size_t)(t->n + 1) * sizeof *t->pk);
  if (!grown) return BN_E_NOMEM;
  t->pk = grown;
  memcpy(t->pk[t->n++], pk, BN_PK_BYTES);
  return BN_OK;
}

bn_status bn_trust_read(const char *path, bn_trust *t, bn_error *err) {
  memset(t, 0, sizeof *t);
  /* whoever may write the list may make bnc run code: it and its directory must be the user's alone */
  struct stat sb;
  char dir[4096];
  bn_status st;
  if (stat(path, &sb)) return errno == ENOENT ? BN_OK : bn_fail(err, BN_E_IO, "%s: %s", path, strerror(errno));
  if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid() || (sb.st_mode & (S_IWGRP | S_IWOTH)))
    return bn_fail(err, BN_E_INVALID, "%s: a trusted-keys file must be a file of yours that nobody else may write "
                   "(chmod go-w): trusting no key", path);
  if ((st = bn_dir_of(path, dir, sizeof dir, err)) || (st = bn_private_dir(dir, 0, err))) return st;
  st = each_key(path, 1, collect, t, err);
  if (st == BN_E_NOMEM) bn_fail(err, st, "%s: out of memory", path);
  if (st) bn_trust_free(t);
  return st;
}

int bn_trust_has(const bn_trust *t, const uint8_t pk[BN_PK_BYTES]) {
  for (int i = 0; i < t->n; i++)
    if (!sodium_memcmp(t->pk[i], pk, BN_PK_BYTES)) return 1;
  return 0;
}

void bn_trust_free(bn_trust *t) {
  free(t->pk);
  memset(t, 0, sizeof *t);
}

bn_status bn_trust_add(const char *path, const uint8_t pk[BN_PK_BYTES], const char *comment, int *added,
                       bn_error *err) {
  char dir[4096];
  bn_trust t;
  bn_status st;
  *added = 0;
  if ((st = bn_dir_of(path, dir, sizeof dir, err)) || (st = bn_private_dir(dir, 1, err)) ||
      (st = bn_trust_read(path, &t, err)))
    return st;
  int had = bn_trust_has(&t, pk);
  bn_trust_free(&t);
  if (had) return BN_OK;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0644);
  FILE *fp = fd < 0 ? NULL : fdopen(fd, "a");
  if (!fp) {
    if (fd >= 0) close(fd);
    return bn_fail(err, BN_E_IO, "%s: cannot write: %s", path, strerror(errno));
  }
  int ok = put_key_line(fp, pk, comment);
  if (fclose(fp) || !ok) return bn_fail(err, BN_E_IO, "%s: write failed", path);
  *added = 1;
  return BN_OK;
}

bn_status bn_key_signing(const char *dir, uint8_t sk[BN_SK_BYTES], uint8_t pk[BN_PK_BYTES], int *made, bn_error *err) {
  char skp[4200], pkp[4200], trusted[4200];
  bn_status st;
  *made = 0;
  if (sodium_init() < 0) return bn_fail(err, BN_E_UNSUPPORTED, "libsodium failed to start");
  if ((st = bn_private_dir(dir, 1, err))) return st;
  snprintf(skp, sizeof skp, "%s/signing.key", dir);
  snprintf(pkp, sizeof pkp, "%s/signing.pub", dir);
  snprintf(trusted, sizeof trusted, "%s/trusted-keys", dir);
  if (!bn_private_read(skp, sk, BN_SK_BYTES, err, &st)) {
    if (!st) crypto_sign_ed25519_sk_to_pk(pk, sk);
    return st;
  }
  crypto_sign_keypair(pk, sk);
  if ((st = bn_private_write(skp, sk, BN_SK_BYTES, err))) return st;
  char host[64] = "", comment[160];
  gethostname(host, sizeof host - 1);
  const char *user = getlogin();
  snprintf(comment, sizeof comment, "%s@%s", user ? user : "user", host);
  FILE *fp = fopen(pkp, "w");
  int ok = fp && put_key_line(fp, pk, comment);
  if ((fp && fclose(fp)) || !ok) return bn_fail(err, BN_E_IO, "%s: write failed", pkp);
  int added;
  if ((st = bn_trust_add(trusted, pk, comment, &added, err))) return st;
  *made = 1;
  return BN_OK;
}
