package testhosts

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/internal/tail"
)

// Prefixes of everything a rig creates: network namespaces
// (PREFIX-ID-K), root-side veth interfaces (PREFIXIDxK) and directories
// (TMPDIR/PREFIX-ID-K).
const (
	// TestPrefix is the prefix of the rigs tests make; ID is the owner's
	// pid, and a rig whose owner is gone is swept by the next one.
	TestPrefix = "shrig"
	// ManualPrefix is the prefix of the rig scripts/testhosts.sh makes
	// for a person (Options.Detached); only `down` removes it.
	ManualPrefix = "shman"
)

// MaxHosts is the most hosts one rig makes (interface names stay within
// the kernel's 15 characters).
const MaxHosts = 16

// Options configure Up.
type Options struct {
	// Hosts is how many hosts to make (1–MaxHosts; 0 means 2).
	Hosts int
	// Slots is the slot count each host gets in the hosts file (0: 4).
	Slots int
	// TLS gives each host SPICE TLS (spice_tls = 1, a certificate from
	// the rig's CA) and the spice-tls label.
	TLS bool
	// LibvirtTLS makes each libvirtd listen on libvirt's TLS transport
	// too (port 16514, certificates from the rig's CA, client
	// certificate required), and the hosts' URIs
	// qemu+tls://ADDR/system?pkipath=DIR, DIR holding the client's
	// certificate, key and the CA.
	LibvirtTLS bool
	// Detached makes a rig that outlives this process (for a person:
	// scripts/testhosts.sh up): its daemons start in sessions of their
	// own without a parent-death signal, its names use ManualPrefix, and
	// only Sweep(ManualPrefix, true) removes it.
	Detached bool
	// Logf, when set, receives progress lines.
	Logf func(format string, args ...any)
}

// Host is one extra hypervisor host.
type Host struct {
	// Name is the host's name in the hosts file ("rig0", "rig1", …),
	// also one of its labels, so a lane can be pinned to it.
	Name string
	// Netns is the network namespace.
	Netns string
	// Veth is the root side of the veth pair.
	Veth string
	// Addr is the host's address (inside its namespace); Peer the root
	// side's.
	Addr, Peer netip.Addr
	// URI reaches its libvirtd: qemu+tcp://ADDR/system.
	URI string
	// Dir holds its private libvirt directories, config and logs.
	Dir string
	// HostSubject is the subject of its SPICE TLS certificate in
	// host-subject form (TLS only).
	HostSubject string
	// Labels are its capability labels.
	Labels []string
	// Slots is its slot count.
	Slots int

	daemon *daemon
}

// LogTail is the tail of the host's libvirtd and virtlogd output.
func (h *Host) LogTail(n int) string { return tail.File(filepath.Join(h.Dir, "daemons.log"), n) }

