/* The MSL checker (lint.h): a tokenizer, then one pass per rule over the tokens. */
#include "lint.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *p;
  int len, line;
} tok;

typedef struct {
  tok *t;
  int n, cap;
  char macros[16][32]; /* #define NAME( ... ) */
  int n_macros;
} toks;

static int is(const tok *t, const char *s) { return t->len == (int)strlen(s) && !memcmp(t->p, s, (size_t)t->len); }

static int push(toks *ts, const char *p, int len, int line) {
  if (ts->n == ts->cap) {
    int cap = ts->cap ? 2 * ts->cap : 1024;
    tok *t = realloc(ts->t, (size_t)cap * sizeof *t);
    if (!t) return -1;
    ts->t = t, ts->cap = cap;
  }
  ts->t[ts->n++] = (tok){p, len, line};
  return 0;
}

/* Tokens of src without comments; preprocessor lines checked here (the one include, macros noted). */
static bn_status tokenize(const char *src, toks *ts, bn_error *err) {
  int line = 1;
  for (const char *p = src; *p;) {
    if (*p == '\n') line++, p++;
    else if (isspace((unsigned char)*p)) p++;
    else if (p[0] == '/' && p[1] == '/') p += strcspn(p, "\n");
    else if (p[0] == '/' && p[1] == '*') {
      const char *e = strstr(p + 2, "*/");
      for (const char *q = p; q < (e ? e : p + strlen(p)); q++) line += *q == '\n';
      p = e ? e + 2 : p + strlen(p);
    } else if (*p == '#') {
      size_t n = strcspn(p, "\n");
      if (!strncmp(p, "#include", 8) && strncmp(p, "#include <metal_stdlib>", 23))
        return bn_fail(err, BN_E_INVALID, "msl line %d: %.*s: the one include is <metal_stdlib>", line, (int)n, p);
      if (!strncmp(p, "#define ", 8) && ts->n_macros < 16) {
        size_t m = strspn(p + 8, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789");
        if (m < 32) memcpy(ts->macros[ts->n_macros], p + 8, m), ts->macros[ts->n_macros++][m] = 0;
      }
      p += n;
    } else if (*p == '"' || *p == '\'')
      return bn_fail(err, BN_E_INVALID, "msl line %d: a string or character literal", line);
    else {
      int len = 1;
      if (isalpha((unsigned char)*p) || *p == '_')
        while (isalnum((unsigned char)p[len]) || p[len] == '_') len++;
      else if (isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1])))
        while (isalnum((unsigned char)p[len]) || p[len] == '.' ||
               ((p[len] == '-' || p[len] == '+') && (p[len - 1] == 'e' || p[len - 1] == 'E')))
          len++;
      else if ((p[0] == ':' && p[1] == ':') || (p[0] == '[' && p[1] == '[') || (p[0] == ']' && p[1] == ']'))
        len = 2;
      if (push(ts, p, len, line)) return bn_fail(err, BN_E_NOMEM, "msl: out of memory");
      p += len;
    }
  }
  return BN_OK;
}

static const char *const forbidden[] = {"double", "std", "new", "delete", "throw", "try", "goto", "virtual", "malloc",
                                        "printf", "operator", "template"};
static const char *const spaces[] = {"device", "constant", "threadgroup", "thread"};
static const char *const types[] = {"float", "half", "int", "uint", "short", "ushort", "char", "uchar", "bool", "long",
                                    "ulong", "bn_ff", "bn_step", "uint3", "void", "simdgroup_half8x8", "simdgroup_float8x8"};
static const char *const keywords[] = {"if", "for", "while", "switch", "return", "sizeof", "buffer", "threadgroup",
                                       "defined"};
/* the Metal standard library functions the kernels may call */
static const char *const stdlib_fns[] = {"max", "min", "clamp", "abs", "rint", "exp", "sqrt", "rsqrt", "fma", "ldexp",
                                         "as_type", "simd_sum", "simd_max", "threadgroup_barrier", "simdgroup_barrier",
                                         "simdgroup_load", "simdgroup_store", "simdgroup_multiply_accumulate"};

