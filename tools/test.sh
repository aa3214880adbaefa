#!/bin/sh
# The test command of the README: install what is missing, build, run every test.
#   tools/test.sh              release build in build/
#   tools/test.sh --sanitize   AddressSanitizer + UBSan build in build-asan/
#   tools/test.sh --no-llvm    a bnc without LLVM (-DBNC_LLVM=OFF) in build-nollvm/
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh
dir=build opts=""
if [ "${1:-}" = "--sanitize" ]; then dir=build-asan opts="-DBNC_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"; fi
if [ "${1:-}" = "--no-llvm" ]; then dir=build-nollvm opts="-DBNC_LLVM=OFF"; fi
cmake -S . -B "$dir" $opts >/dev/null
cmake --build "$dir" -j "$(nproc)"
cd "$dir" && ctest --output-on-failure -j "$(nproc)"
