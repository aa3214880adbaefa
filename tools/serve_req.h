/* bnc serve's requests: a completion or chat completion parsed and checked from its JSON body, apart
 * from the HTTP layer (tests/fuzz/fuzz_serve_json.c feeds it anything). */
#ifndef BN_SERVE_REQ_H
#define BN_SERVE_REQ_H

#include <stddef.h>

#include "../runtime/sampler.h"

enum { BN_SERVE_MAX_STOP = 4, BN_SERVE_MAX_STOP_LEN = 256 };

/* How chat messages become a prompt (docs/serve.md): plain lines, or one of the template families bnc
 * renders: llama3's headers and end-of-turn tokens, ChatML's <|im_start|>/<|im_end|>, BitNet b1.58
 * 2B-4T's "Role: content<|eot_id|>". */
typedef enum { BN_CHAT_PLAIN, BN_CHAT_LLAMA3, BN_CHAT_CHATML, BN_CHAT_BITNET } bn_chat_template;
const char *bn_chat_template_name(bn_chat_template t);

/* The family for a model: its GGUF's chat template (tmpl, NULL: none) recognised by its markers, where
 * the vocabulary has that family's control tokens (has(name, user): the token exists); with no
 * template, llama3 where the vocabulary has its tokens; else plain. *why: how it was chosen. */
bn_chat_template bn_chat_pick(const char *tmpl, int (*has)(const char *name, void *user), void *user,
                              const char **why);

typedef struct {
  char *prompt;                     /* the prompt, or the chat's messages rendered as plain text; or NULL and */
  char **parts;                     /* a template's pieces: text, or where special[i] a control token's name */
  unsigned char *special;
  int n_parts;
  char *stop[BN_SERVE_MAX_STOP];
  int n_stop, stream;
  int max_tokens;                   /* 0: not given */
  bn_sampler_params sampler;
} bn_serve_req;

/* NULL, or why the body is a 400, with the field it is about in *param (NULL: none). r is filled as far
 * as it got either way: bn_serve_req_free it. */
const char *bn_serve_parse(const char *body, size_t len, int chat, bn_chat_template tpl, bn_serve_req *r, char *why,
                           size_t cap, const char **param);
void bn_serve_req_free(bn_serve_req *r);

#endif
