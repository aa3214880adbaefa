#!/bin/sh
# Thread scaling: synthesizes and compiles each shape, then runs `bnc bench`
# over a list of thread counts (markdown per shape into OUTDIR, with the CPU's
# description).
# usage: bench/scaling.sh BNC OUTDIR [THREADS [SHAPES]]
#   e.g. bench/scaling.sh build/bnc /tmp/scaling 1,2,4,8,16 "large 2b4t"
set -eu
BNC=$1 OUT=$2 THREADS=${3:-1,2} SHAPES=${4:-large}
mkdir -p "$OUT"
WORK=${TMPDIR:-/tmp}/bnc-scaling
mkdir -p "$WORK"
{ nproc; grep -m1 "model name" /proc/cpuinfo; grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E "^(avx2|avx512f|avx512_vnni|avx_vnni)$" | tr '\n' ' '; echo; } > "$OUT/cpu.txt"
for s in $SHAPES; do
  echo "bench/scaling.sh: $s: synth, compile" >&2
  "$BNC" synth --shape "$s" --type tq2_0 -o "$WORK/$s.gguf" >/dev/null
  "$BNC" compile "$WORK/$s.gguf" -o "$WORK/$s.bnplan" >/dev/null
  rm -f "$WORK/$s.gguf"
  echo "bench/scaling.sh: $s: bench -t $THREADS" >&2
  "$BNC" bench "$WORK/$s.bnplan" -p 128 -n 64 -t "$THREADS" -r 3 > "$OUT/$s.md"
  rm -f "$WORK/$s.bnplan"
done
