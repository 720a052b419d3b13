package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spiceharness/spiceharness/static"
)

// Target is the SPICE proxy under test: this repository's in-process
// proxy (package harness/inproc), a Kerbside-style deployment reached
// over HTTP (Kerbside), a proxy the harness starts and supervises (Exec),
// or an HTTP CONNECT proxy (ConnectProxy). A lane boots its VMs, writes their static source,
// then calls Start once and Load with the lane's sources; scenarios then
// go through ProxyVV and the optional capabilities below.
//
// A Target serves one lane. Implementations outside this package are
// welcome: a value that implements Target and any of the capability
// interfaces is a target.
type Target interface {
	// Name says what the target is, for reports ("in-process",
	// "kerbside http://10.0.0.5:13002", "exec ./myproxy").
	Name() string
	// Start brings the target up for env (sources.yaml already written
	// to env.SourcesYAML). It is called once, before the first Load.
	Start(ctx context.Context, env *Env) error
	// Load makes the target serve exactly srcs (consoles with their
	// current tickets) and returns once it does: once a new proxy .vv
	// of every console works, and a changed ticket is the one it uses.
	Load(ctx context.Context, srcs []static.Source) error
	// ProxyVV mints a `.vv` for key pointing at the proxy, with a fresh
	// credential that opens one session.
	ProxyVV(ctx context.Context, key static.Key) (*VVResponse, error)
	// Close stops what Start started. Idempotent.
	Close() error
}

// Capability names an optional part of a Target that scenarios may
// require. A scenario that requires a capability the target lacks is
// reported as skipped, with the capability named.
type Capability string

// The capabilities, each an interface a Target may implement.
const (
	// CapDirectVV: DirectVVer, the hypervisor's own `.vv` from the API.
	CapDirectVV Capability = "direct-vv"
	// CapTerminate: Terminator, ending a session or a console's sessions.
	CapTerminate Capability = "terminate"
	// CapSessionState: SessionStater, the proxy's view of one session
	// (states and end reasons as this repository's store names them).
	CapSessionState Capability = "session-state"
	// CapMetrics: MetricsReader, the proxy's Prometheus metrics under
	// this repository's names (spice_proxy_*).
	CapMetrics Capability = "metrics"
	// CapAudit: Auditor, the proxy's audit log.
	CapAudit Capability = "audit"
	// CapTokenTTL: TokenLifetime, a known token lifetime the lane set.
	CapTokenTTL Capability = "token-ttl"
	// CapBackendDeadline: BackendDeadliner, a known backend link deadline.
	CapBackendDeadline Capability = "backend-deadline"
	// CapHandshakeDeadline: HandshakeDeadliner, a known client handshake
	// deadline.
	CapHandshakeDeadline Capability = "handshake-deadline"
	// CapIdle: Idler, waiting until the proxy holds no connection.
	CapIdle Capability = "idle"
	// CapShutdown: Shutdowner, a graceful shutdown with a drain deadline.
	CapShutdown Capability = "shutdown"
	// CapAPIRestart: APIRestarter, restarting the `.vv` API alone.
	CapAPIRestart Capability = "api-restart"
	// CapSPICEListener: SPICEListener, the proxy's SPICE listeners
	// (the proxy terminates SPICE links; not a CONNECT tunnel).
	CapSPICEListener Capability = "spice-listener"
	// CapTerminatesSPICE: SPICETerminator, a proxy that terminates the
	// SPICE link and swaps its own credential for qemu's ticket (this
	// repository's, Kerbside) — not a CONNECT tunnel, whose `.vv` carries
	// a qemu ticket by design.
	CapTerminatesSPICE Capability = "terminates-spice"
	// CapTunnelVV: TunnelVVer, a `.vv` that reaches the console through
	// an HTTP CONNECT proxy (proxy=, Kind Tunnel): the in-process proxy
	// with ConnectListen, or a CONNECT proxy under test (ConnectProxy).
	CapTunnelVV Capability = "tunnel-vv"
	// CapTunnelTicketTTL: TunnelTicketLifetime, tunnel `.vv` files whose
	// password is a fresh qemu ticket the lane set for them, with a known
	// lifetime (Env.TunnelTicket).
	CapTunnelTicketTTL Capability = "tunnel-ticket-ttl"
	// CapSignedHosts: SignedHoster, a CONNECT proxy that opens tunnels
	// only for hosts it signed, until they expire (this repository's
	// proxy, Proxmox's spiceproxy); a plain CONNECT proxy such as squid
	// checks destinations only.
	CapSignedHosts Capability = "signed-hosts"
	// CapInProcess: this repository's own proxy (package harness/inproc).
	// Scenarios that check its own conventions (the API's headers, the
	// title, the token's shape) require it; checks of what SPICE clients
	// need never do.
	CapInProcess Capability = "in-process"
	// CapWebSocket: WebSocketer, a WebSocket endpoint for a console (a
	// URL and password; VVResponse.WebSocketURL): spice-html5's
	// transport, one WebSocket per channel.
	CapWebSocket Capability = "websocket"
	// CapWebSocketOrigin: WebSocketOriginer, a WebSocket gateway with an
	// origin policy: it names an Origin it accepts, and refuses others.
	CapWebSocketOrigin Capability = "websocket-origin"
	// CapSPICEClients: the proxy `.vv` opens in spice-gtk's clients
	// (spicy-screenshot, remote-viewer): every target but a WebSocket
	// gateway (WebSocketOnly), whose endpoint only a browser or the Go
	// client speaks.
	CapSPICEClients Capability = "spice-clients"
)

