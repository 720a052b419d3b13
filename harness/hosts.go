package harness

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/qemu"
)

// Hosts are the hypervisor hosts lanes are placed on, with the slots
// each has free. One value is shared by every lane of a run (WithHosts,
// or HARNESS_HOSTS); it is safe for concurrent use.
//
// Placement is deterministic: a lane goes to the host, among those that
// carry every label it requires (RequireLabels, and spice-tls for
// TLSBackends), are up and have a free slot for each of its VMs, with the
// most free slots; ties go to the host listed first. A lane that finds
// no free host waits, bounded by its boot timeout, and the error then
// says which labels it waited for and how busy each candidate was. A
// host whose libvirtd went away is down for the rest of the run: its
// lanes fail, naming it, and new lanes go elsewhere.
type Hosts struct {
	file  string // where they were read from ("" when built in Go)
	hosts []*hostState

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when slots free up or a host goes down
}

type hostState struct {
	*Host
	used int
	down error // why the host is down; nil while it is up
}

// NewHosts makes a placement pool of hosts (as ReadHostsFile returns
// them).
func NewHosts(hosts []*Host) (*Hosts, error) {
	if len(hosts) == 0 {
		return nil, errors.New("harness: NewHosts: no hosts")
	}
	hs := &Hosts{changed: make(chan struct{})}
	seen := map[string]bool{}
	for _, h := range hosts {
		if h == nil || h.Name == "" || h.URI == "" || h.Slots < 1 || h.Address == "" {
			return nil, fmt.Errorf("harness: NewHosts: host %+v: want a name, a uri, an address and at least one slot", h)
		}
		if seen[h.Name] {
			return nil, fmt.Errorf("harness: NewHosts: two hosts are named %q", h.Name)
		}
		seen[h.Name] = true
		hs.hosts = append(hs.hosts, &hostState{Host: h})
	}
	return hs, nil
}

// LoadHosts reads a hosts file (see ReadHostsFile) into a placement
// pool.
func LoadHosts(path string) (*Hosts, error) {
	hosts, err := ReadHostsFile(path)
	if err != nil {
		return nil, err
	}
	hs, err := NewHosts(hosts)
	if err != nil {
		return nil, err
	}
	hs.file = path
	return hs, nil
}

// sharedHosts are the pools loaded from HARNESS_HOSTS, one per file, so
// every lane of a process shares their slots.
var sharedHosts = struct {
	sync.Mutex
	m map[string]*Hosts
}{m: map[string]*Hosts{}}

func hostsFromEnv(path string) (*Hosts, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	sharedHosts.Lock()
	defer sharedHosts.Unlock()
	if hs := sharedHosts.m[abs]; hs != nil {
		return hs, nil
	}
	hs, err := LoadHosts(path)
	if err != nil {
		return nil, err
	}
	sharedHosts.m[abs] = hs
	return hs, nil
}

// File is the hosts file they were read from ("" when built in Go).
func (hs *Hosts) File() string { return hs.file }

// List returns the hosts, in file order.
func (hs *Hosts) List() []*Host {
	out := make([]*Host, len(hs.hosts))
	for i, h := range hs.hosts {
		out[i] = h.Host
	}
	return out
}

// Down returns why host name is down, or nil while it is up (or
// unknown).
func (hs *Hosts) Down(name string) error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, h := range hs.hosts {
		if h.Name == name {
			return h.down
		}
	}
	return nil
}

// markDown records that host h went away; its waiting lanes are told.
func (hs *Hosts) markDown(h *Host, why error) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, s := range hs.hosts {
		if s.Host == h && s.down == nil {
			s.down = why
			hs.broadcast()
		}
	}
}

func (hs *Hosts) broadcast() {
	close(hs.changed)
	hs.changed = make(chan struct{})
}

// placement is what a lane asks of a host.
type placement struct {
	labels []string
	host   string // pinned to this host ("": any)
	vms    int
}

func (p placement) String() string {
	s := fmt.Sprintf("%d free slot", p.vms)
	if p.vms != 1 {
		s += "s"
	}
	if len(p.labels) > 0 {
		s += " on a host with labels [" + strings.Join(p.labels, ", ") + "]"
	} else {
		s += " on any host"
	}
	if p.host != "" {
		s += " (pinned to " + p.host + ")"
	}
	return s
}

// lease is a lane's hold on slots of one host.
type lease struct {
	hs   *Hosts
	host *Host
	n    int
	once sync.Once
}

