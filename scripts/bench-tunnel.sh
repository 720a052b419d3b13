#!/usr/bin/env bash
# The CONNECT tunnel's real-client ratio, for make bench (scripts/bench.sh
# calls it; it also runs alone). spicy-screenshot captures straight from
# qemu and through the proxy's CONNECT listener (SPICE_PROXY, a signed
# host), plain and TLS ports, interleaved round by round with a rotating
# order (proxy/connect_bench_test.go, BenchmarkTunnelScreenshot); it
# prints the median of the per-round ratios, one line per figure:
#
#   tunnel.screenshot_direct: 252 ms (median spicy-screenshot run straight to qemu, 21 rounds)
#   tunnel.screenshot_plain: 1.02x vs direct (median of 21 per-round ratios)
#   tunnel.screenshot_tls: 1.05x vs direct (median of 21 per-round ratios)
#
# Usage: scripts/bench-tunnel.sh [--quick]   (--quick: 7 rounds, else 21)
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=21
case "${1:-}" in
  --quick|1) rounds=7 ;;
  ""|0) ;;
  *) echo "bench-tunnel: unknown argument $1 (want --quick or nothing)" >&2; exit 2 ;;
esac

if ! res=$(go test -run '^$' -bench '^BenchmarkTunnelScreenshot$' -benchtime "${rounds}x" -count 1 ./proxy 2>&1); then
  echo "tunnel.screenshot: FAILED"
  echo "$res" >&2
  exit 1
fi
# A here-string, not echo | grep -m1: grep leaving early would SIGPIPE
# echo, and pipefail would call a found line missing.
line=$(grep -m1 '^BenchmarkTunnelScreenshot' <<<"$res") || { echo "tunnel.screenshot: FAILED (no benchmark line)"; echo "$res" >&2; exit 1; }
metric() { awk -v unit="$1" '{ for (i = 2; i <= NF; i++) if ($i == unit) print $(i-1) }' <<<"$line"; }
# printf '%.2f' "" prints 0.00: a missing figure must fail, not look measured.
for u in direct_ms tunnel/direct_plain tunnel/direct_tls; do
  [ -n "$(metric "$u")" ] || { echo "tunnel.screenshot: FAILED (no $u in the benchmark line)"; echo "$res" >&2; exit 1; }
done
printf 'tunnel.screenshot_direct: %.0f ms (median spicy-screenshot run straight to qemu, %d rounds)\n' "$(metric direct_ms)" "$rounds"
printf 'tunnel.screenshot_plain: %.2fx vs direct (median of %d per-round ratios)\n' "$(metric tunnel/direct_plain)" "$rounds"
printf 'tunnel.screenshot_tls: %.2fx vs direct (median of %d per-round ratios)\n' "$(metric tunnel/direct_tls)" "$rounds"
