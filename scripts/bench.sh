#!/usr/bin/env bash
# make bench: measures spice-harness side by side with direct qemu and a
# synthetic backend, and prints one line per figure:
#
#   name: value (ratio vs direct)
#
# The end-to-end figures come from cmd/spice-bench (built as bin/spice-bench;
# direct and proxied runs interleaved, medians and percentiles over many
# runs, ratios per round): real clients (spicy-screenshot, its per-step
# trace, remote-viewer's first frame, spice-html5's first painted canvas in
# Chromium through the proxy's WebSocket listener vs websockify), Go-client
# handshakes, relay throughput, 250 concurrent sessions, `harness up`,
# keystroke-to-echo latency on loopback and a 20 ms link (section input). The RSA ticket costs
# come from Go benchmarks (proxy/spice/ticket_bench_test.go, median of
# several counts). The trace section's wire view needs root (a packet
# socket on lo); without it the proxy's own steps are still shown.
# docs/bench.md explains every figure and has the last results.
#
# Usage: scripts/bench.sh [--quick] [--make-test] [-- SPICE-BENCH-FLAGS...]
#   --quick       fewer rounds and 256 MiB relay runs (a smoke run, ~1 min)
#   --make-test   also time a full `make test` with no cached test results
#                 (about 2-3 minutes more here)
# BENCH_MAKE_TEST=1 does the same as --make-test (for `make bench`).
# The output is also written to bin/bench-latest.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
make_test=${BENCH_MAKE_TEST:-0}
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --make-test) make_test=1 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

start=$(date +%s)
mkdir -p bin
go build -o bin/spice-bench ./cmd/spice-bench # make bench-build
[ -x bin/harness ] || go build -o bin/harness ./cmd/harness

out=bin/bench-latest.txt
: >"$out"
emit() { echo "$1" | tee -a "$out"; }

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
qemuv=$(qemu-system-x86_64 --version 2>/dev/null | head -1 | awk '{print $4}')
gtkv=$(dpkg-query -W -f='${Version}' libspice-client-glib-2.0-8 2>/dev/null || echo '?')
virt=()
if grep -qw hypervisor /proc/cpuinfo; then virt+=("a VM (hypervisor CPU flag)"); fi
if c=$(systemd-detect-virt --container 2>/dev/null); then virt+=("in a $c container"); fi
if [ -r /dev/kvm ]; then virt+=("/dev/kvm present (nested)"); fi
virts=$(printf '%s, ' "${virt[@]}"); virts=${virts%, }
emit "machine: $cpu, $(nproc) CPUs, $mem RAM, kernel $(uname -r), $(go env GOVERSION), qemu $qemuv, spice-gtk $gtkv, ${virts:-no hypervisor seen}"

# Go benchmarks: the ticket exchange's RSA-1024 costs (issue 4).
counts=5 keys=40 decs=2000
if [ "$quick" = 1 ]; then counts=3 keys=10 decs=300; fi
gobench() { # name regexp benchtime
  local res vals n m
  if ! res=$(go test -run '^$' -bench "^$2\$" -benchtime "$3" -count "$counts" ./proxy/spice/ 2>&1); then
    echo "$1: FAILED"; echo "$res" >&2; return
  fi
  vals=$(echo "$res" | awk '$1 ~ /^Benchmark/ { for (i = 2; i < NF; i++) if ($(i+1) == "ns/op") print $i }' | sort -g)
  n=$(echo "$vals" | grep -c .)
  m=$(echo "$vals" | awk -v n="$n" 'NR == int((n+1)/2) { a = $1 } NR == int(n/2)+1 { b = $1 } END { print (a+b)/2 }')
  awk -v m="$m" -v name="$1" -v n="$n" -v bt="$3" 'BEGIN {
    if (m >= 1e6) s = sprintf("%.2f ms", m/1e6); else if (m >= 1e3) s = sprintf("%.1f µs", m/1e3); else s = sprintf("%.0f ns", m)
    printf "%s: %s (Go benchmark, median of %d runs of %s)\n", name, s, n, bt }'
}
emit "$(gobench rsa1024.generate_key BenchmarkGenerateLinkKey "${keys}x")"
emit "$(gobench rsa1024.oaep_decrypt BenchmarkDecryptTicket "${decs}x")"
emit "$(gobench rsa1024.oaep_encrypt BenchmarkEncryptTicket "$((decs * 10))x")"

flags=()
if [ "$quick" = 1 ]; then
  flags=(-shots 5 -trace-rounds 3 -viewer-rounds 3 -handshakes 20 -relay-bytes $((256 << 20)) -relay-small-bytes $((64 << 20)) -relay-runs 3 -sessions 100 -up-runs 2 -browser-rounds 3)
fi
rc=0
./bin/spice-bench "${flags[@]}" "${extra[@]}" | tee -a "$out" || rc=$?

# The CONNECT tunnel's real-client ratio: a separate script (scripts/bench-tunnel.sh).
bash scripts/bench-tunnel.sh "$quick" | tee -a "$out" || rc=1

if [ "$make_test" = 1 ]; then
  t0=$(date +%s)
  # -count=1: every test really runs (no cached results).
  if make test GOTESTFLAGS=-count=1 >bin/bench-make-test.log 2>&1; then res="passed"; else res="FAILED"; rc=1; fi
  emit "make_test: $(( $(date +%s) - t0 )) s ($res, no cached test results; log in bin/bench-make-test.log)"
else
  emit "make_test: skipped (run scripts/bench.sh --make-test or BENCH_MAKE_TEST=1 make bench)"
fi
emit "bench.total: $(( $(date +%s) - start )) s"
exit $rc
