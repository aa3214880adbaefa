/* Tokenizers for both vocab kinds: SentencePiece-style "llama" (score
 * merges, byte fallback) and GPT-2/llama3 byte-level BPE (PCRE2
 * pre-tokenizer, rank merges). Both built once from a bn_vocab. */
#ifndef BN_RT_TOKENIZER_H
#define BN_RT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "../ir/model.h"
#include "../ir/utf8.h"

typedef struct bn_tokenizer bn_tokenizer;

bn_status bn_tok_create(const bn_vocab *v, bn_tokenizer **out, bn_error *err);
void bn_tok_free(bn_tokenizer *t);
/* Encodes UTF-8 text (BOS prepended when the vocab says so). Writes up to
 * cap ids and sets *n to the count; BN_E_RANGE if cap is too small,
 * BN_E_INVALID for text that is not UTF-8. */
bn_status bn_tok_encode(const bn_tokenizer *t, const char *text, size_t len, int add_bos, int32_t *ids, int cap,
                        int *n, bn_error *err);
/* As bn_tok_encode, but the vocabulary's added tokens (control and user-defined: "<|eot_id|>")
 * written in the text become their ids, leftmost and longest first, as the tokenizers library
 * splits them out; for text the user controls (a chat turn's content) use bn_tok_encode. */
bn_status bn_tok_encode_special(const bn_tokenizer *t, const char *text, size_t len, int add_bos, int32_t *ids, int cap,
                                int *n, bn_error *err);
/* The bytes of one token as text (control tokens give ""); *len set. */
const char *bn_tok_piece(const bn_tokenizer *t, int32_t id, size_t *len);
/* Decodes ids to text into out (NUL-terminated, truncated to cap). For SPM
 * the space that encoding prefixed is dropped. Returns the full length. */
size_t bn_tok_decode(const bn_tokenizer *t, const int32_t *ids, int n, char *out, size_t cap);
int bn_tok_bos(const bn_tokenizer *t);
/* The id of the control token whose text is exactly `text` ("<|eot_id|>"), or -1. */
int bn_tok_control(const bn_tokenizer *t, const char *text);
int bn_tok_eos(const bn_tokenizer *t);

#endif
