/* The Metal backend where there is no Metal (CMake builds metal/host.m on a Mac): one line
 * that says so and points to the simulator, which runs the same shaders here. */
#include "../codegen/backend.h"
#include "emit.h"

static bn_status none_open(const bn_backend_opts *o, void **self, bn_error *err) {
  *self = NULL;
  return bn_fail(err, BN_E_UNSUPPORTED, "metal: the Metal backend needs macOS and an Apple GPU; here, --backend "
                 "metal-sim runs the same shaders on the CPU (slowly)");
}

static int none_supports(void *self, const bn_kkey *key) { return bn_metal_supports(key); }
static bn_status none_run(void *self, bn_graph_step *step, bn_error *err) {
  return bn_fail(err, BN_E_UNSUPPORTED, "metal: no Metal here");
}

const bn_backend bn_backend_metal = {
    .name = "metal",
    .about = "Apple GPUs through Metal (macOS only; metal-sim runs its shaders anywhere)",
    .targets = "native metal",
    .open = none_open,
    .supports = none_supports,
    .run_graph = none_run,
};
