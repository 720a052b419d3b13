package harness

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiceharness/spiceharness/qemu"
)

// Environment variables read by this package (qemu reads HARNESS_QEMU,
// HARNESS_ACCEL, HARNESS_STATE_DIR and HARNESS_KEEP itself). Explicit
// options beat them; they beat the defaults.
const (
	EnvVMs         = "HARNESS_VMS"          // number of VMs (default 1)
	EnvLibvirt     = "HARNESS_LIBVIRT"      // libvirt URI: VMs become libvirt domains
	EnvTLSBackends = "HARNESS_TLS_BACKENDS" // "1": qemu also serves SPICE over TLS
	EnvTimeout     = "HARNESS_TIMEOUT"      // bound on Start/Up (default 2m)
	EnvTokenTTL    = "HARNESS_TOKEN_TTL"    // token lifetime (default 60s)
	EnvKeep        = "HARNESS_KEEP"         // "1": keep the state dir after Close
	EnvHosts       = "HARNESS_HOSTS"        // hosts file: lanes go to those hypervisor hosts
	EnvHost        = "HARNESS_HOST"         // with hosts: only this host

	// The Kerbside target (a Kerbside-style `.vv` API the harness did not
	// start). HARNESS_EXTERNAL_API selects it.
	EnvExternalAPI      = "HARNESS_EXTERNAL_API"       // base URL of its API
	EnvExternalSource   = "HARNESS_EXTERNAL_SOURCES"   // where to write the sources.yaml it loads
	EnvExternalToken    = "HARNESS_EXTERNAL_TOKEN"     // a ready bearer token (JWT), or
	EnvExternalUser     = "HARNESS_EXTERNAL_USER"      // a user and
	EnvExternalPassword = "HARNESS_EXTERNAL_PASSWORD"  // password for POST /auth
	EnvExternalReload   = "HARNESS_EXTERNAL_RELOAD"    // a command that makes it reload the file
	EnvExternalTokenTTL = "HARNESS_EXTERNAL_TOKEN_TTL" // its token lifetime, when known

	// The exec target (a proxy the harness starts per lane).
	// HARNESS_EXEC selects it.
	EnvExec             = "HARNESS_EXEC"               // command line with {placeholders}
	EnvExecEnv          = "HARNESS_EXEC_ENV"           // KEY=VALUE words added to its environment
	EnvExecToken        = "HARNESS_EXEC_TOKEN"         // its API's bearer token
	EnvExecReload       = "HARNESS_EXEC_RELOAD"        // file, sighup or restart
	EnvExecReady        = "HARNESS_EXEC_READY"         // direct-vv, spice-link, http:PATH, log:REGEXP, port:NAME
	EnvExecReadyWithin  = "HARNESS_EXEC_READY_WITHIN"  // bound on its start
	EnvExecReloadWithin = "HARNESS_EXEC_RELOAD_WITHIN" // bound on each reload
	EnvExecDialect      = "HARNESS_EXEC_DIALECT"       // reserved: "kerbside" (the default)

	// The connect-proxy target (an HTTP CONNECT proxy: oVirt's squid,
	// Proxmox's spiceproxy). Either variable selects it.
	EnvConnectProxy = "HARNESS_CONNECT_PROXY" // its URL, http://HOST:PORT, or
	EnvSquid        = "HARNESS_SQUID"         // "1": start Debian's squid per lane

	// The websocket target (a WebSocket gateway: websockify, a portal's
	// "console in a tab"). HARNESS_WEBSOCKET or HARNESS_WEBSOCKIFY selects it.
	EnvWebSocket          = "HARNESS_WEBSOCKET"            // its URL template, ws://HOST:PORT/PATH?token={token}, or
	EnvWebsockify         = "HARNESS_WEBSOCKIFY"           // "1": start Debian's websockify per lane
	EnvWebSocketTokenFile = "HARNESS_WEBSOCKET_TOKEN_FILE" // the token file the harness writes for {token}
	EnvWebSocketOrigin    = "HARNESS_WEBSOCKET_ORIGIN"     // the Origin the gateway accepts
)

