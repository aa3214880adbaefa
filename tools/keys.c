/* Where the user's keys live, whether a plan's object code may run, and `bnc trust`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/trust.h"
#include "cli.h"

static const char HELP[] =
    "usage: bnc trust KEYFILE | --list\n"
    "  Object code in a plan (bnc compile --aot) runs only when the plan is signed by a key you trust;\n"
    "  otherwise bnc says so in one line and generates the kernels itself. `bnc compile --aot` signs\n"
    "  with your key, made on first use in $XDG_CONFIG_HOME/bnc (default ~/.config/bnc) and trusted\n"
    "  by you. Give others signing.pub; trust theirs with this command.\n"
    "  KEYFILE   a public key file (\"bnc-ed25519 <64 hex digits> [comment]\"): added to trusted-keys\n"
    "  --list    print your key directory, your public key and the keys you trust\n";

const char *bn_cli_key_dir(void) {
  static char dir[4096];
  const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
  int n;
  if (xdg && *xdg) n = snprintf(dir, sizeof dir, "%s/bnc", xdg);
  else if (home && *home) n = snprintf(dir, sizeof dir, "%s/.config/bnc", home);
  else return NULL;
  return n > 0 && (size_t)n < sizeof dir - 64 ? dir : NULL;
}

const bn_objcode *bn_cli_trusted_code(const bn_plan *p) {
  if (!p->has_objects) return NULL;
  const char *dir = bn_cli_key_dir();
  char path[4200], why[160];
  bn_trust t = {0};
  bn_error err;
  int ok = 0;
  if (dir) {
    snprintf(path, sizeof path, "%s/trusted-keys", dir);
    if (bn_trust_read(path, &t, &err)) {
      fprintf(stderr, "bnc: %s\n", err.msg);
      memset(&t, 0, sizeof t);
    }
  }
  ok = bn_plan_code_trusted(p, &t, why, sizeof why);
  bn_trust_free(&t);
  if (ok) return &p->code;
  fprintf(stderr, "bnc: %s: %s: not run; generating the kernels instead (bnc trust --help)\n", p->path, why);
  return NULL;
}

static int list(const char *dir) {
  char path[4200], hex[2 * BN_PK_BYTES + 1];
  uint8_t pk[BN_PK_BYTES];
  bn_trust t;
  bn_error err;
  printf("key directory: %s\n", dir);
  snprintf(path, sizeof path, "%s/signing.pub", dir);
  if (!bn_key_read_public(path, pk, &err)) bn_key_hex(pk, hex), printf("your key: %s (%s)\n", hex, path);
  else printf("your key: none yet (bnc compile --aot makes one)\n");
  snprintf(path, sizeof path, "%s/trusted-keys", dir);
  if (bn_trust_read(path, &t, &err)) return bn_cli_fail(&err);
  printf("trusted keys (%s): %d\n", path, t.n);
  for (int i = 0; i < t.n; i++) bn_key_hex(t.pk[i], hex), printf("  %s\n", hex);
  bn_trust_free(&t);
  return 0;
}

int bn_cmd_trust(int argc, char **argv) {
  if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) return fputs(HELP, stdout), 0;
  if (argc != 2) return bn_cli_usage_error("trust", "needs one KEYFILE or --list");
  const char *dir = bn_cli_key_dir();
  if (!dir) return bn_cli_usage_error("trust", "neither XDG_CONFIG_HOME nor HOME is set: no key directory");
  if (!strcmp(argv[1], "--list")) return list(dir);
  if (argv[1][0] == '-') return bn_cli_usage_error("trust", "unknown option '%s'", argv[1]);
  uint8_t pk[BN_PK_BYTES];
  char path[4200], hex[2 * BN_PK_BYTES + 1];
  bn_error err;
  int added;
  snprintf(path, sizeof path, "%s/trusted-keys", dir);
  if (bn_key_read_public(argv[1], pk, &err) || bn_trust_add(path, pk, argv[1], &added, &err)) return bn_cli_fail(&err);
  bn_key_hex(pk, hex);
  printf("%s %s (%s)\n", added ? "trusting" : "already trusted:", hex, path);
  return 0;
}

bn_status bn_cli_signing_key(uint8_t sk[BN_SK_BYTES], bn_error *err) {
  const char *dir = bn_cli_key_dir();
  uint8_t pk[BN_PK_BYTES];
  int made;
  if (!dir) return bn_fail(err, BN_E_INVALID, "--aot: neither XDG_CONFIG_HOME nor HOME is set: no key to sign with");
  bn_status st = bn_key_signing(dir, sk, pk, &made, err);
  if (!st && made) fprintf(stderr, "made your signing key %s/signing.key (give others signing.pub beside it)\n", dir);
  return st;
}
