/* The graph IR: element types, shapes with symbolic dimensions, values,
 * nodes and graphs. Ops come from ops.def, types from dtypes.def. */
#ifndef BN_IR_H
#define BN_IR_H

#include <stdint.h>
#include <stddef.h>

#include "status.h"
#include "strmap.h"

typedef enum {
#define X(id, name, ggml, be, bb, tern) BN_DT_##id,
#include "dtypes.def"
#undef X
  BN_DT_COUNT
} bn_dtype;

typedef enum {
#define X(id, name, mn, mx, shape, a0, a1, a2, a3) BN_OP_##id,
#include "ops.def"
#undef X
  BN_OP_COUNT
} bn_op;

enum { BN_MAX_RANK = 4, BN_MAX_IN = 8, BN_MAX_ATTR = 4 };

/* Symbolic dimensions: negative values in a shape. */
enum { BN_DIM_T = -1, /* tokens in this step */ BN_DIM_P = -2 /* past length */ };

typedef struct {
  int rank;
  int64_t d[BN_MAX_RANK]; /* outermost first: a weight of N rows of K is [N, K] */
} bn_shape;

typedef enum { BN_VAL_INPUT, BN_VAL_WEIGHT, BN_VAL_NODE } bn_value_kind;

typedef struct {
  bn_value_kind kind;
  const char *name;   /* owned by the graph's string pool */
  bn_dtype dtype;
  bn_shape shape;
  int node;           /* producing node for BN_VAL_NODE, else -1 */
  const void *data;   /* weights: bytes in the model file (may be NULL in .bnir) */
  size_t nbytes;
} bn_value;

typedef struct bn_graph bn_graph;

typedef struct {
  bn_op op;
  int n_in;
  int in[BN_MAX_IN];   /* value ids */
  double attr[BN_MAX_ATTR];
  int out;             /* value id */
  bn_graph *body;      /* BN_OP_FUSED: owned graph over inputs %arg0.. with one output */
} bn_node;

struct bn_graph {
  char arch[32];
  bn_value *values;
  int n_values, cap_values;
  bn_node *nodes;
  int n_nodes, cap_nodes;
  int *outputs;
  int n_outputs, cap_outputs;
  char **strings;      /* string pool: every name the graph owns */
  int n_strings, cap_strings;
  void **owned;        /* weight data made by passes (packed weights), freed with the graph */
  int n_owned, cap_owned;
  bn_strmap names;     /* value name -> id (the latest of a name) */
};

/* --- op and type tables --- */
/* Computes a node's output type and shape from its operands and attributes. */
typedef bn_status (*bn_type_rule)(const bn_graph *g, const bn_node *n, bn_dtype *dt, bn_shape *out, bn_error *err);

typedef struct {
  const char *name;
  int min_in, max_in;
  bn_type_rule rule;
  const char *attr[BN_MAX_ATTR];
} bn_op_info;

typedef struct {
  const char *name;
  int ggml_id;
  int block_elems, block_bytes;
  int ternary;
} bn_dtype_info;

extern const bn_op_info bn_op_table[BN_OP_COUNT];
extern const bn_dtype_info bn_dtype_table[BN_DT_COUNT];

int bn_op_from_name(const char *name, size_t len);        /* -1 if unknown */
int bn_dtype_from_name(const char *name, size_t len);     /* -1 if unknown */
int bn_dtype_from_ggml(uint32_t ggml_id);                 /* -1 if unknown */
/* Bytes of a tensor of n elements; 0 if n is not a whole number of blocks
 * or the size overflows. Not for TP2/QA8 (see bn_value_bytes). */
uint64_t bn_dtype_nbytes(bn_dtype t, uint64_t n);
/* Bytes of a value of type t and shape s with T = tokens (any dtype); 0 if invalid. */
uint64_t bn_value_bytes(bn_dtype t, const bn_shape *s, int64_t tokens);
/* QA8 rows: the int8 codes padded to 64 bytes, then the f32 scale and the
 * i32 sum of the codes (the unsigned-offset trick), padded to 64. */
static inline int64_t bn_qa8_row_bytes(int64_t k) { return (k + 63) / 64 * 64 + 64; }

/* --- shapes --- */
int64_t bn_shape_numel(const bn_shape *s, int64_t tokens); /* T replaced by tokens, P by 0 */
int bn_shape_eq(const bn_shape *a, const bn_shape *b);
bn_shape bn_shape_make(int rank, const int64_t *d);

