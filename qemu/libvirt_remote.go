package qemu

import (
	"path"
	"regexp"
	"strings"
)

// DefaultPoolDir is where, on a remote host, the harness keeps its
// libvirt storage pool (guest images and per-VM overlays) unless
// RemoteHost names another directory.
const DefaultPoolDir = "/var/lib/libvirt/spice-harness"

// PoolName is the name of the libvirt storage pool the harness defines
// (as a transient dir pool) on each remote host.
const PoolName = "spice-harness"

// remoteHost is what RemoteHost and HostTLS configure.
type remoteHost struct {
	name    string // "" when only HostTLS was given
	poolDir string
	remote  bool   // RemoteHost was given
	tls     bool   // HostTLS was given
	subject string // the host certificate's subject (host-subject form)
}

var hostNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// RemoteHost runs the libvirt domain (Libvirt is required) as a domain on
// another machine must run: nothing of it lives on this machine's
// filesystem.
//
//   - The disk (the built-in guest, or Disk) is uploaded into a storage
//     pool the harness defines on that host (a transient dir pool named
//     PoolName at poolDir, "" for DefaultPoolDir) with libvirt's
//     storage volume upload, once per content: the volume is named
//     after the image's SHA-256, so later VMs on that host reuse it. Each
//     VM boots a qcow2 overlay volume of its own backed by it (deleted by
//     Close), so the cached image is never written.
//   - The serial port is a pty on that host; its output comes back over
//     the libvirt connection (a console stream) into the serial log in the
//     VM's local state dir. The domain starts paused and runs only once
//     the console is attached, so no output is lost.
//   - name (1–63 of [A-Za-z0-9._-]) is the host's identity: it is in
//     String() and becomes the Endpoint's Host (sources.yaml hypervisor).
//     The SPICE address (SPICEAddr) must be an address of that host that
//     clients and the proxy can reach.
//   - The qemu binary is the host's default: Binary and HARNESS_QEMU name
//     files on this machine and are not used.
func RemoteHost(name, poolDir string) Option {
	return func(c *config) error {
		if !hostNameRE.MatchString(name) {
			return configErr("RemoteHost", name, "want a host name of 1-63 characters of [A-Za-z0-9._-]")
		}
		if poolDir == "" {
			poolDir = DefaultPoolDir
		}
		if !path.IsAbs(poolDir) || path.Clean(poolDir) != poolDir || strings.ContainsAny(poolDir, "'\"<>&") {
			return configErr("RemoteHost", poolDir, "want a clean absolute directory on the host for the image pool")
		}
		if c.host == nil {
			c.host = &remoteHost{}
		}
		c.host.name, c.host.poolDir, c.host.remote = name, poolDir, true
		return nil
	}
}

// HostTLS asks for SPICE over TLS on a libvirt domain whose libvirtd
// serves it with the host's own certificate (spice_tls = 1 and
// spice_tls_x509_cert_dir in that host's qemu.conf): the domain gets a
// TLS port as well, and hostSubject, the subject of that certificate in
// spice-gtk's host-subject form ("C=XX,O=Example,CN=hv1"), becomes the
// Endpoint's HostSubject. Start fails, naming the host, when the domain
// comes up without a TLS port. It needs Libvirt; TLS (a harness CA) is
// for the direct backend.
func HostTLS(hostSubject string) Option {
	return func(c *config) error {
		if strings.TrimSpace(hostSubject) == "" || !strings.Contains(hostSubject, "=") {
			return configErr("HostTLS", hostSubject, "want the host certificate's subject, such as O=Example,CN=hv1")
		}
		if c.host == nil {
			c.host = &remoteHost{}
		}
		c.host.tls, c.host.subject = true, hostSubject
		return nil
	}
}

// isRemote reports whether RemoteHost was given.
func (c *config) isRemote() bool { return c.host != nil && c.host.remote }

// checkHost reports RemoteHost or HostTLS without Libvirt.
func (c *config) checkHost() error {
	if c.host == nil || c.libvirtURI != "" {
		return nil
	}
	if c.host.remote {
		return configErr("RemoteHost", c.host.name, "needs Libvirt(uri): a remote host is reached through its libvirtd")
	}
	return configErr("HostTLS", c.host.subject, "needs Libvirt(uri): the host's libvirtd serves the TLS port")
}