static int in(const tok *t, const char *const *list, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (is(t, list[i])) return 1;
  return 0;
}
#define IN(t, list) in(t, list, sizeof list / sizeof *list)

static int ident(const tok *t) { return isalpha((unsigned char)t->p[0]) || t->p[0] == '_'; }

typedef struct {
  int name;       /* token index of the function's name */
  int body, end;  /* tokens of its body: (body, end) */
  int kernel;
} fn;

/* The functions defined at program scope: a name, a parameter list, a body. */
static int functions(const toks *ts, fn *f, int cap) {
  int n = 0, depth = 0;
  for (int i = 0; i < ts->n; i++) {
    if (is(&ts->t[i], "{")) {
      if (depth++ == 0 && i > 0 && is(&ts->t[i - 1], ")")) { /* name ( ... ) { */
        int j = i - 1, d = 0;
        for (; j >= 0; j--) {
          d += is(&ts->t[j], ")") - is(&ts->t[j], "(");
          if (!d) break;
        }
        if (j > 0 && ident(&ts->t[j - 1]) && n < cap) {
          f[n] = (fn){.name = j - 1, .body = i, .end = i};
          for (int k = j - 1; k >= 0 && !is(&ts->t[k], ";") && !is(&ts->t[k], "}"); k--)
            f[n].kernel |= is(&ts->t[k], "kernel");
          n++;
        }
      }
    } else if (is(&ts->t[i], "}") && --depth == 0 && n && f[n - 1].end == f[n - 1].body)
      f[n - 1].end = i;
  }
  return n;
}

static int find_fn(const toks *ts, const fn *f, int n, const tok *t) {
  for (int i = 0; i < n; i++)
    if (ts->t[f[i].name].len == t->len && !memcmp(ts->t[f[i].name].p, t->p, (size_t)t->len)) return i;
  return -1;
}

/* Recursion: a cycle in the calls among the source's functions (depth-first, colours). */
static int cycle(const toks *ts, const fn *f, int n, int i, char *colour) {
  colour[i] = 1;
  for (int k = f[i].body; k < f[i].end; k++) {
    if (!ident(&ts->t[k]) || !is(&ts->t[k + 1], "(")) continue;
    int c = find_fn(ts, f, n, &ts->t[k]);
    if (c >= 0 && (colour[c] == 1 || (!colour[c] && cycle(ts, f, n, c, colour)))) return 1;
  }
  colour[i] = 2;
  return 0;
}

/* The span of the declaration or cast around token i: back to ; { } ( or , at the same level. */
static int decl_start(const toks *ts, int i) {
  int d = 0;
  for (int k = i - 1; k >= 0; k--) {
    d += is(&ts->t[k], ")") - is(&ts->t[k], "(");
    if (d < 0 || (!d && (is(&ts->t[k], ";") || is(&ts->t[k], "{") || is(&ts->t[k], "}") || is(&ts->t[k], ","))))
      return k + 1;
  }
  return 0;
}