// TargetEnvVars are the variables that pick the proxy under test; at most
// one may be set.
var TargetEnvVars = []string{EnvExternalAPI, EnvExec, EnvConnectProxy, EnvSquid, EnvWebSocket, EnvWebsockify}

// DefaultSource is the name of the static source the harness writes for
// a target of its own (in-process, exec); lanes that share a sources.yaml
// with others (Kerbside) get a unique name.
const DefaultSource = "harness"

// Settings are what a lane asks of its target's proxy. A target honours
// what it can; zero values mean the target's own default.
type Settings struct {
	// AllowPlain: serve sessions on the plain port instead of answering
	// NEED_SECURED.
	AllowPlain bool
	// TokenTTL is how long a minted credential may open its session.
	TokenTTL time.Duration
	// BackendTimeout bounds dialing and linking qemu; HandshakeTimeout a
	// client's TLS handshake and link.
	BackendTimeout, HandshakeTimeout time.Duration
	// APIKey protects the `.vv` API of a target the harness starts.
	APIKey string
	// PlainAddr, TLSAddr and APIAddr are listen addresses for a target
	// the harness starts ("": 127.0.0.1 on a free port).
	PlainAddr, TLSAddr, APIAddr string
	// MaxHandshakes and MaxHandshakesPerSource cap the connections
	// still in their handshake, over both listeners and per client
	// address (0: the proxy's default; negative: no cap).
	MaxHandshakes, MaxHandshakesPerSource int
	// ConnectAddr, when set, asks a target the harness starts to serve
	// HTTP CONNECT tunnels there too (tunnel `.vv` files, Kind Tunnel).
	ConnectAddr string
	// TunnelDomain, with ConnectAddr, is the domain the CONNECT listener
	// signs its hosts under (TunnelDomain; qemu's certificates name
	// *.TunnelDomain with TLSBackends).
	TunnelDomain string
	// TunnelTicketTTL is how long the qemu ticket of a tunnel `.vv` opens
	// new links (DefaultTunnelTicketTTL); Env.TunnelTicket issues them.
	TunnelTicketTTL time.Duration
	// WebSocketAddr is where a target the harness starts serves SPICE
	// over WebSocket ("": 127.0.0.1 on a free port, for a target that
	// has a WebSocket listener).
	WebSocketAddr string
	// WebSocketIdleTimeout asks that target to cut a session's
	// WebSockets once they were all quiet that long (0: never).
	WebSocketIdleTimeout time.Duration
	// IdleTimeout asks that target to cut a session's SPICE channels once
	// none of them carried a message for that long (0: the target's own
	// default).
	IdleTimeout time.Duration
	// Logger receives the proxy's own log and audit lines (never nil).
	Logger *slog.Logger
}

// NewTarget makes the Target of one lane. Each lane calls it once: a
// target serves one lane.
type NewTarget func(Settings) (Target, error)

var defaultTarget NewTarget

// RegisterDefaultTarget sets the target lanes use when no WithTarget
// option and none of TargetEnvVars picks one.
// Package harness/inproc registers this repository's proxy in its init,
// so `import _ "github.com/spiceharness/spiceharness/harness/inproc"`
// makes it the default; this package itself does not import the proxy.
func RegisterDefaultTarget(nt NewTarget) { defaultTarget = nt }

type config struct {
	vms         int
	accel       qemu.Accelerator
	libvirt     string
	libvirtSet  bool // Libvirt was given: it beats hosts
	hosts       *Hosts
	hostLabels  []string
	hostPin     string
	tlsBackends bool
	timeout     time.Duration
	source      string
	qemuOpts    []qemu.Option
	channels    []qemu.Channel
	linuxGuest  bool
	logger      *slog.Logger
	keep        bool
	settings    Settings
	target      NewTarget
	targetFrom  string       // "option", a variable name, or "default"
	network     map[Leg]Link // Network options
}

