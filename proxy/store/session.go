package store

import (
	"fmt"
	"github.com/spiceharness/spiceharness/internal/mutant"
	"sort"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/static"
)

type sessionState int

const (
	stateMinted     sessionState = iota // token minted, no main channel yet
	stateConnecting                     // a main channel holds the token, backend link under way
	stateActive                         // main linked; SpiceID known
	stateEnded                          // main closed, or terminated
)

func (s sessionState) String() string {
	return [...]string{"minted", "connecting", "active", "ended"}[s]
}

type session struct {
	seq     uint64 // mint order, unique: the listings' order and cursor
	gone    bool   // forgotten (out of the maps, still in s.index until compacted)
	id      string
	token   string
	key     static.Key
	created time.Time
	expires time.Time
	started time.Time
	ended   time.Time
	state   sessionState
	spiceID uint32
	reason  string
	chans   map[*Channel]struct{}
}

// Channel is a live proxied channel registered with its session, so a
// terminate reaches it. Close is called (once, outside the store's lock)
// when the session is terminated.
type Channel struct {
	Type    string
	ID      uint8
	Started time.Time
	// Close ends the channel; it must return promptly.
	Close func()

	once     sync.Once
	ss       *session // set by Attach (under the store's lock)
	detached bool     // Detach recorded its close (under the store's lock)
}

func (c *Channel) close() { c.once.Do(func() { c.Close() }) }

// Lease is what Authorize grants to one channel link: the console to
// reach, and the hooks to report the session's progress.
type Lease struct {
	s      *Store
	ss     *session
	Target Target
	// Main is true for the channel that opens the session.
	Main bool
	// SessionID is the store's session id (the one in the .vv title).
	SessionID string
}

// CheckToken reports, without spending it or recording anything, whether
// token may still open a channel: minted and unexpired (a main channel
// may spend it), or its session connecting or live (its other channels
// present it). A WebSocket listener asks before the upgrade.
func (s *Store) CheckToken(token string) error {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.tokens[token]
	switch {
	case !ok:
		return ErrUnknownToken
	case ss.state == stateEnded:
		return ErrSessionEnded
	case ss.state == stateMinted && now.After(ss.expires):
		return ErrTokenExpired
	}
	return nil
}

// Authorize admits a channel link presenting token with connection id
// connID. A main channel with connection id 0 opens the token's session:
// the token must be known, unexpired and unused, and is then held until
// Established or Failed. Any other channel joins an active session: its
// connection id must be that session's SPICE id (the token's expiry no
// longer matters once the session lives).
func (s *Store) Authorize(token string, main bool, connID uint32) (*Lease, error) {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.tokens[token]
	if !ok {
		s.audit.add(Event{Time: now, Kind: EventAuthRefused, Detail: ErrUnknownToken.Error()})
		return nil, ErrUnknownToken
	}
	refuse := func(err error) (*Lease, error) {
		s.audit.add(Event{Time: now, Kind: EventAuthRefused, Source: ss.key.Source, UUID: ss.key.UUID, Session: ss.id, Detail: err.Error()})
		return nil, err
	}
	t, err := s.targetLocked(ss.key)
	if err != nil {
		return refuse(err)
	}
	if main && connID == 0 {
		switch {
		case ss.state != stateMinted && !mutant.On(s, mutant.ReusableTokens):
			return refuse(ErrTokenUsed)
		case now.After(ss.expires):
			return refuse(ErrTokenExpired)
		}
		ss.state = stateConnecting
		s.audit.add(Event{Time: now, Kind: EventTokenUsed, Source: ss.key.Source, UUID: ss.key.UUID, Session: ss.id})
		return &Lease{s: s, ss: ss, Target: t, Main: true, SessionID: ss.id}, nil
	}
	switch ss.state {
	case stateMinted:
		if now.After(ss.expires) {
			return refuse(ErrTokenExpired)
		}
		return refuse(ErrNoSession)
	case stateConnecting:
		return refuse(ErrNoSession)
	case stateEnded:
		return refuse(ErrSessionEnded)
	}
	if connID != ss.spiceID && !mutant.On(s, mutant.NoConnIDBinding) {
		return refuse(fmt.Errorf("%w (got %#x)", ErrWrongSession, connID))
	}
	return &Lease{s: s, ss: ss, Target: t, SessionID: ss.id}, nil
}

// Established records the SPICE session id read from MAIN_INIT; the
// session is then active and other channels may join it.
func (l *Lease) Established(spiceID uint32) {
	now := l.s.opts.Now()
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.ss.state != stateConnecting {
		return
	}
	l.ss.state, l.ss.spiceID, l.ss.started = stateActive, spiceID, now
	l.s.audit.add(Event{Time: now, Kind: EventSessionStarted, Source: l.ss.key.Source, UUID: l.ss.key.UUID, Session: l.ss.id})
}

// Failed releases a main channel's hold on the token when the session
// could not be established (backend down or refusing), so the token may
// be used again until it expires.
func (l *Lease) Failed(reason string) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.Main && l.ss.state == stateConnecting {
		l.ss.state = stateMinted
		l.s.audit.add(Event{Time: l.s.opts.Now(), Kind: EventBackendFailed, Source: l.ss.key.Source, UUID: l.ss.key.UUID, Session: l.ss.id, Detail: reason})
		l.s.armSweepLocked() // the token expires again
	}
}

