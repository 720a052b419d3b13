package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/internal/tail"
)

// Browser is a headless Chromium (Debian's chromium) that opens
// spice-html5 against WebSocket gateways: the real-client oracle of the
// browser family, as spicy-screenshot and remote-viewer are for SPICE
// proxies. One Browser serves one lane; each Open is a tab of its own.
//
// It runs as a child of this process (its own process group, a
// parent-death signal) with a fresh profile directory removed by Close,
// and is driven over the DevTools protocol on a pipe (fds 3 and 4), never
// on a TCP port: a debugging port on 127.0.0.1 would let any local user
// attach to the page and read the console's credentials. The harness
// hands spice-html5 its WebSocket URL and password through that pipe,
// so neither appears in Chromium's argv, its history or a log.
type Browser struct {
	// HTML5Dir is the spice-html5 tree pages load (main.js and its
	// modules).
	HTML5Dir string

	dir     string // profile and HOME, removed by Close
	child   *proc.Child
	out     *syncbuf.Buffer
	log     *slog.Logger
	ctx     context.Context // the browser's root chromedp context
	cancel  context.CancelFunc
	conn    *chromedp.PipeConn
	mu      sync.Mutex
	pages   []*Page
	closed  bool
	closeMu sync.Mutex
}

// BrowserOptions configure StartBrowser. The zero value works on a
// machine with Debian's chromium and spice-html5 packages.
type BrowserOptions struct {
	// Binary is the Chromium program ("": HARNESS_CHROMIUM, else chromium
	// from PATH).
	Binary string
	// HTML5Dir is spice-html5's directory ("": HARNESS_SPICE_HTML5, else
	// SpiceHTML5Dir, where Debian's spice-html5 puts it).
	HTML5Dir string
	// Logger gets the browser's own errors (nil: discarded). Page
	// contents, URLs and credentials are never logged.
	Logger *slog.Logger
}

// Environment variables of the browser oracle.
const (
	EnvChromium   = "HARNESS_CHROMIUM"    // the Chromium binary
	EnvSpiceHTML5 = "HARNESS_SPICE_HTML5" // spice-html5's directory
)

// ErrNoBrowser is matched by the errors of a machine without Chromium or
// spice-html5; the message names the Debian package to install.
var ErrNoBrowser = errors.New("harness: the browser oracle is not installed")

// FindChromium returns the Chromium binary StartBrowser would run, or an
// error matching ErrNoBrowser that names the package.
func FindChromium(binary string) (string, error) {
	if binary == "" {
		binary = os.Getenv(EnvChromium)
	}
	if binary == "" {
		binary = "chromium"
	}
	p, err := exec.LookPath(binary)
	if err != nil {
		return "", fmt.Errorf("%w: %s not found (install Debian's chromium package, or run make deps; %s names another binary): %v", ErrNoBrowser, binary, EnvChromium, err)
	}
	return p, nil
}

// FindSpiceHTML5 returns the spice-html5 directory StartBrowser would
// serve, or an error matching ErrNoBrowser that names the package.
func FindSpiceHTML5(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(EnvSpiceHTML5)
	}
	if dir == "" {
		dir = SpiceHTML5Dir
	}
	if _, err := os.Stat(filepath.Join(dir, "main.js")); err != nil {
		return "", fmt.Errorf("%w: no spice-html5 in %s (install Debian's spice-html5 package, or run make deps; %s names another directory): %v", ErrNoBrowser, dir, EnvSpiceHTML5, err)
	}
	return dir, nil
}

// chromiumFlags are the flags every Browser runs with. Headless with no
// sandbox (the harness runs as root, where Chromium's sandbox refuses to
// start) and no GPU. The rest keep Chromium off the network and quiet:
// without --disable-background-networking and its kin, Chromium opens
// connections of its own (updates, sync, QUIC probes), which a closed
// network refuses many at a time. The timer flags keep a tab that is not
// in front running at full speed: spice-html5 paces itself with timers.
// LocalNetworkAccessChecks is off because the page is served from the
// DevTools protocol (see Page), a response with no address, which
// Chromium 156 ranks as public: its WebSocket to a gateway on 127.0.0.1
// then fails before any byte is sent (measured: error event, close code
// 1006, nothing reached websockify) unless the check is off.
var chromiumFlags = []string{
	"--headless",
	"--no-sandbox",
	"--disable-gpu",
	"--disable-quic",
	"--no-first-run",
	"--no-default-browser-check",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
	"--disable-extensions",
	"--disable-default-apps",
	"--disable-breakpad",
	"--disable-crash-reporter",
	"--disable-dev-shm-usage",
	"--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,LocalNetworkAccessChecks",
	"--disable-background-timer-throttling",
	"--disable-backgrounding-occluded-windows",
	"--disable-renderer-backgrounding",
	"--metrics-recording-only",
	"--password-store=basic",
	"--use-mock-keychain",
	"--mute-audio",
	"--force-device-scale-factor=1",
	"--window-size=1024,768",
	"--remote-debugging-pipe",
}