// Option configures Start and Up. Options that can be wrong return an
// error, which Start reports before booting anything.
type Option func(*config) error

// VMs sets how many VMs to boot (1–64).
func VMs(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 64 {
			return fmt.Errorf("harness: VMs(%d): want 1–64", n)
		}
		c.vms = n
		return nil
	}
}

// Accel picks qemu's accelerator (auto, kvm, tcg).
func Accel(a qemu.Accelerator) Option {
	return func(c *config) error { c.accel = a; return nil }
}

// Libvirt boots the VMs as transient domains on the libvirtd at uri
// ("qemu:///system", "qemu+tcp://127.0.0.1/system", …); "" boots qemu
// child processes even when HARNESS_LIBVIRT is set. Either way it beats
// WithHosts: a lane that says where its VMs run (a host-local feature
// such as SIGSTOP on qemu's pid, or a given libvirtd) is not placed on
// hosts.
func Libvirt(uri string) Option {
	return func(c *config) error { c.libvirt, c.libvirtSet = uri, true; return nil }
}

// WithHosts places the lane on one of hs's hypervisor hosts (see Hosts
// for how): its VMs become libvirt domains there, their SPICE ports
// listen on the host's address, their TLS names are the host's, and the
// guest image is uploaded to it. Pass the same *Hosts to every lane of a
// run so they share the slots. HARNESS_HOSTS=FILE does the same for
// every lane of a process.
func WithHosts(hs *Hosts) Option {
	return func(c *config) error {
		if hs == nil {
			return fmt.Errorf("harness: WithHosts(nil)")
		}
		c.hosts = hs
		return nil
	}
}

// RequireLabels places the lane (with WithHosts) only on a host that
// carries every label (kvm, spice-tls, linux-guest, …). TLSBackends
// requires spice-tls by itself.
func RequireLabels(labels ...string) Option {
	return func(c *config) error {
		for _, l := range labels {
			if !labelRE.MatchString(l) {
				return fmt.Errorf("harness: RequireLabels(%q): want lower-case letters, digits and . _ -", l)
			}
			if !slices.Contains(c.hostLabels, l) {
				c.hostLabels = append(c.hostLabels, l)
			}
		}
		return nil
	}
}

// OnHost places the lane (with WithHosts) on the host named name only,
// as a repro line does to rerun a failure where it happened.
func OnHost(name string) Option {
	return func(c *config) error {
		if !hostNameRE.MatchString(name) {
			return fmt.Errorf("harness: OnHost(%q): not a host name", name)
		}
		c.hostPin = name
		return nil
	}
}

// TLSBackends makes qemu serve SPICE over TLS too (certificates from a
// harness CA, written to the source's ca_cert); the proxy then reaches
// the consoles over TLS.
func TLSBackends() Option {
	return func(c *config) error { c.tlsBackends = true; return nil }
}

// AllowPlain asks the proxy to serve sessions on its plain listener
// instead of answering NEED_SECURED.
func AllowPlain() Option {
	return func(c *config) error { c.settings.AllowPlain = true; return nil }
}

// TokenTTL sets how long minted tokens may open their session (for
// targets the harness configures; see the token-ttl capability).
func TokenTTL(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("harness: TokenTTL(%v): want > 0", d)
		}
		c.settings.TokenTTL = d
		return nil
	}
}

// Timeout bounds Start/Up.
func Timeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("harness: Timeout(%v): want > 0", d)
		}
		c.timeout = d
		return nil
	}
}

// Source names the static source (default "harness").
func Source(name string) Option {
	return func(c *config) error { c.source = name; return nil }
}

// APIKey protects the `.vv` API of a target the harness starts with a
// bearer key.
func APIKey(key string) Option {
	return func(c *config) error { c.settings.APIKey = key; return nil }
}

