/* Grammar of the textual IR (see ir/print.c for an example). */
%define api.pure full
%define api.prefix {bnir_}
%locations
%define parse.error verbose

%code requires {
#include "irparse_ctx.h"
typedef void *yyscan_t;
}

%code {
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define YYSTYPE BNIR_STYPE
#define YYLTYPE BNIR_LTYPE
#include "irlex.h"
#include "irparse.h"

static void bnir_error(BNIR_LTYPE *loc, yyscan_t scanner, bn_irp_ctx *ctx, const char *msg);
static void fail_at(bn_irp_ctx *ctx, BNIR_LTYPE *loc, const char *fmt, const char *arg);
static int value_ref(bn_irp_ctx *ctx, BNIR_LTYPE *loc, const char *name);
static int declare(bn_irp_ctx *ctx, BNIR_LTYPE *loc, BNIR_LTYPE *tloc, int kind, char *name, char *type);
static int add_node(bn_irp_ctx *ctx, BNIR_LTYPE *loc, BNIR_LTYPE *oploc, BNIR_LTYPE *tloc, char *out, char *op, char *type);
static void add_dim(bn_irp_ctx *ctx, BNIR_LTYPE *loc, char *d);
static void add_attr(bn_irp_ctx *ctx, BNIR_LTYPE *loc, char *name, char *val);
static int body_start(bn_irp_ctx *ctx, BNIR_LTYPE *loc);
static void body_end(bn_irp_ctx *ctx);
}

%param {yyscan_t scanner}
%parse-param {bn_irp_ctx *ctx}

%union { char *str; }
%token KW_HEADER "'bnc.ir'" KW_GRAPH "'graph'" KW_INPUT "'input'" KW_WEIGHT "'weight'" KW_OUTPUT "'output'"
%token BAD_CHAR "invalid character"
%token <str> VALNAME "%value" STRING "string" NUMBER "number" IDENT "identifier"
%type <str> type
%destructor { free($$); } <str>

%%
file: KW_HEADER NUMBER { int bad = strcmp($2, "1") != 0;
                         if (bad) fail_at(ctx, &@2, "unsupported IR version %s", $2);
                         free($2); $2 = NULL; if (bad) YYABORT; }
      KW_GRAPH STRING { int bad = strlen($5) >= sizeof ctx->g->arch;
                        if (bad) fail_at(ctx, &@5, "graph name \"%s\" is longer than 31 bytes", $5);
                        else snprintf(ctx->g->arch, sizeof ctx->g->arch, "%s", $5);
                        free($5); $5 = NULL; if (bad) YYABORT; }
      '{' items '}'
    ;

items: %empty | items item ;

item: KW_INPUT VALNAME ':' type   { int bad = declare(ctx, &@2, &@4, BN_VAL_INPUT, $2, $4); $2 = $4 = NULL; if (bad) YYABORT; }
    | KW_WEIGHT VALNAME ':' type  { int bad = declare(ctx, &@2, &@4, BN_VAL_WEIGHT, $2, $4); $2 = $4 = NULL; if (bad) YYABORT; }
    | KW_OUTPUT VALNAME           { int v = value_ref(ctx, &@2, $2); free($2); $2 = NULL; if (v < 0) YYABORT;
                                    if (bn_graph_mark_output(ctx->g, v)) YYABORT; }
    | VALNAME '=' IDENT { ctx->n_in = 0; ctx->n_attr = 0; }
      operands node_tail ':' type { int bad = add_node(ctx, &@1, &@3, &@8, $1, $3, $8); $1 = $3 = $8 = NULL; if (bad) YYABORT; }
    ;

node_tail: %empty
         | '{' attr_list '}'
         | '{' body_start items '}' { body_end(ctx); }
         ;
body_start: %empty { if (body_start(ctx, &@$)) YYABORT; } ;

operands: operand | operands ',' operand ;
operand: VALNAME { int v = value_ref(ctx, &@1, $1); free($1); $1 = NULL; if (v < 0) YYABORT;
                   if (ctx->n_in == BN_MAX_IN) { fail_at(ctx, &@1, "too many operands%s", ""); YYABORT; }
                   ctx->in[ctx->n_in++] = v; } ;

attr_list: attr | attr_list ',' attr ;
attr: IDENT '=' NUMBER { add_attr(ctx, &@1, $1, $3); $1 = $3 = NULL; if (ctx->failed) YYABORT; } ;

type: IDENT { ctx->rank = 0; } '[' dims ']' { $$ = $1; $1 = NULL; } ;
dims: dim | dims ',' dim ;
dim: NUMBER { add_dim(ctx, &@1, $1); $1 = NULL; if (ctx->failed) YYABORT; }
   | IDENT  { add_dim(ctx, &@1, $1); $1 = NULL; if (ctx->failed) YYABORT; } ;
