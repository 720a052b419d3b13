#!/usr/bin/env bash
# Extra hypervisor hosts on this machine, for trying `harness run/up
# --hosts` by hand: each host is a network namespace joined to this one by
# a veth pair (addresses from 198.18.0.0/15 only), with a private mount
# namespace and its own virtlogd and libvirtd listening on its address
# (qemu+tcp, auth none: reachable from this machine only). The same code
# makes the hosts of `go test ./scenarios -run TestRemoteHosts`
# (internal/testhosts).
#
#   scripts/testhosts.sh up [-hosts 2] [-slots 4] [-tls=true] [-libvirt-tls] [-o FILE]
#       makes the hosts, writes their hosts file (default
#       /tmp/spice-harness-testhosts.yaml) and leaves them running;
#   scripts/testhosts.sh down
#       removes them: every process in their namespaces (libvirtd,
#       virtlogd, qemu), the veths, the namespaces and their directories;
#   scripts/testhosts.sh sweep
#       removes only what killed test runs left behind.
#
# Then, e.g.:  harness up --hosts /tmp/spice-harness-testhosts.yaml
# Needs root, iproute2, util-linux and libvirt (make deps).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "testhosts: network namespaces need root; run: sudo $0 $*" >&2
  exit 1
fi
case "${1:-}" in
  up|down|sweep) ;;
  *) echo "usage: $0 up [-hosts N] [-slots N] [-tls=false] [-libvirt-tls] [-o FILE] | down | sweep" >&2; exit 2 ;;
esac
exec go run ./internal/testhosts/testhostsctl "$@"
