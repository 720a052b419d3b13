package guestagent

import (
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// Reporter prints events. The packages serving the agent and WebDAV
// ports take any value with this method.
type Reporter interface {
	Event(typ string, kv ...string)
}

// consoleReporter writes one line per event to the serial console.
type consoleReporter struct {
	mu sync.Mutex
	w  io.Writer
}

// Event prints t=… type=typ kv…; an invalid type or key (a bug in a
// caller) is reported as an error event instead of killing /init.
func (r *consoleReporter) Event(typ string, kv ...string) {
	line, err := format(typ, kv)
	if err != nil {
		line, _ = format(guestproto.TypeError, []string{"what", "reporter", "err", err.Error()})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	io.WriteString(r.w, line+"\n")
}

func format(typ string, kv []string) (line string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	return guestproto.NewEvent(uptime(), typ, kv...).String(), nil
}

// uptime is CLOCK_BOOTTIME, the clock of the t= field.
func uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// errorf reports something the agent could not do.
func errorf(r Reporter, what string, err error) {
	r.Event(guestproto.TypeError, "what", what, "err", err.Error())
}
