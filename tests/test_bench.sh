#!/bin/sh
# bnc bench's baselines (a planted slowdown is found and fails the run; unchanged runs are not), its
# latency percentiles and HTML report (well-formed, with its plots, drawn by headless Chromium), and
# bnc ir --dot / --svg (Graphviz reads the graph of every test model after every pass).
# usage: test_bench.sh BNC SOURCE_DIR WORK_DIR
set -u
BNC=$1 SRC=$2 WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
export BNC_BENCH_DIR="$WORK/baselines"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

m="$WORK/tiny.gguf" p="$WORK/tiny.bnplan"
$BNC synth --shape tiny --type i2_s -o "$m" 2>/dev/null && $BNC compile "$m" -o "$p" 2>/dev/null || fail "synth, compile"
B="$BNC bench $p -p 16 -n 32 -r 5 -t 1"
$B --save base -o json >"$WORK/base.json" 2>"$WORK/err" || fail "bench --save: $(cat "$WORK/err")"
[ -f "$WORK/baselines/base.json" ] || fail "no baseline file written"
grep -q '"token_ms_p99"' "$WORK/base.json" || fail "tg rows lack latency percentiles"
# the int8 bound counts the ternary matmuls only, by hand for tiny (2 layers; embd 256, kv 128, ffn 512):
# 2 (256 * 256 * 2 + 256 * 128 * 2 + 256 * 512 * 3) = 1179648, not the F16 head's 512 * 256 a token
grep -q '"macs_per_token":[[:space:]]*1179648,' "$WORK/base.json" || fail "ternary multiply-adds: $(grep macs "$WORK/base.json")"
# a planted slowdown (BNC_BENCH_DELAY_US, 2 ms a token: several times a token's time on any backend, the reference
# kernels of a bnc without LLVM too) is reported slower, and the exit status says so
BNC_BENCH_DELAY_US=2000 $B --baseline base >"$WORK/slow.md" 2>/dev/null
rc=$?
[ $rc -eq 3 ] || fail "a planted slowdown exits $rc, not 3"
grep -q "| tg32 | 1 | .* | \*\*slower\*\* |" "$WORK/slow.md" || fail "the slowdown is not called slower: $(tail -4 "$WORK/slow.md")"
# unchanged runs are not, in three trials (at a 25 % threshold: a shared machine; bench/README.md gives the rates at 2
# and 10 %). A trial called slower is run once more: a burst of the host's steal time (seen: 3x on pp16 of this tiny
# model, a few ms a repetition) does not last two runs, a real slowdown does.
for t in 1 2 3; do
  $B --baseline base --threshold 25 >"$WORK/same.md" 2>/dev/null ||
    $B --baseline base --threshold 25 >"$WORK/same.md" 2>/dev/null ||
    fail "unchanged run $t called slower twice in a row: $(tail -3 "$WORK/same.md")"
done
# a baseline whose bound counted 4x the work (as one that counted a head would, less so) compares its pp rows
# by tokens/s against the peak, not by the fractions of two different bounds (a 4x slowdown)
python3 - "$WORK/baselines/base.json" "$WORK/baselines/other.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["macs_per_token"] *= 4
for r in d["rows"]:
    if r["test"].startswith("pp"): r["fraction_of_bound"] = [4 * f for f in r["fraction_of_bound"]]
json.dump(d, open(sys.argv[2], "w"))
PY
$B --baseline other --threshold 25 >"$WORK/other.md" 2>/dev/null ||
  $B --baseline other --threshold 25 >"$WORK/other.md" 2>/dev/null ||
  fail "a baseline with another bound called slower twice: $(tail -3 "$WORK/other.md")"