// Attach registers a live channel with the session. If the session has
// already ended, Attach returns false and the caller must close it.
func (l *Lease) Attach(c *Channel) bool {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.ss.state == stateEnded {
		return false
	}
	l.ss.chans[c] = struct{}{}
	c.ss = l.ss
	l.s.audit.add(Event{Time: l.s.opts.Now(), Kind: EventChannelOpened, Source: l.ss.key.Source, UUID: l.ss.key.UUID, Session: l.ss.id, Detail: fmt.Sprintf("%s:%d", c.Type, c.ID)})
	return true
}

// Detach records that an attached channel closed, whether it ended on
// its own or was closed by the end of its session (which already took
// it off the session's live channels).
func (l *Lease) Detach(c *Channel, detail string) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if c.ss != l.ss || c.detached {
		return
	}
	c.detached = true
	delete(l.ss.chans, c)
	l.s.audit.add(Event{Time: l.s.opts.Now(), Kind: EventChannelClosed, Source: l.ss.key.Source, UUID: l.ss.key.UUID, Session: l.ss.id, Detail: fmt.Sprintf("%s:%d %s", c.Type, c.ID, detail)})
}

// End ends the session (its main channel closed): every other channel is
// closed too, as spice-server does.
func (l *Lease) End(reason string) { l.s.end(l.ss, reason) }

func (s *Store) end(ss *session, reason string) int {
	s.mu.Lock()
	if ss.state == stateEnded {
		s.mu.Unlock()
		return 0
	}
	ss.state, ss.ended, ss.reason = stateEnded, s.opts.Now(), reason
	chans := make([]*Channel, 0, len(ss.chans))
	for c := range ss.chans {
		chans = append(chans, c)
	}
	ss.chans = nil // an ended session holds no channel (Attach refuses)
	s.audit.add(Event{Time: ss.ended, Kind: EventSessionEnded, Source: ss.key.Source, UUID: ss.key.UUID, Session: ss.id, Detail: reason})
	s.endedLocked(ss)
	s.mu.Unlock()
	if reason == "terminated" && mutant.On(s, mutant.TerminateKeepsChannels) {
		return 0
	}
	var wg sync.WaitGroup
	for _, c := range chans {
		wg.Add(1)
		go func() { defer wg.Done(); c.close() }()
	}
	wg.Wait()
	return len(chans)
}

// Terminate ends session id and closes its live channels before it
// returns. It returns how many channels were closed.
func (s *Store) Terminate(id string) (int, error) {
	s.mu.Lock()
	ss, ok := s.sessions[id]
	s.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownSession, id)
	}
	return s.end(ss, "terminated"), nil
}

// TerminateConsole ends every session of console k (and invalidates its
// unused tokens). It returns the sessions ended and channels closed.
func (s *Store) TerminateConsole(k static.Key) (sessions, channels int, err error) {
	s.mu.Lock()
	if _, err := s.targetLocked(k); err != nil {
		s.mu.Unlock()
		return 0, 0, err
	}
	var list []*session
	for _, ss := range s.sessions {
		if ss.key == k && ss.state != stateEnded {
			list = append(list, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range list {
		channels += s.end(ss, "terminated")
	}
	return len(list), channels, nil
}

// SessionInfo describes a session without its token.
type SessionInfo struct {
	ID       string    `json:"id"`
	Source   string    `json:"source"`
	UUID     string    `json:"uuid"`
	State    string    `json:"state"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"token_expires"`
	Started  time.Time `json:"started,omitzero"`
	Ended    time.Time `json:"ended,omitzero"`
	Reason   string    `json:"reason,omitempty"`
	Channels []string  `json:"channels"`
	// SpiceSessionID is the id qemu gave the session (0 until main links).
	SpiceSessionID uint32 `json:"spice_session_id"`
}

func (ss *session) info() SessionInfo {
	chans := make([]string, 0, len(ss.chans))
	for c := range ss.chans {
		chans = append(chans, fmt.Sprintf("%s:%d", c.Type, c.ID))
	}
	sort.Strings(chans)
	return SessionInfo{ID: ss.id, Source: ss.key.Source, UUID: ss.key.UUID, State: ss.state.String(), Created: ss.created,
		Expires: ss.expires, Started: ss.started, Ended: ss.ended, Reason: ss.reason, Channels: chans, SpiceSessionID: ss.spiceID}
}

// Sessions lists every retained session, newest first (ListSessions
// lists a page).
func (s *Store) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.opts.Now())
	out := make([]SessionInfo, 0, len(s.sessions))
	for i := len(s.index.list) - 1; i >= 0; i-- {
		if ss := s.index.list[i]; !ss.gone {
			out = append(out, ss.info())
		}
	}
	return out
}

// Session describes one session.
func (s *Store) Session(id string) (SessionInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[id]
	if !ok {
		return SessionInfo{}, fmt.Errorf("%w %q", ErrUnknownSession, id)
	}
	return ss.info(), nil
}