/* --- graph building --- */
void bn_graph_init(bn_graph *g, const char *arch);
void bn_graph_free(bn_graph *g);
/* Each returns the new value id, or -1 on out of memory. */
int bn_graph_add_input(bn_graph *g, const char *name, bn_dtype t, bn_shape s);
/* A copy of s in the graph's string pool (NULL: out of memory). */
const char *bn_graph_intern(bn_graph *g, const char *s);
int bn_graph_add_weight(bn_graph *g, const char *name, bn_dtype t, bn_shape s, const void *data, size_t nbytes);
/* Takes ownership of data (malloc'd), freed with the graph; returns NULL on OOM. */
void *bn_graph_own(bn_graph *g, void *data);
/* Adds a node; output type and shape come from the op's rule. attr holds
 * the op's declared attributes in order (NULL: all 0). Returns the output
 * value id or -1 (err says why). */
int bn_graph_add_node(bn_graph *g, bn_op op, const char *out_name, const int *in, int n_in,
                      const double *attr, bn_error *err);
/* Same, with a declared output type and shape (the parser uses this; the
 * verifier checks the declaration against the shape rule). */
int bn_graph_add_node_typed(bn_graph *g, bn_op op, const char *out_name, const int *in, int n_in,
                            const double *attr, bn_dtype t, bn_shape s);
/* A fused node over body (ownership passes to g, also on failure). */
int bn_graph_add_fused(bn_graph *g, const char *out_name, const int *in, int n_in, bn_graph *body, bn_error *err);
int bn_graph_mark_output(bn_graph *g, int value);
int bn_graph_find_value(const bn_graph *g, const char *name, size_t len); /* -1 if absent */
/* Gives value id another name (interned); 0, or -1 out of memory. */
int bn_graph_rename_value(bn_graph *g, int id, const char *name);
/* The fused kernels' bodies (fused.c), shared by the passes that build them and the selector
 * that maps them to kernel families. A fused node's ternary matmul: the body index of its
 * tmatmul, -1 if it has none; *w (if not NULL) the node's operand index of the matmul's weights. */
int bn_fused_tmatmul(const bn_node *n, int *w);
/* Body nodes [0, *len) as a norm + quantize: rmsnorm, quantize (len 2), the FFN gate
 * (slice, slice, relu2 | silu, mul, rmsnorm, quantize: len 6), or the gate without the norm
 * (llama's, qwen3's: len 5, GATE_*_Q; numbered after the kernels' two other modes, kernels.h); -1: none. */
enum { BN_FUSED_NORM, BN_FUSED_GATE_RELU2, BN_FUSED_GATE_SILU, BN_FUSED_GATE_RELU2_Q = 5, BN_FUSED_GATE_SILU_Q };
int bn_fused_norm_quant(const bn_graph *body, int *len);
/* Body nodes [at, end) as a ternary matmul: tmatmul, dequant (DQ), and a residual add (DQ_ADD); -1: neither. */
enum { BN_FUSED_DQ = 1, BN_FUSED_DQ_ADD };
int bn_fused_matmul(const bn_graph *body, int at);

/* --- checking and printing --- */
bn_status bn_graph_verify(const bn_graph *g, bn_error *err);
/* Writes the textual IR; returns a malloc'd string (NULL on OOM). */
char *bn_graph_print(const bn_graph *g);
/* Graphviz DOT of g (malloc'd; NULL: out of memory): fused nodes as clusters of their bodies, edges
 * labelled with types; the nodes of layers outside lo..hi (lo > hi: none) collapse into boxes. */
char *bn_graph_dot(const bn_graph *g, int lo, int hi);

/* Type rules used by ops.def. */
#define BN_RULE(name) bn_status name(const bn_graph *, const bn_node *, bn_dtype *, bn_shape *, bn_error *)
BN_RULE(bn_rule_embed);
BN_RULE(bn_rule_same);
BN_RULE(bn_rule_linear);
BN_RULE(bn_rule_attention);
BN_RULE(bn_rule_rope);
BN_RULE(bn_rule_binary);
BN_RULE(bn_rule_quantize);
BN_RULE(bn_rule_tmatmul);
BN_RULE(bn_rule_dequant);
BN_RULE(bn_rule_slice);
BN_RULE(bn_rule_fused);
#undef BN_RULE

#endif
