package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiceharness/spiceharness/internal/mutant"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/store"
)

// Store is what the proxy needs from the console store: token checks,
// the consoles (for caps probes) and the audit log. *store.Store
// implements it.
type Store interface {
	Authorize(token string, main bool, connID uint32) (*store.Lease, error)
	Targets(limit int) []store.Target
	Record(store.Event)
}

// Defaults for the zero values of Proxy's fields.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultBackendTimeout   = 10 * time.Second
	DefaultHalfCloseTimeout = 2 * time.Second
	DefaultDrainTimeout     = 5 * time.Second
	DefaultKeyPoolSize      = 32

	// DefaultMaxHandshakes bounds the connections in their handshake, over
	// both listeners. Each costs an fd, a goroutine and its state: about
	// 11 KiB of heap and stack on the plain listener, 31 KiB for a TLS
	// client that sent its ClientHello and went silent (measured, Go
	// 1.26), so 1024 is some 32 MiB at worst, while a healthy proxy holds
	// a handful: a SPICE session links 2-8 channels, each in milliseconds.
	DefaultMaxHandshakes = 1024
	// DefaultMaxHandshakesPerSource bounds them per client IP address. It
	// must stay above what one address legitimately holds at once: a NAT
	// in front of many users, or the soak (make soak), where about 200
	// hostile connections held to the 10 s deadline share 127.0.0.1 with
	// the real clients.
	DefaultMaxHandshakesPerSource = 256
)

// Proxy is an in-process SPICE proxy. Set its fields, then call Start
// (or Listen and Serve); stop it with Shutdown or Close. Zero values
// work: only Store is required.
type Proxy struct {
	// Store validates tokens and yields the consoles (required).
	Store Store

	// Certificate is the TLS listener's certificate. nil: an ephemeral CA
	// and a server certificate for localhost/127.0.0.1 are generated, and
	// CACertPEM and HostSubject describe them.
	Certificate *tls.Certificate
	// CACertPEM is the CA that signed Certificate, handed to clients in
	// `.vv` files (set it when you set Certificate).
	CACertPEM []byte

	// AllowPlain serves sessions on the plain listener. When false (the
	// default, Kerbside's behaviour) the plain listener answers every
	// link with NEED_SECURED and spice-gtk re-links on the TLS port.
	AllowPlain bool

	// HandshakeTimeout bounds a client's TLS handshake and link stage
	// (0: 10 s). A silent client never delays anyone else.
	HandshakeTimeout time.Duration
	// BackendTimeout bounds dialing and linking qemu (0: 10 s).
	BackendTimeout time.Duration
	// MaxHandshakes caps the connections accepted and not yet relaying
	// (in their TLS handshake, link stage or backend link), over both
	// listeners (0: DefaultMaxHandshakes; negative: no cap). Past it a new
	// connection is closed at once, before any byte is read, counted in
	// spice_proxy_connections_refused_total{reason="handshake_limit"} and
	// logged at Warn at most once per 5 s. Relaying channels do not count
	// and are never affected.
	MaxHandshakes int
	// MaxHandshakesPerSource is the same cap per client IP address (0:
	// DefaultMaxHandshakesPerSource; negative: no cap), counted with
	// reason="source_handshake_limit". One address can then hold only
	// part of MaxHandshakes.
	MaxHandshakesPerSource int
	// IdleTimeout closes a session's channels once none of them carried
	// a message in either direction for that long (0: never). It is
	// measured per session, not per channel: SPICE channels are
	// legitimately silent (inputs while the user watches, cursor, an
	// unused usbredir) and a client does not re-link one it lost.
	IdleTimeout time.Duration
	// HalfCloseTimeout is how long the other direction may finish after
	// one side half-closed (0: 2 s).
	HalfCloseTimeout time.Duration

	// Firewall is what the relay does with disallowed message types and
	// oversized messages (zero: enforce). Rules nil means DefaultRules.
	Firewall FirewallMode
	Rules    Rules

	// KeyPoolSize is how many RSA link keys are kept ready (0: 32).
	KeyPoolSize int

	// Logger receives structured audit events (nil: discarded). Tickets
	// and tokens are never logged.
	Logger *slog.Logger

	// Tunnel configures the HTTP CONNECT listener (StartConnect).
	Tunnel TunnelConfig
	// WebSocket configures the WebSocket listener (StartWebSocket).
	WebSocket WebSocketConfig

	initOnce sync.Once
	initErr  error
	keys     *spice.KeyPool
	metrics  *metrics
	tlsConf  *tls.Config
	// served is what the TLS listener presents now (SetCertificate
	// swaps it; tlsConf reads it per handshake).
	served atomic.Pointer[servedCert]
	caps   capsCache
	tun    tunnelState
	ws     wsState
	// refusalLog rate-limits the log lines of refused connections.
	refusalLog rateLog

	// trace is SetTrace's function; traceConns numbers traced connections.
	trace      atomic.Pointer[func(TraceEvent)]
	traceConns atomic.Uint64

	// stop is cancelled when the proxy starts shutting down: backend
	// links of handshakes in progress are cut (their clients are gone).
	stop       context.Context
	stopCancel context.CancelFunc

	mu        sync.Mutex
	relayMu   sync.Mutex // the SharedRelayLock mutant's one lock for every relay
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]netip.Addr // accepted, not yet relaying → client address
	perSource map[netip.Addr]int      // conns by client address
	channels  map[*channel]struct{}   // relaying
	// idleSessions is each relaying session's last activity (IdleTimeout)
	idleSessions map[string]*sessionActivity
	closing      bool
	wg           sync.WaitGroup
	plainAddr    *net.TCPAddr
	tlsAddr      *net.TCPAddr
}

