// Package harness runs a SPICE test lane against a proxy under test: it
// boots qemu VMs with fresh tickets (set over QMP, never on a command
// line), writes their Kerbside `type: static` source as sources.yaml, has
// the proxy under test (a Target) serve them, and gives scenarios what
// they need to drive it with real SPICE clients.
//
// The proxy under test is this repository's in-process proxy when
// package harness/inproc is linked in (it registers itself as the
// default), or one chosen with an option:
//
//	Exec("./myproxy --sources {sources} --api 127.0.0.1:{api_port} …")
//	                      // started per lane and supervised (WithTarget(ExecTarget(ExecConfig{…})): the full form)
//	WithTarget(Kerbside(KerbsideConfig{API: url, SourcesPath: path}))
//	                      // a deployment reached over HTTP (Kerbside's dialect)
//	WithTarget(ConnectProxy(ConnectProxyConfig{…}))
//	                      // an HTTP CONNECT proxy (squid per lane, or yours)
//	WebSocket(WebSocketConfig{…})
//	                      // a WebSocket gateway (websockify per lane, or yours)
//
// A Target has a few duties (start, load the consoles, mint a proxy
// `.vv`, stop) and optional capabilities (terminate, metrics, a token
// clock, …; see Capability). Importing this package builds none of this
// repository's proxy, its API, gorilla/mux or Prometheus into a proxy
// author's test binary.
//
// A proxy author's first test:
//
//	func TestTypingThroughMyProxy(t *testing.T) {
//		env := harness.Start(t, harness.Exec("./myproxy --sources {sources} --listen 127.0.0.1:{plain_port} --api 127.0.0.1:{api_port}"))
//		c := env.Client(t, 0) // a session through the proxy: main, display, inputs, cursor
//		c.Type("mine")
//		c.WaitGuest(`READY> mine`)
//	}
//
// and the pieces underneath:
//
//	import _ "github.com/spiceharness/spiceharness/harness/inproc" // or Exec(…), WithTarget(…)
//
//	func TestMine(t *testing.T) {
//		env := harness.Start(t, harness.VMs(2))           // cleanup registered
//		vm := env.VM(0)
//		s, f, err := env.Connect(ctx, harness.Proxy, vm)  // fetch a proxy .vv, link main
//		_, inputs, _, err := harness.OpenAll(ctx, s)      // display, inputs, cursor
//		img, err := env.ScreenshotProxy(ctx, vm)          // spicy-screenshot through the proxy
//		rv, err := env.RemoteViewer(ctx, harness.Proxy, vm) // remote-viewer under Xvfb
//		f, err := env.FetchVV(ctx, harness.WS, vm)        // a WebSocket endpoint (browser family)
//		p, err := env.OpenPage(ctx, harness.WebSocketEndpointOf(f)) // spice-html5 in headless Chromium
//		img, err := p.WaitCanvas(ctx, same); err = p.Type(ctx, "keys") // its canvas, its keyboard
//		w := vm.WatchConnections(); …; w.Barrier(ctx)     // "nothing reached qemu", proven
//	}
//
// For a person (`harness up`): env, err := harness.Up(ctx, opts...); defer
// env.Close().
//
// Start routes progress, the proxy's log and the VMs' serial output to
// t.Logf, and skips under `go test -short`. When the test fails, it logs
// each VM's serial and qemu log tails, the proxy's audit log or log tail
// and a copy-pasteable command that reruns just that test against the same
// target (secrets named by their variable, never printed), and keeps a
// screenshot of each browser page the lane opened in the test's artifact
// directory (SaveArtifact: go test -artifacts, harness run --artifacts),
// logged as [[ATTACHMENT|PATH]] for JUnit readers. Env.Context
// gives a context that ends at once, with the cause, when the proxy under
// test dies. Close leaves no process, socket or temp dir: qemu, Xvfb,
// remote-viewer, spicy-screenshot, Chromium and an exec target run in their own
// process groups with a parent-death signal, so even a SIGKILLed test
// binary leaves nothing.
//
// # Options and environment
//
// Explicit options beat HARNESS_* variables, which beat the defaults.
//
//	option              variable                     default
//	VMs(n)              HARNESS_VMS                  1
//	Accel(a)            HARNESS_ACCEL (qemu)         auto: TCG for the built-in guest
//	Libvirt(uri)        HARNESS_LIBVIRT              none: qemu child processes
//	WithHosts(hs)       HARNESS_HOSTS=FILE           none: the lane's VMs run here
//	OnHost(name)        HARNESS_HOST                 any host that fits
//	RequireLabels(…)    –                            none (TLSBackends adds spice-tls)
//	TLSBackends()       HARNESS_TLS_BACKENDS=1       qemu serves plain SPICE only
//	TokenTTL(d)         HARNESS_TOKEN_TTL            60s
//	Timeout(d)          HARNESS_TIMEOUT              2m (booting the lane)
//	Network(leg, link)  –                            loopback, unshaped (docs/network.md;
//	                                                 Env.Net changes links mid-test)
//	Exec(cmd)           HARNESS_EXEC,                the default target
//	                    HARNESS_EXEC_ENV, HARNESS_EXEC_TOKEN,
//	                    HARNESS_EXEC_RELOAD, HARNESS_EXEC_READY,
//	                    HARNESS_EXEC_READY_WITHIN, HARNESS_EXEC_RELOAD_WITHIN
//	                    (ExecConfigFromEnv; one per ExecConfig field)
//	WithTarget(Kerbside)/External
//	                    HARNESS_EXTERNAL_API,        the default target
//	                    HARNESS_EXTERNAL_SOURCES,
//	                    HARNESS_EXTERNAL_TOKEN (or _USER and _PASSWORD),
//	                    HARNESS_EXTERNAL_RELOAD, HARNESS_EXTERNAL_TOKEN_TTL
//	WithTarget(ConnectProxy)
//	                    HARNESS_CONNECT_PROXY=URL,   the default target
//	                    or HARNESS_SQUID=1
//	WithTarget(WebSocket)
//	                    HARNESS_WEBSOCKET=TEMPLATE,  the default target
//	                    HARNESS_WEBSOCKET_TOKEN_FILE,
//	                    HARNESS_WEBSOCKET_ORIGIN,
//	                    or HARNESS_WEBSOCKIFY=1
//	TunnelTicketTTL(d)  –                            30s: tunnel .vv tickets
//	Keep()              HARNESS_KEEP=1               state dir removed by Close
//	–                   HARNESS_QEMU                 qemu-system-x86_64 from PATH
//	–                   HARNESS_STATE_DIR            os.TempDir(), for qemu's state
//	–                   HARNESS_CHROMIUM             chromium from PATH (the browser oracle)
//	–                   HARNESS_SPICE_HTML5          /usr/share/spice-html5
//	AllowPlain(), APIKey(k), BackendTimeout(d), HandshakeTimeout(d),
//	HandshakeLimits(n, m), Source(name), Listen(…), ConnectListen(a),
//	WebSocketListen(a), WebSocketIdleTimeout(d), IdleTimeout(d),
//	QemuOptions(…), Logger(l), ProxyLogger(l): no variable.
//
// # Secrets
//
// Tickets and tokens appear only on the wire, in `.vv` files (0600) and in
// sources.yaml (0600, it is the ticket carrier by design) — never in logs,
// JSON, reports or argv, with one documented exception: spicy-screenshot
// accepts a password only as -w, so Screenshot is only ever handed
// single-use credentials (a proxy token consumed by the capture, or a
// temporary qemu ticket that ScreenshotDirect replaces right after the
// capture).
//
// # Hypervisor hosts
//
// With WithHosts (a hosts file: LoadHosts, docs/hosts.md) a lane's VMs
// run on one of several hypervisor hosts, reached through their libvirtd;
// the proxy under test and the clients stay here. Lanes are placed by
// label and free slots (see Hosts); the host is part of every VM's name
// in logs and reports (Env.Host). A host that goes away ends its lanes'
// Context with a *HostLostError naming it, and the others go on.
//
// It is not a test framework of its own: scenarios (package scenarios) are
// plain functions over an Env, run by go test and by `harness run`.
package harness
