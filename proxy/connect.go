package proxy

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/internal/mutant"
	"github.com/spiceharness/spiceharness/proxy/tunnel"
	"github.com/spiceharness/spiceharness/static"
)

// Defaults for the zero values of TunnelConfig.
const (
	DefaultTunnelHostTTL      = 60 * time.Second
	DefaultConnectHeadTimeout = 10 * time.Second
	DefaultConnectMaxHead     = 8 << 10
	DefaultConnectMaxPending  = 256
)

// Limits of a CONNECT request head that are not configurable.
const (
	// MaxConnectLine bounds the request line: a signed host, a port and
	// the method and version take under 100 bytes.
	MaxConnectLine = 1 << 10
	// MaxConnectHeaders bounds the number of header lines.
	MaxConnectHeaders = 64
)

// TunnelConfig configures the HTTP CONNECT listener (StartConnect), the
// other family of SPICE proxies: clients reach it with `proxy=` in their
// `.vv` (or SPICE_PROXY) and it relays bytes to qemu's own SPICE port, so
// the SPICE (and TLS) session runs end to end between client and qemu.
// The zero value works.
type TunnelConfig struct {
	// Secret keys the signed hosts (at least 16 bytes). nil: 32 random
	// bytes per Proxy, so the hosts it signed die with it.
	Secret []byte
	// HostTTL is how long a signed host opens tunnels (0: 60 s). Every
	// channel is a CONNECT of its own, so it must cover the time a client
	// takes to open all its channels; a tunnel already open outlives it.
	HostTTL time.Duration
	// Domain, when set, is appended to signed hosts (LABEL.Domain) and
	// required on CONNECT. Clients that check the hypervisor's
	// certificate against the host name (spicy-screenshot, which has no
	// host-subject option) then accept a certificate for *.Domain.
	Domain string
	// HeadTimeout bounds reading a CONNECT request head (0: 10 s).
	HeadTimeout time.Duration
	// MaxHead bounds a request head, line and headers, in bytes (0: 8 KiB).
	MaxHead int
	// MaxPending caps the connections still sending their head (0: 256);
	// more are answered 503 at once and closed.
	MaxPending int
	// Now is the clock host expiry is checked and signed with (nil:
	// time.Now); tests move it.
	Now func() time.Time
}

// tunnelState is the CONNECT listener's live state, guarded by Proxy.mu.
type tunnelState struct {
	signer  *tunnel.Signer
	hints   sync.Map      // static.Key → [8]byte, the signer's hint of each console
	pending chan struct{} // a slot per connection in its head
	busy    chan struct{} // a slot per 503 being answered over the cap
	addr    *net.TCPAddr
	conns   map[net.Conn]struct{} // accepted, still in their head or refusal
	tunnels map[*tunnelConn]struct{}
	// signed is the latest expiry signed per console; revoked is the
	// latest expiry TerminateTunnels revoked (hosts expiring at or
	// before it are refused). SignTunnel keeps new expiries after it.
	signed, revoked map[static.Key]time.Time
	pruneAt         int // len(signed) past which SignTunnel sweeps expired records
}

func (p *Proxy) initTunnel() error {
	t := &p.tun
	if len(p.Tunnel.Secret) > 0 {
		s, err := tunnel.NewSigner(p.Tunnel.Secret)
		if err != nil {
			return fmt.Errorf("proxy: Tunnel.Secret: %w", err)
		}
		t.signer = s
	} else {
		t.signer = tunnel.RandomSigner()
	}
	if d := p.Tunnel.Domain; d != "" {
		bad := strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") || strings.Contains(d, "..") || len(d) > 253-tunnel.HostLen-1
		for _, c := range d {
			bad = bad || !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.')
		}
		if bad {
			return fmt.Errorf("proxy: Tunnel.Domain %q: want a DNS name (labels of letters, digits and '-', joined by '.')", d)
		}
	}
	n := p.Tunnel.MaxPending
	if n <= 0 {
		n = DefaultConnectMaxPending
	}
	t.pending = make(chan struct{}, n)
	t.busy = make(chan struct{}, n)
	t.conns = map[net.Conn]struct{}{}
	t.tunnels = map[*tunnelConn]struct{}{}
	t.signed = map[static.Key]time.Time{}
	t.revoked = map[static.Key]time.Time{}
	t.pruneAt = maxTunnelRecords
	return nil
}

func (p *Proxy) tunnelNow() time.Time {
	if p.Tunnel.Now != nil {
		return p.Tunnel.Now()
	}
	return time.Now()
}

func (p *Proxy) hostTTL() time.Duration {
	if p.Tunnel.HostTTL > 0 {
		return p.Tunnel.HostTTL
	}
	return DefaultTunnelHostTTL
}

// SignTunnel returns the host a tunnel `.vv` carries for console k, whose
// SPICE ports are port and tlsPort (0: none) as the store knows them, and
// when it stops opening tunnels (now + Tunnel.HostTTL). The host is a
// bearer credential until then: never log it.
func (p *Proxy) SignTunnel(k static.Key, port, tlsPort int) (host string, expires time.Time, err error) {
	if p.init(); p.initErr != nil {
		return "", time.Time{}, p.initErr
	}
	now := p.tunnelNow()
	expires = now.Add(p.hostTTL()).Truncate(time.Second)
	p.mu.Lock()
	if r, ok := p.tun.revoked[k]; ok && !expires.After(r) {
		// Expiries have second precision: a host signed in the second
		// of a terminate must outlive what it revoked to be told apart.
		expires = r.Add(time.Second)
	}
	if expires.After(p.tun.signed[k]) {
		p.tun.signed[k] = expires
	}
	if len(p.tun.signed) > p.tun.pruneAt {
		p.pruneTunnelRecordsLocked(now)
		// Amortised: with many live records the next sweep waits until
		// they have doubled, not for the next sign.
		p.tun.pruneAt = max(maxTunnelRecords, 2*len(p.tun.signed))
	}
	p.mu.Unlock()
	host, err = p.tun.signer.Sign(tunnel.Grant{Key: k, Port: port, TLSPort: tlsPort, Expires: expires})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("proxy: sign tunnel host for %s: %w", k, err)
	}
	if p.Tunnel.Domain != "" {
		host += "." + strings.ToLower(p.Tunnel.Domain)
	}
	return host, expires, nil
}

