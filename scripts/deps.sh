#!/usr/bin/env bash
# Installs the Debian packages spice-harness needs, only when some are missing.
# Idempotent: a second run changes nothing and does not touch the network.
set -euo pipefail

pkgs=(
  qemu-system-x86      # qemu-system-x86_64 with spice-server
  spice-client-gtk     # spicy-screenshot (spice-gtk): the real-client oracle
  virt-viewer          # remote-viewer, opens .vv files
  xvfb xauth xdotool imagemagick   # remote-viewer under a virtual X server
  nasm                 # rebuilds the test guest boot sector
  xz-utils             # make guest: uncompresses the Linux guest's kernel (xz with the x86 BCJ filter)
  python3-yaml         # Kerbside's YAML reader (PyYAML), an oracle in the static tests
  openssl
  gcc                  # builds the GLib oracle that cross-checks .vv escaping
  squid                # a real HTTP CONNECT proxy (oVirt's kind) for the tunnel tests
  websockify           # a real WebSocket gateway (noVNC's, in front of qemu) for the browser tier
  spice-html5          # the browser SPICE client: its pages, served by websockify --web and by the browser oracle
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients   # libvirt backend
  chromium             # headless Chromium running spice-html5: the browser oracle (harness.StartBrowser)
  genisoimage          # the channels tier: the ISO remote-viewer shares as a USB CD (usbredir-cd)
  libnss3-tools        # the channels tier: certutil makes the software smartcard's NSS db (smartcard-atr)
  xclip                # the channels tier: a real X client owning the client's clipboard (agent-clipboard-x11)
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
  exit 0
fi

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages: ${missing[*]}" >&2
  echo "deps: run as root:  sudo sh -c '$cmd'" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
