/* The textual IR parser (flex + bison): reads exactly what bn_graph_print
 * writes. Errors give "NAME:line:col: message". Weights parsed from text
 * have no data. */
#ifndef BN_IRPARSE_H
#define BN_IRPARSE_H

#include <stddef.h>

#include "ir.h"

bn_status bn_ir_parse(const char *text, size_t len, const char *name, bn_graph *g, bn_error *err);
bn_status bn_ir_parse_file(const char *path, bn_graph *g, bn_error *err);

#endif
