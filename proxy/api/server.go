package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/proxy/store"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxHeaderBytes    = 16 << 10
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	// DefaultProxyHost is written as host= in proxy .vv files when
	// ProxyEndpoint.Host is empty.
	DefaultProxyHost = "127.0.0.1"
)

var (
	// ErrInsecureListen: Start or Serve was asked to listen on an address
	// other machines can reach, without an API key. Every .vv carries a
	// ticket or a token, so that would hand consoles to the network.
	ErrInsecureListen = errors.New("api: refusing to serve on a non-loopback address without an API key")
	// ErrConfig: New was given an unusable Config.
	ErrConfig = errors.New("api: invalid config")
	// ErrServing: Start or Serve was called twice.
	ErrServing = errors.New("api: already serving")
)

// ProxyEndpoint is what a proxy .vv advertises: plain values, so the API
// needs no live proxy (take them from proxy.Proxy's PlainAddr, TLSAddr,
// CAPEM and HostSubject, or from configuration).
type ProxyEndpoint struct {
	// Host is the proxy's address as clients reach it ("":
	// DefaultProxyHost).
	Host string
	// Port is the proxy's plain listener and TLSPort its TLS listener;
	// 0 leaves the key out. With both 0 the proxy route answers 503.
	Port, TLSPort int
	// CAPEM is the CA that signed the proxy's certificate (nil: no ca=
	// key; clients then use their own trust store).
	CAPEM []byte
	// HostSubject is the proxy certificate's subject in spice-gtk's
	// exact, ordered form ("": no host-subject= key; clients then check
	// the host name).
	HostSubject string
	// SecureChannels are the channels the .vv sends straight to TLSPort
	// (secure-channels=; nil: none, clients try Port first). A proxy
	// whose plain listener only answers NEED_SECURED sets {"all"}:
	// spice-gtk otherwise links every channel on Port first and follows
	// NEED_SECURED per channel, and spice-gtk 0.42 loses a USB device it
	// redirects on connect in that switch (remote-viewer
	// --spice-share-cd: its usbredir channel fails "channel_connect:
	// assertion 'c->sock == NULL'" and the guest never sees the CD).
	// oVirt's .vv files list their secure channels the same way.
	SecureChannels []string
	// Current, when set, gives CAPEM and HostSubject for each .vv
	// instead of the two fields, for a proxy whose certificate can be
	// replaced while it runs (proxy.Proxy's CAPEM and HostSubject).
	Current func() (caPEM []byte, hostSubject string)
}

// Config configures a Server. Only Store is required.
type Config struct {
	// Store holds sources, consoles, tokens and sessions (required).
	Store *store.Store
	// Proxy is where proxy .vv files point.
	Proxy ProxyEndpoint
	// Tunnel is where tunnel .vv files point (RouteTunnelVV), and
	// TunnelTicket issues their passwords (nil: the stored ticket).
	Tunnel       TunnelEndpoint
	TunnelTicket TunnelTicketFunc
	// WebSocket is where RouteWebSocket sends browsers (the proxy's
	// WebSocket listener); zero: that route answers 503.
	WebSocket WebSocketEndpoint
	// APIKey, when set, is required on every route as
	// "Authorization: Bearer <key>" (compared in constant time). It must
	// not contain white space or control characters.
	// "": no authentication, and Start/Serve refuse any address that is
	// not loopback.
	APIKey string
	// Metrics, when set, is served at GET /metrics (behind the API key
	// like every route); nil: /metrics is 404.
	Metrics http.Handler
	// Reloader, when set, serves POST /reload (reload the sources now)
	// and GET /reload (the last reload), behind the API key like every
	// route; nil: /reload is 404.
	Reloader Reloader
	// Logger gets one line per request (method, route, ids, status,
	// size, duration; never a ticket, token, key or header) and the HTTP
	// server's own errors. nil: discarded.
	Logger *slog.Logger

	// MaxHeaderBytes bounds a request's line and headers (0:
	// DefaultMaxHeaderBytes). Up to 4 KiB over it the answer is a JSON
	// 431; beyond that net/http answers a plain 431 itself.
	MaxHeaderBytes int
	// Timeouts of the http.Server (0: the Default* above; negative: none).
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

// Server is the `.vv` API. Make it with New; serve it with Start or Serve
// (or mount Handler yourself); stop it with Shutdown or Close.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	srv     *http.Server
	keySum  [32]byte // sha256 of the API key

	mu      sync.Mutex
	ln      net.Listener
	serving chan struct{} // closed when the Start goroutine returns
}