// release gives the slots back (idempotent).
func (l *lease) release() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		l.hs.mu.Lock()
		defer l.hs.mu.Unlock()
		for _, s := range l.hs.hosts {
			if s.Host == l.host {
				s.used -= l.n
			}
		}
		l.hs.broadcast()
	})
}

// unplaceable says why no host in hs could ever take p ("" when one
// could).
func (hs *Hosts) unplaceable(p placement) string {
	var matching []*hostState
	for _, h := range hs.hosts {
		if (p.host == "" || h.Name == p.host) && h.Has(p.labels...) {
			matching = append(matching, h)
		}
	}
	if len(matching) == 0 {
		what := "labels [" + strings.Join(p.labels, ", ") + "]"
		if p.host != "" {
			what = "the name " + p.host
			if len(p.labels) > 0 {
				what += " and labels [" + strings.Join(p.labels, ", ") + "]"
			}
		}
		return fmt.Sprintf("needs a host with %s; %s has none (%s)", what, hs.name(), hs.summary())
	}
	most := 0
	for _, h := range matching {
		most = max(most, h.Slots)
	}
	if p.vms > most {
		return fmt.Sprintf("needs %d slots on one host; the hosts with its labels have at most %d (%s)", p.vms, most, hs.summary())
	}
	return ""
}

func (hs *Hosts) name() string {
	if hs.file != "" {
		return hs.file
	}
	return "the hosts"
}

// summary lists the hosts with their labels: "rig0 [kvm], rig1 [kvm spice-tls]".
func (hs *Hosts) summary() string {
	var parts []string
	for _, h := range hs.hosts {
		parts = append(parts, h.Name+" ["+strings.Join(h.Labels, " ")+"]")
	}
	return strings.Join(parts, ", ")
}

// acquire takes p.vms slots on the best host for p, waiting for slots
// until ctx ends.
func (hs *Hosts) acquire(ctx context.Context, p placement) (*lease, error) {
	if why := hs.unplaceable(p); why != "" {
		return nil, fmt.Errorf("harness: the lane %s", why)
	}
	start := time.Now()
	for {
		hs.mu.Lock()
		var best *hostState
		var downs []string
		alive := 0
		for _, h := range hs.hosts {
			if (p.host != "" && h.Name != p.host) || !h.Has(p.labels...) || h.Slots < p.vms {
				continue
			}
			if h.down != nil {
				downs = append(downs, h.Name+": "+h.down.Error())
				continue
			}
			alive++
			if h.Slots-h.used >= p.vms && (best == nil || h.Slots-h.used > best.Slots-best.used) {
				best = h
			}
		}
		if best != nil {
			best.used += p.vms
			hs.mu.Unlock()
			return &lease{hs: hs, host: best.Host, n: p.vms}, nil
		}
		if alive == 0 {
			hs.mu.Unlock()
			return nil, fmt.Errorf("harness: the lane needs %s, and every such host is down: %s", p, strings.Join(downs, "; "))
		}
		busy := hs.busyLocked(p)
		changed := hs.changed
		hs.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("harness: waited %v for %s: %w (%s)", time.Since(start).Round(time.Second), p, context.Cause(ctx), busy)
		}
	}
}

