package qemu

import (
	"context"
	"slices"
	"sync"
	"time"
)

// QMP event names the harness cares about.
const (
	EventShutdown          = "SHUTDOWN"
	EventSPICEConnected    = "SPICE_CONNECTED"
	EventSPICEInitialized  = "SPICE_INITIALIZED"
	EventSPICEDisconnected = "SPICE_DISCONNECTED"
)

// Event is one asynchronous QMP event.
type Event struct {
	// Name is QMP's event name ("SPICE_CONNECTED").
	Name string
	// Data is the event's "data" object.
	Data map[string]any
	// Time is qemu's timestamp of the event.
	Time time.Time
}

const (
	historyLimit = 1024 // events kept per VM
	queueLimit   = 256  // events queued per subscription
)

// eventHub fans QMP events out without ever blocking the QMP reader:
// every publish appends to bounded in-memory queues and wakes waiters.
type eventHub struct {
	mu      sync.Mutex
	history []Event
	dropped int
	subs    map[*Subscription]struct{}
}

func newEventHub() *eventHub {
	return &eventHub{subs: map[*Subscription]struct{}{}}
}

// publish never blocks.
func (h *eventHub) publish(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.history) == historyLimit {
		h.history = slices.Delete(h.history, 0, 1)
		h.dropped++
	}
	h.history = append(h.history, e)
	for s := range h.subs {
		s.push(e)
	}
}

func (h *eventHub) snapshot() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.history)
}

func (h *eventHub) subscribe(exited <-chan struct{}, exitErr func() error) *Subscription {
	s := &Subscription{hub: h, notify: make(chan struct{}, 1), exited: exited, exitErr: exitErr}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// Subscription receives the QMP events of one VM that arrive after it
// was made. Its queue is bounded (256 events): a subscriber that stops
// reading loses the oldest events (see Dropped) but never slows qemu's
// command replies. Close it when done.
type Subscription struct {
	hub     *eventHub
	exited  <-chan struct{}
	exitErr func() error

	mu      sync.Mutex
	queue   []Event
	dropped int
	closed  bool
	notify  chan struct{}
}

func (s *Subscription) push(e Event) {
	s.mu.Lock()
	if !s.closed {
		if len(s.queue) == queueLimit {
			s.queue = slices.Delete(s.queue, 0, 1)
			s.dropped++
		}
		s.queue = append(s.queue, e)
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Next returns the next queued event whose name is one of names (any
// event when names is empty), discarding the others. It fails with ctx's
// error, with ErrClosed after Close, or with the VM's exit error once
// qemu has exited and no matching event is left in the queue.
func (s *Subscription) Next(ctx context.Context, names ...string) (Event, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return Event{}, ErrClosed
		}
		for len(s.queue) > 0 {
			e := s.queue[0]
			s.queue = s.queue[1:]
			if len(names) == 0 || slices.Contains(names, e.Name) {
				s.mu.Unlock()
				return e, nil
			}
		}
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		case <-s.exited:
			// Events published before the exit are already queued:
			// look once more, then report the exit.
			s.mu.Lock()
			n := len(s.queue)
			s.mu.Unlock()
			if n == 0 {
				return Event{}, s.exitErr()
			}
		}
	}
}

// Dropped reports how many events this subscription lost to its bound.
func (s *Subscription) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Close ends the subscription. Safe to call more than once and on nil.
func (s *Subscription) Close() {
	if s == nil {
		return
	}
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.queue = nil
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}
