package harness

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/qemu"
)

// Environment variables read by this package (qemu reads HARNESS_QEMU,
// HARNESS_ACCEL, HARNESS_STATE_DIR and HARNESS_KEEP itself). Explicit
// options beat them; they beat the defaults.
const (
	EnvVMs            = "HARNESS_VMS"              // number of VMs (default 1)
	EnvLibvirt        = "HARNESS_LIBVIRT"          // libvirt URI: VMs become libvirt domains
	EnvTLSBackends    = "HARNESS_TLS_BACKENDS"     // "1": qemu also serves SPICE over TLS
	EnvTimeout        = "HARNESS_TIMEOUT"          // bound on Start/Up (default 2m)
	EnvTokenTTL       = "HARNESS_TOKEN_TTL"        // token lifetime (default 60s)
	EnvExternalAPI    = "HARNESS_EXTERNAL_API"     // base URL of an external Kerbside-style .vv API
	EnvExternalToken  = "HARNESS_EXTERNAL_TOKEN"   // its bearer token
	EnvExternalSource = "HARNESS_EXTERNAL_SOURCES" // where to write the sources.yaml it loads
	EnvKeep           = "HARNESS_KEEP"             // "1": keep the state dir after Close
)

// DefaultSource is the name of the static source the harness writes.
const DefaultSource = "harness"

type config struct {
	vms         int
	accel       qemu.Accelerator
	libvirt     string
	tlsBackends bool
	allowPlain  bool
	tokenTTL    time.Duration
	timeout     time.Duration
	source      string
	apiKey      string
	firewall    proxy.FirewallMode
	backendTO   time.Duration
	handshakeTO time.Duration
	maxHS       int // proxy.Proxy.MaxHandshakes
	maxHSSource int // proxy.Proxy.MaxHandshakesPerSource
	qemuOpts    []qemu.Option
	logger      *slog.Logger
	proxyLog    *slog.Logger
	keep        bool
	plainAddr   string
	tlsAddr     string
	apiAddr     string

	external        string // external API base URL
	externalToken   string
	externalSources string
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
// ("qemu:///system", "qemu+tcp://127.0.0.1/system", …).
func Libvirt(uri string) Option {
	return func(c *config) error { c.libvirt = uri; return nil }
}

// TLSBackends makes qemu serve SPICE over TLS too (certificates from a
// harness CA, written to the source's ca_cert); the proxy then reaches
// the consoles over TLS.
func TLSBackends() Option {
	return func(c *config) error { c.tlsBackends = true; return nil }
}

// AllowPlain makes the proxy serve sessions on its plain listener
// instead of answering NEED_SECURED.
func AllowPlain() Option {
	return func(c *config) error { c.allowPlain = true; return nil }
}

// TokenTTL sets how long minted tokens may open their session.
func TokenTTL(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("harness: TokenTTL(%v): want > 0", d)
		}
		c.tokenTTL = d
		return nil
	}
}

// Timeout bounds Start/Up.
func Timeout(d time.Duration) Option {
	return func(c *config) error { c.timeout = d; return nil }
}

// Source names the static source (default "harness").
func Source(name string) Option {
	return func(c *config) error { c.source = name; return nil }
}

// APIKey protects the `.vv` API with a bearer key.
func APIKey(key string) Option {
	return func(c *config) error { c.apiKey = key; return nil }
}

// Firewall sets the proxy's firewall mode.
func Firewall(m proxy.FirewallMode) Option {
	return func(c *config) error { c.firewall = m; return nil }
}

// BackendTimeout sets the proxy's bound on dialing and linking qemu
// (default proxy.DefaultBackendTimeout).
func BackendTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("harness: BackendTimeout(%v): want > 0", d)
		}
		c.backendTO = d
		return nil
	}
}

// HandshakeTimeout sets the proxy's bound on a client's TLS handshake and
// link stage (default proxy.DefaultHandshakeTimeout).
func HandshakeTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("harness: HandshakeTimeout(%v): want > 0", d)
		}
		c.handshakeTO = d
		return nil
	}
}

// HandshakeLimits sets the proxy's caps on connections still in their
// handshake, over both listeners and per client address
// (proxy.Proxy.MaxHandshakes and MaxHandshakesPerSource): 0 keeps the
// proxy's default, negative turns the cap off.
func HandshakeLimits(total, perSource int) Option {
	return func(c *config) error { c.maxHS, c.maxHSSource = total, perSource; return nil }
}

// QemuOptions passes options to every qemu.Start.
func QemuOptions(opts ...qemu.Option) Option {
	return func(c *config) error { c.qemuOpts = append(c.qemuOpts, opts...); return nil }
}

// Logger receives progress (booting, QMP ready, ticket set, listening).
func Logger(l *slog.Logger) Option {
	return func(c *config) error { c.logger = l; return nil }
}

// ProxyLogger receives the proxy's structured audit events.
func ProxyLogger(l *slog.Logger) Option {
	return func(c *config) error { c.proxyLog = l; return nil }
}

// Keep keeps the state dir after Close.
func Keep() Option {
	return func(c *config) error { c.keep = true; return nil }
}

// Listen sets the proxy's plain and TLS listen addresses and the API's
// (default 127.0.0.1:0 each).
func Listen(plain, tls, api string) Option {
	return func(c *config) error { c.plainAddr, c.tlsAddr, c.apiAddr = plain, tls, api; return nil }
}

// External targets a proxy the harness did not start: apiURL is the base
// URL of its Kerbside-style `.vv` API (token: its bearer key, may be
// empty). The harness then only boots VMs and writes sourcesPath, the
// sources.yaml that proxy should load, and waits until the API lists the
// consoles.
func External(apiURL, token, sourcesPath string) Option {
	return func(c *config) error {
		if apiURL == "" || sourcesPath == "" {
			return fmt.Errorf("harness: External needs the API URL and the sources.yaml path")
		}
		c.external, c.externalToken, c.externalSources = apiURL, token, sourcesPath
		return nil
	}
}

func newConfig(opts []Option) (*config, error) {
	c := &config{vms: 1, tokenTTL: 60 * time.Second, timeout: 2 * time.Minute, source: DefaultSource,
		plainAddr: "127.0.0.1:0", tlsAddr: "127.0.0.1:0", apiAddr: "127.0.0.1:0"}
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
	c.tlsBackends = os.Getenv(EnvTLSBackends) == "1"
	c.keep = os.Getenv(EnvKeep) == "1"
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{EnvTimeout, &c.timeout}, {EnvTokenTTL, &c.tokenTTL}} {
		if v := os.Getenv(d.name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x <= 0 {
				return fmt.Errorf("harness: %s=%q: want a positive duration like 90s", d.name, v)
			}
			*d.dst = x
		}
	}
	if v := os.Getenv(EnvExternalAPI); v != "" {
		c.external, c.externalToken, c.externalSources = v, os.Getenv(EnvExternalToken), os.Getenv(EnvExternalSource)
		if c.externalSources == "" {
			return fmt.Errorf("harness: %s is set but %s (where to write sources.yaml for it) is not", EnvExternalAPI, EnvExternalSource)
		}
	}
	return nil
}