// maxTunnelRecords is how many per-console expiry records SignTunnel
// keeps before it sweeps the expired ones (a console's record lives
// until its last host expires).
const maxTunnelRecords = 4096

func (p *Proxy) pruneTunnelRecordsLocked(now time.Time) {
	for k, e := range p.tun.signed {
		if !now.Before(e) {
			delete(p.tun.signed, k)
			delete(p.tun.revoked, k)
		}
	}
}

// TerminateTunnels ends console k's tunnels: it cuts every open one and
// revokes every host signed for k so far, so that a client holding an
// earlier tunnel .vv cannot reopen them; hosts signed afterwards work. It
// returns how many tunnels it cut. The API's console terminate calls it.
func (p *Proxy) TerminateTunnels(k static.Key) int {
	if p.init(); p.initErr != nil {
		return 0
	}
	p.mu.Lock()
	if e, ok := p.tun.signed[k]; ok && !mutant.On(p, mutant.TerminateKeepsHosts) {
		p.tun.revoked[k] = e
	}
	p.mu.Unlock()
	if mutant.On(p, mutant.TerminateKeepsTunnels) {
		return 0
	}
	return p.closeTunnels("terminated", func(t *tunnelConn) bool { return t.key == k })
}

// StartConnect listens on addr for HTTP CONNECT requests and serves them
// in the background until Shutdown or Close.
func (p *Proxy) StartConnect(addr string) error {
	if p.init(); p.initErr != nil {
		return p.initErr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("proxy: CONNECT listener on %s: %w", addr, err)
	}
	if err := p.trackConnect(ln); err != nil {
		return err
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.connectAcceptLoop(ln) }()
	return nil
}

// ServeConnect serves HTTP CONNECT requests on ln until it is closed. It
// returns nil after Shutdown or Close.
func (p *Proxy) ServeConnect(ln net.Listener) error {
	if p.init(); p.initErr != nil {
		return p.initErr
	}
	if err := p.trackConnect(ln); err != nil {
		return err
	}
	p.wg.Add(1)
	defer p.wg.Done()
	p.connectAcceptLoop(ln)
	return nil
}

func (p *Proxy) trackConnect(ln net.Listener) error {
	return p.trackListener(ln, func(a *net.TCPAddr) { p.tun.addr = a })
}

// ConnectAddr is the CONNECT listener's address (nil before StartConnect).
func (p *Proxy) ConnectAddr() *net.TCPAddr { p.mu.Lock(); defer p.mu.Unlock(); return p.tun.addr }

// connectAcceptLoop accepts until ln is closed. A connection over the
// pending cap is answered 503 here, without a goroutine.
func (p *Proxy) connectAcceptLoop(ln net.Listener) {
	var backoff time.Duration
	for {
		c, ok := p.accept(ln, &backoff)
		if !ok {
			return
		}
		if c == nil {
			continue
		}
		select {
		case p.tun.pending <- struct{}{}:
		default:
			p.refuseBusy(c)
			continue
		}
		p.mu.Lock()
		if p.closing {
			p.mu.Unlock()
			<-p.tun.pending
			c.Close()
			return
		}
		p.tun.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.handleConnect(c)
	}
}

// refuseBusy answers 503 to a connection over the pending cap: with a
// lingering close on a goroutine while fewer than MaxPending such
// answers are in flight, else at once (the client may then see a reset
// instead of the 503).
func (p *Proxy) refuseBusy(c net.Conn) {
	p.metrics.connectRequests.WithLabelValues(resultBusy).Inc()
	p.Logger.Warn("CONNECT refused: too many requests in progress", "remote", c.RemoteAddr().String(), "max_pending", cap(p.tun.pending))
	answer := httpError(statusFor[resultBusy], "too many CONNECT requests in progress; retry later")
	select {
	case p.tun.busy <- struct{}{}:
	default:
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		c.Write(answer)
		c.Close()
		return
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		<-p.tun.busy
		c.Close()
		return
	}
	p.tun.conns[c] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer func() { <-p.tun.busy }()
		answerAndClose(c, answer)
		p.mu.Lock()
		delete(p.tun.conns, c)
		p.mu.Unlock()
	}()
}

// activeTunnels counts relaying tunnels.
func (p *Proxy) activeTunnels() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tun.tunnels)
}

// closeTunnels cuts the relaying tunnels that match (nil: all) and
// returns how many.
func (p *Proxy) closeTunnels(reason string, match func(*tunnelConn) bool) int {
	p.mu.Lock()
	var ts []*tunnelConn
	for t := range p.tun.tunnels {
		if match == nil || match(t) {
			ts = append(ts, t)
		}
	}
	p.mu.Unlock()
	for _, t := range ts {
		t.close(reason)
	}
	return len(ts)
}

// closeConnectConnsLocked cuts the connections still in their head.
func (p *Proxy) closeConnectConnsLocked() {
	for c := range p.tun.conns {
		c.Close()
	}
}
