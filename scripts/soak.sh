#!/usr/bin/env bash
# make soak: `harness up --vms 4 --allow-plain` under real spicy-screenshot
# sessions, then the same under hostile connections at 50/s, then idle;
# prints what happened and a verdict on growth (cmd/spice-soak). About 5
# minutes; pass flags through, e.g. `make soak SOAKFLAGS='-duration 30m'`.
# Exit status: 0 pass, 1 verdict failed, 2 the soak itself failed.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/harness ./cmd/harness
go build -o bin/spice-soak ./cmd/spice-soak
exec bin/spice-soak -harness bin/harness "$@"
