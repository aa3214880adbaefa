#!/bin/sh
# The bnc command line end to end: help, synth -> inspect / ir / run / eval
# on every arch and ternary type, the shipped example model, and bad input
# (each must give exactly one "bnc: ..." line on stderr and a non-zero exit).
# usage: test_cli.sh BNC SOURCE_DIR WORK_DIR
set -u
BNC=$1 SRC=$2 WORK=$3
mkdir -p "$WORK"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# a bnc built without LLVM (-DBNC_LLVM=OFF) skips what only generated code does
LLVM=0
$BNC run --help | grep -qE "^ +llvm +" && LLVM=1
# the default backend is auto in every build: asmjit's kernels where it emits them, else LLVM's
$BNC run --help | grep -q "default auto" || fail "the default backend is not auto"
ASMJIT=0
$BNC --version | grep -q asmjit && ASMJIT=1

# expect_error DESCRIPTION SUBSTRING -- command...
expect_error() {
  desc=$1 want=$2
  shift 3
  "$@" >"$WORK/out" 2>"$WORK/err"
  rc=$?
  lines=$(grep -c . "$WORK/err")
  if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then fail "$desc: exit $rc"; return; fi
  if [ "$lines" -ne 1 ]; then fail "$desc: $lines lines on stderr"; cat "$WORK/err"; return; fi
  grep -qF -- "$want" "$WORK/err" || fail "$desc: stderr lacks '$want': $(cat "$WORK/err")"
}

for c in "" inspect ir synth compile run eval perplexity bench trust serve; do
  $BNC $c --help >/dev/null 2>&1 || fail "bnc $c --help"
done
# bnc --help lists every command under "commands:", before the closing pointer to per-command help
listed=$($BNC --help | sed -n '/^commands:/,/^$/p' | awk '/^  [a-z]/ {print $1}' | tr '\n' ' ')
[ "$listed" = "inspect ir synth compile run eval perplexity bench trust serve " ] || fail "bnc --help lists '$listed'"
# the passes --help names are the ones the pipeline runs, in its order
ran=$($BNC ir --shape tiny --after=all | sed -n 's/^# after //p' | tr '\n' ' ')
for c in ir compile; do
  said=$($BNC $c --help | sed -n '/Passes, in order:/,$p' | sed 's/.*Passes, in order://' | tr -s ' \n' '  ' | sed 's/^ //')
  [ "$said" = "$ran" ] || fail "bnc $c --help passes '$said', the pipeline runs '$ran'"
done

for arch in bitnet bitnet-b1.58; do
  for type in tq1_0 tq2_0 i2_s; do
    m="$WORK/tiny-$arch-$type.gguf"
    $BNC synth --shape tiny --arch $arch --type $type -o "$m" 2>/dev/null || fail "synth $arch $type"
    $BNC inspect "$m" | grep -q "blk.1.ffn_down.weight *$type" || fail "inspect $arch $type"
    $BNC ir "$m" > "$WORK/a.bnir" && $BNC ir "$WORK/a.bnir" | cmp -s - "$WORK/a.bnir" || fail "ir round trip $arch $type"
    $BNC run "$m" -p "hello world" -n 8 --temp 0 --ignore-eos >"$WORK/run1" 2>"$WORK/stats" || fail "run $arch $type"
    grep -q "generation 8 tokens" "$WORK/stats" || fail "run stats $arch $type: $(cat "$WORK/stats")"
    $BNC run "$m" -p "hello world" -n 8 --temp 0 --ignore-eos >"$WORK/run2" 2>/dev/null
    cmp -s "$WORK/run1" "$WORK/run2" || fail "greedy run not deterministic $arch $type"
    $BNC eval "$m" --tokens "1 5 17 300" --logits-out "$WORK/l.bin" 2>/dev/null || fail "eval $arch $type"
    [ "$(wc -c < "$WORK/l.bin")" -eq $((4 * 512 * 4)) ] || fail "eval size $arch $type"
  done
done

# llama and qwen3: synth files of every layout (pq2_0 with a scale per 128), the ir round trip (rmsnorm's
# group for qwen3), and Hugging Face directories: compile DIR, then the plan gives the directory's logits
for arch in llama qwen3; do
  for type in tq2_0 pq2_0; do
    m="$WORK/tiny-$arch-$type.gguf"
    $BNC synth --shape tiny --arch $arch --type $type --group-scales -o "$m" 2>/dev/null || fail "synth $arch $type"
    $BNC ir "$m" > "$WORK/a.bnir" && $BNC ir "$WORK/a.bnir" | cmp -s - "$WORK/a.bnir" || fail "ir round trip $arch $type"
    $BNC run "$m" -p "hello world" -n 4 --temp 0 --ignore-eos >/dev/null 2>&1 || fail "run $arch $type"
  done