// New checks cfg and builds the server's handler.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: Store is required", ErrConfig)
	}
	for name, p := range map[string]int{"Proxy.Port": cfg.Proxy.Port, "Proxy.TLSPort": cfg.Proxy.TLSPort, "Tunnel.Port": cfg.Tunnel.Port, "WebSocket.Port": cfg.WebSocket.Port} {
		if p < 0 || p > 65535 {
			return nil, fmt.Errorf("%w: %s %d is not a port (1-65535, 0 for none)", ErrConfig, name, p)
		}
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.MaxHeaderBytes < 0 {
		return nil, fmt.Errorf("%w: MaxHeaderBytes %d is negative", ErrConfig, cfg.MaxHeaderBytes)
	}
	for _, c := range cfg.APIKey {
		if c <= ' ' || c == 0x7f {
			return nil, fmt.Errorf("%w: APIKey contains white space or a control character", ErrConfig)
		}
	}
	if cfg.Proxy.Host == "" {
		cfg.Proxy.Host = DefaultProxyHost
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.APIKey != "" {
		s.keySum = sumKey(cfg.APIKey)
	}
	s.handler = s.logRequests(s.limitHeaders(s.recoverPanics(s.authenticate(s.router()))))
	s.srv = &http.Server{
		Handler:           s.handler,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ReadHeaderTimeout: timeout(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       timeout(cfg.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      timeout(cfg.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       timeout(cfg.IdleTimeout, DefaultIdleTimeout),
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

func timeout(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// Handler is the API with its middleware (logging, header limit, panics,
// authentication), to mount elsewhere or use with httptest.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on addr ("127.0.0.1:0" for a free port) and serves in
// the background until Shutdown or Close. Without an API key, an address
// that is not loopback is refused with ErrInsecureListen before anything
// is bound.
func (s *Server) Start(addr string) error {
	if err := s.checkAddr(addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api: listen: %w", err)
	}
	if err := s.adopt(ln); err != nil {
		ln.Close()
		return err
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.serving = done
	s.mu.Unlock()
	go func() {
		defer close(done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api: serve", "err", err)
		}
	}()
	return nil
}

// Serve serves on ln until Shutdown or Close, and then returns nil. Without
// an API key, a listener that is not on a loopback address is refused
// with ErrInsecureListen (and left open: it is the caller's).
func (s *Server) Serve(ln net.Listener) error {
	if err := s.adopt(ln); err != nil {
		return err
	}
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: serve: %w", err)
	}
	return nil
}

func (s *Server) adopt(ln net.Listener) error {
	if s.cfg.APIKey == "" && !isLocal(ln.Addr()) {
		return insecure(ln.Addr().String())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return ErrServing
	}
	s.ln = ln
	return nil
}

// checkAddr refuses, before binding, an address without an API key
// whose host is empty, unspecified or a non-loopback IP. Host names are
// resolved by the listen itself and checked after it (adopt).
func (s *Server) checkAddr(addr string) error {
	if s.cfg.APIKey != "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("api: listen address %q: %w", addr, err)
	}
	if host == "" {
		return insecure(addr)
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() {
		return insecure(addr)
	}
	return nil
}

func insecure(addr string) error {
	return fmt.Errorf("%w: %s accepts connections from other machines and every .vv carries a ticket or token; "+
		"set an API key (Config.APIKey; clients send \"Authorization: Bearer <key>\") or listen on 127.0.0.1", ErrInsecureListen, addr)
}

func isLocal(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

// URL is the server's base URL ("http://127.0.0.1:PORT"), or "" before
// Start or Serve. An unspecified listen address is given as loopback.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	a, ok := s.ln.Addr().(*net.TCPAddr)
	if !ok {
		return "http://" + s.ln.Addr().String()
	}
	ip := a.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
		if a.IP.To4() == nil {
			ip = net.IPv6loopback
		}
	}
	return "http://" + net.JoinHostPort(ip.String(), fmt.Sprint(a.Port))
}

// Shutdown stops accepting, waits for requests in flight until ctx ends,
// and waits for the goroutine Start made.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.wait(ctx)
	return err
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	err := s.srv.Close()
	s.wait(context.Background())
	return err
}

func (s *Server) wait(ctx context.Context) {
	s.mu.Lock()
	done := s.serving
	s.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}
