/* Hugging Face model directories (import_hf.c, hf_vocab.c): config.json,
 * safetensors (one file or shards), tokenizer.json. docs/import.md says how
 * each maps onto the graph IR. */
#ifndef BN_HF_H
#define BN_HF_H

#include <cjson/cJSON.h>

#include "../ir/model.h"

typedef struct bn_hf bn_hf;

/* Reads and checks the directory: config, every tensor against it (ternary linears re-laid once). */
bn_status bn_hf_open(bn_hf **h, const char *dir, bn_error *err);
/* The model; its graph points into h: keep it open. */
bn_status bn_import_hf(bn_hf *h, bn_model *m, bn_error *err);
void bn_hf_close(bn_hf *h);
bn_status bn_hf_vocab(const char *dir, const cJSON *config, int n_vocab, bn_vocab *v, bn_error *err);
/* dir/file's bytes (NUL-terminated; at most 256 MiB), or NULL: absent (*st 0) or an error (*st set). */
char *bn_hf_read_text(const char *dir, const char *file, size_t *len, bn_error *err, bn_status *st);
/* dir/file as a JSON object, or NULL: absent (an error when required) or not an object. */
cJSON *bn_hf_read_json(const char *dir, const char *file, int required, bn_error *err, bn_status *st);

#endif
