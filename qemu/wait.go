package qemu

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/spiceharness/spiceharness/fixtures/guest"
	"github.com/spiceharness/spiceharness/internal/poll"
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
	return poll.Until(ctx, pollInterval, func(context.Context) error {
		if err := f.poll(); err != nil {
			return err
		}
		if !s.re.Match(f.buf) {
			return fmt.Errorf("no match in %d bytes", len(f.buf))
		}
		return nil
	})
}

// follower reads a growing file (qemu's serial log) incrementally. The
// file may not exist yet, and qemu truncates it on a relaunch.
type follower struct {
	path string
	f    *os.File
	buf  []byte
}

// poll reads what was appended to buf; the error says why the file
// cannot be read yet.
func (f *follower) poll() error {
	if f.f == nil {
		file, err := os.Open(f.path)
		if err != nil {
			return err
		}
		f.f = file
	}
	if fi, err := f.f.Stat(); err == nil && fi.Size() < int64(len(f.buf)) {
		f.buf = f.buf[:0] // truncated: start over
		if _, err := f.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	var chunk [4096]byte
	for {
		n, err := f.f.Read(chunk[:])
		f.buf = append(f.buf, chunk[:n]...)
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
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
	return poll.Until(ctx, pollInterval, func(ctx context.Context) error {
		return spiceReady(ctx, vm, ep, ports)
	})
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