%%

char *bn_irp_strdup(const char *s, size_t n) {
  char *c = malloc(n + 1);
  if (c) {
    memcpy(c, s, n);
    c[n] = 0;
  }
  return c;
}

static void fail_at(bn_irp_ctx *ctx, BNIR_LTYPE *loc, const char *fmt, const char *arg) {
  if (ctx->failed) return;
  char msg[256];
  snprintf(msg, sizeof msg, fmt, arg);
  bn_fail(ctx->err, BN_E_FORMAT, "%s:%d:%d: %s", ctx->name, loc->first_line, loc->first_column, msg);
  ctx->failed = 1;
}

static void bnir_error(BNIR_LTYPE *loc, yyscan_t scanner, bn_irp_ctx *ctx, const char *msg) {
  (void)scanner;
  fail_at(ctx, loc, "%s", msg);
}

static int value_ref(bn_irp_ctx *ctx, BNIR_LTYPE *loc, const char *name) {
  int v = name ? bn_graph_find_value(ctx->g, name, strlen(name)) : -1;
  if (v < 0) fail_at(ctx, loc, "unknown value %%%s", name ? name : "");
  return v;
}

static void add_dim(bn_irp_ctx *ctx, BNIR_LTYPE *loc, char *d) {
  if (ctx->rank == BN_MAX_RANK) fail_at(ctx, loc, "more than 4 dims at '%s'", d);
  else if (!strcmp(d, "T")) ctx->dims[ctx->rank++] = BN_DIM_T;
  else if (!strcmp(d, "P")) ctx->dims[ctx->rank++] = BN_DIM_P;
  else {
    char *end;
    long long v = strtoll(d, &end, 10);
    if (*end || v <= 0 || v > (1LL << 40)) fail_at(ctx, loc, "bad dimension '%s'", d);
    else ctx->dims[ctx->rank++] = v;
  }
  free(d);
}

/* Attributes are kept by name until add_node resolves them against the op. */
static void add_attr(bn_irp_ctx *ctx, BNIR_LTYPE *loc, char *name, char *val) {
  char *end;
  double v = strtod(val, &end);
  int twice = 0;
  for (int a = 0; a < ctx->n_attr; a++) twice |= !strcmp(ctx->attr_name[a], name);
  if (ctx->n_attr >= 8) fail_at(ctx, loc, "too many attributes at '%s'", name);
  else if (twice) fail_at(ctx, loc, "attribute '%s' is given twice", name);
  else if (*end) fail_at(ctx, loc, "bad number '%s'", val);
  else {
    ctx->attr_name[ctx->n_attr] = name;
    ctx->pending[ctx->n_attr] = v;
    ctx->attr_line[ctx->n_attr] = loc->first_line;
    ctx->attr_col[ctx->n_attr] = loc->first_column;
    ctx->n_attr++;
    name = NULL;
  }
  free(name);
  free(val);
}

/* A fused node's body: parsed into its own graph, then attached by add_node. */
static int body_start(bn_irp_ctx *ctx, BNIR_LTYPE *loc) {
  if (ctx->outer) {
    fail_at(ctx, loc, "fused bodies do not nest%s", "");
    return 1;
  }
  bn_graph *b = calloc(1, sizeof *b);
  if (!b) return 1;
  bn_graph_init(b, "body");
  ctx->outer = ctx->g;
  ctx->outer_n_in = ctx->n_in;
  memcpy(ctx->outer_in, ctx->in, sizeof ctx->in);
  ctx->g = b;
  return 0;
}

static void body_end(bn_irp_ctx *ctx) {
  ctx->body = ctx->g;
  ctx->g = ctx->outer;
  ctx->outer = NULL;
  ctx->n_in = ctx->outer_n_in;
  memcpy(ctx->in, ctx->outer_in, sizeof ctx->in);
  ctx->n_attr = 0;
}

static void free_body(bn_graph *b) {
  if (b) {
    bn_graph_free(b);
    free(b);
  }
}

static int parse_type(bn_irp_ctx *ctx, BNIR_LTYPE *loc, char *type, bn_dtype *t) {
  int d = bn_dtype_from_name(type, strlen(type));
  if (d < 0) fail_at(ctx, loc, "unknown element type '%s'", type);
  free(type);
  *t = d < 0 ? BN_DT_F32 : (bn_dtype)d;
  return d < 0;
}

static int declare(bn_irp_ctx *ctx, BNIR_LTYPE *loc, BNIR_LTYPE *tloc, int kind, char *name, char *type) {
  bn_dtype t;
  if (parse_type(ctx, tloc, type, &t)) return free(name), 1;
  if (bn_graph_find_value(ctx->g, name, strlen(name)) >= 0) {
    fail_at(ctx, loc, "value %%%s is defined twice", name);
    return free(name), 1;
  }
  bn_shape s = bn_shape_make(ctx->rank, ctx->dims);
  int id = kind == BN_VAL_INPUT ? bn_graph_add_input(ctx->g, name, t, s) : bn_graph_add_weight(ctx->g, name, t, s, NULL, 0);
  free(name);
  return id < 0;
}

