package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/api"
)

// Defaults for the zero values of Config.
const (
	DefaultAddr         = "127.0.0.1:0"
	DefaultProxyHost    = "127.0.0.1"
	DefaultPollInterval = 500 * time.Millisecond
	DefaultDebounce     = 100 * time.Millisecond
)

// WatchMode says how the daemon notices that its sources file changed.
type WatchMode int

const (
	// WatchAuto uses inotify on the file's directory (it sees an
	// editor's rename over the file, in-place rewrites and symlink
	// swaps) and falls back to polling when inotify is not available.
	WatchAuto WatchMode = iota
	// WatchPoll reads the file every PollInterval (for network file
	// systems, where inotify does not see other machines' writes).
	WatchPoll
	// WatchOff never looks: reloads come from Reload, SIGHUP or POST
	// /reload only.
	WatchOff
)

func (m WatchMode) String() string {
	switch m {
	case WatchAuto:
		return "inotify"
	case WatchPoll:
		return "poll"
	case WatchOff:
		return "off"
	}
	return fmt.Sprintf("WatchMode(%d)", int(m))
}

// Config configures a Daemon. The zero value works: no sources file,
// loopback listeners on free ports, an ephemeral CA in memory, no API
// key.
type Config struct {
	// Sources is the sources.yaml to serve and watch ("": none; use
	// Load or LoadFile).
	Sources string
	// AllowErrors lets Start go on when Sources cannot be read or has
	// errors: whatever is good is served and the file is watched until
	// it is fixed. Without it, Start fails with every problem.
	AllowErrors bool
	// Watch is how changes to the file are noticed (zero: inotify with
	// polling as fallback).
	Watch WatchMode
	// PollInterval is how often polling reads the file (0: 500 ms).
	PollInterval time.Duration
	// Debounce is how long the file must be quiet after a change before
	// it is read (0: 100 ms), so an editor's several writes make one
	// reload.
	Debounce time.Duration
	// ReloadOnSIGHUP reloads the file when the process gets SIGHUP, from
	// Start until Shutdown or Close.
	ReloadOnSIGHUP bool

	// PlainAddr and TLSAddr are the proxy's listeners, APIAddr the `.vv`
	// API's ("": 127.0.0.1:0, a free loopback port).
	PlainAddr, TLSAddr, APIAddr string
	// ProxyHost is the host proxy `.vv` files send clients to (""":
	// TLSAddr's host when it is a specific address, else 127.0.0.1).
	ProxyHost string
	// APIKey, when set, is required on every API route as
	// "Authorization: Bearer <key>"; without one the API refuses to
	// listen on an address other machines can reach.
	APIKey string
	// TokenTTL is how long a minted token may open its session (0: 60 s).
	TokenTTL time.Duration
	// ConnectAddr, when set, is where the proxy also serves HTTP CONNECT
	// tunnels for hosts it signed (the Proxmox spiceproxy / oVirt squid
	// family); the API then serves tunnel `.vv` files
	// (GET /console/tunnel/{source}/{uuid}/console.vv). "": no tunnels.
	ConnectAddr string
	// WebSocketAddr, when set, is where the proxy also serves SPICE over
	// WebSocket (spice-html5's transport); the API then answers
	// GET /console/ws/{source}/{uuid} with a URL and token. "": none.
	WebSocketAddr string
	// WebSocketOrigins are the browser origins allowed on it besides its
	// own (proxy.WebSocketConfig.Origins).
	WebSocketOrigins []string
	// TunnelTicket gives the password of a tunnel `.vv` (a short-lived
	// qemu ticket set over QMP, say); nil: the console's stored ticket.
	TunnelTicket api.TunnelTicketFunc

	// Proxy settings passed to proxy.Proxy (zero values: its defaults).
	AllowPlain       bool
	Firewall         proxy.FirewallMode
	BackendTimeout   time.Duration
	HandshakeTimeout time.Duration
	// MaxHandshakes and MaxHandshakesPerSource cap the connections in
	// their handshake (proxy.Proxy's fields: 0 its default, negative off).
	MaxHandshakes, MaxHandshakesPerSource int
	// Configure, when set, is called with the proxy after the daemon has
	// set its fields and before it starts, for settings the daemon does
	// not name (Rules, IdleTimeout, handshake caps, …).
	Configure func(*proxy.Proxy)

	// The proxy's TLS certificate, first match wins:
	//   - Certificate (and CACertPEM, the CA `.vv` files embed), in Go;
	//   - TLSCertFile and TLSKeyFile (PEM; the key file must not be
	//     readable by group or others), and CAFile, the CA `.vv` files
	//     embed (default: the certificate itself when self-signed, else
	//     none: clients use their system trust store);
	//   - StateDir: a CA and a server certificate generated on first use
	//     and kept there (keys 0600 in a 0700 directory), so restarts
	//     keep them and `.vv` files already handed out stay valid;
	//   - otherwise an ephemeral CA, in memory only.
	Certificate             *tls.Certificate
	CACertPEM               []byte
	TLSCertFile, TLSKeyFile string
	CAFile                  string
	StateDir                string

	// Logger gets the daemon's lines: listening, every reload (one line
	// each), watching (nil: discarded).
	Logger *slog.Logger
	// AuditLogger gets the proxy's audit events and one line per API
	// request (nil: discarded). Neither logger ever gets a ticket, token
	// or key.
	AuditLogger *slog.Logger
	// OnReload, when set, is called after every reload with its result
	// (reloads are serialised; it must not call Reload, Load or
	// LoadFile). Tests wait on it instead of sleeping.
	OnReload func(ReloadResult)
	// Now is the store's clock (nil: time.Now).
	Now func() time.Time

	// Names maps settings to what the user sets, for error messages: a
	// CLI maps SettingAPIKey to "HARNESS_API_KEY" and SettingTLSKey to
	// "--tls-key". Missing: the Config field ("Config.APIKey").
	Names map[Setting]string
}

