#!/usr/bin/env bash
# make stress: the whole suite under -race, RUNS times (default 3), while
# two busy loops keep both CPUs of a 2-core machine loaded. A timing
# bound that measures the machine instead of the code fails here first.
# Prints each run's failed tests and how many runs failed; exits 1 if any
# did.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
busy=${BUSY:-2}
export CI=${CI:-true}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
for _ in $(seq 1 "$busy"); do
  ( while :; do :; done ) &
  pids+=($!)
done
echo "stress: $runs runs of go test -race ./... beside $busy busy loops ($(nproc) CPUs)"

failed=0
for i in $(seq 1 "$runs"); do
  log=$(mktemp)
  start=$(date +%s)
  go test -race -count=1 -timeout 30m -json ./... >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  # Failed tests (and packages that failed without a test to blame).
  fails=$(python3 - "$log" <<'PY'
import json, sys
seen = []
for line in open(sys.argv[1], errors="replace"):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    if ev.get("Action") == "fail":
        name = ev.get("Package", "") + ((" " + ev["Test"]) if ev.get("Test") else "")
        seen.append(name)
print("\n".join(seen))
PY
)
  if [ "$rc" -ne 0 ]; then
    failed=$((failed + 1))
    echo "stress: run $i of $runs FAILED in ${took}s:"
    echo "$fails" | sed 's/^/  /'
    cp "$log" "stress-run-$i.json"
    echo "  (go test -json output kept in stress-run-$i.json)"
  else
    echo "stress: run $i of $runs passed in ${took}s"
  fi
  rm -f "$log"
done
echo "stress: $failed failed runs of $runs"
[ "$failed" -eq 0 ]