done
$BNC ir "$WORK/tiny-qwen3-tq2_0.gguf" | grep -q "rmsnorm .*group = 64" || fail "qwen3's per-head norm not in the IR"
for d in qwen3-packed bitnet-master; do
  $BNC compile "$SRC/tests/data/hf/$d" -o "$WORK/hf.bnplan" 2>"$WORK/err" || fail "compile $d: $(cat "$WORK/err")"
  $BNC eval "$SRC/tests/data/hf/$d" --tokens "3 14 15 92" --logits-out "$WORK/hf1.bin" 2>/dev/null || fail "eval $d"
  $BNC eval "$WORK/hf.bnplan" --tokens "3 14 15 92" --logits-out "$WORK/hf2.bin" 2>/dev/null || fail "eval $d plan"
  cmp -s "$WORK/hf1.bin" "$WORK/hf2.bin" || fail "$d: the plan's logits differ from the directory's"
done
mkdir -p "$WORK/empty-dir"
expect_error "directory without config" "no config.json" -- $BNC run "$WORK/empty-dir" -p hi

# The model that ships with the repo
ls "$SRC"/examples/*.gguf >/dev/null 2>&1 || fail "no example model in examples/"
for m in "$SRC"/examples/*.gguf; do
  $BNC run "$m" -p "Once upon a time" -n 16 >/dev/null 2>"$WORK/stats" || fail "run $m: $(cat "$WORK/stats")"
done

m="$WORK/tiny-bitnet-i2_s.gguf"
expect_error "missing file" "nope.gguf: cannot open: No such file or directory" -- $BNC run "$WORK/nope.gguf" -p hi
expect_error "empty prompt" "prompt: empty" -- $BNC run "$m" -p ""
# more threads than CPUs: said once, the threads capped, the same greedy text
cpus=$(nproc)
$BNC run "$m" -p "hello" -n 6 --temp 0 -t $((cpus * 8)) >"$WORK/many" 2>"$WORK/err" || fail "run -t $((cpus * 8))"
grep -q "^bnc: -t $((cpus * 8)) exceeds the $cpus CPUs" "$WORK/err" || fail "-t beyond the CPUs not said: $(cat "$WORK/err")"
$BNC run "$m" -p "hello" -n 6 --temp 0 -t "$cpus" >"$WORK/few" 2>/dev/null
cmp -s "$WORK/many" "$WORK/few" || fail "-t $((cpus * 8)) generates other text than -t $cpus"
# the libraries read no environment: tools/ maps it onto their options
found=$(grep -ln "getenv\|secure_getenv\|environ\b" "$SRC"/ir/*.[ch] "$SRC"/frontend/*.[ch] "$SRC"/passes/*.[ch] \
        "$SRC"/codegen/*/*.[ch] "$SRC"/runtime/*.[ch] 2>/dev/null)
[ -z "$found" ] || fail "library code reads the environment: $found"
# every command names an option it does not take as unknown, wherever it stands; eval takes no sampling options
for c in inspect ir compile run eval perplexity bench; do
  expect_error "$c --bogus" "unknown option '--bogus'" -- $BNC $c "$m" --bogus
  expect_error "$c --bogus 1" "unknown option '--bogus'" -- $BNC $c "$m" --bogus 1
done
$BNC compile "$m" -o "$WORK/inspect.bnplan" >/dev/null 2>&1 || fail "compile for inspect"
expect_error "inspect a plan" "is a bnc plan, not a GGUF: \`bnc ir" -- $BNC inspect "$WORK/inspect.bnplan"
expect_error "compile a plan" "is a bnc plan already" -- $BNC compile "$WORK/inspect.bnplan" -o "$WORK/again.bnplan"
expect_error "synth stray argument" "unexpected argument" -- $BNC synth "$m"
expect_error "eval --temp" "unknown option '--temp'" -- $BNC eval "$m" --tokens "1 2" --logits-out "$WORK/x.bin" --temp 0
expect_error "unknown BNC_ISA" "BNC_ISA=sse is unknown" -- env BNC_ISA=sse $BNC run "$m" -p hi -n 1
# perplexity reads pipes and files with no size (/proc), the same text as from a file
head -c 3000 "$SRC/README.md" >"$WORK/ppl.txt"
$BNC perplexity "$m" -f "$WORK/ppl.txt" -c 64 2>/dev/null >"$WORK/ppl-file" || fail "perplexity -f file"
$BNC perplexity "$m" -f - -c 64 <"$WORK/ppl.txt" 2>/dev/null >"$WORK/ppl-pipe" || fail "perplexity -f -"
[ "$(cut -d'|' -f1 "$WORK/ppl-file")" = "$(cut -d'|' -f1 "$WORK/ppl-pipe")" ] || fail "perplexity from a pipe differs: $(cat "$WORK/ppl-pipe")"
$BNC perplexity "$m" -f /proc/self/maps -c 64 2>&1 | grep -q "^perplexity: " || fail "perplexity -f /proc/self/maps"
# a generation cut by a full context says so (and still succeeds)
$BNC run "$m" -p "hello" -n 100 -c 10 --ignore-eos >/dev/null 2>"$WORK/err" || fail "run -c 10: $(cat "$WORK/err")"
grep -q "^bnc: stopped after [0-9]* tokens: the context of 10 tokens is full" "$WORK/err" || fail "full context not said: $(cat "$WORK/err")"
expect_error "non-UTF-8 prompt" "invalid UTF-8 at byte 2" -- $BNC run "$m" -p "$(printf 'ab\377')"
expect_error "prompt past context" "do not fit the context of 8" -- $BNC run "$m" -c 8 -p "one two three four five six seven eight nine"
expect_error "token out of range" "outside the vocabulary" -- $BNC eval "$m" --tokens "1 99999" --logits-out "$WORK/x"
expect_error "ir into no folder" "ir: $WORK/nodir/x.txt: cannot write: No such file or directory" -- $BNC ir "$m" -o "$WORK/nodir/x.txt"
expect_error "plan's ir into no folder" "cannot write: No such file or directory" -- $BNC ir "$WORK/inspect.bnplan" -o "$WORK/nodir/x.txt"
expect_error "logits into no folder" "cannot write the logits: No such file or directory" -- $BNC eval "$m" --tokens "1 2" --logits-out "$WORK/nodir/x"
expect_error "bad token list" "not a list of token ids" -- $BNC eval "$m" --tokens "1 x" --logits-out "$WORK/x"
expect_error "unknown option" "unknown option '--frobnicate'" -- $BNC run "$m" --frobnicate 1
expect_error "bad number" "-n needs an integer" -- $BNC run "$m" -p hi -n lots
expect_error "unknown command" "unknown command 'frob'" -- $BNC frob
expect_error "unknown shape" "unknown --shape 'huge'" -- $BNC synth --shape huge -o "$WORK/x.gguf"
expect_error "3b in tq2_0" "not whole tq2_0 blocks" -- $BNC synth --shape 3b --type tq2_0 -o "$WORK/x.gguf"
printf 'bnc.ir 1\ngraph "x" {\n  input %%t : i32[T]\n  %%y = embed %%t, %%w : f32[T, 4]\n}\n' > "$WORK/bad.bnir"
expect_error "bad .bnir" "bad.bnir:4:18: unknown value %w" -- $BNC ir "$WORK/bad.bnir"
cat "$SRC/tests/bad/gguf.expect" "$SRC/tests/bad/plan.expect" > "$WORK/expect" # (a pipe would lose $fails)
while IFS="$(printf '\t')" read -r name want; do
  expect_error "corpus $name" "$want" -- $BNC run "$SRC/tests/bad/$name" -p hi
done < "$WORK/expect"

# compile -> run a plan; the plan answers like the GGUF it came from
p="$WORK/tiny.bnplan"
$BNC compile "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" -o "$p" --dump-after=fuse-gate 2>"$WORK/err" || fail "compile: $(cat "$WORK/err")"
$BNC ir "$p.fuse-gate.bnir" | cmp -s - "$p.fuse-gate.bnir" || fail "--dump-after output does not round-trip"
$BNC ir "$p" | grep -q "fused %l0.gate_up" || fail "bnc ir on a plan"
$BNC eval "$p" --tokens "1 5 17 300" --logits-out "$WORK/lp.bin" 2>/dev/null || fail "eval plan"
$BNC eval "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" --tokens "1 5 17 300" --logits-out "$WORK/lg.bin" 2>/dev/null
cmp -s "$WORK/lp.bin" "$WORK/lg.bin" || fail "plan and GGUF logits differ"
BNC_MMAP=1 $BNC eval "$p" --tokens "1 5 17 300" --logits-out "$WORK/lm.bin" 2>/dev/null
cmp -s "$WORK/lp.bin" "$WORK/lm.bin" || fail "a mapped plan (BNC_MMAP=1) and a read one differ"
$BNC eval "$p" --tokens "1 5 17 300" --logits-out "$WORK/lq.bin" --poison 2>/dev/null
cmp -s "$WORK/lp.bin" "$WORK/lq.bin" || fail "poisoned run differs"
$BNC run "$p" -p "hello" -n 4 --stats --profile "$WORK/trace.json" >/dev/null 2>"$WORK/stats" || fail "run --stats --profile"
grep -q "fused:rmsnorm+quantize+tmatmul+dequant+add" "$WORK/stats" || fail "stats table lacks kernel kinds"
grep -q '"traceEvents"' "$WORK/trace.json" || fail "profile is not a Chrome trace"
if [ $LLVM -eq 1 ]; then # the phase needs generated RoPE kernels
# every step rotates and stores q/k/v in the projection's phase (--stats says so); BNC_QKV_PHASE=0 runs the
# nodes, and the greedy text is the same
$BNC run "$p" -p "hello" -n 12 --temp 0 --ignore-eos -t 2 --stats >"$WORK/qkv1" 2>"$WORK/stats" || fail "run -t 2"
grep -q "^q/k/v: [1-9][0-9]* layers rotate and store q/k/v" "$WORK/stats" || fail "stats lack the q/k/v phase: $(cat "$WORK/stats")"
BNC_QKV_PHASE=0 $BNC run "$p" -p "hello" -n 12 --temp 0 --ignore-eos -t 2 --stats >"$WORK/qkv0" 2>"$WORK/stats" || fail "run nodes"
grep -q "^q/k/v:" "$WORK/stats" && fail "BNC_QKV_PHASE=0 still reports the phase"
cmp -s "$WORK/qkv0" "$WORK/qkv1" || fail "the q/k/v phase changed the greedy text"
fi
$BNC compile "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" -o "$WORK/again.bnplan" 2>/dev/null
cmp -s "$p" "$WORK/again.bnplan" || fail "compile is not deterministic"
expect_error "compile without -o" "needs MODEL.gguf and -o" -- $BNC compile "$m"
expect_error "unknown pass" "no pass named 'fuse-all'" -- $BNC compile "$m" -o "$WORK/x.bnplan" --dump-after=fuse-all

if [ $LLVM -eq 1 ]; then # targets, ISAs and object code are the LLVM backend's
# --target: a plan for x86-64-v3 runs the AVX2 kernels: the same bytes as forcing them on a native plan
$BNC compile "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" -o "$WORK/v3.bnplan" --target=x86-64-v3 2>/dev/null || fail "compile --target"
$BNC eval "$WORK/v3.bnplan" --tokens "1 5 17 300" --logits-out "$WORK/lv3.bin" 2>/dev/null || fail "eval v3 plan"
BNC_ISA=avx2 $BNC eval "$p" --tokens "1 5 17 300" --logits-out "$WORK/lavx2.bin" 2>/dev/null
cmp -s "$WORK/lv3.bin" "$WORK/lavx2.bin" || fail "--target=x86-64-v3 differs from BNC_ISA=avx2"
  expect_error "bad target" "--target must be one of native x86-64-v3 x86-64-v4 for the auto backend, got 'arm'" -- $BNC compile "$m" -o "$WORK/x.bnplan" --target=arm
# --head q8_0: the summary gives the head's bytes and error; the plan runs; a bad type is refused
$BNC compile "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" -o "$WORK/head.bnplan" --head q8_0 2>"$WORK/err" || fail "compile --head q8_0"
grep -q "^  head q8_0: .* MiB a token (.* MiB exact), relative rms error of its weights" "$WORK/err" || fail "--head summary: $(cat "$WORK/err")"
$BNC eval "$WORK/head.bnplan" --tokens "1 5 17 300" --logits-out "$WORK/lhead.bin" 2>/dev/null || fail "eval a --head q8_0 plan"
expect_error "bad head" "--head must be exact, q8_0 or q6_k, got 'q4'" -- $BNC compile "$m" -o "$WORK/x.bnplan" --head q4
# --aot: the plan carries its kernels' object code; loading it builds nothing, and the logits are the same bytes
$BNC compile "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" -o "$WORK/aot.bnplan" --aot 2>"$WORK/err" || fail "compile --aot: $(cat "$WORK/err")"
grep -q "^aot: [0-9]* llvm kernels" "$WORK/err" || fail "compile --aot does not report its kernels"
BNC_CACHE_DIR=off $BNC eval "$WORK/aot.bnplan" --tokens "1 5 17 300" --logits-out "$WORK/laot.bin" 2>/dev/null
cmp -s "$WORK/laot.bin" "$WORK/lp.bin" || fail "--aot plan logits differ"
BNC_CACHE_DIR=off $BNC run "$WORK/aot.bnplan" -p "hi" -n 2 --stats --backend llvm 2>&1 >/dev/null | grep -q "kernels: 0 built .* from the plan" ||
  fail "--aot plan did not load its object code"
$BNC compile "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" -o "$WORK/aot-v3.bnplan" --aot --target=x86-64-v3 2>/dev/null || fail "compile --aot v3"
BNC_CACHE_DIR=off $BNC eval "$WORK/aot-v3.bnplan" --tokens "1 5 17 300" --logits-out "$WORK/laot3.bin" 2>/dev/null
cmp -s "$WORK/laot3.bin" "$WORK/lv3.bin" || fail "--aot x86-64-v3 plan logits differ"
fi
# output files: never a device, FIFO or directory, never the input; nothing left behind
rm -f "$WORK/fifo" && mkfifo "$WORK/fifo"
expect_error "compile -o FIFO" "is not a regular file" -- $BNC compile "$m" -o "$WORK/fifo"
expect_error "synth -o directory" "is not a regular file" -- $BNC synth --shape tiny -o "$WORK"
cp "$m" "$WORK/self.gguf"
expect_error "compile -o the input" "is the input file" -- $BNC compile "$WORK/self.gguf" -o "$WORK/./self.gguf"
cmp -s "$m" "$WORK/self.gguf" || fail "compile -o the input changed it"
ln -sf "$WORK/self.gguf" "$WORK/self-link.gguf"
expect_error "compile -o a link to the input" "is the input file" -- $BNC compile "$WORK/self.gguf" -o "$WORK/self-link.gguf"
[ -z "$(ls "$WORK" | grep -E '\.(gguf|bnplan|fifo)\.[A-Za-z0-9]{6}$')" ] || fail "temporary files left behind: $(ls "$WORK")"
if [ $LLVM -eq 1 ]; then # plan code to trust
# trust: the plan's code ran above because its signer (this user, key made on first use) is trusted;
# another user, who does not trust the key, gets one line and generated kernels, the same logits,
# until `bnc trust` adds the signer's public key
[ -f "$XDG_CONFIG_HOME/bnc/signing.pub" ] || fail "compile --aot made no signing key"
other="$WORK/other-user"
rm -rf "$other"
XDG_CONFIG_HOME=$other BNC_CACHE_DIR=off $BNC eval "$WORK/aot.bnplan" --tokens "1 5 17 300" --logits-out "$WORK/lother.bin" 2>"$WORK/err" ||
  fail "eval by another user: $(cat "$WORK/err")"
[ "$(grep -c "^bnc:" "$WORK/err")" -eq 1 ] && grep -q "which you do not trust: not run; generating the kernels instead" "$WORK/err" ||
  fail "untrusted plan code: $(cat "$WORK/err")"
cmp -s "$WORK/lother.bin" "$WORK/lp.bin" || fail "untrusted --aot plan logits differ"
XDG_CONFIG_HOME=$other $BNC trust "$XDG_CONFIG_HOME/bnc/signing.pub" >/dev/null || fail "bnc trust"
XDG_CONFIG_HOME=$other $BNC trust --list | grep -q "trusted keys .*: 1" || fail "bnc trust --list"
XDG_CONFIG_HOME=$other BNC_CACHE_DIR=off $BNC run "$WORK/aot.bnplan" -p "hi" -n 2 --stats --backend llvm 2>&1 >/dev/null |
  grep -q "kernels: 0 built .* from the plan" || fail "a trusted signer's plan code was not used"
expect_error "trust a non-key" "not a key line" -- $BNC trust "$SRC/README.md"
fi
# a kernel cache directory others may write to is refused in one line; the run goes on without it
mkdir -p "$WORK/shared-cache" && chmod 777 "$WORK/shared-cache"
BNC_CACHE_DIR="$WORK/shared-cache" $BNC eval "$p" --tokens "1 5 17 300" --logits-out "$WORK/lshared.bin" 2>"$WORK/err" ||
  fail "eval with a shared cache: $(cat "$WORK/err")"
grep -q "others may write to it.*kernel cache off" "$WORK/err" || fail "shared cache not refused: $(cat "$WORK/err")"
cmp -s "$WORK/lshared.bin" "$WORK/lp.bin" || fail "logits without the cache differ"
[ -z "$(ls "$WORK/shared-cache")" ] || fail "a refused cache directory was written to"
# --weights t1: 1.6-bit weights (tp1 in the plan), fewer bytes in the summary, the same logits; a bad value refused
$BNC compile "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" -o "$WORK/t1.bnplan" --weights t1 2>"$WORK/err" || fail "compile --weights t1"
grep -q "^  weights t1: .* MiB of ternary weights a token (.* MiB at 2 bits)" "$WORK/err" || fail "--weights summary: $(cat "$WORK/err")"
! grep -q avx512vnni /proc/cpuinfo || ! grep -q "note: AVX2" "$WORK/err" || fail "an AVX2 note on a VNNI CPU: $(cat "$WORK/err")"
$BNC ir "$WORK/t1.bnplan" | grep -q ": tp1\[" || fail "--weights t1 plan has no tp1 weights"
$BNC eval "$WORK/t1.bnplan" --tokens "1 5 17 300" --logits-out "$WORK/lt1.bin" 2>/dev/null
cmp -s "$WORK/lt1.bin" "$WORK/lp.bin" || fail "--weights t1 plan logits differ"
$BNC ir "$WORK/t1.bnplan" --emit=asm --backend asmjit -o "$WORK/t1.s" 2>/dev/null || fail "ir --emit=asm of a plan"
grep -q "^# kernel t1 " "$WORK/t1.s" && grep -q vpdpbusd "$WORK/t1.s" || fail "a t1 plan's kernels: $(head -3 "$WORK/t1.s")"
$BNC ir "$WORK/t1.bnplan" --after=all 2>"$WORK/err" && fail "ir --after of a plan accepted"
$BNC compile "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" -o "$WORK/t1v3.bnplan" --weights t1 --target x86-64-v3 2>"$WORK/err" ||
  fail "compile --weights t1 --target x86-64-v3: $(cat "$WORK/err")"
grep -q "note: AVX2 (x86-64-v3, or a native CPU without AVX-512 VNNI) has no vpdpbusd" "$WORK/err" || fail "no note on t1 for AVX2: $(cat "$WORK/err")"
$BNC compile "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" -o "$WORK/x.bnplan" --weights t3 2>"$WORK/err" && fail "--weights t3 accepted"
grep -q "weights must be t2 or t1, got 't3'" "$WORK/err" || fail "--weights t3: $(cat "$WORK/err")"
# --lut / --tune: lookup-table kernels where chosen (tl2 weights in the plan), the same logits
$BNC compile "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" -o "$WORK/lut.bnplan" --lut 2>/dev/null || fail "compile --lut"
$BNC ir "$WORK/lut.bnplan" | grep -q ": tl2\[" || fail "--lut plan has no tl2 weights"
$BNC eval "$WORK/lut.bnplan" --tokens "1 5 17 300" --logits-out "$WORK/llut.bin" 2>/dev/null
cmp -s "$WORK/llut.bin" "$WORK/lp.bin" || fail "--lut plan logits differ"
if [ $LLVM -eq 1 ]; then # kernels to time
$BNC compile "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" -o "$WORK/tune.bnplan" --tune 2>"$WORK/err" || fail "compile --tune: $(cat "$WORK/err")"
grep -qE "^  +[0-9]+ +[0-9]+ .*(packed|lookup table|1.6-bit)$" "$WORK/err" || fail "compile --tune prints no choices: $(cat "$WORK/err")"
$BNC eval "$WORK/tune.bnplan" --tokens "1 5 17 300" --logits-out "$WORK/ltune.bin" 2>/dev/null
cmp -s "$WORK/ltune.bin" "$WORK/lp.bin" || fail "--tune plan logits differ"
fi
if [ $LLVM -eq 1 ]; then # generated code to print
# the generated code of a model's kernels
$BNC ir --emit=llvm "$m" > "$WORK/k.ll" 2>/dev/null || fail "ir --emit=llvm"
grep -q "define void @bn_mm_" "$WORK/k.ll" && grep -q "define void @bn_attn_" "$WORK/k.ll" || fail "ir --emit=llvm lacks kernels"
$BNC ir --emit=asm "$m" 2>/dev/null | grep -qE "vpdpbusd|vpmaddubsw" || fail "ir --emit=asm lacks dot products"
fi
# bench: runs, and its JSON carries the figures
$BNC bench "$m" -p 16 -n 4 -r 1 -t 1,2 -o json >"$WORK/bench.json" 2>/dev/null || fail "bench"
grep -q '"tokens_per_s"' "$WORK/bench.json" && grep -q '"bandwidth_gbs"' "$WORK/bench.json" || fail "bench JSON"
grep -q '"last_level_cache_bytes"' "$WORK/bench.json" || fail "bench JSON lacks the cache size"
# a model smaller than the caches: bench measures that a buffer of the weights' size reads faster than
# 512 MiB, and says the bandwidth bound does not hold (what it measured, in the note)
$BNC bench "$m" -p 0 -n 4 -r 1 -t 1 >"$WORK/bench.md" 2>/dev/null || fail "bench md"
# (under the sanitizers every load of the measuring loop is checked, and a cache is no faster than memory)
[ -n "${BNC_TEST_SANITIZED:-}" ] || grep -q "the weights fit in a cache these threads use: a buffer of their size, read again and again, reads at [0-9.]* GB/s, 512 MiB at" \
  "$WORK/bench.md" || fail "bench does not say the weights fit in cache: $(head -3 "$WORK/bench.md")"
$BNC bench "$m" -p 16 -n 4 -d 0,8 -r 1 -t 1 -o json >"$WORK/bench.json" 2>/dev/null || fail "bench -d"
grep -q '"tg4@d8"' "$WORK/bench.json" && grep -q '"pp16@d8"' "$WORK/bench.json" || fail "bench -d rows: $(cat "$WORK/bench.json")"
# with one repetition a tg row's fraction is its t/s over the bound from the bandwidth measured
# beside it: (weights + K/V per position x (depth + (n + 1) / 2)) x t/s / bandwidth
awk -F'[:,]' 'NR == FNR {if (/"weight_bytes_per_token"/) w = $2; if (/"kv_bytes_per_position"/) kv = $2; next}
  /"test"/ {tg = $0 ~ /"tg4/} /"depth"/ {d = $2} /"tokens_per_s"/ {ts = $2} /"bandwidth_gbs"/ {bw = $2}
  /"fraction_of_bound"/ && tg {rows++; want = (w + kv * (d + 2.5)) * ts / (bw * 1e9); if (want / $2 > 1.001 || want / $2 < 0.999) bad++}
  END {exit !(rows == 2 && !bad)}' "$WORK/bench.json" "$WORK/bench.json" || fail "bench tg fraction is not t/s x bytes / bandwidth: $(cat "$WORK/bench.json")"
expect_error "bench too deep" "exceeds" -- $BNC bench "$m" -p 16 -n 4 -d 60000
if [ $LLVM -eq 1 ]; then # a generated matmul to time
$BNC bench --kernel 256,64,2 -r 1 >"$WORK/kbench" 2>&1 || fail "bench --kernel: $(cat "$WORK/kbench")"
grep -q "^| 1 | packed | .* | | |$" "$WORK/kbench" || fail "bench --kernel T > 1 shows bandwidth cells: $(cat "$WORK/kbench")"
$BNC bench --kernel 256,64,1 -t 1 -r 1 >"$WORK/kbench1" 2>&1 || fail "bench --kernel T = 1"
grep -q "^| 1 | packed | .* | [0-9.]* | [0-9]*% |$" "$WORK/kbench1" || fail "bench --kernel T = 1 lacks bandwidth: $(cat "$WORK/kbench1")"
for g in 256 128; do # the group-scaled kernels beside it, where N is whole blocks of 4 rows
  grep -q "^| 1 | scale per $g | " "$WORK/kbench" || fail "bench --kernel lacks the scale-per-$g kernel: $(cat "$WORK/kbench")"
done
$BNC bench --kernel 256,66,2 -r 1 >"$WORK/kbench2" 2>&1 || fail "bench --kernel N = 66"
! grep -q "scale per" "$WORK/kbench2" || fail "bench --kernel times group-scaled kernels over rows not in blocks of 4: $(cat "$WORK/kbench2")"
fi
expect_error "bench bad kernel" "--kernel K,N,T needs K a multiple of 256" -- $BNC bench --kernel 100,64,2
# sizes a user types are bounded before any arithmetic: huge, overflowing, trailing text, missing parts
for k in 9223372036854775808,256,1 256,9223372036854775807,1 65536,262144,1 256,64,1x 256,64 256,,1 -256,64,1 256,64,0; do
  expect_error "bench --kernel $k" "--kernel K,N,T needs" -- $BNC bench --kernel $k
done
for c in compile run eval perplexity bench ir serve; do
  [ $c = ir ] || expect_error "$c bad backend" "--backend must be one of ref" -- $BNC $c "$m" --backend gpu
  $BNC $c --help | grep -qE "^    ref +the reference kernels" || fail "bnc $c --help does not list the backends"
done
# --kv: the K/V cache's type on every command that runs a model; f16 halves the cache (--stats) and changes
# the logits a little (docs/kv-cache.md; test_asmjit holds them to the reference's)
expect_error "serve bad host" "--host must be an IPv4 or IPv6 address, got 'localhost:80'" -- $BNC serve "$m" --host localhost:80
for c in run eval perplexity bench serve; do
  expect_error "$c bad kv" "--kv must be f32 or f16, got 'q8'" -- $BNC $c "$m" --kv q8
  $BNC $c --help | grep -q -- "--kv f32|f16" || fail "bnc $c --help lacks --kv"
done
kv_mib() { $BNC run "$p" -p "hello" -n 2 --stats --kv $1 2>&1 >/dev/null | sed -n 's/.*KV cache \([0-9.]*\) MiB.*/\1/p'; }
k32=$(kv_mib f32) k16=$(kv_mib f16)
awk -v a="$k32" -v b="$k16" 'BEGIN { exit !(a > 0 && b > 0.49 * a && b < 0.51 * a) }' || fail "--kv f16: KV cache $k16 MiB against $k32"
$BNC eval "$p" --tokens "1 5 17 300 2 9" --logits-out "$WORK/kv32.bin" 2>/dev/null || fail "eval --kv f32"
$BNC eval "$p" --tokens "1 5 17 300 2 9" --logits-out "$WORK/kv16.bin" --kv f16 2>/dev/null || fail "eval --kv f16"
cmp -s "$WORK/kv32.bin" "$WORK/kv16.bin" && fail "--kv f16 left the logits unchanged"
expect_error "ir --emit on ref" "for the ref backend, got 'llvm'" -- $BNC ir --emit=llvm --backend ref "$m"
# the default backend and the reference kernels agree through the CLI too
# (their numeric agreement is tests/test_llvm.c's; here: each backend gives the same bytes from a plan or its GGUF)
$BNC eval "$p" --tokens "1 5 17 300" --logits-out "$WORK/lr.bin" --backend ref 2>/dev/null
$BNC eval "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" --tokens "1 5 17 300" --logits-out "$WORK/lr2.bin" --backend ref 2>/dev/null
cmp -s "$WORK/lr.bin" "$WORK/lr2.bin" || fail "ref backend: plan and GGUF differ"
$BNC eval "$p" --tokens "1 5 17 300" --logits-out "$WORK/ll.bin" -t 2 2>/dev/null
cmp -s "$WORK/ll.bin" "$WORK/lp.bin" || fail "the default backend: 2 threads differ from 1"
# auto: a model asmjit covers never starts LLVM, on either ISA; a plan with lookup-table weights
# (which asmjit does not emit) takes those kernels from LLVM, and --stats gives each member's kernels and time
if [ $ASMJIT -eq 1 ]; then
  for isa in avx2 avx512; do
    [ $isa = avx2 ] || grep -q avx512vnni /proc/cpuinfo || continue
    BNC_ISA=$isa BNC_CACHE_DIR=off $BNC run "$p" -p hi -n 2 --stats 2>"$WORK/err" >/dev/null
    grep -q "^  asmjit kernels: [1-9][0-9]* built" "$WORK/err" && ! grep -q "llvm *kernels\|reference kernels" "$WORK/err" ||
      fail "auto on $isa: $(grep kernels "$WORK/err")"
  done
  for isa in avx2 avx512; do # and its 1.6-bit kernels
    [ $isa = avx2 ] || grep -q avx512vnni /proc/cpuinfo || continue
    BNC_ISA=$isa BNC_CACHE_DIR=off $BNC run "$WORK/t1.bnplan" -p hi -n 2 --stats 2>"$WORK/err" >/dev/null
    grep -q "^  asmjit kernels: [1-9][0-9]* built" "$WORK/err" && ! grep -q "llvm *kernels\|reference kernels" "$WORK/err" ||
      fail "auto over tp1 on $isa: $(grep kernels "$WORK/err")"
  done
  if [ $LLVM -eq 1 ]; then
    $BNC compile "$WORK/tiny-bitnet-b1.58-tq2_0.gguf" -o "$WORK/lut.bnplan" --lut 2>/dev/null || fail "compile --lut"
    BNC_CACHE_DIR=off $BNC run "$WORK/lut.bnplan" -p hi -n 2 --stats 2>"$WORK/err" >/dev/null
    grep -q "^  asmjit kernels: [1-9]" "$WORK/err" && grep -q "^  llvm   kernels: [1-9]" "$WORK/err" ||
      fail "auto with lookup-table weights: $(grep kernels "$WORK/err")"
  fi