// Rig is a set of hosts made by Up.
type Rig struct {
	Hosts []*Host
	// CAFile is the PEM file of the CA that signed the hosts' SPICE
	// certificates (TLS only).
	CAFile string
	// CA is that CA (TLS only).
	CA *pki.CA

	opts      Options
	prefix    string
	id        string
	lock      *os.File
	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

// Up makes the hosts. On error it has removed whatever it made. Close
// removes them.
func Up(ctx context.Context, o Options) (*Rig, error) {
	if o.Hosts == 0 {
		o.Hosts = 2
	}
	if o.Slots == 0 {
		o.Slots = 4
	}
	if o.Hosts < 1 || o.Hosts > MaxHosts {
		return nil, fmt.Errorf("testhosts: %d hosts: want 1-%d", o.Hosts, MaxHosts)
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := Check(); err != nil {
		return nil, err
	}
	r := &Rig{opts: o, prefix: TestPrefix, id: strconv.Itoa(os.Getpid()), closed: make(chan struct{})}
	if o.Detached {
		r.prefix, r.id = ManualPrefix, ""
	}
	start := time.Now()
	err := r.up(ctx)
	if err != nil {
		return nil, errors.Join(err, r.Close())
	}
	o.Logf("testhosts: %d hosts up in %v", len(r.Hosts), time.Since(start).Round(time.Millisecond))
	return r, nil
}

func (r *Rig) up(ctx context.Context) error {
	unlock, err := lockAllocation()
	if err != nil {
		return err
	}
	defer unlock()
	// Leftovers of killed runs first: their addresses become free.
	if removed, err := Sweep(r.prefix, false); err != nil {
		r.opts.Logf("testhosts: sweeping stale hosts: %v", err)
	} else if len(removed) > 0 {
		r.opts.Logf("testhosts: removed stale leftovers: %v", removed)
	}
	if r.opts.Detached {
		if names, _ := listNetns(r.prefix); len(names) > 0 {
			return fmt.Errorf("testhosts: a rig is already up (%v): run scripts/testhosts.sh down first", names)
		}
	}
	blocks, err := freeBlocks(r.opts.Hosts)
	if err != nil {
		return err
	}
	if r.opts.TLS || r.opts.LibvirtTLS {
		if r.CA, err = pki.NewCA("spice-harness test hosts CA"); err != nil {
			return err
		}
	}
	for k := range r.opts.Hosts {
		h := r.newHost(k, blocks[k])
		r.Hosts = append(r.Hosts, h)
		if err := r.makeDir(h); err != nil {
			return err
		}
		if err := makeNetns(h); err != nil {
			return err
		}
	}
	unlock() // the addresses are on interfaces now: others see them
	if r.opts.TLS {
		r.CAFile = filepath.Join(r.Hosts[0].Dir, "spice-ca.pem")
		if err := os.WriteFile(r.CAFile, r.CA.CertPEM, 0o644); err != nil {
			return err
		}
	}
	if r.opts.LibvirtTLS {
		if err := r.writeClientPKI(); err != nil {
			return err
		}
	}
	// The daemons start in parallel: libvirtd's start dominates.
	errs := make([]error, len(r.Hosts))
	var wg sync.WaitGroup
	for i, h := range r.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.startDaemons(ctx, h)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *Rig) newHost(k int, block netip.Addr) *Host {
	name := r.prefix + "-" + strconv.Itoa(k)
	veth := r.prefix + r.id + "x" + strconv.Itoa(k)
	if r.id != "" {
		name = r.prefix + "-" + r.id + "-" + strconv.Itoa(k)
	}
	peer := block.Next()
	addr := peer.Next()
	h := &Host{
		Name:  "rig" + strconv.Itoa(k),
		Netns: name,
		Veth:  veth,
		Peer:  peer,
		Addr:  addr,
		URI:   "qemu+tcp://" + addr.String() + "/system",
		Dir:   filepath.Join(os.TempDir(), name),
		Slots: r.opts.Slots,
	}
	h.Labels = []string{h.Name}
	if kvmUsable() {
		h.Labels = append(h.Labels, "kvm")
	}
	if r.opts.TLS {
		h.Labels = append(h.Labels, "spice-tls")
	}
	return h
}

// makeDir makes the host's directory with the owner record first (the
// sweep trusts nothing without it), its libvirt dirs and configuration.
func (r *Rig) makeDir(h *Host) error {
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		return fmt.Errorf("testhosts: %w", err)
	}
	owner := "detached\n"
	if !r.opts.Detached {
		owner = ownerRecord(os.Getpid())
	}
	if err := os.WriteFile(filepath.Join(h.Dir, "owner"), []byte(owner), 0o644); err != nil {
		return fmt.Errorf("testhosts: %w", err)
	}
	for _, d := range []string{"etc", "lib", "cache", "log"} {
		if err := os.MkdirAll(filepath.Join(h.Dir, d), 0o755); err != nil {
			return fmt.Errorf("testhosts: %w", err)
		}
	}
	seedCapabilities(filepath.Join(h.Dir, "cache"))
	conf := fmt.Sprintf(`# spice-harness test host %s: TCP on its namespace address only, no auth
listen_tls = 0
listen_tcp = 1
listen_addr = "%s"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
`, h.Name, h.Addr)
	if r.opts.LibvirtTLS {
		pkiDir := filepath.Join(h.Dir, "libvirt-pki")
		leaf, err := r.CA.Issue(pkix.Name{Organization: []string{"spice-harness test hosts"}, CommonName: h.Name}, h.Addr.String(), h.Name)
		if err != nil {
			return err
		}
		if err := writeFiles(pkiDir, map[string][]byte{"cacert.pem": r.CA.CertPEM, "servercert.pem": leaf.CertPEM, "serverkey.pem": leaf.KeyPEM}); err != nil {
			return err
		}
		conf += fmt.Sprintf("listen_tls = 1\nauth_tls = \"none\"\nca_file = %q\ncert_file = %q\nkey_file = %q\n",
			filepath.Join(pkiDir, "cacert.pem"), filepath.Join(pkiDir, "servercert.pem"), filepath.Join(pkiDir, "serverkey.pem"))
		conf = strings.Replace(conf, "listen_tls = 0\n", "", 1)
	}
	if err := os.WriteFile(filepath.Join(h.Dir, "etc", "libvirtd.conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("testhosts: %w", err)
	}
	qconf := "# spice-harness test host " + h.Name + "\n"
	if r.opts.TLS {
		certDir := filepath.Join(h.Dir, "spice-tls")
		subject := pkix.Name{Organization: []string{"spice-harness test hosts"}, CommonName: h.Name}
		leaf, err := r.CA.Issue(subject, h.Addr.String(), h.Name)
		if err != nil {
			return err
		}
		if err := r.CA.WriteQemuDir(certDir, leaf); err != nil {
			return err
		}
		// libvirt runs qemu as libvirt-qemu, which must read the key.
		if err := chownToQemuUser(certDir); err != nil {
			return err
		}
		h.HostSubject = pki.HostSubject(leaf.Cert)
		qconf += fmt.Sprintf("spice_tls = 1\nspice_tls_x509_cert_dir = %q\n", certDir)
	}
	if err := os.WriteFile(filepath.Join(h.Dir, "etc", "qemu.conf"), []byte(qconf), 0o644); err != nil {
		return fmt.Errorf("testhosts: %w", err)
	}
	return nil
}

// seedCapabilities copies this machine's libvirt qemu capabilities
// cache into a host's cache dir: the host runs the same qemu and
// libvirtd binaries, so the cache is valid there, and its libvirtd skips
// probing qemu (about 10 s on a loaded CI machine) at its first domain.
// Best effort: without it the probe runs.
func seedCapabilities(cacheDir string) {
	files, _ := filepath.Glob(filepath.Join(capsCache, "*.xml"))
	if len(files) == 0 {
		files, _ = filepath.Glob("/var/cache/libvirt/qemu/capabilities/*.xml")
	}
	if len(files) == 0 {
		return
	}
	dst := filepath.Join(cacheDir, "qemu", "capabilities")
	if os.MkdirAll(dst, 0o755) != nil {
		return
	}
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o644)
		}
	}
}

