// Package poll waits for a condition that has no event to wait on (a
// file that grows, a port that starts accepting, a process that is
// gone): it re-checks the condition at a fixed interval until it holds
// or the context ends, and then says why it gave up, with the
// condition's last error.
//
// Prefer an event (a channel close, a process exit, a QMP event) where
// one exists; poll is for the rest.
package poll

import (
	"context"
	"fmt"
	"time"
)

// DefaultInterval is the interval Until uses when given 0.
const DefaultInterval = 10 * time.Millisecond

// Until calls check at once and then every interval (DefaultInterval
// when interval <= 0) until check returns nil or ctx ends. The deadline
// is ctx's. It returns nil once check succeeds, else an *Error carrying
// ctx's cause and check's last error, both reachable with errors.Is and
// errors.As.
func Until(ctx context.Context, interval time.Duration, check func(context.Context) error) error {
	if interval <= 0 {
		interval = DefaultInterval
	}
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	e := &Error{}
	for {
		if err := ctx.Err(); err != nil {
			e.Cause, e.Waited = context.Cause(ctx), time.Since(start)
			return e
		}
		e.Tries++
		if e.Last = check(ctx); e.Last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// Error is why Until gave up.
type Error struct {
	// Cause is context.Cause of the context that ended the wait
	// (context.DeadlineExceeded, context.Canceled or a custom cause).
	Cause error
	// Last is the check's last error; nil when ctx had ended before the
	// first check.
	Last error
	// Tries is how many times the check ran.
	Tries int
	// Waited is how long Until waited.
	Waited time.Duration
}

func (e *Error) Error() string {
	s := fmt.Sprintf("gave up after %v and %d checks: %v", e.Waited.Round(time.Millisecond), e.Tries, e.Cause)
	if e.Last != nil {
		s += "; last check: " + e.Last.Error()
	}
	return s
}

// Unwrap gives errors.Is and errors.As both the cause and the last
// check error.
func (e *Error) Unwrap() []error {
	if e.Last == nil {
		return []error{e.Cause}
	}
	return []error{e.Cause, e.Last}
}
