/* bnc inspect: metadata and the tensor table of a GGUF file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void print_value(const bn_gguf_kv *kv) {
  switch (kv->type) {
  case BN_GGUF_STRING: printf("%.*s", (int)(kv->str.len > 200 ? 200 : kv->str.len), kv->str.ptr); break;
  case BN_GGUF_F32: case BN_GGUF_F64: printf("%g", kv->num.f); break;
  case BN_GGUF_I8: case BN_GGUF_I16: case BN_GGUF_I32: case BN_GGUF_I64: printf("%lld", (long long)kv->num.i); break;
  case BN_GGUF_BOOL: printf("%s", kv->num.u ? "true" : "false"); break;
  case BN_GGUF_ARRAY:
    printf("[%s x %llu]", bn_gguf_type_name(kv->arr_type), (unsigned long long)kv->arr_count);
    if (kv->arr_type == BN_GGUF_STRING)
      for (uint64_t i = 0; i < kv->arr_count && i < 4; i++)
        printf(" '%.*s'", (int)(kv->arr_strs[i].len > 40 ? 40 : kv->arr_strs[i].len), kv->arr_strs[i].ptr);
    break;
  default: printf("%llu", (unsigned long long)kv->num.u);
  }
}

int bn_cmd_inspect(int argc, char **argv) {
  if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    printf("usage: bnc inspect MODEL.gguf\n  Prints the GGUF version, every key/value pair and the tensor table\n"
           "  (name, type, shape innermost first as stored, bytes). A .bnplan: `bnc ir PLAN` prints its graph.\n");
    return 0;
  }
  for (int i = 1; i < argc; i++)
    if (argv[i][0] == '-') return bn_cli_usage_error("inspect", "unknown option '%s'", argv[i]);
  if (argc != 2) return bn_cli_usage_error("inspect", "expects one GGUF file");
  if (bn_plan_sniff(argv[1])) {
    fprintf(stderr, "bnc: %s is a bnc plan, not a GGUF: `bnc ir %s` prints its graph\n", argv[1], argv[1]);
    return 1;
  }
  bn_gguf f;
  bn_error err = {0};
  if (bn_gguf_open(&f, argv[1], &err)) return bn_cli_fail(&err);
  printf("file: %s\nGGUF version %u, %llu keys, %llu tensors, alignment %llu\n\n", argv[1], f.version,
         (unsigned long long)f.n_kv, (unsigned long long)f.n_tensors, (unsigned long long)f.alignment);
  for (uint64_t i = 0; i < f.n_kv; i++) {
    printf("%-44.*s %-7s ", (int)f.kv[i].key.len, f.kv[i].key.ptr, bn_gguf_type_name(f.kv[i].type));
    print_value(&f.kv[i]);
    printf("\n");
  }
  printf("\n%-36s %-6s %-22s %12s\n", "tensor", "type", "shape", "bytes");
  uint64_t total = 0;
  for (uint64_t i = 0; i < f.n_tensors; i++) {
    const bn_gguf_tensor *t = &f.tensors[i];
    char shape[96] = "[";
    for (uint32_t d = 0; d < t->n_dims; d++)
      snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%llu", d ? ", " : "",
               (unsigned long long)t->dims[d]);
    strcat(shape, "]");
    printf("%-36.*s %-6s %-22s %12llu\n", (int)t->name.len, t->name.ptr, bn_dtype_table[t->dtype].name, shape,
           (unsigned long long)t->nbytes);
    total += t->nbytes;
  }
  printf("\ntotal tensor bytes: %llu (%.1f MiB)\n", (unsigned long long)total, total / 1048576.0);
  bn_gguf_close(&f);
  return 0;
}
