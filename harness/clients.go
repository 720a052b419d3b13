package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/internal/tail"
)

// Endpoint is what a real SPICE client needs to connect: the fields of a
// `.vv` file.
type Endpoint struct {
	Host     string
	Port     int // plain port, 0 for none
	TLSPort  int // TLS port, 0 for none
	Password string
	// CAPEM is the CA to trust for TLS (spicy-screenshot gets it through
	// SSL_CERT_FILE; it has no host-subject option and checks the SANs).
	CAPEM []byte
	// Proxy is the HTTP CONNECT proxy to go through ("http://HOST:PORT",
	// a .vv's proxy=; spicy-screenshot gets it as SPICE_PROXY). Host is
	// then passed to the proxy unchanged.
	Proxy string
}

// ClientError is a real client's failure: exit status, the spice-gtk
// channel event it reported (20 connect, 21 TLS, 22 link, 23 auth,
// 24 I/O; 0 when none) and the tail of its stderr.
type ClientError struct {
	Program string
	Status  string
	Event   int
	Stderr  string
}

func (e *ClientError) Error() string {
	s := fmt.Sprintf("%s: %s", e.Program, e.Status)
	if e.Event != 0 {
		s += fmt.Sprintf(" (main channel event %d: %s)", e.Event, channelEventName(e.Event))
	}
	if e.Stderr != "" {
		s += "\n" + e.Stderr
	}
	return s
}

func channelEventName(n int) string {
	switch n {
	case 20:
		return "ERROR_CONNECT"
	case 21:
		return "ERROR_TLS"
	case 22:
		return "ERROR_LINK"
	case 23:
		return "ERROR_AUTH"
	case 24:
		return "ERROR_IO"
	}
	return "?"
}

var eventRE = regexp.MustCompile(`main channel event: (\d+)`)

// Screenshot captures the guest screen with spicy-screenshot (spice-gtk:
// main + display channels), writing its files under dir. It runs with
// the process's client home (see clientHome), so a capture costs what a
// user's does.
//
// spicy-screenshot takes the password only on its command line (-w): it
// has no file, environment or stdin option. Callers must therefore give
// it single-use credentials only: a proxy token (consumed by the capture's
// main channel) or a temporary qemu ticket replaced right after the
// capture (Env.ScreenshotDirect does both), or the short-lived ticket
// of a tunnel `.vv`. The CA goes through SSL_CERT_FILE, the proxy
// through SPICE_PROXY.
func Screenshot(ctx context.Context, ep Endpoint, dir string) (*Image, error) {
	bin, err := exec.LookPath("spicy-screenshot")
	if err != nil {
		return nil, fmt.Errorf("harness: spicy-screenshot not found (install spice-client-gtk, or run make deps): %w", err)
	}
	work, err := os.MkdirTemp(dir, "shot-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	out := filepath.Join(work, "shot.ppm")
	args := []string{"-h", ep.Host, "-o", out}
	if ep.Port != 0 {
		args = append(args, "-p", strconv.Itoa(ep.Port))
	}
	if ep.TLSPort != 0 {
		args = append(args, "-s", strconv.Itoa(ep.TLSPort))
	}
	if ep.Password != "" {
		args = append(args, "-w", ep.Password)
	}
	var extra []string
	if ep.Proxy != "" {
		extra = append(extra, "SPICE_PROXY="+ep.Proxy)
	}
	if len(ep.CAPEM) > 0 {
		ca := filepath.Join(work, "ca.pem")
		if err := os.WriteFile(ca, ep.CAPEM, 0o600); err != nil {
			return nil, err
		}
		extra = append(extra, "SSL_CERT_FILE="+ca)
	}
	env, err := clientEnv(extra...)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	child, err := proc.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("harness: start spicy-screenshot: %w", err)
	}
	if err := child.Wait(ctx); err != nil {
		child.Stop(time.Second)
		ce := &ClientError{Program: "spicy-screenshot", Status: err.Error(), Stderr: tail.Lines(stderr.String(), 10)}
		if m := eventRE.FindStringSubmatch(stderr.String()); m != nil {
			ce.Event, _ = strconv.Atoi(m[1])
		}
		return nil, ce
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("harness: spicy-screenshot exited 0 but wrote no picture: %w", err)
	}
	return DecodePPM(data)
}

// Guest area of remote-viewer 11's window on a bare Xvfb root (no window
// manager): the 720x400 guest screen sits at +5+51, and a crop there
// matches a spicy-screenshot of the same screen pixel for pixel
// (ImageMagick's compare -metric AE prints 0).
const (
	rvGuestX = 5
	rvGuestY = 51
)

