package harness

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/internal/tail"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

// WebSocketConfig describes a WebSocket gateway under test: the browser
// family of SPICE proxies (websockify in front of qemu, as IsardVDI,
// Ravada and TrueNAS deploy it; a VDI portal's "console in a tab"), which
// maps a URL carrying a token to a console's SPICE port and relays the
// SPICE byte stream between binary WebSocket messages and qemu. Give URL,
// or set Websockify.
type WebSocketConfig struct {
	// URL is the template of a console's WebSocket URL (ws:// or wss://),
	// with placeholders the harness fills per console: {token} (a token
	// the harness made for the console and wrote to TokenFile), {host}
	// and {port} (qemu's SPICE address: plain port; SPICE inside the
	// WebSocket is never TLS), {source}, {uuid} and {name}. For example
	// "ws://127.0.0.1:6081/websockify?token={token}".
	URL string
	// TokenFile is where the harness writes the gateway's token map, one
	// `TOKEN: HOST:PORT` line per console (websockify's TokenFile format,
	// which such gateways share); required with {token}. The gateway must
	// re-read it per connection.
	TokenFile string
	// Origin is the Origin the gateway accepts (its page's origin): the Go
	// client sends it, and the websocket-origin scenarios check that other
	// origins are refused. "": no origin policy known.
	Origin string
	// IdleTimeout is the gateway's own idle limit on a socket, when it has
	// one (nginx's proxy_read_timeout in front of it, say; set it short in
	// the test lane): ws-idle-inputs then keeps inputs and cursor quiet
	// for longer than that. 0: none known.
	IdleTimeout time.Duration
	// Websockify starts Debian's websockify for each lane instead
	// (StartWebsockify): its token plugin reading a file the harness
	// writes, ExpectOrigin allowing only its own origin (where it serves
	// spice-html5's pages).
	Websockify bool
	// WebsockifyBinary is the websockify program ("": from PATH).
	WebsockifyBinary string
}

// placeholderRE finds a URL template's placeholders.
var placeholderRE = regexp.MustCompile(`\{([a-z]*)\}`)

var wsPlaceholders = map[string]bool{"token": true, "host": true, "port": true, "source": true, "uuid": true, "name": true}

// checkTemplate validates a URL template.
func (cfg WebSocketConfig) checkTemplate() error {
	hasToken := false
	for _, m := range placeholderRE.FindAllStringSubmatch(cfg.URL, -1) {
		if !wsPlaceholders[m[1]] {
			return fmt.Errorf("the WebSocket URL template has an unknown placeholder %s (known: {token} {host} {port} {source} {uuid} {name})", m[0])
		}
		hasToken = hasToken || m[1] == "token"
	}
	if hasToken && cfg.TokenFile == "" {
		return fmt.Errorf("the WebSocket URL template has {token}: give the token file the gateway reads (--websocket-token-file or %s), which the harness writes", EnvWebSocketTokenFile)
	}
	sample := placeholderRE.ReplaceAllString(cfg.URL, "1")
	if _, _, err := spice.ParseWebSocketURL(sample); err != nil {
		return fmt.Errorf("%w (set --websocket or %s to a ws:// or wss:// URL template)", err, EnvWebSocket)
	}
	return nil
}

