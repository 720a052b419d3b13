package store

import "time"

// EventKind names an audit event.
type EventKind string

// Audit event kinds.
const (
	EventSourceLoaded   EventKind = "source_loaded"
	EventTokenMinted    EventKind = "token_minted"
	EventTokenUsed      EventKind = "token_used"
	EventAuthRefused    EventKind = "auth_refused"
	EventSessionStarted EventKind = "session_started"
	EventSessionEnded   EventKind = "session_ended"
	EventChannelOpened  EventKind = "channel_opened"
	EventChannelClosed  EventKind = "channel_closed"
	EventBackendFailed  EventKind = "backend_failed"
)

// Event is one audit record. It never holds a ticket or token.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    EventKind `json:"kind"`
	Source  string    `json:"source,omitempty"`
	UUID    string    `json:"uuid,omitempty"`
	Session string    `json:"session,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// audit is a bounded ring of events; callers hold the store's lock.
type audit struct {
	max    int
	seq    uint64
	events []Event
	start  int
}

func (a *audit) add(e Event) {
	a.seq++
	e.Seq = a.seq
	if len(a.events) < a.max {
		a.events = append(a.events, e)
		return
	}
	a.events[a.start] = e
	a.start = (a.start + 1) % a.max
}

func (a *audit) list() []Event {
	out := make([]Event, 0, len(a.events))
	out = append(out, a.events[a.start:]...)
	return append(out, a.events[:a.start]...)
}

// Audit returns the retained audit events, oldest first.
func (s *Store) Audit() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.audit.list()
}

// Record appends an event (the proxy's backend and relay events).
func (s *Store) Record(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = s.opts.Now()
	}
	s.audit.add(e)
}
