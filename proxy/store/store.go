package store

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/static"
)

// DefaultTokenTTL is how long a minted token may open its session.
const DefaultTokenTTL = 60 * time.Second

// DefaultAuditSize is how many audit events the store keeps.
const DefaultAuditSize = 1024

// Defaults for the retention of ended sessions (Options).
const (
	// DefaultEndedRetention: long enough to read why a session ended
	// (GET /session/{id}) right after it did; not the token lifetime, so
	// memory follows live sessions under churn.
	DefaultEndedRetention = 30 * time.Second
	// DefaultMaxEnded: about 0.8 KiB each, so 1 MiB at most.
	DefaultMaxEnded = 1024
)

// TokenLength is the length of a token: 48 characters of [A-Za-z0-9].
const TokenLength = 48

// Errors. The proxy maps them to SPICE link codes: unknown, expired and
// used tokens to PERMISSION_DENIED; a connection id that is not the
// token's session to BAD_CONNECTION_ID.
var (
	ErrUnknownSource  = errors.New("store: unknown source")
	ErrUnknownConsole = errors.New("store: unknown console")
	ErrSourceErrored  = errors.New("store: source is errored")
	ErrUnsupported    = errors.New("store: source type is not served")
	ErrUnknownToken   = errors.New("store: unknown token")
	ErrTokenExpired   = errors.New("store: token expired")
	ErrTokenUsed      = errors.New("store: token already opened its session")
	ErrWrongSession   = errors.New("store: connection id is not the token's session")
	ErrNoSession      = errors.New("store: the token's session has no main channel yet")
	ErrSessionEnded   = errors.New("store: session ended")
	ErrUnknownSession = errors.New("store: unknown session")
)

// Options configure a Store; the zero value works.
type Options struct {
	// TokenTTL is how long a token may open its session (0: 60 s).
	TokenTTL time.Duration
	// AuditSize bounds the audit log (0: 1024 events).
	AuditSize int
	// EndedRetention is how long an ended session stays known (listed,
	// and refused as ended rather than unknown) after it ended (0:
	// DefaultEndedRetention; negative: forgotten when it ends). Its token
	// can never open another session either way.
	EndedRetention time.Duration
	// MaxEnded bounds the ended sessions kept; past it the oldest ended
	// one is forgotten at once (0: DefaultMaxEnded; negative: no bound
	// but EndedRetention).
	MaxEnded int
	// Now is the clock (nil: time.Now); tests move it.
	Now func() time.Time
}

// Store is the embedded, in-memory console store shared by the `.vv` API
// and the proxy. It is safe for concurrent use.
type Store struct {
	opts Options

	mu        sync.Mutex
	sources   map[string]*sourceState
	consoles  map[static.Key]*consoleState
	order     []static.Key        // keys of consoles, sorted by (source, uuid)
	tokens    map[string]*session // token value → session
	sessions  map[string]*session // session id → session
	index     sessionIndex        // sessions in mint order, for listings
	seq       uint64              // of the last minted session
	live      map[static.Key]int  // sessions not ended, by console
	ended     endedQueue          // ended sessions, oldest first
	lastSweep time.Time           // of expireLocked
	sweep     *time.Timer         // armed while something will expire
	audit     audit
}

type consoleState struct {
	console static.Console
	caCert  string
}

// New returns an empty store.
func New(opts Options) *Store {
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.AuditSize <= 0 {
		opts.AuditSize = DefaultAuditSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.EndedRetention == 0 {
		opts.EndedRetention = DefaultEndedRetention
	}
	if opts.MaxEnded == 0 {
		opts.MaxEnded = DefaultMaxEnded
	}
	return &Store{
		opts:     opts,
		sources:  map[string]*sourceState{},
		consoles: map[static.Key]*consoleState{},
		tokens:   map[string]*session{},
		sessions: map[string]*session{},
		live:     map[static.Key]int{},
		audit:    audit{max: opts.AuditSize},
	}
}

// TokenTTL returns the configured token lifetime.
func (s *Store) TokenTTL() time.Duration { return s.opts.TokenTTL }

// SetTicket replaces the stored ticket of a console (after the harness
// rotated it over QMP). Live proxy sessions are not affected.
func (s *Store) SetTicket(k static.Key, ticket string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.consoles[k]
	if !ok {
		return fmt.Errorf("%w %s", ErrUnknownConsole, k)
	}
	c.console.Ticket = ticket
	return nil
}

// Target is everything needed to reach a console: the console (ticket
// included) and its source's CA for TLS backends.
type Target struct {
	Key     static.Key
	Console static.Console
	CACert  string
}

// Console returns the target for k, ticket included. Callers must not
// log or serialise the ticket.
func (s *Store) Console(k static.Key) (Target, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.targetLocked(k)
}

func (s *Store) targetLocked(k static.Key) (Target, error) {
	c, ok := s.consoles[k]
	if !ok {
		if _, ok := s.sources[k.Source]; !ok {
			return Target{}, fmt.Errorf("%w %q", ErrUnknownSource, k.Source)
		}
		return Target{}, fmt.Errorf("%w %s", ErrUnknownConsole, k)
	}
	return Target{Key: k, Console: c.console, CACert: c.caCert}, nil
}

// Targets returns the first limit consoles sorted by key (all when
// limit <= 0), tickets included. The proxy calls it on every link for
// its caps probes, so Load and Remove keep the order up to date instead
// of Targets sorting.
func (s *Store) Targets(limit int) []Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.order)
	if limit > 0 {
		n = min(n, limit)
	}
	out := make([]Target, n)
	for i, k := range s.order[:n] {
		c := s.consoles[k]
		out[i] = Target{Key: k, Console: c.console, CACert: c.caCert}
	}
	return out
}

