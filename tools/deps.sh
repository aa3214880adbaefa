#!/bin/sh
# Installs the Debian packages bnc needs, only if some are missing.
# Every package the design names is installed now, so later work never fights the build.
set -eu
PKGS="gcc g++ make cmake pkg-config flex bison llvm-19-dev libasmjit-dev libcmocka-dev libpcre2-dev
      libxxhash-dev libcjson-dev libsodium-dev clang libclang-rt-14-dev libc6-dev-arm64-cross
      python3 dpkg-dev file chromium graphviz libmicrohttpd-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# node and npm (the OpenAI client test): any install of them will do, Debian's if there is none
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  echo "installing:$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# the official OpenAI client for the serve test, into the project-local .deps/node (ignored by git)
node_dir="$(dirname "$0")/../.deps/node"
if [ ! -d "$node_dir/node_modules/openai" ]; then
  echo "installing: npm openai@7 into .deps/node"
  npm install --prefix "$node_dir" --no-audit --no-fund --silent openai@7 >/dev/null
fi