// WebSocket is a target for a WebSocket gateway. There is no API to
// ask: the harness makes each console's endpoint itself, as a VDI portal
// does for its gateway: the URL (its token in the gateway's token file)
// and, as the SPICE password, a fresh qemu ticket that opens new links
// for the lane's TunnelTicketTTL (Env.TunnelTicket), since such a gateway
// relays SPICE unread. ProxyVV and WebSocketVV both return that
// endpoint, so every scenario that only needs what the Go client sees
// runs through the gateway.
//
// It offers the websocket and tunnel-ticket-ttl capabilities, and
// websocket-origin with an Origin (always for websockify). It lacks
// spice-clients (spicy-screenshot and remote-viewer speak no WebSocket)
// and terminates-spice (tokens, sessions: a byte relay knows none).
func WebSocket(cfg WebSocketConfig) NewTarget {
	return func(s Settings) (Target, error) {
		switch {
		case cfg.URL != "" && cfg.Websockify:
			return nil, fmt.Errorf("the WebSocket gateway: give a URL template (--websocket, %s) or start websockify (--websockify, %s=1), not both", EnvWebSocket, EnvWebsockify)
		case cfg.URL == "" && !cfg.Websockify:
			return nil, fmt.Errorf("the WebSocket gateway: no URL template (set --websocket or %s, or --websockify to start websockify per lane)", EnvWebSocket)
		case cfg.URL != "":
			if err := cfg.checkTemplate(); err != nil {
				return nil, err
			}
		}
		return &wsGateway{cfg: cfg, settings: s, tokens: map[static.Key]string{}, died: make(chan struct{})}, nil
	}
}

type wsGateway struct {
	cfg      WebSocketConfig
	settings Settings
	env      *Env

	mu      sync.Mutex
	tokens  map[static.Key]string
	wsfy    *Websockify
	closing bool
	wg      sync.WaitGroup

	died     chan struct{}
	diedErr  error
	diedOnce sync.Once
}

func (g *wsGateway) Name() string {
	if g.cfg.Websockify {
		return "websocket websockify (started per lane)"
	}
	_, short, err := spice.ParseWebSocketURL(placeholderRE.ReplaceAllString(g.cfg.URL, "x"))
	if err != nil {
		return "websocket gateway"
	}
	return "websocket " + short
}

// WebSocketOnly: the endpoint is a WebSocket URL (no spice-clients).
func (g *wsGateway) WebSocketOnly() {}

// TunnelTicketTTL: the harness sets the tickets (tunnel-ticket-ttl).
func (g *wsGateway) TunnelTicketTTL() time.Duration { return g.settings.TunnelTicketTTL }

// WebSocketOriginPolicy: websockify's ExpectOrigin, or a known Origin.
func (g *wsGateway) WebSocketOriginPolicy() bool { return g.cfg.Websockify || g.cfg.Origin != "" }

// WebSocketOrigin is the origin the gateway accepts.
func (g *wsGateway) WebSocketOrigin() string {
	if g.cfg.Websockify {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.wsfy != nil {
			return g.wsfy.Origin
		}
		return ""
	}
	return g.cfg.Origin
}

// WebSocketIdleTimeout is the gateway's known idle limit (websockify has
// none on a socket: its --idle-timeout ends the whole server when no
// client is connected).
func (g *wsGateway) WebSocketIdleTimeout() time.Duration { return g.cfg.IdleTimeout }

func (g *wsGateway) Start(ctx context.Context, env *Env) error {
	g.env = env
	if g.cfg.Websockify || strings.Contains(g.cfg.URL, "{host}") {
		return nil
	}
	u, _, _ := spice.ParseWebSocketURL(placeholderRE.ReplaceAllString(g.cfg.URL, "x"))
	port := u.Port()
	if port == "" {
		port = map[string]string{"ws": "80", "wss": "443"}[u.Scheme]
	}
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return fmt.Errorf("the WebSocket gateway %s does not answer (check --websocket or %s): %w", g.Name(), EnvWebSocket, err)
	}
	conn.Close()
	return nil
}

