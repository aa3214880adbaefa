#!/bin/sh
# The README's install and library blocks, run verbatim (each fenced block after a "tests/test_install.sh
# runs this block" line) in a scratch directory whose build/ and examples/ are this build's and the
# source's, with HOME there; then what they installed (the exported symbols, the static library) and
# the Debian package (cpack, dpkg -x into a scratch root, bnc --version from there, its Depends).
# usage: test_install.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -u
SRC=$1 BUILD=$2 WORK=$3
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
rm -rf "$WORK" && mkdir -p "$WORK/home" || exit 1
ln -s "$BUILD" "$WORK/build" && ln -s "$SRC/examples" "$WORK/examples" || exit 1
awk -v dir="$WORK" '/tests\/test_install.sh runs this block/ {want = 1; next}
  want && /^```sh$/ {inside = 1; n++; next}
  inside && /^```$/ {inside = want = 0; next}
  inside {print > (dir "/block" n ".sh")}' "$SRC/README.md"
[ "$(ls "$WORK"/block*.sh 2>/dev/null | wc -l)" -eq 4 ] || fail "README has $(ls "$WORK"/block*.sh | wc -l) marked blocks, not 4"
for b in 1 2 3 4; do
  (cd "$WORK" && HOME="$WORK/home" sh -e "block$b.sh") >"$WORK/out$b" 2>&1 || fail "README block $b: $(tail -5 "$WORK/out$b")"
done
grep -q "^bnc 0\.[0-9]*\.[0-9]* (" "$WORK/out1" || fail "install: bnc --version: $(cat "$WORK/out1")"
for b in 2 3; do # pkg-config and find_package builds of examples/simple.c ran and agreed with themselves
  grep -q "greedy next token after [0-9]* evaluated one by one" "$WORK/out$b" || fail "block $b: $(tail -3 "$WORK/out$b")"
done
[ "$(grep -E "^(Once upon|greedy)" "$WORK/out2")" = "$(grep -E "^(Once upon|greedy)" "$WORK/out3")" ] ||
  fail "the pkg-config and CMake builds generate different text"
grep -q "'generated_tokens': 16" "$WORK/out4" || fail "python block: $(tail -3 "$WORK/out4")"

P="$WORK/home/.local"
# libbnc.so: its SONAME, and nothing exported but bnc.h's functions (the linker's own markers aside)
objdump -p "$P/lib/libbnc.so" | grep -q "SONAME *libbnc.so.0$" || fail "libbnc.so has no SONAME libbnc.so.0"
extra=$(nm -D --defined-only "$P/lib/libbnc.so" | awk '{print $3}' | grep -vE '^(bnc_[a-z_]+|_edata|_end|__bss_start)$')
[ -z "$extra" ] || fail "libbnc.so exports more than bnc_*: $(echo $extra | head -c 300)"
for fn in $(grep "^BNC_API" "$P/include/bnc.h" | grep -o "bnc_[a-z_]*(" | tr -d '('); do
  nm -D --defined-only "$P/lib/libbnc.so" | grep -q " T $fn$" || fail "libbnc.so does not export $fn"
done
# libbnc.a holds everything a program needs beside the libraries pkg-config --static names
cc "$SRC/examples/simple.c" -o "$WORK/simple-static" -I"$P/include" "$P/lib/libbnc.a" \
  $(PKG_CONFIG_PATH="$P/lib/pkgconfig" pkg-config --static --libs-only-L --libs-only-l bnc | sed 's/-lbnc\b//') \
  && (cd "$WORK" && ./simple-static tiny.bnplan "Once upon a time") | grep -q "greedy next token" || fail "static libbnc.a"

# the Debian package
(cd "$BUILD" && cpack -G DEB -B "$WORK/deb") >"$WORK/cpack.log" 2>&1 || fail "cpack: $(tail -5 "$WORK/cpack.log")"
deb=$(ls "$WORK"/deb/bnc_*_amd64.deb 2>/dev/null | head -1)
if [ -n "$deb" ]; then
  dpkg -x "$deb" "$WORK/root" || fail "dpkg -x $deb"
  "$WORK/root/usr/bin/bnc" --version >"$WORK/version" 2>&1 && grep -q "^backends: ref" "$WORK/version" ||
    fail "bnc --version from the package: $(cat "$WORK/version")"
  [ -f "$WORK/root/usr/lib/libbnc.so.0" ] && [ -f "$WORK/root/usr/include/bnc.h" ] || fail "package lacks libbnc.so.0 or bnc.h"
  depends=$(dpkg-deb -f "$deb" Depends)
  echo "$depends" | grep -q "libsodium" || fail "Depends lacks libsodium: $depends"
  if grep -q "llvm" "$WORK/version"; then echo "$depends" | grep -q "libllvm19" || fail "Depends lacks libllvm19: $depends"; fi
else
  fail "cpack made no bnc_*_amd64.deb: $(ls "$WORK/deb")"
fi
[ $fails -eq 0 ] && echo "install, C, CMake, Python and Debian package checks passed"
exit $fails
