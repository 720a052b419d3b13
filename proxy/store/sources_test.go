package store

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/static"
)

func console(uuid, ticket string, port int) static.Console {
	return static.Console{UUID: uuid, Name: "vm-" + uuid, Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: port, Ticket: ticket}
}

func staticSource(name string, consoles ...static.Console) static.Source {
	return static.Source{Name: name, Type: static.TypeStatic, Consoles: consoles}
}

func errored(name string, consoles ...static.Console) static.Source {
	s := staticSource(name, consoles...)
	s.Errors = []static.Problem{{File: "sources.yaml", Line: 7, Col: 5, Field: "sources[0].consoles[1].ticket", Message: "is missing (required)", Err: static.ErrMissing}}
	return s
}

// TestApplyLastGoodWins walks one source through every kind of reload
// and checks what is served and reported after each.
func TestApplyLastGoodWins(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	s := New(Options{Now: clk.now})
	t0 := clk.now()
	good := staticSource("lab", console("u1", "t1", 5900), console("u2", "t2", 5901))
	other := staticSource("other", console("o1", "t3", 5902))

	type want struct {
		changes  []Change
		keys     []string
		lab      SourceInfo
		problems int
	}
	check := func(step string, got []Change, w want) {
		t.Helper()
		if diff := cmp.Diff(w.changes, got); diff != "" {
			t.Errorf("%s: unexpected changes (-want +got):\n%s", step, diff)
		}
		var keys []string
		for _, k := range s.Keys() {
			keys = append(keys, k.String())
		}
		if diff := cmp.Diff(w.keys, keys); diff != "" {
			t.Errorf("%s: unexpected consoles (-want +got):\n%s", step, diff)
		}
		if w.lab.Name == "" {
			if _, err := s.Source("lab"); !errors.Is(err, ErrUnknownSource) {
				t.Errorf("%s: source lab still there: %v", step, err)
			}
			return
		}
		info, err := s.Source("lab")
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if len(info.Problems) != w.problems {
			t.Errorf("%s: lab has %d problems, want %d", step, len(info.Problems), w.problems)
		}
		info.Problems, info.Warnings = nil, nil
		if diff := cmp.Diff(w.lab, info); diff != "" {
			t.Errorf("%s: unexpected source lab (-want +got):\n%s", step, diff)
		}
	}

	got := s.Apply([]static.Source{good, other}, true)
	check("first load", got, want{
		changes: []Change{{"lab", ActionAdded, 2}, {"other", ActionAdded, 1}},
		keys:    []string{"lab/u1", "lab/u2", "other/o1"},
		lab:     SourceInfo{Name: "lab", Type: "static", State: "ok", Consoles: 2, LoadedAt: t0, LastGoodAt: t0},
	})

	clk.add(time.Second)
	t1 := clk.now()
	got = s.Apply([]static.Source{errored("lab", console("u1", "t1", 5900)), other}, true)
	check("errored entry", got, want{
		changes:  []Change{{"lab", ActionKept, 2}, {"other", ActionUnchanged, 1}},
		keys:     []string{"lab/u1", "lab/u2", "other/o1"},
		lab:      SourceInfo{Name: "lab", Type: "static", State: "errored", Errored: true, Consoles: 2, LoadedAt: t1, LastGoodAt: t0},
		problems: 1,
	})
	if tg, err := s.Console(static.Key{Source: "lab", UUID: "u2"}); err != nil || tg.Console.Ticket != "t2" {
		t.Errorf("errored source: last good console u2 = %+v, %v; want it served with its ticket", tg.Console, err)
	}

	clk.add(time.Second)
	t2 := clk.now()
	fixed := staticSource("lab", console("u1", "t1", 5900), console("u3", "t4", 5903))
	got = s.Apply([]static.Source{fixed, other}, true)
	check("good save", got, want{
		changes: []Change{{"lab", ActionRecovered, 2}, {"other", ActionUnchanged, 1}},
		keys:    []string{"lab/u1", "lab/u3", "other/o1"},
		lab:     SourceInfo{Name: "lab", Type: "static", State: "ok", Consoles: 2, LoadedAt: t2, LastGoodAt: t2},
	})

	got = s.Apply([]static.Source{fixed}, false)
	check("incomplete list", got, want{
		changes: []Change{{"lab", ActionUnchanged, 2}, {"other", ActionAbsent, 1}},
		keys:    []string{"lab/u1", "lab/u3", "other/o1"},
		lab:     SourceInfo{Name: "lab", Type: "static", State: "ok", Consoles: 2, LoadedAt: t2, LastGoodAt: t2},
	})

	got = s.Apply([]static.Source{other}, true)
	check("source removed", got, want{
		changes: []Change{{"lab", ActionRemoved, 0}, {"other", ActionUnchanged, 1}},
		keys:    []string{"other/o1"},
	})

	got = s.Apply([]static.Source{errored("lab"), other}, true)
	check("errored, never good", got, want{
		changes:  []Change{{"lab", ActionErrored, 0}, {"other", ActionUnchanged, 1}},
		keys:     []string{"other/o1"},
		lab:      SourceInfo{Name: "lab", Type: "static", State: "errored", Errored: true, LoadedAt: t2},
		problems: 1,
	})
	if _, err := s.Console(static.Key{Source: "lab", UUID: "u1"}); !errors.Is(err, ErrUnknownConsole) {
		t.Errorf("a never-good errored source serves u1: %v", err)
	}
}

// TestApplyDuplicateNames: a good entry is never replaced by a later
// errored one of the same name.
func TestApplyDuplicateNames(t *testing.T) {
	s := New(Options{})
	got := s.Apply([]static.Source{staticSource("lab", console("u1", "t1", 5900)), errored("lab")}, true)
	if diff := cmp.Diff([]Change{{"lab", ActionKept, 1}}, got); diff != "" {
		t.Errorf("unexpected changes (-want +got):\n%s", diff)
	}
	if info, _ := s.Source("lab"); !info.Errored || info.Consoles != 1 {
		t.Errorf("unexpected source %+v, want errored serving 1 console", info)
	}
}

// TestApplyKeepsLiveSessions: removing or erroring a source does not end
// its sessions.
func TestApplyKeepsLiveSessions(t *testing.T) {
	s := New(Options{})
	s.Apply([]static.Source{staticSource("lab", console("u1", "t1", 5900))}, true)
	k := static.Key{Source: "lab", UUID: "u1"}
	m, err := s.Mint(k)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Authorize(m.Token, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Established(42)
	s.Apply([]static.Source{errored("lab")}, true)
	if _, err := s.Authorize(m.Token, false, 42); err != nil {
		t.Errorf("a channel joining a session of an errored source (last good kept): %v", err)
	}
	s.Apply(nil, true)
	if info, err := s.Session(m.SessionID); err != nil || info.State != "active" {
		t.Errorf("session after its source was removed: %+v, %v; want active", info, err)
	}
}
