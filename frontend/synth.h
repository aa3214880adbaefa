/* bnc synth: real-format GGUF files with seeded random ternary weights for
 * any supported arch, at named shapes, with a working tokenizer. */
#ifndef BN_SYNTH_H
#define BN_SYNTH_H

#include <stdint.h>

#include "import.h"

typedef struct {
  const char *name; /* tiny, large, 3b, 2b4t */
  const char *arch;
  int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
  float rope_base;
} bn_synth_shape;

typedef struct {
  const bn_synth_shape *shape;
  const char *arch;     /* overrides the shape's arch when set */
  bn_dtype ternary;     /* TQ1_0, TQ2_0 or I2_S */
  bn_dtype embd;        /* F16 (default), F32, Q8_0 ... any non-ternary type bnc can write */
  uint64_t seed;
  int progress;         /* print a progress line to stderr */
  const char *chat_template; /* tokenizer.chat_template: "llama3", "bitnet", "chatml" or "none"; NULL: the arch's
                              * own (bitnet-b1.58 / bitnet-25: BitNet 2B-4T's, "bitnet"; llama: "llama3";
                              * qwen3: "chatml"; bitnet: none) */
  int group_scales;     /* block types: each block its own scale (as TriLM's, Bonsai's files), not one a tensor */
} bn_synth_params;
/* The Jinja text of a chat template family bnc synth writes; NULL: none or unknown. */
const char *bn_synth_chat_template(const char *name);

const bn_synth_shape *bn_synth_find_shape(const char *name);
const char *bn_synth_shape_names(void);
const char *bn_synth_arch(const bn_synth_params *p);
/* The hyperparameters and tensor shapes (no data) of a synth model: the
 * graph of any shape without writing a file. */
void bn_synth_hparams(const bn_synth_params *p, bn_hparams *hp);
bn_tensor_src bn_synth_tensor_src(const bn_synth_params *p);
bn_status bn_synth_write(const bn_synth_params *p, const char *path, bn_error *err);

/* The tokenizer part (synth_vocab.c): adds tokenizer.ggml.* keys; pre: the gpt2 vocabulary's
 * tokenizer.ggml.pre, NULL for a SentencePiece ("llama") vocabulary. */
bn_status bn_synth_vocab(bn_gguf_writer *w, const char *pre, int n_vocab, bn_error *err);

#endif