// peerPid is the pid of the process at the other end of a unix socket.
func peerPid(c *net.UnixConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	pid := -1
	raw.Control(func(fd uintptr) {
		if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

// Xvfb is a private X server.
type Xvfb struct {
	Display string // ":N"
	child   *proc.Child
}

// StartXvfb starts Xvfb on a free display (-displayfd) with a 1024x768
// screen and no TCP listener. -noreset matters: by default an X server
// resets when its last client disconnects, so the readiness probe's own
// disconnect made the next client fail ("cannot open display") while the
// server reset (4 of 15 runs on a loaded machine).
func StartXvfb(ctx context.Context) (*Xvfb, error) {
	bin, err := exec.LookPath("Xvfb")
	if err != nil {
		return nil, fmt.Errorf("harness: Xvfb not found (install xvfb, or run make deps): %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(bin, "-displayfd", "3", "-screen", "0", "1024x768x24", "-nolisten", "tcp", "-noreset")
	cmd.ExtraFiles = []*os.File{w}
	var stderr syncbuf.Buffer // read here while the copier writes
	cmd.Stderr = &stderr
	child, err := proc.Start(cmd)
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("harness: start Xvfb: %w", err)
	}
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 32)
		n, _ := r.Read(b)
		got <- strings.TrimSpace(string(b[:n]))
	}()
	var d string
	select {
	case d = <-got:
	case <-ctx.Done():
		child.Stop(time.Second)
		return nil, fmt.Errorf("harness: Xvfb: %w", ctx.Err())
	}
	if d == "" {
		child.Stop(time.Second)
		return nil, fmt.Errorf("harness: Xvfb gave no display: %s", tail.Lines(stderr.String(), 5))
	}
	// Xvfb reports its display on -displayfd before it accepts clients
	// (measured: 7 of 10 immediate connections failed), so wait until
	// an X connection setup succeeds — with this Xvfb: while other lanes
	// start and stop theirs, a socket of the same display number can
	// still belong to a dying server.
	giveUp := time.After(10 * time.Second)
	for !x11Ready(d, child.Pid()) {
		select {
		case <-giveUp:
			child.Stop(time.Second)
			return nil, fmt.Errorf("harness: Xvfb on :%s did not accept a client within 10 s: %s", d, tail.Lines(stderr.String(), 5))
		case <-child.Exited():
			return nil, fmt.Errorf("harness: Xvfb exited: %s", tail.Lines(stderr.String(), 5))
		case <-ctx.Done():
			child.Stop(time.Second)
			return nil, fmt.Errorf("harness: Xvfb never accepted a client: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return &Xvfb{Display: ":" + d, child: child}, nil
}

// x11Ready reports whether both of display d's unix sockets (abstract,
// which libX11 tries first, and the file) belong to pid and complete an
// X11 connection setup.
func x11Ready(d string, pid int) bool {
	return x11Accepts("@/tmp/.X11-unix/X"+d, pid) && x11Accepts("/tmp/.X11-unix/X"+d, pid)
}

func x11Accepts(addr string, pid int) bool {
	c, err := net.DialTimeout("unix", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	if peerPid(c.(*net.UnixConn)) != pid {
		return false
	}
	c.SetDeadline(time.Now().Add(time.Second))
	// Little-endian setup request, protocol 11.0, no authorization.
	if _, err := c.Write([]byte{'l', 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		return false
	}
	var status [1]byte
	_, err = io.ReadFull(c, status[:])
	return err == nil && status[0] == 1
}

// Close stops the X server.
func (x *Xvfb) Close() error {
	if x == nil {
		return nil
	}
	x.child.Stop(2 * time.Second)
	return nil
}

// CaptureRoot grabs the whole X screen (ImageMagick import).
func (x *Xvfb) CaptureRoot(ctx context.Context) (*Image, error) {
	cmd := exec.CommandContext(ctx, "import", "-display", x.Display, "-window", "root", "-depth", "8", "ppm:-")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("harness: import -window root: %w", err)
	}
	return DecodePPM(out)
}

// RemoteViewer is remote-viewer (virt-viewer) running a `.vv` file under
// its own Xvfb: main, display, inputs and cursor channels, like a user's.
type RemoteViewer struct {
	X       *Xvfb
	Title   string
	dir     string
	logPath string
	child   *proc.Child
}

// StartRemoteViewer writes vv (mode 0600; the password lives only there)
// and opens it with `remote-viewer --debug` on a fresh Xvfb, with the
// process's client home (see clientHome). title is the .vv's title, used
// to find the window.
func StartRemoteViewer(ctx context.Context, vv []byte, title, dir string) (*RemoteViewer, error) {
	bin, err := exec.LookPath("remote-viewer")
	if err != nil {
		return nil, fmt.Errorf("harness: remote-viewer not found (install virt-viewer, or run make deps): %w", err)
	}
	work, err := os.MkdirTemp(dir, "rv-")
	if err != nil {
		return nil, err
	}
	x, err := StartXvfb(ctx)
	if err != nil {
		return nil, err
	}
	rv := &RemoteViewer{X: x, Title: title, dir: work, logPath: filepath.Join(work, "remote-viewer.log")}
	vvPath := filepath.Join(work, "console.vv")
	if err := os.WriteFile(vvPath, vv, 0o600); err != nil {
		x.Close()
		return nil, err
	}
	logf, err := os.Create(rv.logPath)
	if err != nil {
		x.Close()
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--debug", vvPath)
	if cmd.Env, err = clientEnv("DISPLAY=" + x.Display); err != nil {
		x.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if rv.child, err = proc.Start(cmd); err != nil {
		x.Close()
		return nil, fmt.Errorf("harness: start remote-viewer: %w", err)
	}
	return rv, nil
}

// Log returns remote-viewer's debug log so far.
func (rv *RemoteViewer) Log() string {
	b, _ := os.ReadFile(rv.logPath)
	return string(b)
}

// ErrAuth: remote-viewer reported an authentication failure.
var ErrAuth = errors.New("harness: remote-viewer: authentication failed")

// WaitOpened waits until the log shows "main channel: opened" and a
// display channel, and the window titled "TITLE (1)" is visible.
func (rv *RemoteViewer) WaitOpened(ctx context.Context) error {
	for {
		log := rv.Log()
		switch {
		case strings.Contains(log, "auth failure") || strings.Contains(log, "Authentication required"):
			return fmt.Errorf("%w:\n%s", ErrAuth, tail.Lines(log, 10))
		case strings.Contains(log, "Unable to connect"):
			return fmt.Errorf("harness: remote-viewer could not connect:\n%s", tail.Lines(log, 10))
		case strings.Contains(log, "main channel: opened") && strings.Contains(log, "SpiceDisplayChannel"):
			find := exec.CommandContext(ctx, "xdotool", "search", "--onlyvisible", "--name", regexp.QuoteMeta(rv.Title))
			find.Env = append(os.Environ(), "DISPLAY="+rv.X.Display)
			out, err := find.Output()
			if err == nil && len(bytes.TrimSpace(out)) > 0 {
				return nil
			}
		}
		select {
		case <-rv.child.Exited():
			return fmt.Errorf("harness: remote-viewer exited (%v) on display %s:\n%s", rv.child.ProcessState(), rv.X.Display, tail.Lines(rv.Log(), 10))
		case <-ctx.Done():
			return fmt.Errorf("harness: waiting for remote-viewer to open: %w\n%s", ctx.Err(), tail.Lines(rv.Log(), 10))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Capture returns the guest area of the window (720x400 for the built-in
// text-mode guest) once two consecutive captures agree and are not blank.
func (rv *RemoteViewer) Capture(ctx context.Context, w, h int) (*Image, error) {
	var last *Image
	for {
		root, err := rv.X.CaptureRoot(ctx)
		if err != nil {
			return nil, err
		}
		img, err := root.Crop(rvGuestX, rvGuestY, w, h)
		if err != nil {
			return nil, err
		}
		if last != nil && !img.Blank() && img.DiffPixels(last) == 0 {
			return img, nil
		}
		last = img
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("harness: remote-viewer picture never settled: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Type types text into the viewer window with xdotool (keys go through
// the SPICE inputs channel).
func (rv *RemoteViewer) Type(ctx context.Context, text string) error {
	env := append(os.Environ(), "DISPLAY="+rv.X.Display)
	find := exec.CommandContext(ctx, "xdotool", "search", "--sync", "--onlyvisible", "--name", regexp.QuoteMeta(rv.Title), "windowfocus", "--sync")
	find.Env = env
	if out, err := find.CombinedOutput(); err != nil {
		return fmt.Errorf("harness: xdotool focus: %v: %s", err, out)
	}
	typ := exec.CommandContext(ctx, "xdotool", "type", "--delay", "50", text)
	typ.Env = env
	if out, err := typ.CombinedOutput(); err != nil {
		return fmt.Errorf("harness: xdotool type: %v: %s", err, out)
	}
	return nil
}

// Close stops remote-viewer and its X server and removes its files.
func (rv *RemoteViewer) Close() error {
	if rv == nil {
		return nil
	}
	rv.child.Stop(2 * time.Second)
	rv.X.Close()
	return os.RemoveAll(rv.dir)
}