// BackendTimeout sets the proxy's bound on dialing and linking qemu.
func BackendTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("harness: BackendTimeout(%v): want > 0", d)
		}
		c.settings.BackendTimeout = d
		return nil
	}
}

// HandshakeTimeout sets the proxy's bound on a client's TLS handshake
// and link stage.
func HandshakeTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("harness: HandshakeTimeout(%v): want > 0", d)
		}
		c.settings.HandshakeTimeout = d
		return nil
	}
}

// HandshakeLimits sets the proxy's caps on connections still in their
// handshake, over both listeners and per client address
// (in this repository's proxy: Proxy.MaxHandshakes and
// MaxHandshakesPerSource): 0 keeps the proxy's default, negative turns
// the cap off.
func HandshakeLimits(total, perSource int) Option {
	return func(c *config) error {
		c.settings.MaxHandshakes, c.settings.MaxHandshakesPerSource = total, perSource
		return nil
	}
}

// QemuOptions passes options to every qemu.Start.
func QemuOptions(opts ...qemu.Option) Option {
	return func(c *config) error { c.qemuOpts = append(c.qemuOpts, opts...); return nil }
}

// Channels asks every VM of the lane for these SPICE channels (see
// qemu.Channels): harness.Channels(qemu.AgentChannel(),
// qemu.PortChannel("org.example.echo")). Given several times, the
// channels add up.
func Channels(chs ...qemu.Channel) Option {
	return func(c *config) error {
		all := append(append([]qemu.Channel(nil), c.channels...), chs...)
		if err := qemu.ValidateChannels(all...); err != nil {
			return fmt.Errorf("harness: Channels: %w", err)
		}
		c.channels = all
		c.qemuOpts = append(c.qemuOpts, qemu.Channels(chs...))
		return nil
	}
}

// AllChannels asks every VM for every SPICE channel type qemu has
// (qemu.EveryChannel: the agent, the echo port, WebDAV, usbredir,
// smartcard, audio, two display heads, streaming video, a tablet).
func AllChannels() Option { return Channels(qemu.EveryChannel()...) }

// LinuxGuest boots the lane's VMs with the Linux test guest (Debian's
// kernel and the harness's agent as /init; build it once with `make
// guest`) instead of the boot-sector guest, with a qxl first head. The
// lane waits for the agent's ready line; each VM's Guest then commands
// the agent, and GuestEvent waits for what it reports (keys, pointer,
// USB, audio, port bytes, clipboard, files, monitors). Boot takes a few
// seconds under TCG where the boot sector takes a fraction of one: ask
// for it only in scenarios that need a real guest.
func LinuxGuest() Option {
	return func(c *config) error {
		c.linuxGuest = true
		c.qemuOpts = append(c.qemuOpts, qemu.LinuxGuest(), qemu.VGA("qxl"))
		return nil
	}
}

// Logger receives progress (booting, QMP ready, ticket set, listening).
func Logger(l *slog.Logger) Option {
	return func(c *config) error { c.logger = l; return nil }
}

// ProxyLogger receives the proxy's own log and audit lines.
func ProxyLogger(l *slog.Logger) Option {
	return func(c *config) error { c.settings.Logger = l; return nil }
}

// Keep keeps the state dir after Close.
func Keep() Option {
	return func(c *config) error { c.keep = true; return nil }
}

// Listen sets the listen addresses of a target the harness starts: the
// proxy's plain and TLS listeners and the API's (default 127.0.0.1:0
// each).
func Listen(plain, tls, api string) Option {
	return func(c *config) error {
		c.settings.PlainAddr, c.settings.TLSAddr, c.settings.APIAddr = plain, tls, api
		return nil
	}
}

