/* A model: the graph plus what the runtime needs beside it: the
 * hyperparameters and the vocabulary. Importers fill it; the plan stores it. */
#ifndef BN_MODEL_H
#define BN_MODEL_H

#include "ir.h"

typedef enum { BN_VOCAB_SPM, BN_VOCAB_BPE } bn_vocab_kind;
/* The BPE pre-tokenizer's split: llama3's regex (digits in threes) or qwen2's (one digit a piece). SPM
 * vocabularies: U+2581 before every text (SentencePiece's dummy prefix, LLAMA3's value), or SPM_FIRST:
 * only before a text at the prompt's start that does not begin with a space (transformers' Metaspace,
 * prepend_scheme "first"). */
typedef enum { BN_PRE_LLAMA3, BN_PRE_QWEN2, BN_PRE_SPM_FIRST, BN_PRE_COUNT } bn_vocab_pre;

enum { BN_TOK_NORMAL = 1, BN_TOK_UNKNOWN = 2, BN_TOK_CONTROL = 3, BN_TOK_USER = 4, BN_TOK_UNUSED = 5, BN_TOK_BYTE = 6 };

typedef struct {
  bn_vocab_kind kind;
  bn_vocab_pre pre;
  int n_tokens;
  char **tokens;     /* NUL-terminated copies */
  float *scores;     /* SPM merge scores (may be all 0); unused where an SPM vocabulary has merges */
  int32_t *types;    /* BN_TOK_* */
  int n_merges;
  char **merges;     /* BPE (and tokenizer.json's SPM-style BPE): "left right", rank = index */
  int bos, eos, unk; /* -1 when absent */
  int add_bos;
  char *chat_template; /* tokenizer.chat_template (Jinja text, kept as it is); NULL: none */
} bn_vocab;

typedef struct {
  char arch[32];
  int n_ctx, n_embd, n_layer, n_ff, n_head, n_head_kv, head_dim, n_rot, n_vocab;
  float rope_base, eps;
} bn_hparams;

typedef struct {
  bn_hparams hp;
  bn_vocab vocab;
  bn_graph graph;
} bn_model;

/* GPT-2's byte-to-unicode table: printable Latin-1 bytes map to themselves,
 * the others to U+0100 upward in byte order. */
uint32_t bn_bpe_byte_to_cp(unsigned char b);

/* Checks what the tokenizers rely on: every token and merge well-formed UTF-8 of at
 * most BN_VOCAB_MAX_BYTES, token types known, scores finite, merges "a b". */
enum { BN_VOCAB_MAX_BYTES = 4096, BN_CHAT_TEMPLATE_MAX = 1 << 16 };
bn_status bn_vocab_check(const bn_vocab *v, const char *file, bn_error *err);
void bn_vocab_free(bn_vocab *v);
void bn_model_free(bn_model *m);

#endif
