/* bnc ir: print the graph IR of a GGUF model or a .bnir file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../frontend/irparse.h"
#include "cli.h"

static const char HELP[] =
    "usage: bnc ir FILE [-o OUT]\n"
    "  FILE is a GGUF model (imported) or a .bnir text file (parsed and verified).\n"
    "  Prints the textual IR, which `bnc ir` reads back: print -> parse -> print is byte-identical.\n";

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

int bn_cmd_ir(int argc, char **argv) {
  const char *in = NULL, *out = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return fputs(HELP, stdout), 0;
    if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
    else if (argv[i][0] != '-' && !in) in = argv[i];
    else return bn_cli_usage_error("ir", "unexpected argument '%s'", argv[i]);
  }
  if (!in) return bn_cli_usage_error("ir", "missing FILE");
  bn_error err = {0};
  bn_gguf f = {0};
  bn_model m = {0};
  bn_graph *g = &m.graph;
  bn_status st = ends_with(in, ".bnir") ? bn_ir_parse_file(in, g, &err) : bn_cli_load(in, &f, &m, &err);
  if (st) return bn_cli_fail(&err);
  char *text = bn_graph_print(g);
  FILE *fp = out ? fopen(out, "wb") : stdout;
  int ok = text && fp && fputs(text, fp) >= 0;
  if (out && fp) ok = fclose(fp) == 0 && ok;
  free(text);
  bn_model_free(&m);
  if (f.base) bn_gguf_close(&f);
  if (!ok) return bn_fail(&err, BN_E_IO, "%s: cannot write", out ? out : "stdout"), bn_cli_fail(&err);
  return 0;
}
