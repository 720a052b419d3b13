// Package harness runs a SPICE test lane: it boots qemu VMs with fresh
// tickets, writes their Kerbside `type: static` source (into the console
// store and as sources.yaml), and serves them through the in-process
// SPICE proxy and `.vv` API — or, with External, drives a proxy it did
// not start.
//
// In a test:
//
//	func TestMine(t *testing.T) {
//		env := harness.Start(t, harness.VMs(2))    // cleanup registered
//		vm := env.VM(0)
//		s, f, err := env.Connect(ctx, harness.Proxy, vm) // fetch console.vv, link main
//		…
//		img, err := env.ScreenshotProxy(ctx, vm)   // spicy-screenshot through the proxy
//		rv, err := env.RemoteViewer(ctx, harness.Proxy, vm) // remote-viewer under Xvfb
//	}
//
// For a person (`harness up`): env, err := harness.Up(ctx, opts...); defer
// env.Close(). In front of hand-launched qemu (`harness serve`):
// harness.Serve(ctx, "sources.yaml", opts...), which reloads the file when
// it changes.
//
// Start routes progress, the proxy's audit events and the VMs' serial
// output to t.Logf. When the test fails, it logs each VM's serial and qemu
// log tails, the proxy audit log and a copy-pasteable command that reruns
// just that test. Close leaves no process, socket or temp dir: qemu, Xvfb,
// remote-viewer and spicy-screenshot run in their own process groups with
// a parent-death signal, so even a SIGKILLed test binary leaves nothing.
//
// # Options and environment
//
// Explicit options beat HARNESS_* variables, which beat the defaults.
//
//	option            variable                   default
//	VMs(n)            HARNESS_VMS                1
//	Accel(a)          HARNESS_ACCEL (qemu)       auto: TCG for the built-in guest
//	Libvirt(uri)      HARNESS_LIBVIRT            none: qemu child processes
//	TLSBackends()     HARNESS_TLS_BACKENDS=1     qemu serves plain SPICE only
//	TokenTTL(d)       HARNESS_TOKEN_TTL          60s
//	Timeout(d)        HARNESS_TIMEOUT            2m (booting the lane)
//	External(u,t,p)   HARNESS_EXTERNAL_API,      none: the in-process proxy
//	                  HARNESS_EXTERNAL_TOKEN,
//	                  HARNESS_EXTERNAL_SOURCES
//	WithTarget(       HARNESS_CONNECT_PROXY=URL, none: the in-process proxy
//	 ConnectProxy(c)) or HARNESS_SQUID=1
//	TunnelTicketTTL(d) –                         30s: tunnel .vv tickets
//	Keep()            HARNESS_KEEP=1             state dir removed by Close
//	–                 HARNESS_QEMU               qemu-system-x86_64 from PATH
//	–                 HARNESS_STATE_DIR          os.TempDir(), for qemu's state
//	AllowPlain(), APIKey(k), Firewall(m), Source(name), Listen(…),
//	ConnectListen(a), QemuOptions(…), Logger(l), ProxyLogger(l): no
//	variable.
//
// # Secrets
//
// Tickets and tokens appear only on the wire, in `.vv` files (0600) and in
// sources.yaml (0600, it is the ticket carrier by design) — never in logs,
// JSON or argv, with one documented exception: spicy-screenshot accepts a
// password only as -w, so Screenshot is only ever handed single-use
// credentials (a proxy token consumed by the capture, or a temporary qemu
// ticket that ScreenshotDirect replaces right after the capture).
//
// It is not a test framework of its own: scenarios (package scenarios) are
// plain functions over an Env, run by go test and by `harness run`.
package harness