// DirectVVer fetches the direct `.vv` of a console from the target's API:
// the hypervisor's own endpoint and ticket.
type DirectVVer interface {
	DirectVV(ctx context.Context, key static.Key) (*VVResponse, error)
}

// Terminator ends sessions through the target's API. SessionID names the
// session a proxy `.vv` opened, in the form TerminateSession takes.
type Terminator interface {
	SessionID(ctx context.Context, f *VVResponse) (string, error)
	TerminateSession(ctx context.Context, id string) error
	TerminateConsole(ctx context.Context, key static.Key) error
}

// SessionState is the proxy's view of one session.
type SessionState struct {
	State    string // "pending", "live" or "ended"
	Reason   string // why it ended
	Channels int    // live channels
}

// SessionStater reports the proxy's view of a session by id.
type SessionStater interface {
	Session(ctx context.Context, id string) (SessionState, error)
}

// MetricsReader reads the proxy's metrics: the sum of the series of name
// whose labels match labels (name, value pairs).
type MetricsReader interface {
	Metric(ctx context.Context, name string, labels ...string) (float64, error)
}

// AuditEvent is one entry of a proxy's audit log.
type AuditEvent struct {
	Time    time.Time
	Kind    string // "session_started", "channel_closed", …
	Source  string
	UUID    string
	Session string
	Detail  string
}

// Auditor returns the proxy's audit log, oldest first.
type Auditor interface {
	Audit(ctx context.Context) ([]AuditEvent, error)
}

// TokenLifetime is a target whose token lifetime is known, and possibly
// controlled: Advance (nil error) moves the target's token clock forward;
// a target that cannot returns ErrUnsupported and the caller waits.
type TokenLifetime interface {
	TokenTTL() time.Duration
	AdvanceTokenClock(d time.Duration) error
}

// BackendDeadliner is a target whose bound on linking qemu is known.
type BackendDeadliner interface {
	BackendDeadline() time.Duration
}

// HandshakeDeadliner is a target whose bound on a client's handshake is
// known.
type HandshakeDeadliner interface {
	HandshakeDeadline() time.Duration
}

// Idler waits until the proxy holds no channel and no handshake.
type Idler interface {
	WaitIdle(ctx context.Context) error
}

// Shutdowner shuts the proxy down gracefully: stop accepting, let live
// channels drain until ctx ends, cut the rest. It returns ctx's error if
// channels had to be cut. ProxyAddrs says where it listened.
type Shutdowner interface {
	ShutdownProxy(ctx context.Context) error
}

// APIRestarter restarts the `.vv` API on the same address, as an
// operator would; live sessions must not notice.
type APIRestarter interface {
	RestartAPI(ctx context.Context) error
}

// SPICEListener is a target that terminates SPICE itself: the addresses
// of its plain and TLS listeners ("" for none).
type SPICEListener interface {
	SPICEAddrs() (plain, tls string)
}

// SPICETerminator marks a target whose proxy terminates SPICE links.
type SPICETerminator interface {
	TerminatesSPICE()
}

// InProcessor marks this repository's in-process proxy.
type InProcessor interface {
	InProcess()
}

// TunnelVVer fetches a `.vv` of a console through an HTTP CONNECT proxy:
// proxy= names the proxy, host and ports the endpoint it opens a tunnel
// to (qemu's own ports; the host may be one only the proxy understands),
// ca and host-subject qemu's, the password a qemu ticket.
type TunnelVVer interface {
	TunnelVV(ctx context.Context, key static.Key) (*VVResponse, error)
}

// TunnelTicketLifetime is a target whose tunnel `.vv` files carry fresh
// qemu tickets from Env.TunnelTicket, opening new links for
// TunnelTicketTTL.
type TunnelTicketLifetime interface {
	TunnelTicketTTL() time.Duration
}

// SignedHoster is a CONNECT proxy whose `.vv` hosts are signed and
// expire after TunnelHostTTL. AdvanceTunnelClock moves the clock it
// checks them with forward (ErrUnsupported: the caller waits).
type SignedHoster interface {
	TunnelHostTTL() time.Duration
	AdvanceTunnelClock(d time.Duration) error
}

// WebSocketer gives a console's WebSocket endpoint: a VVResponse whose
// WebSocketURL every channel opens a WebSocket to (subprotocol
// "binary"), whose Password is the SPICE ticket, fresh for one session
// (a terminating gateway's token, or a short-lived qemu ticket behind a
// gateway that only relays bytes).
type WebSocketer interface {
	WebSocketVV(ctx context.Context, key static.Key) (*VVResponse, error)
}

