package store

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/spiceharness/spiceharness/static"
)

// Audit events of source loading (beside EventSourceLoaded).
const (
	// EventSourceErrored: a source's new entry had errors; Detail says
	// whether its last good consoles are still served.
	EventSourceErrored EventKind = "source_errored"
	// EventSourceRemoved: a source left the store (its live sessions
	// keep running).
	EventSourceRemoved EventKind = "source_removed"
)

// sourceState is one source as the store serves it. "Last good wins":
// good is the last entry that loaded (a static source without errors, or
// an unsupported one), and its consoles are what is served; last is the
// latest entry read, which may be errored.
type sourceState struct {
	good     *static.Source // nil until an entry loaded
	last     static.Source
	lastErr  error // last.Load()'s error
	consoles []static.Key
	loadedAt time.Time // when last was read
	goodAt   time.Time // when good was read
}

// served is the entry whose consoles and CA are served: the last good
// one, or the latest when none ever loaded.
func (st *sourceState) served() *static.Source {
	if st.good != nil {
		return st.good
	}
	return &st.last
}

// Action says what Apply did to one source.
type Action string

// Actions reported by Apply.
const (
	// ActionAdded: a new source, loaded (or unsupported, kept).
	ActionAdded Action = "added"
	// ActionUpdated: a good entry replaced the source's consoles.
	ActionUpdated Action = "updated"
	// ActionUnchanged: the good entry is the one already served.
	ActionUnchanged Action = "unchanged"
	// ActionRecovered: a good entry after errored ones; it is served.
	ActionRecovered Action = "recovered"
	// ActionKept: the entry has errors; the source is marked errored
	// and keeps serving its last good consoles.
	ActionKept Action = "kept"
	// ActionErrored: the entry has errors and the source never had a
	// good one: it is marked errored and serves nothing.
	ActionErrored Action = "errored"
	// ActionRemoved: the source is not in the list (Apply with prune).
	ActionRemoved Action = "removed"
	// ActionAbsent: the source is not in the list and was left as it
	// was (Apply without prune).
	ActionAbsent Action = "absent"
)

// Change is what Apply did to one source.
type Change struct {
	Source string `json:"source"`
	Action Action `json:"action"`
	// Consoles is how many consoles the source serves afterwards.
	Consoles int `json:"consoles"`
}

// Load puts sources into the store through the static driver, as Apply
// without prune: each source replaces the one of the same name,
// atomically with its consoles; an errored entry keeps the source's last
// good consoles (or serves nothing when there were none) and marks it
// errored with its problems; other sources are not affected.
func (s *Store) Load(sources ...static.Source) { s.Apply(sources, false) }

