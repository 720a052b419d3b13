package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/internal/tail"
)

// Guest area of remote-viewer 11's window on a bare Xvfb root (no window
// manager): the 720x400 guest screen sits at +5+51, and a crop there
// matches a spicy-screenshot of the same screen pixel for pixel
// (ImageMagick's compare -metric AE prints 0).
const (
	rvGuestX = 5
	rvGuestY = 51
)

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
// and opens it with `remote-viewer --debug` on a fresh Xvfb, with a
// client home of its own and the shared client cache (see clientEnv).
// title is the .vv's title, used to find the window. opts add spice-gtk
// options (ShareCD, SoftSmartcard).
func StartRemoteViewer(ctx context.Context, vv []byte, title, dir string, opts ...ClientOption) (*RemoteViewer, error) {
	bin, err := exec.LookPath("remote-viewer")
	if err != nil {
		return nil, fmt.Errorf("harness: remote-viewer not found (install virt-viewer, or run make deps): %w", err)
	}
	flags, err := clientFlags(opts)
	if err != nil {
		return nil, err
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
	cmd := exec.Command(bin, append(append([]string{"--debug"}, flags...), vvPath)...)
	if cmd.Env, err = clientEnv(work, "DISPLAY="+x.Display); err != nil {
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