static bn_status check(const toks *ts, bn_error *err) {
  const tok *t = ts->t;
  fn f[256];
  int nf = functions(ts, f, 256);
  for (int i = 0; i < ts->n; i++) {
    if (IN(&t[i], forbidden) && !(i > 0 && is(&t[i - 1], ".")))
      return bn_fail(err, BN_E_INVALID, "msl line %d: '%.*s' is not MSL", t[i].line, t[i].len, t[i].p);
    /* a pointer or reference declared: a type (or const) before the * or &, a name or ) after */
    if ((is(&t[i], "*") || is(&t[i], "&")) && i > 0 && i + 1 < ts->n &&
        (IN(&t[i - 1], types) || is(&t[i - 1], "const")) && (ident(&t[i + 1]) || is(&t[i + 1], ")"))) {
      int s = decl_start(ts, i), ok = 0;
      for (int k = s; k < i; k++) ok |= IN(&t[k], spaces);
      if (!ok) return bn_fail(err, BN_E_INVALID, "msl line %d: a pointer or reference without an address space", t[i].line);
    }
  }
  /* calls */
  for (int i = 0; i + 1 < ts->n; i++) {
    if (!ident(&t[i]) || !is(&t[i + 1], "(") || IN(&t[i], keywords) || IN(&t[i], types)) continue;
    int macro = 0;
    for (int m = 0; m < ts->n_macros; m++) macro |= is(&t[i], ts->macros[m]);
    if (macro || IN(&t[i], stdlib_fns) || find_fn(ts, f, nf, &t[i]) >= 0 || (i > 0 && is(&t[i - 1], "."))) continue;
    int def = 0; /* the name of a function being defined, or of a struct's constructor */
    for (int k = 0; k < nf; k++) def |= f[k].name == i;
    if (!def)
      return bn_fail(err, BN_E_INVALID, "msl line %d: a call to '%.*s', which neither the source nor Metal's standard "
                     "library defines", t[i].line, t[i].len, t[i].p);
  }
  char colour[256] = {0};
  for (int i = 0; i < nf; i++)
    if (!colour[i] && cycle(ts, f, nf, i, colour))
      return bn_fail(err, BN_E_INVALID, "msl line %d: %.*s: recursion (Metal has none)", t[f[i].name].line,
                     t[f[i].name].len, t[f[i].name].p);
  /* program scope: only constant variables, structs, functions, using */
  for (int i = 0, depth = 0; i < ts->n; i++) {
    if (is(&t[i], "{")) depth++;
    else if (is(&t[i], "}")) depth--;
    else if (!depth && (i == 0 || is(&t[i - 1], ";") || is(&t[i - 1], "}")) && !is(&t[i], "constant") &&
             !is(&t[i], "struct") && !is(&t[i], "static") && !is(&t[i], "kernel") && !is(&t[i], "using") &&
             !is(&t[i], ";"))
      return bn_fail(err, BN_E_INVALID, "msl line %d: '%.*s' at program scope (variables there must be constant)",
                     t[i].line, t[i].len, t[i].p);
  }
  /* each kernel's bindings */
  for (int k = 0; k < nf; k++) {
    if (!f[k].kernel) continue;
    int used[32] = {0}, tgs = 0, params = 0, attrs = 0;
    const tok *name = &t[f[k].name];
    for (int i = f[k].name + 2, d = 1; i < f[k].body && d > 0; i++) {
      d += is(&t[i], "(") - is(&t[i], ")");
      if (d == 1 && (is(&t[i], ",") || is(&t[i + 1], ")"))) params++;
      if (!is(&t[i], "[[")) continue;
      attrs++;
      if (is(&t[i + 1], "buffer") || is(&t[i + 1], "threadgroup")) {
        int b = atoi(t[i + 3].p);
        if (is(&t[i + 1], "threadgroup")) tgs++;
        else if (b < 0 || b >= 32 || used[b]++)
          return bn_fail(err, BN_E_INVALID, "msl: kernel %.*s binds buffer %d twice (or out of 0..31)", name->len,
                         name->p, b);
      }
    }
    int nb = 0;
    while (nb < 32 && used[nb]) nb++;
    for (int b = nb; b < 32; b++)
      if (used[b]) return bn_fail(err, BN_E_INVALID, "msl: kernel %.*s skips buffer %d", name->len, name->p, nb);
    if (tgs > 1) return bn_fail(err, BN_E_INVALID, "msl: kernel %.*s has %d threadgroup blocks", name->len, name->p, tgs);
    if (attrs != params)
      return bn_fail(err, BN_E_INVALID, "msl: kernel %.*s: %d parameters, %d with a binding attribute", name->len,
                     name->p, params, attrs);
  }
  return BN_OK;
}

bn_status bn_metal_lint(const char *src, bn_error *err) {
  toks ts = {0};
  bn_status st = tokenize(src, &ts, err);
  if (!st && !push(&ts, "", 0, 0)) ts.n--; /* a sentinel past the end */
  if (!st) st = check(&ts, err);
  free(ts.t);
  return st;
}
