#include "serve_req.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A message's role and content, checked: 0, or -1 with why. */
static int message(const cJSON *m, const char **role, const char **content, char *why, size_t cap) {
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role"), *c = cJSON_GetObjectItemCaseSensitive(m, "content");
  if (!cJSON_IsString(r) || !cJSON_IsString(c))
    return snprintf(why, cap, "each message needs a string role and a string content"), -1;
  if (strcmp(r->valuestring, "system") && strcmp(r->valuestring, "user") && strcmp(r->valuestring, "assistant"))
    return snprintf(why, cap, "message role '%.40s' (system, user or assistant)", r->valuestring), -1;
  *role = r->valuestring, *content = c->valuestring;
  return 0;
}

/* The pieces of a family: per message, text and control tokens around the role and the content (a
 * role of "R" is capitalized: "User"); then the generation prompt. NULL ends a list. */
typedef struct {
  const char *name, *marker;        /* the marker: what a GGUF template of the family holds */
  const char *control[3];           /* the control tokens the vocabulary must have */
  const char *msg[6], *gen[4];      /* pieces: "@x" a control token, "%r"/"%R" the role, "%c" the content */
  int trim;                         /* the content trimmed of white space */
} family;

static const family families[] = {
    [BN_CHAT_PLAIN] = {"plain", NULL, {NULL}, {"%r: %c\n"}, {"assistant:"}, 0},
    [BN_CHAT_LLAMA3] = {"llama3", "<|start_header_id|>", {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
                        {"@<|start_header_id|>", "%r", "@<|end_header_id|>", "\n\n%c", "@<|eot_id|>"},
                        {"@<|start_header_id|>", "assistant", "@<|end_header_id|>", "\n\n"}, 1},
    [BN_CHAT_CHATML] = {"chatml", "<|im_start|>", {"<|im_start|>", "<|im_end|>"},
                        {"@<|im_start|>", "%r\n%c", "@<|im_end|>", "\n"}, {"@<|im_start|>", "assistant\n"}, 0},
    [BN_CHAT_BITNET] = {"bitnet", "Assistant: ", {"<|eot_id|>"}, {"%R: %c", "@<|eot_id|>"}, {"Assistant: "}, 0},
};

const char *bn_chat_template_name(bn_chat_template t) { return families[t].name; }

static int has_all(const family *f, int (*has)(const char *, void *), void *user) {
  for (int i = 0; i < 3 && f->control[i]; i++)
    if (!has(f->control[i], user)) return 0;
  return 1;
}

bn_chat_template bn_chat_pick(const char *tmpl, int (*has)(const char *name, void *user), void *user,
                              const char **why) {
  if (!tmpl) {
    *why = "the model has no chat template";
    return has_all(&families[BN_CHAT_LLAMA3], has, user) ? BN_CHAT_LLAMA3 : BN_CHAT_PLAIN;
  }
  /* llama3 and ChatML by their own markers; BitNet's by "Assistant: " beside llama3's end of turn */
  for (int t = BN_CHAT_LLAMA3; t <= BN_CHAT_BITNET; t++)
    if (strstr(tmpl, families[t].marker) && (t != BN_CHAT_BITNET || strstr(tmpl, "<|eot_id|>"))) {
      if (has_all(&families[t], has, user)) return *why = "the model's chat template", (bn_chat_template)t;
      *why = "the model's chat template, but its vocabulary lacks the template's control tokens";
      return BN_CHAT_PLAIN;
    }
  *why = "the model's chat template is none of the families bnc renders";
  return BN_CHAT_PLAIN;
}

/* Appends a piece: text, or with special a control token's name. 0 ok. */
static int piece(bn_serve_req *r, int *cap, int special, char *text) {
  if (!text) return -1;
  if (r->n_parts == *cap) {
    int n = *cap ? 2 * *cap : 16;
    char **p = realloc(r->parts, (size_t)n * sizeof *p);
    unsigned char *sp = p ? realloc(r->special, (size_t)n) : NULL;
    if (p) r->parts = p;
    if (!sp) return free(text), -1;
    r->special = sp, *cap = n;
  }
  r->special[r->n_parts] = (unsigned char)special, r->parts[r->n_parts++] = text;
  return 0;
}

/* A piece's text with the role and content put in. */
static char *fill(const char *fmt, const char *role, const char *c, size_t clen) {
  size_t n = strlen(fmt) + strlen(role) + clen + 1, len = 0;
  char *out = malloc(n);
  for (const char *p = fmt; out && *p; p++) {
    if (p[0] == '%' && (p[1] == 'r' || p[1] == 'R')) {
      memcpy(out + len, role, strlen(role));
      if (p[1] == 'R') out[len] = (char)(out[len] - 'a' + 'A'); /* roles are lower-case ASCII */
      len += strlen(role), p++;
    } else if (p[0] == '%' && p[1] == 'c') memcpy(out + len, c, clen), len += clen, p++;
    else out[len++] = *p;
  }
  if (out) out[len] = 0;
  return out;
}

/* messages -> the family's pieces (plain: one prompt string). 0 ok. */
static int render(const cJSON *msgs, bn_chat_template tpl, bn_serve_req *r, char *why, size_t cap) {
  const family *f = &families[tpl];
  const cJSON *m;
  const char *role, *c;
  int n = 0;
  cJSON_ArrayForEach(m, msgs) {
    if (message(m, &role, &c, why, cap)) return -1;
    const char *end = c + strlen(c);
    if (f->trim) {
      while (*c == ' ' || *c == '\n' || *c == '\t' || *c == '\r') c++;
      while (end > c && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\t' || end[-1] == '\r')) end--;
    }
    for (int k = 0; k < 6 && f->msg[k]; k++)
      if (piece(r, &n, f->msg[k][0] == '@', f->msg[k][0] == '@' ? strdup(f->msg[k] + 1)
                                                                 : fill(f->msg[k], role, c, (size_t)(end - c))))
        return snprintf(why, cap, "out of memory"), -1;
  }
  for (int k = 0; k < 4 && f->gen[k]; k++)
    if (piece(r, &n, f->gen[k][0] == '@', strdup(f->gen[k] + (f->gen[k][0] == '@'))))
      return snprintf(why, cap, "out of memory"), -1;
  if (tpl != BN_CHAT_PLAIN) return 0;
  size_t total = 1, len = 0; /* plain: the pieces are one prompt */
  for (int i = 0; i < r->n_parts; i++) total += strlen(r->parts[i]);
  if (!(r->prompt = malloc(total))) return snprintf(why, cap, "out of memory"), -1;
  for (int i = 0; i < r->n_parts; i++) memcpy(r->prompt + len, r->parts[i], strlen(r->parts[i])), len += strlen(r->parts[i]);
  r->prompt[len] = 0;
  for (int i = 0; i < r->n_parts; i++) free(r->parts[i]);
  free(r->parts), free(r->special), r->parts = NULL, r->special = NULL, r->n_parts = 0;
  return 0;
}

/* A number field: absent -> def; else in [lo, hi] (an integer when integer). 0 ok, -1 bad (why). */
static int number(const cJSON *o, const char *name, double lo, double hi, int integer, double def, double *out, char *why,
                  size_t cap) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  if (!v || cJSON_IsNull(v)) return *out = def, 0;
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
      (integer && v->valuedouble != (double)(long long)v->valuedouble))
    return snprintf(why, cap, "'%s' must be %s in %g..%g", name, integer ? "an integer" : "a number", lo, hi), -1;
  return *out = v->valuedouble, 0;
}