fi
for t in 2 3; do # one parallel region per step: dead values poisoned between kernels, threads at barriers
  $BNC eval "$p" --tokens "1 5 17 300" --logits-out "$WORK/lt.bin" -t $t --poison 2>/dev/null
  cmp -s "$WORK/lt.bin" "$WORK/lp.bin" || fail "$t threads with poisoning differ from 1"
done

# Metal: a plan compiled for Metal carries its library; metal-sim runs those shaders on this CPU and
# gives the reference's logits bit for bit (either K/V type); the CPU backends run the plan as native;
# --backend metal says in one line that it needs macOS; ir --emit=metal prints the MSL
kjv=$SRC/examples/bitnet-kjv-tq2_0.gguf
$BNC compile "$kjv" --target metal -o "$WORK/metal.bnplan" 2>/dev/null || fail "compile --target metal"
for kv in f32 f16; do
  $BNC eval "$WORK/metal.bnplan" --tokens "1 5 17 300 2 9 44" --kv $kv --logits-out "$WORK/ms.bin" --backend metal-sim \
    2>/dev/null || fail "eval --backend metal-sim --kv $kv"
  $BNC eval "$WORK/metal.bnplan" --tokens "1 5 17 300 2 9 44" --kv $kv --logits-out "$WORK/mr.bin" --backend ref 2>/dev/null
  cmp -s "$WORK/ms.bin" "$WORK/mr.bin" || fail "metal-sim and ref logits differ (--kv $kv)"
