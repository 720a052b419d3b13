package store

import (
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
	if got, want := keys(s.Targets(0)), []string{"a-first/b", "a-first/z", "lab/u1", "lab/u2"}; !slices.Equal(got, want) {
		t.Fatalf("unexpected targets (-want +got):\n-%v\n+%v", want, got)
	}
	if got := keys(s.Targets(3)); len(got) != 3 || got[2] != "lab/u1" {
		t.Fatalf("Targets(3) = %v", got)
	}
	if err := s.Remove("a-first"); err != nil {
		t.Fatal(err)
	}
	if got, want := keys(s.Targets(0)), []string{"lab/u1", "lab/u2"}; !slices.Equal(got, want) {
		t.Fatalf("after Remove (-want +got):\n-%v\n+%v", want, got)
	}
}