static int add_node(bn_irp_ctx *ctx, BNIR_LTYPE *loc, BNIR_LTYPE *oploc, BNIR_LTYPE *tloc, char *out, char *op, char *type) {
  int rc = 1;
  int o = bn_op_from_name(op, strlen(op));
  bn_dtype t;
  double attr[BN_MAX_ATTR] = {0};
  if (o < 0) fail_at(ctx, oploc, "unknown op '%s'", op);
  else if (bn_graph_find_value(ctx->g, out, strlen(out)) >= 0) fail_at(ctx, loc, "value %%%s is defined twice", out);
  else {
    const bn_op_info *info = &bn_op_table[o];
    for (int a = 0; a < ctx->n_attr && !ctx->failed; a++) {
      int slot = -1;
      for (int k = 0; k < BN_MAX_ATTR; k++)
        if (info->attr[k] && !strcmp(info->attr[k] + (info->attr[k][0] == '?'), ctx->attr_name[a])) slot = k;
      BNIR_LTYPE at = {ctx->attr_line[a], ctx->attr_col[a], ctx->attr_line[a], ctx->attr_col[a]};
      if (slot < 0) fail_at(ctx, &at, "unknown attribute '%s'", ctx->attr_name[a]);
      else attr[slot] = ctx->pending[a];
    }
    if (!ctx->failed && (ctx->n_in < info->min_in || ctx->n_in > info->max_in))
      fail_at(ctx, oploc, "wrong number of operands for '%s'", op);
  }
  for (int a = 0; a < ctx->n_attr; a++) free(ctx->attr_name[a]);
  ctx->n_attr = 0;
  bn_graph *body = ctx->body;
  ctx->body = NULL;
  if (!ctx->failed && (o == BN_OP_FUSED) != (body != NULL))
    fail_at(ctx, oploc, body ? "only fused nodes have a body, not '%s'" : "'%s' needs a body", op);
  if (!parse_type(ctx, tloc, type, &t) && !ctx->failed) {
    bn_shape s = bn_shape_make(ctx->rank, ctx->dims);
    rc = bn_graph_add_node_typed(ctx->g, (bn_op)o, out, ctx->in, ctx->n_in, attr, t, s) < 0;
    if (!rc) ctx->g->nodes[ctx->g->n_nodes - 1].body = body, body = NULL;
  }
  free_body(body);
  free(out);
  free(op);
  return rc || ctx->failed;
}

bn_status bn_ir_parse(const char *text, size_t len, const char *name, bn_graph *g, bn_error *err) {
  bn_irp_ctx ctx = {.name = name, .g = g, .err = err};
  bn_graph_init(g, "");
  yyscan_t sc;
  if (bnir_lex_init(&sc)) return bn_fail(err, BN_E_NOMEM, "%s: out of memory", name);
  YY_BUFFER_STATE buf = bnir__scan_bytes(text, (int)len, sc);
  int rc = bnir_parse(sc, &ctx);
  bnir__delete_buffer(buf, sc);
  bnir_lex_destroy(sc);
  for (int a = 0; a < ctx.n_attr; a++) free(ctx.attr_name[a]);
  if (ctx.outer) { /* failed inside a body */
    free_body(ctx.g);
    ctx.g = ctx.outer;
  }
  free_body(ctx.body);
  bn_status st = BN_OK;
  if (rc || ctx.failed) st = ctx.failed ? BN_E_FORMAT : bn_fail(err, BN_E_FORMAT, "%s: parse failed", name);
  else if ((st = bn_graph_verify(g, err))) {
    char m[sizeof err->msg];
    snprintf(m, sizeof m, "%s", err->msg);
    bn_fail(err, st, "%s: %s", name, m);
  }
  if (st) bn_graph_free(g);
  return st;
}

bn_status bn_ir_parse_file(const char *path, bn_graph *g, bn_error *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return bn_fail(err, BN_E_IO, "%s: cannot open: %s", path, strerror(errno));
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  if (n < 0 || n > (1L << 30)) {
    fclose(fp);
    return bn_fail(err, BN_E_IO, "%s: cannot read (size %ld)", path, n);
  }
  char *text = malloc((size_t)n + 1);
  if (!text || fread(text, 1, (size_t)n, fp) != (size_t)n) {
    free(text);
    fclose(fp);
    return bn_fail(err, BN_E_IO, "%s: cannot read", path);
  }
  fclose(fp);
  bn_status st = bn_ir_parse(text, (size_t)n, path, g, err);
  free(text);
  return st;
}