// Load gives every console a token (kept across loads) and writes the
// token map: websockify's token file, or TokenFile.
func (g *wsGateway) Load(ctx context.Context, srcs []static.Source) error {
	if !g.cfg.Websockify && g.cfg.TokenFile == "" {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return errors.New("harness: the WebSocket gateway target is closed")
	}
	targets := map[string]string{}
	for _, s := range srcs {
		for _, c := range s.Consoles {
			k := static.Key{Source: s.Name, UUID: c.UUID}
			tok := g.tokens[k]
			if tok == "" {
				tok = rand.Text()
				g.tokens[k] = tok
			}
			targets[tok] = net.JoinHostPort(c.HypervisorIP, strconv.Itoa(c.InsecurePort))
		}
	}
	if !g.cfg.Websockify {
		b, err := WebsockifyTokenFile(targets)
		if err != nil {
			return err
		}
		return writeFileAtomic(g.cfg.TokenFile, b)
	}
	if g.wsfy != nil {
		return g.wsfy.SetTargets(targets)
	}
	w, err := StartWebsockify(ctx, WebsockifyOptions{Targets: targets, Origin: "origin", Binary: g.cfg.WebsockifyBinary})
	if err != nil {
		return err
	}
	g.wsfy = w
	g.settings.Logger.Info("websockify listening", "url", w.URL, "origin", w.Origin)
	g.wg.Add(1)
	go func() { defer g.wg.Done(); g.watch(w) }()
	return nil
}

// watch reports websockify's death unless it was stopped on purpose.
func (g *wsGateway) watch(w *Websockify) {
	<-w.Exited()
	g.mu.Lock()
	onPurpose := g.closing
	g.mu.Unlock()
	if onPurpose {
		return
	}
	g.diedOnce.Do(func() {
		g.diedErr = fmt.Errorf("the proxy under test (websockify) exited (%v); its output:\n%s", w.ProcessState(), tail.Lines(w.Log(), 10))
		close(g.died)
	})
}

func (g *wsGateway) Died() <-chan struct{} { return g.died }
func (g *wsGateway) Err() error            { return g.diedErr }

// ProxyVV is the WebSocket endpoint: the proxy under test is the gateway.
func (g *wsGateway) ProxyVV(ctx context.Context, k static.Key) (*VVResponse, error) {
	return g.WebSocketVV(ctx, k)
}

// WebSocketVV makes console k's endpoint: the URL with its token, a fresh
// qemu ticket as the password, the gateway's Origin (capability
// websocket).
func (g *wsGateway) WebSocketVV(ctx context.Context, k static.Key) (*VVResponse, error) {
	var con static.Console
	found := false
	for _, s := range g.env.Sources() {
		for _, x := range s.Consoles {
			if s.Name == k.Source && x.UUID == k.UUID {
				con, found = x, true
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: %s", ErrUnknownConsole, k)
	}
	ticket, _, err := g.env.TunnelTicket(ctx, k)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	tok := g.tokens[k]
	tmpl := g.cfg.URL
	if g.cfg.Websockify && g.wsfy != nil {
		tmpl = g.wsfy.URL + "/websockify?token={token}"
	}
	g.mu.Unlock()
	vals := map[string]string{"token": tok, "host": con.HypervisorIP, "port": strconv.Itoa(con.InsecurePort),
		"source": k.Source, "uuid": k.UUID, "name": con.Name}
	u := placeholderRE.ReplaceAllStringFunc(tmpl, func(m string) string {
		return url.PathEscape(vals[m[1:len(m)-1]])
	})
	f := &vv.File{Type: "spice", Password: ticket, Title: con.Name + " via WebSocket gateway"}
	return &VVResponse{File: f, WebSocketURL: u, WebSocketOrigin: g.WebSocketOrigin()}, nil
}

// FailureLog is the tail of websockify's output (connections, targets,
// refusals; it sees no SPICE ticket).
func (g *wsGateway) FailureLog() string {
	g.mu.Lock()
	w := g.wsfy
	g.mu.Unlock()
	if w == nil {
		return ""
	}
	return "--- websockify output tail:\n" + tail.Lines(w.Log(), 30)
}

// Close stops the lane's websockify, if it started one.
func (g *wsGateway) Close() error {
	g.mu.Lock()
	g.closing = true
	w := g.wsfy
	g.wsfy = nil
	g.mu.Unlock()
	err := w.Close()
	g.wg.Wait()
	return err
}
