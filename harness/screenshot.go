package harness

import (
	"bytes"
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

// Screenshot captures the guest screen with spicy-screenshot (spice-gtk:
// main + display channels), writing its files under dir. It runs with a
// client home of its own and the shared client cache (see clientEnv), so
// a capture costs what a user's does and leaves nothing behind.
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
	env, err := clientEnv(work, extra...)
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
