#!/bin/sh
# bnc serve through the official OpenAI client (npm "openai" in DIR: tools/deps.sh installs it in .deps/node).
# usage: test_openai.sh BNC MODEL DIR
set -eu
bnc=$1 model=$2 dir=$3 here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
if [ ! -d "$dir/node_modules/openai" ]; then
  npm install --prefix "$dir" --no-audit --no-fund --silent openai@7 >/dev/null
fi
cp "$here/test_openai.mjs" "$dir/" # run from beside its node_modules, where its import looks
prompt="In the beginning"
want=$("$bnc" run "$model" -p "$prompt" -n 12 --temp 0 --repeat-penalty 1 2>/dev/null)
want=${want#"$prompt"}
: >"$dir/serve.log" # empty (not a previous run's port), and there before the server's shell opens it
"$bnc" serve "$model" --port 0 --parallel 2 --api-key sekrit 2>"$dir/serve.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
port=""
for i in $(seq 1 100); do
  port=$(sed -n 's|.*http://127\.0\.0\.1:\([0-9]*\)/v1.*|\1|p' "$dir/serve.log")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "FAIL: bnc serve did not start: $(cat "$dir/serve.log")"; exit 1; }
node "$dir/test_openai.mjs" "$port" sekrit "$want"