// StartBrowser starts headless Chromium with a fresh profile and connects
// to it. Close stops it and removes the profile.
func StartBrowser(ctx context.Context, o BrowserOptions) (*Browser, error) {
	bin, err := FindChromium(o.Binary)
	if err != nil {
		return nil, err
	}
	html5, err := FindSpiceHTML5(o.HTML5Dir)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "spice-harness-chromium-")
	if err != nil {
		return nil, err
	}
	b := &Browser{HTML5Dir: html5, dir: dir, out: &syncbuf.Buffer{}, log: o.Logger}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if err := b.start(ctx, bin); err != nil {
		return nil, errors.Join(err, b.Close())
	}
	return b, nil
}

func (b *Browser) start(ctx context.Context, bin string) error {
	profile := filepath.Join(b.dir, "profile")
	home := filepath.Join(b.dir, "home")
	for _, d := range []string{profile, home} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	// Commands go in on the child's fd 3, replies and events come out on
	// its fd 4 (--remote-debugging-pipe).
	childR, parentW, err := os.Pipe()
	if err != nil {
		return err
	}
	parentR, childW, err := os.Pipe()
	if err != nil {
		childR.Close()
		parentW.Close()
		return err
	}
	args := append(append([]string(nil), chromiumFlags...), "--user-data-dir="+profile, "about:blank")
	cmd := exec.Command(bin, args...)
	cmd.ExtraFiles = []*os.File{childR, childW}
	cmd.Stdout, cmd.Stderr = b.out, b.out
	cmd.Env = browserEnv(home)
	b.child, err = proc.Start(cmd)
	childR.Close()
	childW.Close()
	if err != nil {
		parentR.Close()
		parentW.Close()
		return fmt.Errorf("harness: start chromium: %w", err)
	}
	b.conn = chromedp.NewPipeConn(parentR, parentW)
	allocCtx, cancelAlloc := chromedp.NewAllocatorContext(context.Background(), &pipeAllocator{conn: b.conn})
	bctx, cancel := chromedp.NewContext(allocCtx,
		// The format only: chromedp's arguments can hold protocol
		// messages, and a page's carry its endpoint's credentials.
		chromedp.WithErrorf(func(f string, _ ...any) { b.log.Warn("chromedp: " + f) }),
		chromedp.WithLogf(func(string, ...any) {}))
	b.ctx, b.cancel = bctx, func() { cancel(); cancelAlloc() }
	// The first action connects and opens the root tab; it is bounded by
	// ctx without binding the browser's life to it.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(bctx) }()
	select {
	case err = <-started:
	case <-b.child.Exited():
		err = fmt.Errorf("harness: chromium exited (%v) before it answered on its DevTools pipe:\n%s", b.child.ProcessState(), tail.Lines(b.out.String(), 15))
	case <-ctx.Done():
		err = fmt.Errorf("harness: chromium did not answer on its DevTools pipe: %w\n%s", ctx.Err(), tail.Lines(b.out.String(), 15))
	}
	if err != nil {
		return fmt.Errorf("harness: connecting to chromium: %w", err)
	}
	return nil
}

// browserEnv is Chromium's environment: this process's, with HOME and the
// XDG directories in the browser's own directory (it writes caches and a
// key store there), and no display (headless needs none).
func browserEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "DISPLAY", "WAYLAND_DISPLAY":
		default:
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"))
}

// pipeAllocator hands chromedp the connection of a Chromium this package
// started: chromedp then treats it as a browser it attaches to (each
// context a tab of its own) and leaves the process to Browser.
type pipeAllocator struct {
	conn *chromedp.PipeConn
}

func (a *pipeAllocator) Allocate(ctx context.Context, opts ...chromedp.BrowserOption) (*chromedp.Browser, error) {
	return chromedp.NewBrowserTransport(ctx, a.conn, opts...)
}

func (a *pipeAllocator) Wait()          {}
func (a *pipeAllocator) Attaches() bool { return true }

// Output is what Chromium printed so far (its own warnings; never page
// contents).
func (b *Browser) Output() string { return b.out.String() }

// Pid is Chromium's pid (and process group).
func (b *Browser) Pid() int { return b.child.Pid() }

// Exited is closed once Chromium has exited.
func (b *Browser) Exited() <-chan struct{} { return b.child.Exited() }

// Close closes the pages, asks Chromium to quit, stops its process group
// (SIGTERM, then SIGKILL) and removes its profile. Idempotent.
func (b *Browser) Close() error {
	if b == nil {
		return nil
	}
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.mu.Lock()
	pages := b.pages
	b.pages = nil
	b.mu.Unlock()
	for _, p := range pages {
		p.Close()
	}
	var errs []error
	if b.ctx != nil {
		if c := chromedp.FromContext(b.ctx); c != nil && c.Browser != nil {
			// A graceful quit first: Chromium then ends its renderer and
			// helper processes itself.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			cdp.Call(ctx, c.Browser, browser.Close, cdp.Empty{}) //nolint:errcheck // the process stop below is the check
			cancel()
		}
		b.cancel()
	}
	if b.child != nil {
		select {
		case <-b.child.Exited():
		case <-time.After(3 * time.Second):
			// Chromium had its Browser.close; the stop below is the
			// escalation (no event tells a hung browser apart).
		}
		if err := b.child.Stop(3 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("harness: stopping chromium: %w", err))
		}
	}
	if b.conn != nil {
		b.conn.Close()
	}
	if b.dir != "" {
		errs = append(errs, os.RemoveAll(b.dir))
	}
	return errors.Join(errs...)
}
