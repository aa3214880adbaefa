#!/bin/sh
# Writes the damaged-plan corpus of tests/bad/ (small files: each fails
# before the content hash is checked) and appends its expectations to
# plan.expect. usage: make_plan_corpus.sh BNC
set -eu
BNC=$1
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
"$BNC" compile "$here/../../examples/tiny-bitnet-i2_s.gguf" -o "$tmp/p.bnplan" 2>/dev/null
head -c 64 "$tmp/p.bnplan" > "$here/plan-header-only.bnplan"
head -c 4096 "$tmp/p.bnplan" > "$here/plan-truncated.bnplan"
{ printf 'BNPLAX\r\n'; tail -c +9 "$here/plan-truncated.bnplan"; } > "$here/plan-bad-magic.bnplan"
{ head -c 8 "$here/plan-truncated.bnplan"; printf '\143\000\000\000'; tail -c +13 "$here/plan-truncated.bnplan"; } > "$here/plan-version-99.bnplan"
printf 'BNPLAN\r\n' > "$here/plan-magic-only.bnplan"
cat > "$here/plan.expect" <<'X'
plan-bad-magic.bnplan	is not GGUF
plan-header-only.bnplan	truncated?
plan-magic-only.bnplan	not a bnc plan
plan-truncated.bnplan	truncated?
plan-version-99.bnplan	plan version 99
X
rm -rf "$tmp"
