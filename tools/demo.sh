#!/bin/sh
# The main job end to end: install what is missing, build, then generate text
# from the model that ships in examples/ and print the timings.
# A second model is made with `bnc synth` to show the whole path from nothing.
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j "$(nproc)"
echo "== bnc run examples/tiny-bitnet-i2_s.gguf"
build/bnc run examples/tiny-bitnet-i2_s.gguf -p "Once upon a time" -n 32
echo "== bnc synth --shape tiny --arch bitnet-b1.58 (llama3-style vocab), then run it"
build/bnc synth --shape tiny --arch bitnet-b1.58 --type tq2_0 -o build/tiny-b158-tq2_0.gguf
build/bnc run build/tiny-b158-tq2_0.gguf -p "Once upon a time" -n 32 --temp 0