expect_bad() {
  "$@" >/dev/null 2>"$WORK/err"
  [ $? -ne 0 ] && [ $(grep -c . "$WORK/err") -eq 1 ] || fail "$*: $(cat "$WORK/err")"
}
expect_bad $B --baseline ../etc/passwd
expect_bad $B --baseline missing
echo '{"format": "bnc-bench-1", "rows": [{"test": "tg32", "threads": 1}]}' >"$WORK/baselines/damaged.json"
expect_bad $B --baseline damaged
expect_bad env BNC_BENCH_DELAY_US=lots $B

# the HTML report, with a baseline: one self-contained page, well-formed, its plots there
BNC_BENCH_DELAY_US=50 $BNC bench "$p" -p 16 -n 32 -r 3 -t 1,2 --baseline base --html "$WORK/report.html" >/dev/null 2>&1
[ -s "$WORK/report.html" ] || fail "no report"
grep -qiE "<script|src=\"http|href=\"http|@import|url\(" "$WORK/report.html" && fail "the report fetches or runs something"
/usr/bin/python3 - "$WORK/report.html" <<'PY' || fail "report: $(cat "$WORK/py.err" 2>/dev/null)"
import sys, xml.etree.ElementTree as ET
svg = "{http://www.w3.org/2000/svg}"
t = ET.parse(sys.argv[1])
charts = t.findall(".//" + svg + "svg")
bars = [r for r in t.iter(svg + "rect") if r.get("class") == "bar"]
bins = [r for r in t.iter(svg + "rect") if r.get("class") == "bin"]
intervals = [l for l in t.iter(svg + "line") if l.get("class") == "interval"]
h2 = [h.text for h in t.iter("{http://www.w3.org/1999/xhtml}h2")]
ok = len(charts) >= 6 and len(bars) >= 8 and len(bins) >= 40 and len(intervals) == 2 and \
    any("kernel kind" in x for x in h2) and any("latency" in x for x in h2) and any("baseline" in x for x in h2)
print(len(charts), "charts,", len(bars), "bars,", len(bins), "bins,", len(intervals), "intervals", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
if command -v chromium >/dev/null; then
  timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=900,1600 \
    --screenshot="$WORK/report.png" "file://$WORK/report.html" >/dev/null 2>&1
  [ "$(wc -c <"$WORK/report.png" 2>/dev/null || echo 0)" -gt 20000 ] || fail "Chromium drew no report (report.png)"
else
  fail "no chromium to draw the report (tools/deps.sh installs it)"
fi

# DOT: Graphviz reads the graph of every test model after every pass; --svg draws it; --layers collapses
passes=$($BNC ir --shape tiny --after=all | grep -c "^# after ")
for arch in bitnet bitnet-b1.58; do
  for type in tq1_0 tq2_0 i2_s; do
    $BNC synth --shape tiny --arch $arch --type $type -o "$WORK/m.gguf" 2>/dev/null
    n=$($BNC ir "$WORK/m.gguf" --after=all --dot | dot -Tsvg | grep -c "<svg")
    [ "$n" -eq "$passes" ] || fail "dot read $n of $passes graphs of $arch $type"
  done
done
for f in "$SRC"/examples/*.gguf; do
  n=$($BNC ir "$f" --after=all --dot 2>/dev/null | dot -Tsvg | grep -c "<svg")
  [ "$n" -eq "$passes" ] || fail "dot read $n of $passes graphs of $f"
done
$BNC ir --shape tiny --after=fuse-prologue --svg -o "$WORK/g.svg" || fail "ir --svg"
grep -q "fused %l0.gate_up" "$WORK/g.svg" || fail "the SVG lacks the fused gate"
$BNC ir --shape large --after=fuse-prologue --dot --layers 0-1 >"$WORK/l.dot" && dot -Tsvg "$WORK/l.dot" >/dev/null ||
  fail "--layers"
grep -q 'label="layers 2..23' "$WORK/l.dot" || fail "--layers 0-1 does not collapse layers 2..23"

[ $fails -eq 0 ] && echo "bench baselines, report and graph pictures: all checks passed"
exit $fails