// Apply loads sources as one reload of a sources file, atomically: no
// listing or link sees half of it. For each source (last good wins):
//
//   - a good entry (no errors; a static or unsupported type) replaces the
//     source and its consoles;
//   - an entry with errors marks the source errored with its problems,
//     and the source keeps serving the consoles of its last good entry
//     (none if it never had one), until a good entry comes;
//   - with prune, a source not in sources is removed (its live sessions
//     keep running, as after Remove); without, it is left as it was.
//
// Several entries with one name are read in order: the last one wins,
// except that an entry with errors never replaces a good one. Apply
// returns what it did, one Change per source, by name.
func (s *Store) Apply(sources []static.Source, prune bool) []Change {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	listed := map[string]Action{}
	reorder := false
	for i := range sources {
		src := sources[i]
		act, changed := s.loadLocked(&src, now)
		if prev, ok := listed[src.Name]; ok {
			act = merge(prev, act)
		}
		listed[src.Name] = act
		reorder = reorder || changed
	}
	var out []Change
	for name, st := range s.sources {
		act, ok := listed[name]
		switch {
		case ok:
		case prune:
			s.removeLocked(name, now)
			act, reorder = ActionRemoved, true
		default:
			act = ActionAbsent
		}
		n := 0
		if act != ActionRemoved {
			n = len(st.consoles)
		}
		out = append(out, Change{Source: name, Action: act, Consoles: n})
	}
	if reorder {
		s.reorderLocked()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out
}

// merge combines the actions of two entries with one name: the most
// telling one is reported.
func merge(a, b Action) Action {
	rank := []Action{ActionUnchanged, ActionUpdated, ActionRecovered, ActionAdded, ActionKept, ActionErrored}
	if slices.Index(rank, b) > slices.Index(rank, a) {
		return b
	}
	return a
}

// loadLocked loads one entry; changed says whether the served consoles
// changed.
func (s *Store) loadLocked(src *static.Source, now time.Time) (act Action, changed bool) {
	consoles, err := src.Load()
	st, exists := s.sources[src.Name]
	if !exists {
		st = &sourceState{}
		s.sources[src.Name] = st
	}
	wasErrored := exists && isInvalid(st.lastErr)
	st.last, st.lastErr, st.loadedAt = *src, err, now
	if isInvalid(err) {
		detail := fmt.Sprintf("%d problems; nothing served", len(src.Errors))
		act = ActionErrored
		if st.good != nil {
			detail = fmt.Sprintf("%d problems; its last good %d consoles are still served", len(src.Errors), len(st.consoles))
			act = ActionKept
		}
		s.audit.add(Event{Time: now, Kind: EventSourceErrored, Source: src.Name, Detail: detail})
		return act, false
	}
	good := *src
	switch {
	case !exists:
		act = ActionAdded
	case st.good != nil && sameEntry(st.good, &good) && !wasErrored:
		st.goodAt = now
		return ActionUnchanged, false
	case wasErrored:
		act = ActionRecovered
	default:
		act = ActionUpdated
	}
	for _, k := range st.consoles {
		delete(s.consoles, k)
	}
	st.consoles = st.consoles[:0]
	for _, c := range consoles {
		k := static.Key{Source: src.Name, UUID: c.UUID}
		s.consoles[k] = &consoleState{console: c, caCert: src.CACert}
		st.consoles = append(st.consoles, k)
	}
	st.good, st.goodAt = &good, now
	s.audit.add(Event{Time: now, Kind: EventSourceLoaded, Source: src.Name, Detail: fmt.Sprintf("type %s, %d consoles", src.Type, len(consoles))})
	return act, true
}

func isInvalid(err error) bool { return err != nil && !errors.Is(err, static.ErrUnsupportedType) }

// sameEntry reports whether two good entries serve the same thing.
func sameEntry(a, b *static.Source) bool {
	return a.Name == b.Name && a.Type == b.Type && a.CACert == b.CACert && slices.Equal(a.Consoles, b.Consoles)
}

// Remove drops a source and its consoles (live sessions keep running).
func (s *Store) Remove(name string) error {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sources[name]; !ok {
		return fmt.Errorf("%w %q", ErrUnknownSource, name)
	}
	s.removeLocked(name, now)
	s.reorderLocked()
	return nil
}

func (s *Store) removeLocked(name string, now time.Time) {
	st := s.sources[name]
	for _, k := range st.consoles {
		delete(s.consoles, k)
	}
	delete(s.sources, name)
	s.audit.add(Event{Time: now, Kind: EventSourceRemoved, Source: name, Detail: fmt.Sprintf("%d consoles", len(st.consoles))})
}

// SourceInfo describes a source without secrets (no tickets, no CA
// keys: a source only ever holds CA certificates).
type SourceInfo struct {
	Name string `json:"source"`
	// Type is the served entry's type.
	Type string `json:"type"`
	// State is "ok", "errored" (the latest entry has errors) or
	// "unsupported" (a Kerbside type other than static).
	State string `json:"state"`
	// Errored is State == "errored".
	Errored bool `json:"errored"`
	// Consoles is how many consoles the source serves: those of its last
	// good entry, also while it is errored.
	Consoles  int  `json:"consoles"`
	HasCACert bool `json:"has_ca_cert"`
	// Problems are the errors of the latest entry (none unless errored),
	// Warnings its warnings.
	Problems []static.Problem `json:"-"`
	Warnings []static.Problem `json:"-"`
	// LoadedAt is when the latest entry was read; LastGoodAt when the
	// latest good one was (zero: never, and nothing is served).
	LoadedAt   time.Time `json:"loaded_at"`
	LastGoodAt time.Time `json:"last_good_at,omitzero"`
}

func (st *sourceState) info() SourceInfo {
	state := "ok"
	switch {
	case errors.Is(st.lastErr, static.ErrUnsupportedType):
		state = "unsupported"
	case st.lastErr != nil:
		state = "errored"
	}
	srv := st.served()
	return SourceInfo{
		Name: st.last.Name, Type: srv.Type, State: state, Errored: state == "errored", Consoles: len(st.consoles),
		HasCACert: srv.CACert != "", Problems: st.last.Errors, Warnings: st.last.Warnings, LoadedAt: st.loadedAt, LastGoodAt: st.goodAt,
	}
}

// Sources lists the sources by name.
func (s *Store) Sources() []SourceInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SourceInfo, 0, len(s.sources))
	for _, st := range s.sources {
		out = append(out, st.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Source describes one source.
func (s *Store) Source(name string) (SourceInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.sources[name]
	if !ok {
		return SourceInfo{}, fmt.Errorf("%w %q", ErrUnknownSource, name)
	}
	return st.info(), nil
}