// Setting names a Config field in error messages (see Config.Names).
type Setting string

// Settings that errors name.
const (
	SettingSources      Setting = "Sources"
	SettingAllowErrors  Setting = "AllowErrors"
	SettingPollInterval Setting = "PollInterval"
	SettingPlainAddr    Setting = "PlainAddr"
	SettingTLSAddr      Setting = "TLSAddr"
	SettingAPIAddr      Setting = "APIAddr"
	SettingConnectAddr  Setting = "ConnectAddr"
	SettingWebSocket    Setting = "WebSocketAddr"
	SettingProxyHost    Setting = "ProxyHost"
	SettingAPIKey       Setting = "APIKey"
	SettingTokenTTL     Setting = "TokenTTL"
	SettingTLSCert      Setting = "TLSCertFile"
	SettingTLSKey       Setting = "TLSKeyFile"
	SettingCA           Setting = "CAFile"
	SettingStateDir     Setting = "StateDir"
)

func (c *Config) name(s Setting) string {
	if n, ok := c.Names[s]; ok && n != "" {
		return n
	}
	return "Config." + string(s)
}

// Errors. Every configuration error is a *ConfigError naming the setting
// as Config.Names spells it; these sentinels sort them.
var (
	// ErrConfig: a setting is unusable.
	ErrConfig = errors.New("invalid configuration")
	// ErrKeyPermissions: a private key file (or the state directory)
	// is open to group or others (the state directory: writable by them).
	ErrKeyPermissions = errors.New("private key readable by others")
	// ErrInsecureAPI: the API would listen where other machines reach it,
	// without an API key (it also matches api.ErrInsecureListen).
	ErrInsecureAPI = errors.New("API reachable by other machines without a key")
	// ErrStarted: Start was called twice. ErrClosed: the daemon was shut
	// down.
	ErrStarted = errors.New("daemon: already started")
	ErrClosed  = errors.New("daemon: closed")
	// ErrNoSources: Reload without a sources file.
	ErrNoSources = errors.New("daemon: no sources file to reload")
)

// ConfigError is a setting a person must change. Its message names the
// setting as they set it (Config.Names) and says what to do.
type ConfigError struct {
	Setting Setting
	// Err is ErrConfig, ErrKeyPermissions or ErrInsecureAPI, and the
	// cause when there is one.
	Err error
	msg string
}

func (e *ConfigError) Error() string { return e.msg }

// Unwrap returns the sentinel and the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

