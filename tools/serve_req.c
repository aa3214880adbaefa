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

/* messages -> a prompt: "role: content" lines, then "assistant:" (docs/serve.md: the plain template). */
static char *render_chat(const cJSON *msgs, char *why, size_t cap) {
  size_t len = 0, total = 16;
  const cJSON *m;
  const char *role, *content;
  cJSON_ArrayForEach(m, msgs) {
    if (message(m, &role, &content, why, cap)) return NULL;
    total += strlen(role) + strlen(content) + 3;
  }
  char *p = malloc(total);
  if (!p) return snprintf(why, cap, "out of memory"), NULL;
  cJSON_ArrayForEach(m, msgs) {
    message(m, &role, &content, why, cap); /* checked above */
    len += (size_t)snprintf(p + len, total - len, "%s: %s\n", role, content);
  }
  snprintf(p + len, total - len, "assistant:");
  return p;
}

/* messages -> llama3's pieces: per message <|start_header_id|>role<|end_header_id|>, "\n\n" and the content
 * trimmed, <|eot_id|>; then the assistant's header and "\n\n" (the template's generation prompt). 0 ok. */
static int render_llama3(const cJSON *msgs, bn_serve_req *r, char *why, size_t cap) {
  int n = 5 * cJSON_GetArraySize(msgs) + 4;
  const cJSON *m;
  const char *role, *c;
  r->parts = calloc((size_t)n, sizeof *r->parts), r->special = calloc((size_t)n, 1);
  if (!r->parts || !r->special) return snprintf(why, cap, "out of memory"), -1;
  cJSON_ArrayForEach(m, msgs) {
    if (message(m, &role, &c, why, cap)) return -1;
    const char *end = c + strlen(c);
    while (*c == ' ' || *c == '\n' || *c == '\t' || *c == '\r') c++;
    while (end > c && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\t' || end[-1] == '\r')) end--;
    char *body = malloc((size_t)(end - c) + 3);
    if (!body) return snprintf(why, cap, "out of memory"), -1;
    memcpy(body, "\n\n", 2), memcpy(body + 2, c, (size_t)(end - c)), body[2 + (end - c)] = 0;
    const char *seq[5] = {"<|start_header_id|>", role, "<|end_header_id|>", NULL, "<|eot_id|>"};
    for (int k = 0; k < 5; k++, r->n_parts++) {
      r->special[r->n_parts] = k % 2 == 0;
      if (!(r->parts[r->n_parts] = k == 3 ? body : strdup(seq[k]))) {
        if (k < 3) free(body); /* not in parts yet */
        return snprintf(why, cap, "out of memory"), -1;
      }
    }
  }
  const char *gen[4] = {"<|start_header_id|>", "assistant", "<|end_header_id|>", "\n\n"};
  for (int k = 0; k < 4; k++, r->n_parts++) {
    r->special[r->n_parts] = k % 2 == 0;
    if (!(r->parts[r->n_parts] = strdup(gen[k]))) return snprintf(why, cap, "out of memory"), -1;
  }
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
  else if (chat && tpl == BN_CHAT_LLAMA3 && render_llama3(v, r, why, cap)) *param = "messages";
  else if (chat && tpl != BN_CHAT_LLAMA3 && !(r->prompt = render_chat(v, why, cap))) *param = "messages";
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
