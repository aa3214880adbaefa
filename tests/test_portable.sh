#!/bin/sh
# The runtime, the IR and the backend-neutral codegen compile for arm64: no x86
# intrinsic or header outside a backend's folder. There is no arm64 machine here, so
# clang checks the syntax against arm64's C library headers (libc6-dev-arm64-cross).
# usage: test_portable.sh SOURCE_DIR BUILD_DIR   (exit 77: skipped, no cross headers)
set -u
SRC=$1 BUILD=$2
CROSS=/usr/aarch64-linux-gnu/include
command -v clang >/dev/null && [ -d "$CROSS" ] || { echo "no clang or $CROSS: skipped"; exit 77; }
fails=0
for f in "$SRC"/runtime/*.c "$SRC"/ir/*.c "$SRC"/codegen/*.c "$SRC"/codegen/ref/*.c "$SRC"/metal/*.c "$SRC"/metal/sim/*.c; do
  # the generated IR parser's headers are in the build directory; sodium, cJSON, PCRE2, xxhash's are generic
  if ! clang --target=aarch64-linux-gnu -fsyntax-only -std=gnu11 -Werror=implicit-function-declaration \
       -isystem "$CROSS" -idirafter /usr/include -I"$BUILD" "$f" 2>"$BUILD/portable.err"; then
    echo "FAIL: $f does not compile for arm64:"; head -5 "$BUILD/portable.err"; fails=$((fails + 1))
  fi
done
[ $fails -eq 0 ] && echo "runtime/, ir/, codegen/ (but its backends) and metal/ compile for arm64"
exit $fails