// reorderLocked rebuilds the sorted console order after Load or Remove.
func (s *Store) reorderLocked() {
	s.order = s.order[:0]
	for k := range s.consoles {
		s.order = append(s.order, k)
	}
	// The order the console cursors search in (page.go).
	sort.Slice(s.order, func(i, j int) bool { return keyLess(s.order[i], s.order[j]) })
}

// ConsoleInfo describes a console without its ticket.
type ConsoleInfo struct {
	Source       string `json:"source"`
	UUID         string `json:"uuid"`
	Name         string `json:"name"`
	Hypervisor   string `json:"hypervisor"`
	HypervisorIP string `json:"hypervisor_ip"`
	InsecurePort int    `json:"insecure_port"`
	SecurePort   int    `json:"secure_port,omitempty"`
	HostSubject  string `json:"host_subject,omitempty"`
	Sessions     int    `json:"sessions"`
}

// Consoles lists consoles without tickets, sorted by key.
func (s *Store) Consoles() []ConsoleInfo {
	targets := s.Targets(0)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ConsoleInfo, 0, len(targets))
	for _, t := range targets {
		out = append(out, consoleInfo(t, s.live[t.Key]))
	}
	return out
}

// ConsoleInfo describes one console without its ticket.
func (s *Store) ConsoleInfo(k static.Key) (ConsoleInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.targetLocked(k)
	if err != nil {
		return ConsoleInfo{}, err
	}
	return consoleInfo(t, s.live[k]), nil
}

func consoleInfo(t Target, sessions int) ConsoleInfo {
	c := t.Console
	return ConsoleInfo{Source: t.Key.Source, UUID: c.UUID, Name: c.Name, Hypervisor: c.Hypervisor, HypervisorIP: c.HypervisorIP,
		InsecurePort: c.InsecurePort, SecurePort: c.SecurePort, HostSubject: c.HostSubject, Sessions: sessions}
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newToken returns n characters of [A-Za-z0-9] from crypto/rand, without
// modulo bias.
func newToken(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		rand.Read(buf[:])
		for _, b := range buf {
			if b < 248 { // 248 = 4 × 62
				out = append(out, tokenAlphabet[b%62])
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out)
}

// Minted is a freshly minted token and the session it will open.
type Minted struct {
	Token     string
	SessionID string
	Expires   time.Time
	Target    Target
}

// Mint creates a session for console k and the token that opens it.
func (s *Store) Mint(k static.Key) (Minted, error) {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.targetLocked(k)
	if err != nil {
		return Minted{}, err
	}
	s.expireLocked(now)
	s.seq++
	ss := &session{
		seq:     s.seq,
		id:      newToken(16),
		token:   newToken(TokenLength),
		key:     k,
		created: now,
		expires: now.Add(s.opts.TokenTTL),
		state:   stateMinted,
		chans:   map[*Channel]struct{}{},
	}
	s.tokens[ss.token] = ss
	s.sessions[ss.id] = ss
	s.index.add(ss)
	s.live[k]++
	s.armSweepLocked()
	s.audit.add(Event{Time: now, Kind: EventTokenMinted, Source: k.Source, UUID: k.UUID, Session: ss.id})
	return Minted{Token: ss.token, SessionID: ss.id, Expires: ss.expires, Target: t}, nil
}

// sweepInterval bounds how often expireLocked walks every session: Mint
// calls it, and a walk per mint made minting O(sessions).
const sweepInterval = time.Second

// expireLocked runs sweepLocked at most once per sweepInterval.
func (s *Store) expireLocked(now time.Time) {
	if now.Sub(s.lastSweep) < sweepInterval && !now.Before(s.lastSweep) {
		return
	}
	s.sweepLocked(now)
}

// Keys lists the console keys, for completeness checks.
func (s *Store) Keys() []static.Key {
	ts := s.Targets(0)
	out := make([]static.Key, len(ts))
	for i, t := range ts {
		out[i] = t.Key
	}
	return out
}
