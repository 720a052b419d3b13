package store

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spiceharness/spiceharness/static"
)

// Page sizes of ListSessions and ListConsoles.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ErrBadQuery: a listing query has a state, limit or cursor the store
// cannot use. The message names the field.
var ErrBadQuery = errors.New("store: bad listing query")

// States a SessionQuery may select, besides the session states.
const (
	// StateLive selects the sessions not ended (minted, connecting, active).
	StateLive = "live"
)

// SessionQuery selects a page of sessions, newest first.
type SessionQuery struct {
	// State keeps the sessions in one state (minted, connecting, active,
	// ended) or StateLive; "" keeps all.
	State string
	// Limit is the page size (0: DefaultPageSize; at most MaxPageSize).
	Limit int
	// Cursor continues a listing: the Next of the page before ("": from
	// the newest session). It is opaque, and stays valid when the session
	// it follows has been forgotten.
	Cursor string
}

// SessionPage is one page of sessions.
type SessionPage struct {
	Sessions []SessionInfo
	// Next is the cursor of the following page; "" on the last one.
	Next string
}

// ListSessions lists one page of sessions, newest first. Its cost is that
// of the page (and of the sessions it skips for State), whatever the
// history: ended sessions are only kept for Options.EndedRetention.
func (s *Store) ListSessions(q SessionQuery) (SessionPage, error) {
	limit, err := pageLimit(q.Limit)
	if err != nil {
		return SessionPage{}, err
	}
	match, err := stateFilter(q.State)
	if err != nil {
		return SessionPage{}, err
	}
	before := uint64(1<<64 - 1)
	if q.Cursor != "" {
		if before, err = decodeSessionCursor(q.Cursor); err != nil {
			return SessionPage{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.opts.Now())
	var (
		page SessionPage
		last uint64 // seq of the last session in the page
	)
	for i := s.index.before(before) - 1; i >= 0; i-- {
		ss := s.index.list[i]
		if ss.gone || !match(ss.state) {
			continue
		}
		if len(page.Sessions) == limit {
			page.Next = encodeSessionCursor(last)
			break
		}
		page.Sessions = append(page.Sessions, ss.info())
		last = ss.seq
	}
	return page, nil
}

func stateFilter(state string) (func(sessionState) bool, error) {
	switch state {
	case "":
		return func(sessionState) bool { return true }, nil
	case StateLive:
		return func(st sessionState) bool { return st != stateEnded }, nil
	}
	for st := stateMinted; st <= stateEnded; st++ {
		if st.String() == state {
			return func(x sessionState) bool { return x == st }, nil
		}
	}
	return nil, fmt.Errorf("%w: state %q: want live, minted, connecting, active or ended", ErrBadQuery, state)
}

func pageLimit(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultPageSize, nil
	case n < 0 || n > MaxPageSize:
		return 0, fmt.Errorf("%w: limit %d: want 1-%d", ErrBadQuery, n, MaxPageSize)
	}
	return n, nil
}

// Cursors are base64url text: a kind letter, then the position.
func encodeSessionCursor(seq uint64) string {
	return base64.RawURLEncoding.EncodeToString(binary.AppendUvarint([]byte{'s'}, seq))
}

func decodeSessionCursor(c string) (uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil && len(b) > 1 && b[0] == 's' {
		if seq, n := binary.Uvarint(b[1:]); n == len(b)-1 {
			return seq, nil
		}
	}
	return 0, errBadCursor
}

var errBadCursor = fmt.Errorf("%w: cursor: malformed; pass the cursor of the previous page unchanged", ErrBadQuery)

func encodeConsoleCursor(k static.Key) string {
	return base64.RawURLEncoding.EncodeToString([]byte("c" + k.Source + "\x00" + k.UUID))
}

func decodeConsoleCursor(c string) (static.Key, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil && len(b) > 1 && b[0] == 'c' {
		if src, uuid, ok := strings.Cut(string(b[1:]), "\x00"); ok {
			return static.Key{Source: src, UUID: uuid}, nil
		}
	}
	return static.Key{}, errBadCursor
}

// ConsoleQuery selects a page of consoles, sorted by (source, uuid).
type ConsoleQuery struct {
	// Limit is the page size (0: DefaultPageSize; at most MaxPageSize).
	Limit int
	// Cursor continues a listing: the Next of the page before ("": from
	// the first console).
	Cursor string
}

// ConsolePage is one page of consoles (never a ticket).
type ConsolePage struct {
	Consoles []ConsoleInfo
	// Next is the cursor of the following page; "" on the last one.
	Next string
}

// ListConsoles lists one page of consoles, sorted by key.
func (s *Store) ListConsoles(q ConsoleQuery) (ConsolePage, error) {
	limit, err := pageLimit(q.Limit)
	if err != nil {
		return ConsolePage{}, err
	}
	var after static.Key
	if q.Cursor != "" {
		if after, err = decodeConsoleCursor(q.Cursor); err != nil {
			return ConsolePage{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	if q.Cursor != "" {
		i = sort.Search(len(s.order), func(i int) bool { return keyLess(after, s.order[i]) })
	}
	var page ConsolePage
	for ; i < len(s.order); i++ {
		if len(page.Consoles) == limit {
			page.Next = encodeConsoleCursor(s.order[i-1])
			break
		}
		k := s.order[i]
		c := s.consoles[k]
		page.Consoles = append(page.Consoles, consoleInfo(Target{Key: k, Console: c.console, CACert: c.caCert}, s.live[k]))
	}
	return page, nil
}

// keyLess is the consoles' order: by source, then uuid.
func keyLess(a, b static.Key) bool {
	return a.Source < b.Source || a.Source == b.Source && a.UUID < b.UUID
}
