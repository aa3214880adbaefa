/* bnc synth: write a synthetic GGUF model. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../frontend/synth.h"
#include "cli.h"

static const char HELP[] =
    "usage: bnc synth -o OUT.gguf [--shape tiny|large|3b|2b4t] [--arch ARCH] [--type tq1_0|tq2_0|i2_s|pq2_0|q2_0]\n"
    "                 [--embd f16|f32|q8_0] [--seed N] [--chat-template llama3|bitnet|chatml|none] [--group-scales]\n"
    "  Writes a real-format GGUF with seeded random ternary weights and a working tokenizer.\n"
    "  --shape  tiny (default; for tests), large (bitnet_b1_58-large), 3b, 2b4t (BitNet b1.58 2B-4T)\n"
    "  --arch   bitnet (SiLU, llama vocab), bitnet-b1.58 / bitnet-25 (relu2, gpt2 vocab), llama (SiLU, no\n"
    "           sub-norms, gpt2 vocab) or qwen3 (llama's, with per-head q/k RMSNorm and qwen2's pre-tokenizer);\n"
    "           default: the shape's own (2b4t: bitnet-b1.58, others: bitnet)\n"
    "  --type   ternary type of the linear weights (default i2_s)\n"
    "  --embd   token embedding type (default f16)\n"
    "  --seed   random seed (default 1): the same options give a byte-identical file\n"
    "  --chat-template  the tokenizer.chat_template it carries (default: the arch's own: BitNet 2B-4T's,\n"
    "           bitnet, for bitnet-b1.58 / bitnet-25; llama3 for llama; chatml for qwen3; none for bitnet);\n"
    "           bnc serve renders these families\n"
    "  --group-scales  with a block type: every block its own scale (0.75-1.25 x the tensor's), as\n"
    "           TriLM's and Llama3-8B-1.58's (tq types, 256) and Ternary-Bonsai's (pq2_0, 128) files have\n";

int bn_cmd_synth(int argc, char **argv) {
  bn_synth_params p = {bn_synth_find_shape("tiny"), NULL, BN_DT_I2_S, BN_DT_F16, 1, 1, NULL, 0};
  const char *out = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(HELP, stdout);
      return 0;
    }
    if (a[0] != '-') return bn_cli_usage_error("synth", "unexpected argument '%s'", a);
    if (!strcmp(a, "--group-scales")) {
      p.group_scales = 1;
      continue;
    }
    if (!bn_cli_has("-o --shape --arch --type --embd --seed --chat-template", a)) return bn_cli_usage_error("synth", "unknown option '%s'", a);
    if (!v) return bn_cli_usage_error("synth", "option %s needs a value", a);
    i++;
    if (!strcmp(a, "-o")) out = v;
    else if (!strcmp(a, "--shape")) {
      if (!(p.shape = bn_synth_find_shape(v)))
        return bn_cli_usage_error("synth", "unknown --shape '%s' (%s)", v, bn_synth_shape_names());
    } else if (!strcmp(a, "--arch")) p.arch = v;
    else if (!strcmp(a, "--type") || !strcmp(a, "--embd")) {
      int t = bn_dtype_from_name(v, strlen(v));
      if (t < 0) return bn_cli_usage_error("synth", "unknown type '%s' for %s", v, a);
      *(a[2] == 't' ? &p.ternary : &p.embd) = (bn_dtype)t;
    } else if (!strcmp(a, "--chat-template")) {
      if (strcmp(v, "none") && !bn_synth_chat_template(v))
        return bn_cli_usage_error("synth", "--chat-template must be llama3, bitnet, chatml or none, got '%s'", v);
      p.chat_template = v;
    } else if (!strcmp(a, "--seed")) {
      long s;
      if (bn_cli_int("synth", a, v, 0, 0x7fffffffL, &s)) return 2;
      p.seed = (uint64_t)s;
    } else return bn_cli_usage_error("synth", "unknown option '%s'", a);
  }
  if (!out) return bn_cli_usage_error("synth", "missing -o OUT.gguf");
  bn_error err = {0};
  p.progress = isatty(2); /* a live \r line on a terminal only */
  if (bn_synth_write(&p, out, &err)) return bn_cli_fail(&err);
  struct stat st;
  if (!stat(out, &st))
    fprintf(stderr, "bnc synth: wrote %s (%s, %s, %s, %.1f MiB)\n", out, p.shape->name, bn_synth_arch(&p),
            bn_dtype_table[p.ternary].name, st.st_size / 1048576.0);
  return 0;
}