func (c *Config) errorf(s Setting, sentinel error, format string, args ...any) *ConfigError {
	return &ConfigError{Setting: s, Err: sentinel, msg: fmt.Sprintf(format, args...)}
}

// check validates c and fills in the defaults.
func (c *Config) check() error {
	for _, a := range []struct {
		s    Setting
		addr *string
	}{{SettingPlainAddr, &c.PlainAddr}, {SettingTLSAddr, &c.TLSAddr}, {SettingAPIAddr, &c.APIAddr}} {
		if *a.addr == "" {
			*a.addr = DefaultAddr
		}
		if _, _, err := net.SplitHostPort(*a.addr); err != nil {
			return c.errorf(a.s, ErrConfig, "%s %q is not HOST:PORT (for example 127.0.0.1:5900, or port 0 for a free one)", c.name(a.s), *a.addr)
		}
	}
	if c.ConnectAddr != "" {
		if _, _, err := net.SplitHostPort(c.ConnectAddr); err != nil {
			return c.errorf(SettingConnectAddr, ErrConfig, "%s %q is not HOST:PORT (for example 127.0.0.1:3128, or port 0 for a free one)", c.name(SettingConnectAddr), c.ConnectAddr)
		}
	}
	if c.WebSocketAddr != "" {
		if _, _, err := net.SplitHostPort(c.WebSocketAddr); err != nil {
			return c.errorf(SettingWebSocket, ErrConfig, "%s %q is not HOST:PORT (for example 127.0.0.1:6081, or port 0 for a free one)", c.name(SettingWebSocket), c.WebSocketAddr)
		}
	}
	if c.ProxyHost == "" {
		c.ProxyHost = DefaultProxyHost
		if h, _, _ := net.SplitHostPort(c.TLSAddr); h != "" {
			if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
				c.ProxyHost = h
			}
		}
	}
	for _, r := range c.APIKey {
		if r <= ' ' || r == 0x7f {
			return c.errorf(SettingAPIKey, ErrConfig, "%s contains white space or a control character; use a key of printable characters", c.name(SettingAPIKey))
		}
	}
	if c.APIKey == "" && reachable(c.APIAddr) {
		return c.insecureAPI()
	}
	if c.TokenTTL < 0 {
		return c.errorf(SettingTokenTTL, ErrConfig, "%s %v is negative; give a lifetime such as 60s", c.name(SettingTokenTTL), c.TokenTTL)
	}
	switch {
	case c.PollInterval < 0:
		return c.errorf(SettingPollInterval, ErrConfig, "%s %v is negative", c.name(SettingPollInterval), c.PollInterval)
	case c.PollInterval == 0:
		c.PollInterval = DefaultPollInterval
	}
	if c.Debounce <= 0 {
		c.Debounce = DefaultDebounce
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return c.errorf(SettingTLSCert, ErrConfig, "%s and %s go together: give both, or neither for a generated certificate", c.name(SettingTLSCert), c.name(SettingTLSKey))
	}
	if c.CAFile != "" && c.TLSCertFile == "" {
		return c.errorf(SettingCA, ErrConfig, "%s is the CA that signed %s; give %s and %s too", c.name(SettingCA), c.name(SettingTLSCert), c.name(SettingTLSCert), c.name(SettingTLSKey))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (c *Config) insecureAPI() *ConfigError {
	return &ConfigError{Setting: SettingAPIKey, Err: insecureErr{},
		msg: fmt.Sprintf("%s %s accepts connections from other machines, and every .vv it serves carries a ticket or token: "+
			"set %s (clients then send \"Authorization: Bearer <key>\"), or listen on 127.0.0.1", c.name(SettingAPIAddr), c.APIAddr, c.name(SettingAPIKey))}
}

// reachable reports whether addr is certainly reachable from other
// machines: an empty or unspecified host, or an IP that is not loopback.
// A host name is checked by the API after it listens.
func reachable(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && !ip.IsLoopback()
}

// insecureErr matches ErrInsecureAPI and api.ErrInsecureListen.
type insecureErr struct{}

func (insecureErr) Error() string { return ErrInsecureAPI.Error() }

func (insecureErr) Is(target error) bool {
	return target == ErrInsecureAPI || target == api.ErrInsecureListen
}
