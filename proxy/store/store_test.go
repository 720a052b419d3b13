package store

import (
	"encoding/json"
	"errors"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spiceharness/spiceharness/static"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestStore(t *testing.T) (*Store, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	s := New(Options{Now: clk.now, TokenTTL: time.Minute, AuditSize: 16})
	s.Load(static.Source{Name: "lab", Type: static.TypeStatic, CACert: "", Consoles: []static.Console{
		{UUID: "u1", Name: "vm1", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 5900, Ticket: "secret-ticket-1"},
		{UUID: "u2", Name: "vm2", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 5901, Ticket: "secret-ticket-2"},
	}})
	return s, clk
}

var k1 = static.Key{Source: "lab", UUID: "u1"}

func TestTokenFormat(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9]{48}$`)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tok := newToken(TokenLength)
		if !re.MatchString(tok) {
			t.Fatalf("token %q is not 48 characters of [A-Za-z0-9]", tok)
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
}

func TestSessionLifecycle(t *testing.T) {
	s, clk := newTestStore(t)
	m, err := s.Mint(k1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Target.Console.Ticket != "secret-ticket-1" {
		t.Fatal("mint must return the console's target")
	}
	// A channel before main: no session yet.
	if _, err := s.Authorize(m.Token, false, 42); !errors.Is(err, ErrNoSession) {
		t.Fatalf("join before main: %v", err)
	}
	l, err := s.Authorize(m.Token, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Concurrent second main with the same token while the first links.
	if _, err := s.Authorize(m.Token, true, 0); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("second main while connecting: %v", err)
	}
	// A failed backend link gives the token back.
	l.Failed("backend down")
	if l, err = s.Authorize(m.Token, true, 0); err != nil {
		t.Fatalf("token after a failed attempt: %v", err)
	}
	l.Established(0xabc)
	if _, err := s.Authorize(m.Token, true, 0); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("replay: %v", err)
	}
	if _, err := s.Authorize(m.Token, false, 0xdef); !errors.Is(err, ErrWrongSession) {
		t.Fatalf("foreign session id: %v", err)
	}
	clk.add(2 * time.Minute) // token expired, session lives on
	j, err := s.Authorize(m.Token, false, 0xabc)
	if err != nil {
		t.Fatalf("join after token expiry: %v", err)
	}
	closed := make(chan struct{})
	ch := &Channel{Type: "display", Close: func() { close(closed) }}
	if !j.Attach(ch) {
		t.Fatal("attach to an active session refused")
	}
	n, err := s.Terminate(m.SessionID)
	if err != nil || n != 1 {
		t.Fatalf("terminate: %d, %v", n, err)
	}
	select {
	case <-closed:
	default:
		t.Fatal("terminate did not close the channel before returning")
	}
	if _, err := s.Authorize(m.Token, false, 0xabc); !errors.Is(err, ErrSessionEnded) {
		t.Fatalf("join after terminate: %v", err)
	}
	if j.Attach(&Channel{Close: func() {}}) {
		t.Fatal("attach to an ended session accepted")
	}
}

func TestExpiredAndUnknownTokens(t *testing.T) {
	s, clk := newTestStore(t)
	m, _ := s.Mint(k1)
	clk.add(61 * time.Second)
	if _, err := s.Authorize(m.Token, true, 0); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := s.Authorize("nope", true, 0); !errors.Is(err, ErrUnknownToken) {
		t.Fatalf("unknown: %v", err)
	}
	// Unused expired sessions are forgotten after another TTL.
	clk.add(2 * time.Minute)
	if got := len(s.Sessions()); got != 0 {
		t.Fatalf("%d stale sessions kept", got)
	}
}

func TestConcurrentMintsAreDistinct(t *testing.T) {
	s, _ := newTestStore(t)
	var wg sync.WaitGroup
	toks := make([]string, 1000)
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := s.Mint(k1)
			if err != nil {
				t.Error(err)
			}
			toks[i] = m.Token
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, tok := range toks {
		if seen[tok] {
			t.Fatal("duplicate token under concurrency")
		}
		seen[tok] = true
	}
}

func TestListingsHoldNoSecrets(t *testing.T) {
	s, _ := newTestStore(t)
	m, _ := s.Mint(k1)
	l, _ := s.Authorize(m.Token, true, 0)
	l.Established(7)
	b, err := json.Marshal(map[string]any{"sources": s.Sources(), "consoles": s.Consoles(), "sessions": s.Sessions(), "audit": s.Audit()})
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{m.Token, "secret-ticket-1", "secret-ticket-2"} {
		if strings.Contains(string(b), secret) {
			t.Fatalf("listing leaks a secret: %s", b)
		}
	}
}

func TestReloadAndTickets(t *testing.T) {
	s, _ := newTestStore(t)
	if err := s.SetTicket(k1, "rotated"); err != nil {
		t.Fatal(err)
	}
	if tg, _ := s.Console(k1); tg.Console.Ticket != "rotated" {
		t.Fatal("SetTicket did not replace the ticket")
	}
	// Reloading replaces the source's consoles atomically.
	s.Load(static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{
		{UUID: "u3", Name: "vm3", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 5903, Ticket: "t3"}}})
	if _, err := s.Console(k1); !errors.Is(err, ErrUnknownConsole) {
		t.Fatalf("old console after reload: %v", err)
	}
	if _, err := s.Console(static.Key{Source: "nope", UUID: "u3"}); !errors.Is(err, ErrUnknownSource) {
		t.Fatalf("unknown source: %v", err)
	}
	// An errored source is kept with its problems and serves nothing; others keep working.
	bad := static.Source{Name: "broken", Type: static.TypeStatic, Errors: []static.Problem{{Field: "consoles[0].ticket", Message: "too long"}}}
	s.Load(bad)
	info, err := s.Source("broken")
	if err != nil || info.State != "errored" || len(info.Problems) != 1 {
		t.Fatalf("errored source: %+v %v", info, err)
	}
	if _, err := s.Console(static.Key{Source: "lab", UUID: "u3"}); err != nil {
		t.Fatalf("a good source stopped working beside an errored one: %v", err)
	}
	s.Load(static.Source{Name: "sf", Type: "shakenfist"})
	if info, _ := s.Source("sf"); info.State != "unsupported" {
		t.Fatalf("shakenfist source state %q", info.State)
	}
}

func TestAuditIsBounded(t *testing.T) {
	s, _ := newTestStore(t)
	for i := 0; i < 100; i++ {
		s.Mint(k1)
	}
	ev := s.Audit()
	if len(ev) != 16 {
		t.Fatalf("audit kept %d events, bound is 16", len(ev))
	}
	for i := 1; i < len(ev); i++ {
		if ev[i].Seq != ev[i-1].Seq+1 {
			t.Fatal("audit events out of order")
		}
	}
}

func TestTargetsSortedAndLimited(t *testing.T) {
	s, _ := newTestStore(t)
	s.Load(static.Source{Name: "a-first", Type: static.TypeStatic, Consoles: []static.Console{
		{UUID: "z", Name: "z", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 1, Ticket: "t"},
		{UUID: "b", Name: "b", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 2, Ticket: "t"}}})
	keys := func(ts []Target) (out []string) {
		for _, t := range ts {
			out = append(out, t.Key.String())
		}
		return out
	}
	if diff := cmp.Diff([]string{"a-first/b", "a-first/z", "lab/u1", "lab/u2"}, keys(s.Targets(0))); diff != "" {
		t.Fatalf("unexpected targets (-want +got):\n%s", diff)
	}
	if got := keys(s.Targets(3)); len(got) != 3 || got[2] != "lab/u1" {
		t.Fatalf("Targets(3) = %v", got)
	}
	if err := s.Remove("a-first"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"lab/u1", "lab/u2"}, keys(s.Targets(0))); diff != "" {
		t.Fatalf("unexpected targets after Remove (-want +got):\n%s", diff)
	}
}

// endSession mints a token for k, opens its session and ends it.
func endSession(t *testing.T, s *Store, k static.Key) Minted {
	t.Helper()
	m, err := s.Mint(k)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.Authorize(m.Token, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Established(1)
	l.End("main channel closed")
	return m
}

func ids(list []SessionInfo) []string {
	out := make([]string, len(list))
	for i, si := range list {
		out[i] = si.ID
	}
	return out
}

func TestEndedSessionsAreForgottenAfterTheirGrace(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	s := New(Options{Now: clk.now, TokenTTL: 10 * time.Minute, EndedRetention: 30 * time.Second})
	s.Load(static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{
		{UUID: "u1", Name: "vm1", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 5900, Ticket: "t"}}})
	ended := endSession(t, s, k1)
	clk.add(20 * time.Second)
	if info, err := s.Session(ended.SessionID); err != nil || info.State != "ended" {
		t.Fatalf("an ended session within its grace: %+v, %v", info, err)
	}
	// A refused join says why while the session is known.
	if _, err := s.Authorize(ended.Token, false, 1); !errors.Is(err, ErrSessionEnded) {
		t.Fatalf("unexpected join of an ended session (-want +got):\n%s", cmp.Diff(ErrSessionEnded, err, cmpopts.EquateErrors()))
	}
	clk.add(11 * time.Second) // past the 30 s grace, far within the 10 min token lifetime
	// Nothing else calls the store: its own timer sweeps.
	eventually(t, 5*time.Second, "the ended session forgotten", func() bool {
		_, err := s.Session(ended.SessionID)
		return errors.Is(err, ErrUnknownSession)
	})
	// Its token stays unusable, now as unknown.
	for _, main := range []bool{true, false} {
		if _, err := s.Authorize(ended.Token, main, 0); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("unexpected token of a forgotten session, main=%v (-want +got):\n%s", main, cmp.Diff(ErrUnknownToken, err, cmpopts.EquateErrors()))
		}
	}
	if got := s.Sessions(); len(got) != 0 {
		t.Errorf("unexpected sessions left (-want +got):\n%s", cmp.Diff([]string{}, ids(got)))
	}
}

func TestEndedSessionsAreBounded(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	s := New(Options{Now: clk.now, MaxEnded: 3})
	s.Load(static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{
		{UUID: "u1", Name: "vm1", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 5900, Ticket: "t"}}})
	var all []string
	for range 5 {
		all = append(all, endSession(t, s, k1).SessionID)
		clk.add(time.Millisecond)
	}
	live, err := s.Mint(k1)
	if err != nil {
		t.Fatal(err)
	}
	// Newest first: the live token's session, then the three newest ended.
	want := []string{live.SessionID, all[4], all[3], all[2]}
	if diff := cmp.Diff(want, ids(s.Sessions())); diff != "" {
		t.Errorf("unexpected sessions kept (-want +got):\n%s", diff)
	}
	if ci, _ := s.ConsoleInfo(k1); ci.Sessions != 1 {
		t.Errorf("unexpected live sessions of the console (-want +got):\n%s", cmp.Diff(1, ci.Sessions))
	}
}

func TestForgetAtEnd(t *testing.T) {
	s, _ := newTestStore(t)
	s.opts.EndedRetention = -1
	m := endSession(t, s, k1)
	if _, err := s.Session(m.SessionID); !errors.Is(err, ErrUnknownSession) {
		t.Errorf("unexpected session after its end with EndedRetention < 0 (-want +got):\n%s", cmp.Diff(ErrUnknownSession, err, cmpopts.EquateErrors()))
	}
}

// TestRetainedMemory: under churn the store holds what lives, not what
// ended within the token lifetime.
func TestRetainedMemory(t *testing.T) {
	const n = 5000
	for _, tc := range []struct {
		name string
		opts Options
		keep int // sessions kept after the churn
	}{
		// The old policy: ended sessions kept for the token lifetime.
		{"kept for the token lifetime", Options{TokenTTL: 10 * time.Minute, EndedRetention: 10 * time.Minute, MaxEnded: -1}, n},
		{"defaults", Options{TokenTTL: 10 * time.Minute}, DefaultMaxEnded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
			tc.opts.Now = clk.now
			s := New(tc.opts)
			s.Load(static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{
				{UUID: "u1", Name: "vm1", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 5900, Ticket: "t"}}})
			before := heapInuse()
			for range n {
				endSession(t, s, k1)
				clk.add(time.Millisecond)
			}
			held := heapInuse()
			if got := len(s.Sessions()); got != tc.keep {
				t.Errorf("unexpected sessions kept after %d ended (-want +got):\n%s", n, cmp.Diff(tc.keep, got))
			}
			clk.add(DefaultEndedRetention + time.Second)
			s.Sessions() // sweeps
			after := heapInuse()
			t.Logf("%d sessions ended: heap %+.0f KiB (%.2f KiB per ended session); %+.0f KiB once %v passed",
				n, kib(held-before), kib(held-before)/n, kib(after-before), DefaultEndedRetention)
			runtime.KeepAlive(s)
		})
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func kib(b uint64) float64 { return float64(int64(b)) / 1024 }

func eventually(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
}

func TestListSessions(t *testing.T) {
	s, clk := newTestStore(t)
	var want []string // newest first
	states := map[string][]string{}
	for i := range 7 {
		var id string
		switch i % 3 {
		case 0:
			m, _ := s.Mint(k1)
			id = m.SessionID
			states["minted"] = append([]string{id}, states["minted"]...)
		case 1:
			m, _ := s.Mint(k1)
			l, _ := s.Authorize(m.Token, true, 0)
			l.Established(uint32(i))
			id = m.SessionID
			states["active"] = append([]string{id}, states["active"]...)
		case 2:
			id = endSession(t, s, k1).SessionID
			states["ended"] = append([]string{id}, states["ended"]...)
		}
		want = append([]string{id}, want...)
		clk.add(time.Millisecond)
	}
	all := func(q SessionQuery) (pages [][]string) {
		t.Helper()
		for {
			p, err := s.ListSessions(q)
			if err != nil {
				t.Fatal(err)
			}
			pages = append(pages, ids(p.Sessions))
			if p.Next == "" {
				return pages
			}
			q.Cursor = p.Next
		}
	}
	if diff := cmp.Diff([][]string{want[:3], want[3:6], want[6:]}, all(SessionQuery{Limit: 3})); diff != "" {
		t.Errorf("unexpected pages of 3 (-want +got):\n%s", diff)
	}
	// A page that ends exactly at the last session has no next.
	if diff := cmp.Diff([][]string{want}, all(SessionQuery{Limit: 7})); diff != "" {
		t.Errorf("unexpected page of 7 (-want +got):\n%s", diff)
	}
	live := []string{want[0], want[2], want[3], want[5], want[6]} // i = 6, 4, 3, 1, 0: not i%3 == 2
	for state, wantIDs := range map[string][]string{
		"ended": states["ended"], "active": states["active"], "minted": states["minted"], "live": live, "": want,
	} {
		p, err := s.ListSessions(SessionQuery{State: state})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantIDs, ids(p.Sessions)); diff != "" || p.Next != "" {
			t.Errorf("unexpected state=%q listing, next %q (-want +got):\n%s", state, p.Next, diff)
		}
	}
	// A cursor survives the forgetting of the session it follows.
	first, _ := s.ListSessions(SessionQuery{Limit: 2})
	s.mu.Lock()
	s.forgetLocked(s.sessions[want[1]])
	s.mu.Unlock()
	rest, err := s.ListSessions(SessionQuery{Limit: 10, Cursor: first.Next})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[2:], ids(rest.Sessions)); diff != "" {
		t.Errorf("unexpected page after a forgotten cursor session (-want +got):\n%s", diff)
	}
	for _, q := range []SessionQuery{{State: "zombie"}, {Limit: -1}, {Limit: MaxPageSize + 1}, {Cursor: "nope"}, {Cursor: encodeConsoleCursor(k1)}} {
		if _, err := s.ListSessions(q); !errors.Is(err, ErrBadQuery) {
			t.Errorf("unexpected answer to %+v (-want +got):\n%s", q, cmp.Diff(ErrBadQuery, err, cmpopts.EquateErrors()))
		}
	}
}

func TestListConsoles(t *testing.T) {
	s, _ := newTestStore(t)
	s.Load(static.Source{Name: "a-first", Type: static.TypeStatic, Consoles: []static.Console{
		{UUID: "z", Name: "z", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 1, Ticket: "t"},
		{UUID: "b", Name: "b", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 2, Ticket: "t"}}})
	s.Mint(k1)
	var got [][]string
	var sessions int
	q := ConsoleQuery{Limit: 3}
	for {
		p, err := s.ListConsoles(q)
		if err != nil {
			t.Fatal(err)
		}
		var page []string
		for _, c := range p.Consoles {
			page = append(page, c.Source+"/"+c.UUID)
			sessions += c.Sessions
		}
		got = append(got, page)
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	if diff := cmp.Diff([][]string{{"a-first/b", "a-first/z", "lab/u1"}, {"lab/u2"}}, got); diff != "" {
		t.Errorf("unexpected console pages (-want +got):\n%s", diff)
	}
	if sessions != 1 {
		t.Errorf("unexpected live sessions over the pages (-want +got):\n%s", cmp.Diff(1, sessions))
	}
	if _, err := s.ListConsoles(ConsoleQuery{Cursor: encodeSessionCursor(3)}); !errors.Is(err, ErrBadQuery) {
		t.Errorf("unexpected answer to a session cursor (-want +got):\n%s", cmp.Diff(ErrBadQuery, err, cmpopts.EquateErrors()))
	}
}