/* The stop strings: a string or an array of strings, each 1..BN_SERVE_MAX_STOP_LEN bytes; 0 ok. */
static int stops(const cJSON *v, bn_serve_req *r, char *why, size_t cap) {
  if (!v || cJSON_IsNull(v)) return 0;
  int one = cJSON_IsString(v);
  if (!one && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) <= BN_SERVE_MAX_STOP))
    return snprintf(why, cap, "'stop' must be a string or an array of at most %d strings", BN_SERVE_MAX_STOP), -1;
  for (const cJSON *s = one ? v : v->child; s; s = one ? NULL : s->next) {
    if (!cJSON_IsString(s)) return snprintf(why, cap, "'stop' must hold strings"), -1;
    size_t n = strlen(s->valuestring);
    if (!n || n > BN_SERVE_MAX_STOP_LEN)
      return snprintf(why, cap, "a stop string is empty or longer than %d bytes", BN_SERVE_MAX_STOP_LEN), -1;
    if (!(r->stop[r->n_stop++] = strdup(s->valuestring))) return snprintf(why, cap, "out of memory"), -1;
  }
  return 0;
}

const char *bn_serve_parse(const char *body, size_t len, int chat, bn_chat_template tpl, bn_serve_req *r, char *why,
                           size_t cap, const char **param) {
  memset(r, 0, sizeof *r);
  *param = NULL;
  cJSON *o = cJSON_ParseWithLength(body, len);
  if (!o || !cJSON_IsObject(o)) return cJSON_Delete(o), snprintf(why, cap, "the body is not a JSON object"), why;
  double max_tokens, temp, top_p, top_k, seed, n;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, chat ? "messages" : "prompt");
  const char *bad = why;
  if (chat && (!cJSON_IsArray(v) || !cJSON_GetArraySize(v))) snprintf(why, cap, "'messages' must be a non-empty array"), *param = "messages";
  else if (chat && render(v, tpl, r, why, cap)) *param = "messages";
  else if (!chat && cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1 && cJSON_IsString(v->child) && !(r->prompt = strdup(v->child->valuestring)))
    snprintf(why, cap, "out of memory");
  else if (!chat && !r->prompt && !cJSON_IsString(v)) snprintf(why, cap, "'prompt' must be a string"), *param = "prompt";
  else if (!chat && !r->prompt && !(r->prompt = strdup(v->valuestring))) snprintf(why, cap, "out of memory");
  else if (r->prompt && !*r->prompt) snprintf(why, cap, "the prompt is empty"), *param = chat ? "messages" : "prompt";
  else if (number(o, chat ? "max_completion_tokens" : "max_tokens", 1, 1 << 20, 1, 0, &max_tokens, why, cap) ||
           (chat && !max_tokens && number(o, "max_tokens", 1, 1 << 20, 1, 0, &max_tokens, why, cap)))
    *param = "max_tokens";
  else if (number(o, "temperature", 0, 2, 0, 1, &temp, why, cap)) *param = "temperature";
  else if (number(o, "top_p", 1e-9, 1, 0, 1, &top_p, why, cap)) *param = "top_p";
  else if (number(o, "top_k", 0, 1 << 20, 1, 0, &top_k, why, cap)) *param = "top_k";
  else if (number(o, "seed", 0, 9007199254740991.0, 1, (double)time(NULL), &seed, why, cap)) *param = "seed";
  else if (number(o, "n", 1, 1, 1, 1, &n, why, cap)) *param = "n";
  else if ((v = cJSON_GetObjectItemCaseSensitive(o, "stream")) && !cJSON_IsBool(v) && !cJSON_IsNull(v))
    snprintf(why, cap, "'stream' must be true or false"), *param = "stream";
  else if (stops(cJSON_GetObjectItemCaseSensitive(o, "stop"), r, why, cap)) *param = "stop";
  else bad = NULL;
  static const char *const unsupported[] = {"logprobs", "echo", "suffix", "best_of", "tools", "functions"};
  for (size_t k = 0; !bad && k < sizeof unsupported / sizeof *unsupported; k++) {
    v = cJSON_GetObjectItemCaseSensitive(o, unsupported[k]);
    if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v) && !(cJSON_IsArray(v) && !cJSON_GetArraySize(v)))
      snprintf(why, cap, "'%s' is not supported", unsupported[k]), *param = unsupported[k], bad = why;
  }
  if (!bad) {
    r->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "stream"));
    r->max_tokens = (int)max_tokens;
    r->sampler = (bn_sampler_params){.temperature = (float)temp, .top_k = (int)top_k, .top_p = (float)top_p,
                                     .repeat_penalty = 1, .repeat_last_n = 64, .seed = (uint64_t)seed};
  }
  cJSON_Delete(o);
  return bad;
}

void bn_serve_req_free(bn_serve_req *r) {
  free(r->prompt);
  for (int i = 0; r->parts && i < r->n_parts; i++) free(r->parts[i]);
  free(r->parts), free(r->special);
  for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
  memset(r, 0, sizeof *r);
}
