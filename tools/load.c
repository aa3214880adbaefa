/* Opening a model for running: a .bnplan is mapped and validated; a GGUF is
 * imported and compiled in memory by the same pipeline `bnc compile` runs. */
#include <string.h>

#include "../passes/pass.h"
#include "cli.h"

bn_status bn_cli_open_model(const char *path, int n_batch, bn_cli_model *cm, bn_error *err) {
  memset(cm, 0, sizeof *cm);
  if (bn_plan_sniff(path)) {
    bn_status st = (bn_cli_map_plans() ? bn_plan_map : bn_plan_open)(&cm->plan, path, err);
    if (st) return st;
    cm->is_plan = 1;
    cm->m = &cm->plan.model;
    cm->target = cm->plan.target;
    cm->code = bn_cli_trusted_code(&cm->plan);
    cm->mem = &cm->plan.mem;
    return BN_OK;
  }
  bn_status st = bn_cli_load(path, &cm->f, &cm->gm, err);
  if (st) return st;
  bn_pass_opts po = {.max_tokens = n_batch > 0 ? n_batch : BN_CLI_BATCH, .verify = 0};
  if ((st = bn_pass_run_pipeline(&cm->gm.graph, &po, &cm->mp, NULL, NULL, err))) {
    bn_model_free(&cm->gm);
    bn_source_close(&cm->f);
    return st;
  }
  cm->m = &cm->gm;
  cm->mem = &cm->mp;
  return BN_OK;
}

void bn_cli_close_model(bn_cli_model *cm) {
  if (cm->is_plan) bn_plan_close(&cm->plan);
  else if (cm->m) {
    bn_memplan_free(&cm->mp);
    bn_model_free(&cm->gm);
    bn_source_close(&cm->f);
  }
  memset(cm, 0, sizeof *cm);
}