// busyLocked says how busy the candidates of p are: "rig0 4/4 busy,
// rig1 down".
func (hs *Hosts) busyLocked(p placement) string {
	var parts []string
	for _, h := range hs.hosts {
		if (p.host != "" && h.Name != p.host) || !h.Has(p.labels...) {
			continue
		}
		if h.down != nil {
			parts = append(parts, h.Name+" down")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d/%d busy", h.Name, h.used, h.Slots))
	}
	return strings.Join(parts, ", ")
}

// HostLostError is why a lane failed when the hypervisor host its VMs
// ran on went away. It matches qemu.ErrHostLost.
type HostLostError struct {
	Host *Host
	Err  error
}

func (e *HostLostError) Error() string {
	return fmt.Sprintf("harness: hypervisor host %s (%s) went away: %v", e.Host.Name, e.Host.URI, e.Err)
}

func (e *HostLostError) Unwrap() error { return e.Err }

// Is matches qemu.ErrHostLost.
func (e *HostLostError) Is(target error) bool { return target == qemu.ErrHostLost }

// placement is what a lane built from c asks of a host.
func (c *config) placement() placement {
	p := placement{labels: slices.Clone(c.hostLabels), host: c.hostPin, vms: c.vms}
	if c.tlsBackends && !slices.Contains(p.labels, LabelSpiceTLS) {
		p.labels = append(p.labels, LabelSpiceTLS)
	}
	return p
}

// onHosts reports whether a lane built from c is placed on hosts.
func (c *config) onHosts() bool { return c.hosts != nil && !c.libvirtSet }

// unplaceable says why a lane built from c cannot run on its hosts (""
// when it can, or when it has no hosts).
func (c *config) unplaceable() string {
	if !c.onHosts() {
		return ""
	}
	if c.tlsBackends && c.settings.TunnelDomain != "" {
		return "needs qemu certificates that name the tunnel domain (ConnectListen with TLSBackends); a hypervisor host serves its own certificate"
	}
	return c.hosts.unplaceable(c.placement())
}

// Placeable reports why a lane built from opts (and the HARNESS_*
// environment) cannot run on its hypervisor hosts, without booting
// anything: no host carries its labels, it needs more slots than any
// has, or it needs what a host cannot give. "" when it can (or has no
// hosts).
func Placeable(opts ...Option) (string, error) {
	c, err := newConfig(opts)
	if err != nil {
		return "", err
	}
	return c.unplaceable(), nil
}

// place takes the lane's slots on a host (waiting, bounded by ctx) and
// sets Host and, for TLSBackends, BackendCA to the host's CA.
func (e *Env) place(ctx context.Context) error {
	c := e.cfg
	if why := c.unplaceable(); why != "" {
		return fmt.Errorf("harness: the lane %s", why)
	}
	p := c.placement()
	e.log.Info("placing the lane on a hypervisor host", "needs", p.String())
	l, err := c.hosts.acquire(ctx, p)
	if err != nil {
		return err
	}
	e.lease, e.Host = l, l.host
	e.log.Info("lane placed", "host", e.Host.Name, "uri", e.Host.URI, "address", e.Host.Address)
	if c.tlsBackends {
		ca, err := caFromPEM(e.Host.CAPEM)
		if err != nil {
			return fmt.Errorf("harness: host %s: tls.ca_cert: %w", e.Host.Name, err)
		}
		e.BackendCA = ca
	}
	return nil
}

// hostOptions put a VM on the lane's host.
func (e *Env) hostOptions() []qemu.Option {
	h := e.Host
	opts := []qemu.Option{qemu.Libvirt(h.URI), qemu.RemoteHost(h.Name, h.PoolDir), qemu.SPICEAddr(h.Address)}
	if e.cfg.tlsBackends {
		opts = append(opts, qemu.HostTLS(h.HostSubject))
	}
	return opts
}

// watchHost fails the lane when its host goes away: the first VM whose
// exit says the connection to the host's libvirtd was lost marks the
// host down (no new lane goes there) and ends Env.Context with a
// *HostLostError. It returns when the lane closes.
func (e *Env) watchHost() {
	lost := make(chan error, len(e.VMs))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, vm := range e.VMs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-vm.Exited():
				if err := vm.Wait(context.Background()); errors.Is(err, qemu.ErrHostLost) {
					lost <- err
				}
			case <-stop:
			}
		}()
	}
	select {
	case err := <-lost:
		e.hostErr = &HostLostError{Host: e.Host, Err: err}
		e.cfg.hosts.markDown(e.Host, err)
		e.log.Error("hypervisor host lost", "host", e.Host.Name, "uri", e.Host.URI, "err", err)
		close(e.hostLost)
	case <-e.closed:
	}
	close(stop)
	wg.Wait()
}

// HostErr is why the lane's hypervisor host went away (a
// *HostLostError), or nil while it is up (and without hosts).
func (e *Env) HostErr() error {
	select {
	case <-e.hostLost:
		return e.hostErr
	default:
		return nil
	}
}

// HostName is the name of the hypervisor host the lane runs on, "" when
// it runs on this machine.
func (e *Env) HostName() string {
	if e == nil || e.Host == nil {
		return ""
	}
	return e.Host.Name
}

// caFromPEM is a CA known by its certificate only (a host's): enough for
// a pool, a .vv's ca= and a sources.yaml ca_cert.
func caFromPEM(data []byte) (*qemu.CA, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM certificate")
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		return &qemu.CA{Cert: cert, CertPEM: data}, nil
	}
}
