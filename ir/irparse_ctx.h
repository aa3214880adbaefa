/* State shared by the IR lexer and parser. */
#ifndef BN_IRPARSE_CTX_H
#define BN_IRPARSE_CTX_H

#include "ir.h"

typedef struct {
  const char *name;
  bn_graph *g;
  bn_error *err;
  int failed;
  /* operands and attributes of the node being parsed */
  int in[BN_MAX_IN + 1];
  int n_in;
  char *attr_name[8];
  double pending[8];
  int attr_line[8], attr_col[8];
  int n_attr;
  /* while parsing a fused node's body: the enclosing graph and its node's operands */
  bn_graph *outer, *body;
  int outer_in[BN_MAX_IN + 1], outer_n_in;
  int64_t dims[BN_MAX_RANK + 1];
  int rank;
} bn_irp_ctx;

char *bn_irp_strdup(const char *s, size_t n);

#endif
