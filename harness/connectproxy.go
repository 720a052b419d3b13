package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/internal/tail"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

// ConnectProxyConfig describes an HTTP CONNECT proxy under test: the
// other family of SPICE proxies (oVirt's squid, Proxmox's spiceproxy),
// which relays bytes to qemu's own SPICE port instead of terminating the
// SPICE link. Give URL, or set Squid.
type ConnectProxyConfig struct {
	// URL is the proxy as clients reach it ("http://HOST:PORT"). It must
	// let CONNECT through to the lane's consoles (their hypervisor_ip and
	// the SPICE port their `.vv` names: the TLS port when there is one);
	// the harness does not configure it.
	URL string
	// Squid starts Debian's squid for each lane instead (StartSquid),
	// with a config that allows CONNECT only to the lane's consoles: their
	// address and the ports their `.vv` files name.
	Squid bool
	// SquidBinary is the squid program ("": squid from PATH, else
	// /usr/sbin/squid).
	SquidBinary string
}

// ConnectProxy is a target for an HTTP CONNECT proxy. There is no API to
// ask: the harness writes each console's `.vv` itself, as oVirt's engine
// does for its squid: proxy= the proxy, host the console's address, its
// SPICE port (the TLS port when it has one, with the source's CA and the
// console's host-subject), and a fresh qemu ticket that opens new links
// for the lane's TunnelTicketTTL (Env.TunnelTicket: set_password, then
// expire_password). ProxyVV and TunnelVV both return that `.vv`, so
// every scenario that only needs what a SPICE client sees runs through
// the proxy.
//
// It offers the tunnel-vv and tunnel-ticket-ttl capabilities. A CONNECT
// proxy never sees SPICE on a TLS port and knows nothing of tokens or
// sessions: scenarios about a terminating proxy (terminates-spice) are
// skipped, and so are those about signed hosts (signed-hosts; squid
// checks destinations only).
func ConnectProxy(cfg ConnectProxyConfig) NewTarget {
	return func(s Settings) (Target, error) {
		switch {
		case cfg.URL != "" && cfg.Squid:
			return nil, fmt.Errorf("the CONNECT proxy: give a URL (--connect-proxy, %s) or start squid (--squid, %s=1), not both", EnvConnectProxy, EnvSquid)
		case cfg.URL == "" && !cfg.Squid:
			return nil, fmt.Errorf("the CONNECT proxy: no URL (set --connect-proxy or %s, or --squid to start squid per lane)", EnvConnectProxy)
		case cfg.URL != "":
			if _, _, err := spice.ParseProxyURL(cfg.URL); err != nil {
				return nil, fmt.Errorf("%w (set --connect-proxy or %s to http://HOST:PORT)", err, EnvConnectProxy)
			}
		}
		return &connectProxy{cfg: cfg, settings: s, url: cfg.URL, died: make(chan struct{})}, nil
	}
}

type connectProxy struct {
	cfg      ConnectProxyConfig
	settings Settings
	env      *Env

	mu      sync.Mutex
	url     string
	squid   *Squid
	grant   squidGrant
	closing bool
	wg      sync.WaitGroup

	died     chan struct{}
	diedErr  error
	diedOnce sync.Once
}

func (c *connectProxy) Name() string {
	if c.cfg.Squid {
		return "connect-proxy squid (started per lane)"
	}
	u, _, _ := spice.ParseProxyURL(c.cfg.URL)
	return "connect-proxy http://" + u
}

// TunnelTicketTTL: the harness sets the tickets (tunnel-ticket-ttl).
func (c *connectProxy) TunnelTicketTTL() time.Duration { return c.settings.TunnelTicketTTL }

func (c *connectProxy) Start(ctx context.Context, env *Env) error {
	c.env = env
	if c.cfg.Squid {
		return c.Load(ctx, env.Sources())
	}
	addr, _, _ := spice.ParseProxyURL(c.url)
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("the CONNECT proxy %s does not answer (check --connect-proxy or %s): %w", c.Name(), EnvConnectProxy, err)
	}
	conn.Close()
	return nil
}

// squidGrant is what a lane's squid lets through.
type squidGrant struct {
	dest  string
	ports []int
}

// grantOf is the destination and ports the `.vv` files of srcs name.
func grantOf(srcs []static.Source) (squidGrant, error) {
	var g squidGrant
	ip := ""
	for _, s := range srcs {
		for _, con := range s.Consoles {
			if ip != "" && con.HypervisorIP != ip {
				return g, fmt.Errorf("harness: the lane's consoles are on %s and %s: the squid it starts serves one address", ip, con.HypervisorIP)
			}
			ip = con.HypervisorIP
			g.ports = append(g.ports, tunnelPort(con))
		}
	}
	if ip == "" {
		return g, errors.New("harness: no console to let CONNECT through to")
	}
	bits := "/32"
	if net.ParseIP(ip).To4() == nil {
		bits = "/128"
	}
	g.dest = ip + bits
	sort.Ints(g.ports)
	return g, nil
}