func (p *Proxy) init() {
	p.initOnce.Do(func() {
		if p.Store == nil {
			p.initErr = errors.New("proxy: Store is required")
			return
		}
		if p.Logger == nil {
			p.Logger = slog.New(slog.DiscardHandler)
		}
		if p.Rules == nil {
			p.Rules = DefaultRules()
		}
		n := p.KeyPoolSize
		if n <= 0 {
			n = DefaultKeyPoolSize
		}
		p.keys = spice.NewKeyPool(n)
		p.metrics = newMetrics(p)
		p.listeners = map[net.Listener]struct{}{}
		p.conns = map[net.Conn]netip.Addr{}
		p.perSource = map[netip.Addr]int{}
		p.channels = map[*channel]struct{}{}
		p.stop, p.stopCancel = context.WithCancel(context.Background())
		p.caps.stop = p.stop
		p.initErr = p.initTLS()
		if p.initErr == nil {
			p.initErr = p.initTunnel()
		}
	})
}

// Listen binds the plain and TLS listeners ("" skips one; port 0 picks
// one) without serving yet.
func (p *Proxy) Listen(plainAddr, tlsAddr string) (plain, secure net.Listener, err error) {
	if p.init(); p.initErr != nil {
		return nil, nil, p.initErr
	}
	if plainAddr != "" {
		if plain, err = net.Listen("tcp", plainAddr); err != nil {
			return nil, nil, fmt.Errorf("proxy: plain listener on %s: %w", plainAddr, err)
		}
	}
	if tlsAddr != "" {
		if secure, err = net.Listen("tcp", tlsAddr); err != nil {
			if plain != nil {
				plain.Close()
			}
			return nil, nil, fmt.Errorf("proxy: TLS listener on %s: %w", tlsAddr, err)
		}
	}
	return plain, secure, nil
}

// Start listens on plainAddr and tlsAddr and serves both in the
// background until Shutdown or Close.
func (p *Proxy) Start(plainAddr, tlsAddr string) error {
	plain, secure, err := p.Listen(plainAddr, tlsAddr)
	if err != nil {
		return err
	}
	for _, l := range []struct {
		ln     net.Listener
		secure bool
	}{{plain, false}, {secure, true}} {
		if l.ln == nil {
			continue
		}
		if err := p.track(l.ln, l.secure); err != nil {
			plain.Close()
			secure.Close()
			return err
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.acceptLoop(l.ln, kindOf(l.secure)) }()
	}
	p.WarmCaps()
	return nil
}

// WarmCaps starts, in the background, the caps probes of every console
// for the usual channel types (main, display, inputs, cursor), so the
// first client of a console does not wait for them. Start calls it;
// call it again after loading new consoles into the store.
func (p *Proxy) WarmCaps() {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.caps.warm(p) }()
}

