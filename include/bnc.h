/* bnc — the runtime C API. The only header a program that runs compiled
 * BitNet b1.58 plans needs; link with the bnc runtime libraries.
 *
 *   bnc_plan *plan;
 *   if (bnc_plan_open("model.bnplan", &plan)) { fprintf(stderr, "%s\n", bnc_last_error()); ... }
 *   bnc_session_params sp = bnc_session_default_params();
 *   bnc_session *s;
 *   bnc_session_create(plan, &sp, &s);
 *   bnc_generate(s, "Once upon a time", 32, on_token, NULL);
 *   bnc_session_free(s);
 *   bnc_plan_free(plan);
 *
 * Every function that can fail returns a bnc_status; bnc_last_error() gives
 * the message of this thread's last failure (file, field, value). A session
 * allocates everything when it is created: evaluating and generating
 * allocate nothing per token.
 *
 * Arguments are checked: a NULL handle, text, token array or output pointer
 * is BNC_ERR_INVALID (functions returning no status then return 0, "" or
 * NULL and set bnc_last_error()). Lifetimes: a plan stays alive until it is
 * freed and its last session is freed, in any order; freeing a plan or a
 * session twice, or using a freed handle, is detected and refused. One
 * session is used by one thread at a time; different sessions of one plan
 * may run at once on different threads. */
#ifndef BNC_H
#define BNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports these functions and nothing else. */
#if defined(__GNUC__) || defined(__clang__)
#define BNC_API __attribute__((visibility("default")))
#else
#define BNC_API
#endif

typedef enum {
  BNC_OK = 0,
  BNC_ERR_IO,          /* a file could not be opened, read or written */
  BNC_ERR_FORMAT,      /* a damaged or foreign file */
  BNC_ERR_UNSUPPORTED,
  BNC_ERR_INVALID,     /* a bad argument */
  BNC_ERR_NOMEM,
  BNC_ERR_RANGE        /* e.g. more tokens than the context holds */
} bnc_status;

typedef struct bnc_plan bnc_plan;
typedef struct bnc_session bnc_session;

/* The library's version and the commit it was built from: "0.1.0 (3f2a9c1b0d4e)". */
BNC_API const char *bnc_version(void);

/* The message of this thread's last failure ("" if none). */
BNC_API const char *bnc_last_error(void);

/* Maps and validates a plan written by `bnc compile`. Object code the plan may
 * carry (bnc compile --aot) is not run: every kernel is generated. */
BNC_API bnc_status bnc_plan_open(const char *path, bnc_plan **out);
/* The same, but the plan's object code is used when the plan is signed by a key
 * listed in the file trusted_keys (as `bnc trust` keeps it, by default
 * ~/.config/bnc/trusted-keys) and its signature matches; NULL: trust none. */
BNC_API bnc_status bnc_plan_open_trusted(const char *path, const char *trusted_keys, bnc_plan **out);
BNC_API void bnc_plan_free(bnc_plan *plan);
BNC_API int bnc_plan_vocab_size(const bnc_plan *plan);
BNC_API int bnc_plan_context_length(const bnc_plan *plan);
/* The architecture name ("bitnet", "bitnet-b1.58", ...). */
BNC_API const char *bnc_plan_arch(const bnc_plan *plan);

/* The K/V cache's element type: F32 exact; F16 half the bytes a token reads at depth, each key and
 * value rounded to half (docs/kv-cache.md: its cost and gain). */
typedef enum { BNC_KV_F32, BNC_KV_F16 } bnc_kv_type;

typedef struct {
  int threads;          /* threads for the kernels (0 or 1: one; at most the CPUs the process may use:
                         * more would only take turns on them) */
  int n_ctx;            /* context size; 0: the model's */
  int n_batch;          /* prompt chunk; 0: the plan's */
  float temperature;    /* <= 0: greedy */
  int top_k;            /* <= 0: off */
  float top_p;          /* >= 1: off */
  float repeat_penalty; /* 1: off */
  uint64_t seed;
  int ignore_eos;       /* keep generating past the end-of-sequence token */
  bnc_kv_type kv;       /* the K/V cache's element type (default BNC_KV_F32) */
  const char *cache_dir; /* keep generated kernels here and look here first (NULL: no disk cache; bnc uses
                          * ~/.cache/bnc/kernels). It must be the caller's and closed to others' writes. */
} bnc_session_params;

BNC_API bnc_session_params bnc_session_default_params(void);
/* The session keeps the plan alive (bnc_plan_free may come first). */
BNC_API bnc_status bnc_session_create(bnc_plan *plan, const bnc_session_params *params, bnc_session **out);
BNC_API void bnc_session_free(bnc_session *s);

/* UTF-8 text -> token ids (BOS first when the model wants one). *n gets the count. */
BNC_API bnc_status bnc_tokenize(bnc_session *s, const char *text, int32_t *ids, int cap, int *n);
/* The text of one token (its bytes; control tokens give ""). */
BNC_API const char *bnc_token_text(bnc_session *s, int32_t token, size_t *len);

/* Evaluates tokens after those already in the session's KV cache. */
BNC_API bnc_status bnc_eval(bnc_session *s, const int32_t *tokens, int n);
/* The logits (vocab size floats) of the last evaluated token; valid until the next call. */
BNC_API const float *bnc_logits(bnc_session *s);
/* Empties the KV cache: the next bnc_eval starts at position 0. */
BNC_API void bnc_reset(bnc_session *s);

/* Called with each generated token; return nonzero to stop. */
typedef int (*bnc_token_cb)(int32_t token, const char *text, size_t len, void *user);
/* Resets, processes the prompt, then samples up to n_predict tokens (fewer at the
 * end-of-sequence token, when cb returns nonzero, or when the context is full:
 * bnc_session_timings' context_full says so). */
BNC_API bnc_status bnc_generate(bnc_session *s, const char *prompt, int n_predict, bnc_token_cb cb, void *user);

typedef struct {
  double load_s, prepare_s, tokenize_s, prompt_s, generate_s, sample_s;
  int prompt_tokens, generated_tokens;
  int context_full; /* the last bnc_generate stopped because the context was full */
} bnc_timings;

/* Seconds per stage so far (load: the plan's bnc_plan_open). */
BNC_API void bnc_session_timings(const bnc_session *s, bnc_timings *out);

#ifdef __cplusplus
}
#endif

#endif
