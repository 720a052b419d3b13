package qemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiceharness/spiceharness/fixtures/guest"
)

// A Strategy is one thing to wait for. VM.WaitFor runs it with a context
// that also ends when qemu exits, so a strategy only has to honour ctx to
// fail fast.
type Strategy interface {
	fmt.Stringer
	// WaitUntilReady blocks until the condition holds or ctx ends.
	WaitUntilReady(ctx context.Context, vm VM) error
}

// pollInterval is how often file and port conditions are re-checked.
const pollInterval = 10 * time.Millisecond

// ForSerial waits until the guest's serial log, from the start of the
// boot, matches re.
func ForSerial(re *regexp.Regexp) Strategy { return serialStrategy{re} }

// ForGuestPrompt waits until the built-in guest has printed its banner
// and prompt on the serial log.
func ForGuestPrompt() Strategy { return serialStrategy{guestReadyRE} }

var guestReadyRE = regexp.MustCompile(regexp.QuoteMeta(guest.Ready))

type serialStrategy struct{ re *regexp.Regexp }

func (s serialStrategy) String() string { return "serial log matching /" + s.re.String() + "/" }

func (s serialStrategy) WaitUntilReady(ctx context.Context, vm VM) error {
	f := &follower{path: vm.SerialLog()}
	defer f.close()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if f.poll() && s.re.Match(f.buf) {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// follower reads a growing file (qemu's serial log) incrementally. The
// file may not exist yet, and qemu truncates it on a relaunch.
type follower struct {
	path string
	f    *os.File
	buf  []byte
	last int
}

// poll reads what was appended and reports whether buf changed.
func (f *follower) poll() bool {
	if f.f == nil {
		file, err := os.Open(f.path)
		if err != nil {
			return false
		}
		f.f = file
	}
	if fi, err := f.f.Stat(); err == nil && fi.Size() < int64(len(f.buf)) {
		f.buf = f.buf[:0] // truncated: start over
		f.f.Seek(0, io.SeekStart)
	}
	var chunk [4096]byte
	for {
		n, err := f.f.Read(chunk[:])
		f.buf = append(f.buf, chunk[:n]...)
		if n == 0 || err != nil {
			break
		}
	}
	changed := len(f.buf) != f.last
	f.last = len(f.buf)
	return changed
}

func (f *follower) close() {
	if f.f != nil {
		f.f.Close()
	}
}

// ForSPICE waits until the SPICE port (and the TLS port, if any) accepts
// TCP connections and query-spice reports SPICE enabled, with ticket
// authentication ("auth": "spice") on the endpoint's port. The probe
// connections close before any SPICE link message, which spice-server
// handles safely.
func ForSPICE() Strategy { return spiceStrategy{} }

type spiceStrategy struct{}

func (spiceStrategy) String() string {
	return "SPICE port accepting and query-spice enabled with auth spice"
}

func (spiceStrategy) WaitUntilReady(ctx context.Context, vm VM) error {
	ep := vm.Endpoint()
	var ports []int
	if ep.Port != 0 {
		ports = append(ports, ep.Port)
	}
	if ep.TLSPort != 0 {
		ports = append(ports, ep.TLSPort)
	}
	if len(ports) == 0 {
		return fmt.Errorf("endpoint has no SPICE port")
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var last error
	for {
		last = spiceReady(ctx, vm, ep, ports)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if context.Cause(ctx) != ctx.Err() {
				return context.Cause(ctx)
			}
			return fmt.Errorf("%w (last check: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}

func spiceReady(ctx context.Context, vm VM, ep Endpoint, ports []int) error {
	var d net.Dialer
	for _, p := range ports {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", net.JoinHostPort(ep.HostIP, strconv.Itoa(p)))
		cancel()
		if err != nil {
			return err
		}
		c.Close()
	}
	info, err := vm.QuerySpice(ctx)
	if err != nil {
		return err
	}
	switch {
	case !info.Enabled:
		return fmt.Errorf("query-spice: not enabled")
	case info.Auth != "spice":
		return fmt.Errorf("query-spice: auth %q, want \"spice\"", info.Auth)
	case info.Port != ep.Port:
		return fmt.Errorf("query-spice: port %d, endpoint says %d", info.Port, ep.Port)
	case info.TLSPort != ep.TLSPort:
		return fmt.Errorf("query-spice: tls-port %d, endpoint says %d", info.TLSPort, ep.TLSPort)
	}
	return nil
}

// ForEvent waits until a QMP event with this name has been seen since the
// VM started (including before the wait began).
func ForEvent(name string) Strategy { return eventStrategy{name} }

type eventStrategy struct{ name string }

func (s eventStrategy) String() string { return "QMP event " + s.name }

func (s eventStrategy) WaitUntilReady(ctx context.Context, vm VM) error {
	sub := vm.Subscribe() // before looking at the history: no gap
	defer sub.Close()
	if slices.ContainsFunc(vm.Events(), func(e Event) bool { return e.Name == s.name }) {
		return nil
	}
	_, err := sub.Next(ctx, s.name)
	if err != nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// tailLines returns the last n lines of the file at path ("" if it
// cannot be read). It reads at most the last 64 KiB.
func tailLines(path string, n int) string {
	if path == "" || n <= 0 {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	b = bytes.TrimRight(b, "\r\n")
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