// ConnectListen asks the proxy to serve HTTP CONNECT tunnels on addr
// too ("127.0.0.1:0" for a free port): remote-viewer's `proxy=` key and
// spice-gtk's SPICE_PROXY reach qemu through it (see docs/tunnels.md).
// Its hosts are signed under TunnelDomain, which qemu's certificates
// name (TLSBackends), and each tunnel `.vv` carries a fresh qemu ticket
// (Env.TunnelTicket).
func ConnectListen(addr string) Option {
	return func(c *config) error {
		c.settings.ConnectAddr, c.settings.TunnelDomain = addr, TunnelDomain
		return nil
	}
}

// WebSocketListen sets where the proxy serves SPICE over WebSocket (for
// a target the harness starts that has such a listener; default
// 127.0.0.1:0).
func WebSocketListen(addr string) Option {
	return func(c *config) error { c.settings.WebSocketAddr = addr; return nil }
}

// WebSocketIdleTimeout asks the proxy to cut a session's WebSockets once
// none of them carried a byte for d (the ws-idle-inputs scenario's lane
// sets it short).
func WebSocketIdleTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("harness: WebSocketIdleTimeout(%v): want > 0", d)
		}
		c.settings.WebSocketIdleTimeout = d
		return nil
	}
}

// IdleTimeout asks the proxy to cut a session's SPICE channels once none
// of them carried a message for d (in this repository's proxy:
// Proxy.IdleTimeout). The idle-channels scenario's lane sets it short, so
// that "a quiet channel of a session in use survives" is checked in
// seconds; a target that cannot set it keeps its own limit.
func IdleTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("harness: IdleTimeout(%v): want > 0", d)
		}
		c.settings.IdleTimeout = d
		return nil
	}
}

// TunnelTicketTTL sets how long the qemu ticket of a tunnel `.vv` opens
// new links (default DefaultTunnelTicketTTL, 30 s; at least 2 s, as qemu
// counts whole seconds).
func TunnelTicketTTL(d time.Duration) Option {
	return func(c *config) error {
		if d < qemu.MinTicketLifetime {
			return fmt.Errorf("harness: TunnelTicketTTL(%v): want at least %v", d, qemu.MinTicketLifetime)
		}
		c.settings.TunnelTicketTTL = d
		return nil
	}
}

// WithTarget sets the proxy under test (default: the registered default
// target, normally this repository's in-process proxy).
func WithTarget(nt NewTarget) Option {
	return func(c *config) error {
		if nt == nil {
			return fmt.Errorf("harness: WithTarget(nil)")
		}
		c.target, c.targetFrom = nt, "option"
		return nil
	}
}

// External targets a Kerbside-style proxy the harness did not start:
// apiURL is the base URL of its `.vv` API, token its bearer token (may be
// empty), sourcesPath the sources.yaml it loads. It is
// WithTarget(Kerbside(KerbsideConfig{…})) with the defaults for the rest.
func External(apiURL, token, sourcesPath string) Option {
	return WithTarget(Kerbside(KerbsideConfig{API: apiURL, Token: token, SourcesPath: sourcesPath}))
}

