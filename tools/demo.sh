#!/bin/sh
# The main job end to end: install what is missing, build, compile the model
# that ships in examples/ (a BitNet b1.58 trained on the King James Bible)
# into a plan, generate text from it with timings, measure its perplexity,
# then the same path for a model made from nothing by `bnc synth`.
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j "$(nproc)"
echo "== bnc compile examples/bitnet-kjv-i2_s.gguf"
build/bnc compile examples/bitnet-kjv-i2_s.gguf -o build/kjv.bnplan --time-passes
echo "== bnc run build/kjv.bnplan"
build/bnc run build/kjv.bnplan -p "And God said," -n 64 -t "$(nproc)" --stats
echo "== bnc perplexity on the held-out verses"
build/bnc perplexity build/kjv.bnplan -f examples/tiny-model/heldout.txt -t "$(nproc)"
echo "== bnc synth --shape tiny --arch bitnet-b1.58 (llama3-style vocab), compile, run"
build/bnc synth --shape tiny --arch bitnet-b1.58 --type tq2_0 -o build/tiny-b158-tq2_0.gguf
build/bnc compile build/tiny-b158-tq2_0.gguf -o build/tiny-b158.bnplan
build/bnc run build/tiny-b158.bnplan -p "Once upon a time" -n 32 --temp 0
