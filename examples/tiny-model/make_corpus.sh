#!/bin/sh
# Extracts the King James Bible (public domain; Debian's bible-kjv-text, read
# with the bible-kjv program) as plain text, one verse per line, and splits it:
# train.txt (everything but the last 1200 verses) and heldout.txt (the last
# 1200 verses: Revelation and the end of the epistles, about 150 KB).
# usage: make_corpus.sh OUTDIR   (needs: apt-get install bible-kjv)
set -eu
out=${1:-.}
command -v bible >/dev/null || { echo "needs the bible program: apt-get install bible-kjv" >&2; exit 1; }
bible -l100000 "Genesis 1:1-Revelation 22:21" |
  sed -n 's/^ *[0-9][0-9]* //p' > "$out/kjv.txt"
n=$(wc -l < "$out/kjv.txt")
head -n $((n - 1200)) "$out/kjv.txt" > "$out/train.txt"
tail -n 1200 "$out/kjv.txt" > "$out/heldout.txt"
rm "$out/kjv.txt"
wc -c "$out/train.txt" "$out/heldout.txt"