func newConfig(opts []Option) (*config, error) {
	c := &config{vms: 1, timeout: 2 * time.Minute, settings: Settings{TokenTTL: 60 * time.Second, TunnelTicketTTL: DefaultTunnelTicketTTL}}
	if err := c.fromEnv(); err != nil {
		return nil, err
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.settings.Logger == nil {
		c.settings.Logger = slog.New(slog.DiscardHandler)
	}
	if c.target == nil {
		if defaultTarget == nil {
			return nil, fmt.Errorf("harness: no proxy under test: pass harness.Exec(…), harness.WithTarget(harness.Kerbside(…)), " +
				"harness.WithTarget(harness.ConnectProxy(…)) or harness.WithTarget(harness.WebSocket(…)), set HARNESS_EXEC, HARNESS_EXTERNAL_API, " +
				"HARNESS_CONNECT_PROXY, HARNESS_SQUID=1, HARNESS_WEBSOCKET or HARNESS_WEBSOCKIFY=1, " +
				"or import _ \"github.com/spiceharness/spiceharness/harness/inproc\" for this repository's proxy")
		}
		c.target, c.targetFrom = defaultTarget, "default"
	}
	return c, nil
}

func (c *config) fromEnv() error {
	if v := os.Getenv(EnvVMs); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 64 {
			return fmt.Errorf("harness: %s=%q: want 1–64", EnvVMs, v)
		}
		c.vms = n
	}
	c.libvirt = os.Getenv(EnvLibvirt)
	if v := os.Getenv(EnvHosts); v != "" {
		if c.libvirt != "" {
			return fmt.Errorf("harness: %s and %s are both set: pick one place for the VMs", EnvHosts, EnvLibvirt)
		}
		hs, err := hostsFromEnv(v)
		if err != nil {
			return fmt.Errorf("harness: %s: %w", EnvHosts, err)
		}
		c.hosts = hs
	}
	if v := os.Getenv(EnvHost); v != "" {
		if !hostNameRE.MatchString(v) {
			return fmt.Errorf("harness: %s=%q: not a host name", EnvHost, v)
		}
		c.hostPin = v
	}
	c.tlsBackends = os.Getenv(EnvTLSBackends) == "1"
	c.keep = os.Getenv(EnvKeep) == "1"
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{EnvTimeout, &c.timeout}, {EnvTokenTTL, &c.settings.TokenTTL}} {
		if v := os.Getenv(d.name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x <= 0 {
				return fmt.Errorf("harness: %s=%q: want a positive duration like 90s", d.name, v)
			}
			*d.dst = x
		}
	}
	var picked []string
	for _, v := range TargetEnvVars {
		if os.Getenv(v) != "" {
			picked = append(picked, v)
		}
	}
	if len(picked) > 1 {
		return fmt.Errorf("harness: %s are all set: pick one proxy under test", strings.Join(picked, " and "))
	}
	switch {
	case os.Getenv(EnvExternalAPI) != "":
		kc, err := KerbsideConfigFromEnv()
		if err != nil {
			return err
		}
		c.target, c.targetFrom = Kerbside(kc), EnvExternalAPI
	case os.Getenv(EnvExec) != "":
		ec, err := ExecConfigFromEnv()
		if err != nil {
			return err
		}
		c.target, c.targetFrom = ExecTarget(ec), EnvExec
	case os.Getenv(EnvConnectProxy) != "":
		c.target, c.targetFrom = ConnectProxy(ConnectProxyConfig{URL: os.Getenv(EnvConnectProxy)}), EnvConnectProxy
	case os.Getenv(EnvSquid) != "":
		if v := os.Getenv(EnvSquid); v != "1" {
			return fmt.Errorf("harness: %s=%q: want 1 (start squid per lane) or unset", EnvSquid, v)
		}
		c.target, c.targetFrom = ConnectProxy(ConnectProxyConfig{Squid: true}), EnvSquid
	case os.Getenv(EnvWebSocket) != "":
		c.target, c.targetFrom = WebSocket(WebSocketConfig{URL: os.Getenv(EnvWebSocket), TokenFile: os.Getenv(EnvWebSocketTokenFile),
			Origin: os.Getenv(EnvWebSocketOrigin)}), EnvWebSocket
	case os.Getenv(EnvWebsockify) != "":
		if v := os.Getenv(EnvWebsockify); v != "1" {
			return fmt.Errorf("harness: %s=%q: want 1 (start websockify per lane) or unset", EnvWebsockify, v)
		}
		c.target, c.targetFrom = WebSocket(WebSocketConfig{Websockify: true}), EnvWebsockify
	}
	return nil
}

// newTarget makes the lane's target (without starting it).
func (c *config) newTarget() (Target, error) {
	t, err := c.target(c.settings)
	if err != nil {
		return nil, fmt.Errorf("harness: the proxy under test (from %s): %w", c.targetFrom, err)
	}
	return t, nil
}
