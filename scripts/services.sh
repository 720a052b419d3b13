#!/usr/bin/env bash
# Starts what the integration tests need that is not a child of the tests:
# virtlogd and libvirtd, with a TCP listener on 127.0.0.1:16509 (auth none)
# standing in for a remote hypervisor host. Idempotent; needs root.
# No systemd is assumed (CI machines and containers have none).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "services: libvirtd needs root; run: sudo $0" >&2
  exit 1
fi
command -v libvirtd >/dev/null || { echo "services: libvirtd missing; run: make deps" >&2; exit 1; }

mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/qemu /var/cache/libvirt
getent passwd libvirt-qemu >/dev/null || useradd -r -M -s /usr/sbin/nologin libvirt-qemu

conf=/etc/libvirt/libvirtd.conf
want='listen_tls = 0
listen_tcp = 1
tcp_port = "16509"
listen_addr = "127.0.0.1"
auth_tcp = "none"
auth_unix_rw = "none"'
if ! grep -q '^# spice-harness' "$conf" 2>/dev/null; then
  printf '\n# spice-harness: TCP on loopback only, no auth (test lane)\n%s\n' "$want" >>"$conf"
fi

# libvirt runs qemu as libvirt-qemu. Without udev, /dev/kvm stays root 0600,
# so libvirt 9 re-probes qemu's capabilities on every domain lookup and one
# domain takes ~70 s to start. 0666 is what Debian's udev rule sets.
if [ -c /dev/kvm ]; then chmod 0666 /dev/kvm; fi

pgrep -x virtlogd >/dev/null || virtlogd -d
if ! pgrep -x libvirtd >/dev/null; then
  # --listen makes libvirtd honour listen_tcp without systemd socket units.
  libvirtd -d --listen
fi

for _ in $(seq 1 100); do
  if virsh -c qemu:///system version >/dev/null 2>&1 &&
     virsh -c qemu+tcp://127.0.0.1/system version >/dev/null 2>&1; then
    echo "services: libvirtd ready (unix and tcp://127.0.0.1:16509)"
    exit 0
  fi
  sleep 0.1
done
echo "services: libvirtd did not become ready; see /var/log/libvirt" >&2
virsh -c qemu:///system version || true
exit 1