// tunnelPort is the port a tunnel `.vv` of con names: its TLS port when
// it has one (the whole session is then encrypted end to end with qemu),
// else its plain port.
func tunnelPort(con static.Console) int {
	if con.SecurePort != 0 {
		return con.SecurePort
	}
	return con.InsecurePort
}

// Load (re)starts the lane's squid when the consoles' ports changed;
// against a proxy the harness did not start there is nothing to load.
func (c *connectProxy) Load(ctx context.Context, srcs []static.Source) error {
	if !c.cfg.Squid {
		return nil
	}
	g, err := grantOf(srcs)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.squid != nil && g.dest == c.grant.dest && slices.Equal(g.ports, c.grant.ports) {
		return nil
	}
	if c.closing {
		return errors.New("harness: the CONNECT proxy target is closed")
	}
	if old := c.squid; old != nil {
		c.squid = nil // its watcher sees it go on purpose
		old.Close()
	}
	sq, err := StartSquid(ctx, SquidOptions{Ports: g.ports, Dest: g.dest, Binary: c.cfg.SquidBinary})
	if err != nil {
		return err
	}
	c.squid, c.grant, c.url = sq, g, sq.URL
	c.settings.Logger.Info("squid listening", "url", sq.URL, "dest", g.dest, "ports", fmt.Sprint(g.ports))
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.watch(sq) }()
	return nil
}

// watch reports squid's death unless it was stopped on purpose.
func (c *connectProxy) watch(sq *Squid) {
	<-sq.Exited()
	c.mu.Lock()
	onPurpose := c.closing || c.squid != sq
	c.mu.Unlock()
	if onPurpose {
		return
	}
	c.diedOnce.Do(func() {
		c.diedErr = fmt.Errorf("the proxy under test (squid) exited (%v); cache.log:\n%s", sq.ProcessState(), tail.Lines(sq.CacheLog(), 10))
		close(c.died)
	})
}

func (c *connectProxy) Died() <-chan struct{} { return c.died }
func (c *connectProxy) Err() error            { return c.diedErr }

func (c *connectProxy) proxyURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.url
}

// ProxyVV is the tunnel `.vv`: the proxy under test is the CONNECT proxy.
func (c *connectProxy) ProxyVV(ctx context.Context, k static.Key) (*VVResponse, error) {
	return c.TunnelVV(ctx, k)
}

// TunnelVV writes the `.vv` oVirt's engine would for its proxy: proxy=,
// the console's address and tunnel port, CA and host-subject, and a
// fresh qemu ticket (capability tunnel-vv).
func (c *connectProxy) TunnelVV(ctx context.Context, k static.Key) (*VVResponse, error) {
	var con static.Console
	var ca string
	found := false
	for _, s := range c.env.Sources() {
		for _, x := range s.Consoles {
			if s.Name == k.Source && x.UUID == k.UUID {
				con, ca, found = x, s.CACert, true
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: %s", ErrUnknownConsole, k)
	}
	ticket, _, err := c.env.TunnelTicket(ctx, k)
	if err != nil {
		return nil, err
	}
	f := &vv.File{Type: "spice", Host: con.HypervisorIP, Password: ticket, Title: con.Name + " via CONNECT proxy",
		DeleteThisFile: true, Proxy: c.proxyURL()}
	if con.SecurePort != 0 {
		f.TLSPort, f.CA, f.HostSubject = con.SecurePort, ca, con.HostSubject
	} else {
		f.Port = con.InsecurePort
	}
	raw, err := vv.Render(f)
	if err != nil {
		return nil, fmt.Errorf("harness: the tunnel .vv of %s: %w", k, err)
	}
	return &VVResponse{File: f, Raw: raw}, nil
}

// FailureLog is the tail of squid's access and cache logs (CONNECT
// targets and statuses; no tickets pass through them).
func (c *connectProxy) FailureLog() string {
	c.mu.Lock()
	sq := c.squid
	c.mu.Unlock()
	if sq == nil {
		return ""
	}
	access, _ := sq.AccessLog()
	var b strings.Builder
	fmt.Fprintf(&b, "--- squid access.log tail:\n%s\n", tail.Lines(access, 20))
	fmt.Fprintf(&b, "--- squid cache.log tail:\n%s", tail.Lines(sq.CacheLog(), 10))
	return b.String()
}

// Close stops the lane's squid, if it started one.
func (c *connectProxy) Close() error {
	c.mu.Lock()
	c.closing = true
	sq := c.squid
	c.squid = nil
	c.mu.Unlock()
	err := sq.Close()
	c.wg.Wait()
	return err
}
