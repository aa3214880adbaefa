/* libFuzzer target: the Hugging Face directory importer. The first byte picks the file the rest
 * replaces in a copy of tests/data/hf/llama-packed (model.safetensors, config.json or
 * tokenizer.json); the directory is then opened and imported, and the file put back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../frontend/hf.h"
#include "../../frontend/import.h"

static const char *FILES[3] = {"model.safetensors", "config.json", "tokenizer.json"};
static char dir[64];
static char *orig[3];
static size_t orig_len[3];

static void put(int i, const void *p, size_t n) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, FILES[i]);
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (n) fwrite(p, 1, n, f);
  fclose(f);
}

static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/bnc-fuzz-hf-XXXXXX");
  if (!mkdtemp(dir)) abort();
  const char *all[] = {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"};
  for (int i = 0; i < 4; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/hf/llama-packed/%s", BNC_TEST_DATA, all[i]);
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) abort();
    fclose(f);
    if (i < 3) orig[i] = b, orig_len[i] = (size_t)n;
    else {
      snprintf(path, sizeof path, "%s/%s", dir, all[i]);
      FILE *o = fopen(path, "wb");
      fwrite(b, 1, (size_t)n, o);
      fclose(o);
      free(b);
    }
  }
  for (int i = 0; i < 3; i++) put(i, orig[i], orig_len[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!dir[0]) setup();
  if (!size) return 0;
  int which = data[0] % 3;
  put(which, data + 1, size - 1);
  bn_source s;
  bn_model m;
  bn_error err;
  if (bn_source_import(dir, &s, &m, &err) == BN_OK) {
    bn_model_free(&m);
    bn_source_close(&s);
  }
  put(which, orig[which], orig_len[which]);
  return 0;
}
