package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/internal/tail"
)

// Spicy is spice-gtk's own GTK client (spicy) connected to an endpoint
// under its own Xvfb. Unlike remote-viewer it connects every port
// channel the server offers, the WebDAV channel among them, so it is the
// real client for ShareDir.
type Spicy struct {
	X       *Xvfb
	dir     string
	logPath string
	child   *proc.Child
}

// StartSpicy connects spicy to ep with spice-gtk options opts (ShareDir,
// ShareCD, SoftSmartcard), with a client home of its own, the shared
// client cache (see clientEnv) and spice-gtk's debug log. Like
// spicy-screenshot, spicy takes the password only on its command line:
// give it single-use credentials (a proxy token, the short-lived ticket
// of a tunnel `.vv`), never a long-lived qemu ticket. The CA goes
// through SSL_CERT_FILE, the proxy through SPICE_PROXY; over TLS only
// the TLS port is used.
func StartSpicy(ctx context.Context, ep Endpoint, dir string, opts ...ClientOption) (*Spicy, error) {
	bin, err := exec.LookPath("spicy")
	if err != nil {
		return nil, fmt.Errorf("harness: spicy not found (install spice-client-gtk, or run make deps): %w", err)
	}
	flags, err := clientFlags(opts)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(dir, "spicy-")
	if err != nil {
		return nil, err
	}
	s := &Spicy{dir: work, logPath: filepath.Join(work, "spicy.log")}
	args := []string{"--spice-debug", "-h", ep.Host}
	switch {
	case ep.TLSPort != 0:
		args = append(args, "-s", strconv.Itoa(ep.TLSPort))
	case ep.Port != 0:
		args = append(args, "-p", strconv.Itoa(ep.Port))
	}
	var extra []string
	if ep.Proxy != "" {
		extra = append(extra, "SPICE_PROXY="+ep.Proxy)
	}
	if len(ep.CAPEM) > 0 {
		ca := filepath.Join(work, "ca.pem")
		if err := os.WriteFile(ca, ep.CAPEM, 0o600); err != nil {
			os.RemoveAll(work)
			return nil, err
		}
		extra = append(extra, "SSL_CERT_FILE="+ca)
	}
	if s.X, err = StartXvfb(ctx); err != nil {
		os.RemoveAll(work)
		return nil, err
	}
	env, err := clientEnv(work, append(extra, "DISPLAY="+s.X.Display)...)
	if err != nil {
		s.Close()
		return nil, err
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		s.Close()
		return nil, err
	}
	defer logf.Close()
	if ep.Password != "" {
		args = append(args, "-w", ep.Password)
	}
	cmd := exec.Command(bin, append(flags, args...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if s.child, err = proc.Start(cmd); err != nil {
		s.Close()
		return nil, fmt.Errorf("harness: start spicy: %w", err)
	}
	return s, nil
}

// Spicy fetches a `.vv` of kind for vm and connects spicy to its
// endpoint (see StartSpicy).
func (e *Env) Spicy(ctx context.Context, kind Kind, vm *VM, opts ...ClientOption) (*Spicy, error) {
	f, err := e.FetchVV(ctx, kind, vm)
	if err != nil {
		return nil, err
	}
	ep := EndpointOf(f.File)
	if ep.TLSPort != 0 {
		ep.Port = 0
	}
	return StartSpicy(ctx, ep, e.Dir, opts...)
}

// Log returns spicy's debug log so far.
func (s *Spicy) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// Exited is closed when spicy exits.
func (s *Spicy) Exited() <-chan struct{} { return s.child.Exited() }

// Tail is the last n lines of spicy's log, with its exit status if it
// has exited: for messages.
func (s *Spicy) Tail(n int) string {
	st := ""
	select {
	case <-s.child.Exited():
		st = fmt.Sprintf("spicy exited (%v); ", s.child.ProcessState())
	default:
	}
	return st + "spicy's log:\n" + tail.Lines(s.Log(), n)
}

// Close stops spicy and its X server and removes its files.
func (s *Spicy) Close() error {
	if s == nil {
		return nil
	}
	if s.child != nil {
		s.child.Stop(2 * time.Second)
	}
	s.X.Close()
	return os.RemoveAll(s.dir)
}