// capsCache keeps the capabilities a rig's libvirtd probed for the next
// rig: the machine's own cache is not valid for the hosts when its
// libvirtd's qemu user cannot open /dev/kvm (their probe then takes ~4 s).
var capsCache = filepath.Join(os.TempDir(), "spice-harness-testhosts-caps")

// keepCapabilities copies a host's probed capabilities to capsCache.
func keepCapabilities(cacheDir string) {
	files, _ := filepath.Glob(filepath.Join(cacheDir, "qemu", "capabilities", "*.xml"))
	if len(files) == 0 || os.MkdirAll(capsCache, 0o755) != nil {
		return
	}
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			tmp := filepath.Join(capsCache, "."+filepath.Base(f)+".tmp")
			if os.WriteFile(tmp, b, 0o644) == nil {
				os.Rename(tmp, filepath.Join(capsCache, filepath.Base(f)))
			}
		}
	}
}

// writeClientPKI writes the client side of libvirt's TLS transport (the
// CA, a client certificate and key, in the file names libvirt's and
// go-libvirt's clients read) and points every host's URI at it.
func (r *Rig) writeClientPKI() error {
	dir := filepath.Join(r.Hosts[0].Dir, "libvirt-client")
	leaf, err := r.CA.IssueClient(pkix.Name{Organization: []string{"spice-harness test hosts"}, CommonName: "harness"})
	if err != nil {
		return err
	}
	if err := writeFiles(dir, map[string][]byte{"cacert.pem": r.CA.CertPEM, "clientcert.pem": leaf.CertPEM, "clientkey.pem": leaf.KeyPEM}); err != nil {
		return err
	}
	for _, h := range r.Hosts {
		h.URI = "qemu+tls://" + h.Addr.String() + "/system?" + url.Values{"pkipath": {dir}}.Encode()
	}
	return nil
}

// writeFiles writes files (mode 0600) into dir (0700).
func writeFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("testhosts: %w", err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("testhosts: %w", err)
		}
	}
	return nil
}

// chownToQemuUser hands dir and its files to libvirt's qemu user, when
// there is one (else qemu runs as root and reads them anyway).
func chownToQemuUser(dir string) error {
	u, err := user.Lookup("libvirt-qemu")
	if err != nil {
		return nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
}

// KillLibvirtd kills host i's libvirtd with SIGKILL and waits until it is
// gone: the host going away, for fault tests. Its domains' qemu keep
// running (as after a real libvirtd crash) until Close.
func (r *Rig) KillLibvirtd(i int) error {
	h := r.Hosts[i]
	if h.daemon == nil {
		return fmt.Errorf("testhosts: %s has no libvirtd", h.Name)
	}
	return h.daemon.killLibvirtd()
}

// Close removes every host (processes, interfaces, namespaces,
// directories). Idempotent.
func (r *Rig) Close() error {
	if r == nil {
		return nil
	}
	r.closeOnce.Do(func() {
		start := time.Now()
		var errs []error
		for i, h := range r.Hosts {
			if i == 0 {
				keepCapabilities(filepath.Join(h.Dir, "cache"))
			}
			errs = append(errs, removeHost(h.Netns, h.Veth, h.Dir, h.daemon))
		}
		r.closeErr = errors.Join(errs...)
		close(r.closed)
		r.opts.Logf("testhosts: %d hosts removed in %v", len(r.Hosts), time.Since(start).Round(time.Millisecond))
	})
	return r.closeErr
}

func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// ownerRecord identifies a live process across pid reuse: "PID
// STARTTIME" (clock ticks after boot, /proc/PID/stat field 22).
func ownerRecord(pid int) string {
	return strconv.Itoa(pid) + " " + startTime(pid) + "\n"
}

// alive reports whether the owner recorded in rec still runs.
func alive(rec string) bool {
	var pid int
	var st string
	if _, err := fmt.Sscan(rec, &pid, &st); err != nil || pid <= 0 {
		return false
	}
	return startTime(pid) == st
}