// Serve accepts on ln until it is closed; secure says whether clients
// speak TLS on it. It returns nil after Shutdown or Close.
func (p *Proxy) Serve(ln net.Listener, secure bool) error {
	if p.init(); p.initErr != nil {
		return p.initErr
	}
	if err := p.track(ln, secure); err != nil {
		return err
	}
	p.wg.Add(1)
	defer p.wg.Done()
	return p.acceptLoop(ln, kindOf(secure))
}

// ErrClosed is returned when serving on a proxy that is shutting down.
var ErrClosed = errors.New("proxy: closed")

func (p *Proxy) track(ln net.Listener, secure bool) error {
	return p.trackListener(ln, func(a *net.TCPAddr) {
		if secure {
			p.tlsAddr = a
		} else {
			p.plainAddr = a
		}
	})
}

// trackListener records ln (Shutdown closes it) and gives its address to
// set, under p.mu; ErrClosed when the proxy is closing.
func (p *Proxy) trackListener(ln net.Listener, set func(*net.TCPAddr)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		ln.Close()
		return ErrClosed
	}
	p.listeners[ln] = struct{}{}
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		set(a)
	}
	return nil
}

// PlainAddr and TLSAddr are the listening addresses (nil before Start).
func (p *Proxy) PlainAddr() *net.TCPAddr { p.mu.Lock(); defer p.mu.Unlock(); return p.plainAddr }

// TLSAddr is the TLS listener's address.
func (p *Proxy) TLSAddr() *net.TCPAddr { p.mu.Lock(); defer p.mu.Unlock(); return p.tlsAddr }

// Shutdown stops accepting, lets live channels finish until ctx is done
// (or DrainTimeout when ctx has no deadline), then closes the rest and
// waits for every goroutine. It returns ctx's error if channels had to
// be cut.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.init()
	p.mu.Lock()
	p.closing = true
	for ln := range p.listeners {
		ln.Close()
	}
	// Connections still in their handshake are cut now: nothing to drain.
	// Their backend links are cut too, unless a ticket is already on its
	// way (see linkConn).
	for c := range p.conns {
		c.Close()
	}
	p.closeConnectConnsLocked()
	p.mu.Unlock()
	p.closeWebSocketServers()
	p.stopCancel()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDrainTimeout)
		defer cancel()
	}
	var err error
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
drain:
	for p.activeChannels()+p.activeTunnels() > 0 {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			if !mutant.On(p, mutant.ShutdownKeepsChannels) {
				p.closeChannels("shutdown")
				p.closeTunnels("shutdown", nil)
			}
			break drain
		case <-tick.C:
		}
	}
	p.wg.Wait()
	// Nothing starts probes any more (handshakes and warm-up are over);
	// those in flight were cut by stop.
	p.caps.wg.Wait()
	p.keys.Close()
	return err
}

// Close stops the proxy at once: listeners, handshakes and channels.
func (p *Proxy) Close() error {
	p.init()
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.closeChannels("proxy closed")
	p.closeTunnels("proxy closed", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.Shutdown(ctx)
	return nil
}

func (p *Proxy) activeChannels() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.channels)
}

func (p *Proxy) closeChannels(reason string) {
	p.mu.Lock()
	chans := make([]*channel, 0, len(p.channels))
	for c := range p.channels {
		chans = append(chans, c)
	}
	p.mu.Unlock()
	for _, c := range chans {
		c.close(reason)
	}
}

// Stats is a snapshot of the proxy's live state.
type Stats struct {
	Listening   bool
	Handshaking int // accepted connections still in TLS or link
	Channels    int // relaying channels
	Connecting  int // CONNECT requests still in their head or refusal
	Tunnels     int // relaying CONNECT tunnels
}

// Stats returns a snapshot.
func (p *Proxy) Stats() Stats {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Listening: len(p.listeners) > 0 && !p.closing, Handshaking: len(p.conns), Channels: len(p.channels),
		Connecting: len(p.tun.conns), Tunnels: len(p.tun.tunnels)}
}

// ServeMetrics serves /metrics on addr until ctx ends (for the CLI; tests
// use MetricsHandler). Bind it to loopback.
func (p *Proxy) ServeMetrics(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", p.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