// WebSocketOriginer is a WebSocket gateway that may check Origin: with
// WebSocketOriginPolicy true it accepts WebSocketOrigin ("http://HOST:PORT",
// the origin its browser page is served from, known once it started)
// and refuses other origins before the upgrade.
type WebSocketOriginer interface {
	WebSocketOriginPolicy() bool
	WebSocketOrigin() string
}

// WebSocketIdler is a WebSocket gateway whose idle limit is known: how
// long it lets a socket (or a session) carry nothing before it cuts it;
// 0 for none.
type WebSocketIdler interface {
	WebSocketIdleTimeout() time.Duration
}

// WebSocketOnly marks a target whose proxy `.vv` is a WebSocket endpoint
// only (a WebSocket gateway): it lacks the spice-clients capability.
type WebSocketOnly interface {
	WebSocketOnly()
}

// FailureLogger is a target with something to add to a failed test's
// log (the tail of the proxy's own log, say).
type FailureLogger interface {
	FailureLog() string
}

// ErrUnsupported is returned by Env methods whose capability the target
// lacks; errors.Is(err, ErrUnsupported) holds, and the *CapabilityError
// names the capability.
var ErrUnsupported = errors.New("harness: not supported by the target")

// CapabilityError says which capability a target lacks.
type CapabilityError struct {
	Target string
	Cap    Capability
}

func (e *CapabilityError) Error() string {
	return fmt.Sprintf("harness: the target %s lacks the %q capability", e.Target, e.Cap)
}

func (e *CapabilityError) Unwrap() error { return ErrUnsupported }

// capChecks says how each capability shows on a target.
var capChecks = map[Capability]func(Target) bool{
	CapDirectVV:          func(t Target) bool { _, ok := t.(DirectVVer); return ok },
	CapTerminate:         func(t Target) bool { _, ok := t.(Terminator); return ok },
	CapSessionState:      func(t Target) bool { _, ok := t.(SessionStater); return ok },
	CapMetrics:           func(t Target) bool { _, ok := t.(MetricsReader); return ok },
	CapAudit:             func(t Target) bool { _, ok := t.(Auditor); return ok },
	CapTokenTTL:          func(t Target) bool { x, ok := t.(TokenLifetime); return ok && x.TokenTTL() > 0 },
	CapBackendDeadline:   func(t Target) bool { x, ok := t.(BackendDeadliner); return ok && x.BackendDeadline() > 0 },
	CapHandshakeDeadline: func(t Target) bool { x, ok := t.(HandshakeDeadliner); return ok && x.HandshakeDeadline() > 0 },
	CapIdle:              func(t Target) bool { _, ok := t.(Idler); return ok },
	CapShutdown:          func(t Target) bool { _, ok := t.(Shutdowner); return ok },
	CapAPIRestart:        func(t Target) bool { _, ok := t.(APIRestarter); return ok },
	CapSPICEListener:     func(t Target) bool { _, ok := t.(SPICEListener); return ok },
	CapInProcess:         func(t Target) bool { _, ok := t.(InProcessor); return ok },
	CapTerminatesSPICE:   func(t Target) bool { _, ok := t.(SPICETerminator); return ok },
	CapTunnelVV:          func(t Target) bool { _, ok := t.(TunnelVVer); return ok },
	CapTunnelTicketTTL:   func(t Target) bool { x, ok := t.(TunnelTicketLifetime); return ok && x.TunnelTicketTTL() > 0 },
	CapSignedHosts:       func(t Target) bool { x, ok := t.(SignedHoster); return ok && x.TunnelHostTTL() > 0 },
	CapWebSocket:         func(t Target) bool { _, ok := t.(WebSocketer); return ok },
	CapWebSocketOrigin:   func(t Target) bool { x, ok := t.(WebSocketOriginer); return ok && x.WebSocketOriginPolicy() },
	CapSPICEClients:      func(t Target) bool { _, ws := t.(WebSocketOnly); return !ws },
}

// Capabilities lists what t offers, sorted.
func Capabilities(t Target) []Capability {
	var out []Capability
	for c, has := range capChecks {
		if has(t) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// HasCapability reports whether t offers c.
func HasCapability(t Target, c Capability) bool {
	has, ok := capChecks[c]
	return ok && has(t)
}

// KnownCapability reports whether c is a capability name this package
// knows.
func KnownCapability(c Capability) bool {
	_, ok := capChecks[c]
	return ok
}

// Missing returns the capabilities of want that a lane built from opts
// (and the HARNESS_* environment) would lack, and the target's name,
// without booting anything.
func Missing(want []Capability, opts ...Option) (missing []Capability, target string, err error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, "", err
	}
	t, err := c.newTarget()
	if err != nil {
		return nil, "", err
	}
	for _, w := range want {
		switch {
		case !KnownCapability(w):
			return nil, "", fmt.Errorf("harness: unknown capability %q", w)
		case !HasCapability(t, w):
			missing = append(missing, w)
		}
	}
	return missing, t.Name(), nil
}

// CapList formats capabilities for messages: "terminate, metrics".
func CapList(cs []Capability) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(slices.Clip(s), ", ")
}
