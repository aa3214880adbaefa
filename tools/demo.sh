#!/bin/sh
# The main job end to end: install what is missing, build, compile the model
# that ships in examples/ into a plan, generate text from it with timings,
# then the same from a model made from nothing by `bnc synth`.
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j "$(nproc)"
echo "== bnc compile examples/tiny-bitnet-i2_s.gguf"
build/bnc compile examples/tiny-bitnet-i2_s.gguf -o build/tiny.bnplan
echo "== bnc run build/tiny.bnplan"
build/bnc run build/tiny.bnplan -p "Once upon a time" -n 32 --stats
echo "== bnc synth --shape tiny --arch bitnet-b1.58 (llama3-style vocab), compile, run"
build/bnc synth --shape tiny --arch bitnet-b1.58 --type tq2_0 -o build/tiny-b158-tq2_0.gguf
build/bnc compile build/tiny-b158-tq2_0.gguf -o build/tiny-b158.bnplan
build/bnc run build/tiny-b158.bnplan -p "Once upon a time" -n 32 --temp 0
