#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given time each (default 5s).
set -euo pipefail
t=${1:-5s}
cd "$(dirname "$0")/.."
n=0
while IFS= read -r f; do
  dir=$(dirname "$f")
  for name in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$f" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    echo "fuzz: ./$dir $name ($t)"
    go test -run='^$' -fuzz="^${name}\$" -fuzztime="$t" "./$dir" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; rm -f /tmp/fuzz.$$.log; exit 1; }
    n=$((n+1))
  done
done < <(git ls-files '*_test.go' 2>/dev/null | xargs -r grep -l '^func Fuzz' | sort)
rm -f /tmp/fuzz.$$.log
echo "fuzz: $n targets passed"