done
a=$($BNC run "$WORK/metal.bnplan" -p "In the beginning" -n 12 --temp 0 --backend metal-sim 2>/dev/null)
b=$($BNC run "$WORK/metal.bnplan" -p "In the beginning" -n 12 --temp 0 --backend ref 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "metal-sim greedy text '$a', ref '$b'"
head -c 1500 "$SRC/examples/tiny-model/heldout.txt" >"$WORK/held.txt"
a=$($BNC perplexity "$WORK/metal.bnplan" -f "$WORK/held.txt" --backend metal-sim 2>/dev/null | sed 's/ |.*//')
b=$($BNC perplexity "$WORK/metal.bnplan" -f "$WORK/held.txt" --backend ref 2>/dev/null | sed 's/ |.*//')
[ -n "$a" ] && [ "$a" = "$b" ] || fail "metal-sim perplexity '$a', ref '$b'"
$BNC run "$WORK/metal.bnplan" -p hi -n 2 --backend metal-sim --stats 2>&1 >/dev/null | tr '\n' ' ' |
  grep -q "nodes run generated code *metal-sim kernels: .*attention" || fail "--stats on metal-sim: kernels and time per kind"
$BNC run "$WORK/metal.bnplan" -p hi -n 2 >/dev/null 2>&1 || fail "a Metal plan on the default backend"
[ "$(uname)" = Darwin ] || expect_error "--backend metal here" "needs macOS" -- $BNC run "$WORK/metal.bnplan" -p hi -n 2 --backend metal
$BNC ir --emit=metal "$WORK/metal.bnplan" | grep -q "^kernel void mm_dq_k512_n768" || fail "ir --emit=metal"
expect_error "--target metal --aot" "takes no --aot" -- $BNC compile "$kjv" --target metal --aot -o "$WORK/x.bnplan"

[ $fails -eq 0 ] && echo "all CLI checks passed"
exit $fails
