/* MSL, not C++: checks that emitted Metal source uses only what a Mac's Metal compiler accepts,
 * so that a kernel proven in the simulator (which compiles it as C++) cannot lean on C++:
 *   - no double (nor long double), no std::, new, delete, throw, try, goto, virtual;
 *   - the one include is <metal_stdlib>;
 *   - every pointer or reference declared (parameters, locals, casts) names its address space;
 *   - program-scope variables are `constant`;
 *   - no recursion among the source's functions;
 *   - every call is to a function the source defines, a macro it defines, a type conversion, or
 *     a Metal standard library function of the list lint.c keeps;
 *   - each kernel binds buffers 0..n-1 once each, at most one threadgroup block, and every
 *     parameter has its attribute.
 * The first problem is an error naming the kernel or function and the line. */
#ifndef BN_METAL_LINT_H
#define BN_METAL_LINT_H

#include "../ir/status.h"

bn_status bn_metal_lint(const char *src, bn_error *err);

#endif
