package api_test

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/vv"
)

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9]{48}$`)

// TestProxyVVTokenOnce: a client configured only from the proxy .vv links
// main through the real proxy (plain port first, NEED_SECURED, then TLS
// with the .vv's CA and host-subject); a second main with the same token
// is refused with PERMISSION_DENIED.
func TestProxyVVTokenOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := ctxT(t)
	f, r := e.fetchVV(proxyPath(0))
	for k, want := range map[string]string{"Content-Type": api.ContentTypeVV, "Cache-Control": "no-store",
		"Content-Disposition": `attachment; filename="console.vv"`} {
		if got := r.header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	sid := r.header.Get(api.HeaderSession)
	want := vv.File{Type: "spice", Host: "127.0.0.1", Port: e.proxy.PlainAddr().Port, TLSPort: e.proxy.TLSAddr().Port,
		Password: f.Password, CA: string(e.proxy.CAPEM()), HostSubject: e.proxy.HostSubject(),
		Title: "vm0 via proxy session " + sid, DeleteThisFile: true}
	if f.String() != want.String() || !tokenRE.MatchString(f.Password) || f.CA == "" || f.HostSubject == "" {
		t.Fatalf("unexpected .vv:\n got %v\nwant %v", f, want)
	}
	s, err := dialerFor(t, f).Connect(ctx)
	if err != nil {
		t.Fatalf("linking with the .vv: %v", err)
	}
	defer s.Close()
	if !s.Main.Secure || !s.Main.FollowedNeedSecured {
		t.Errorf("main channel: secure %v, followed NEED_SECURED %v; want both", s.Main.Secure, s.Main.FollowedNeedSecured)
	}
	if _, err := s.Open(ctx, spice.ChannelInputs, 0); err != nil {
		t.Fatalf("inputs channel with the same token: %v", err)
	}
	info, err := e.store.Session(sid)
	if err != nil || info.State != "active" || info.SpiceSessionID != s.ID {
		t.Fatalf("session %s: %+v, %v; want active with SPICE id %#x", sid, info, err, s.ID)
	}

	_, err = dialerFor(t, f).Connect(ctx)
	if !errors.Is(err, spice.ErrPermissionDenied) {
		t.Fatalf("second main with the same token: %v, want PERMISSION_DENIED", err)
	}
	// The first session is unaffected.
	if s.Main.Err() != nil {
		t.Fatalf("first session broke: %v", s.Main.Err())
	}
}

// TestProxyVVExpiredToken: a token past the store's TTL is refused by the
// proxy.
func TestProxyVVExpiredToken(t *testing.T) {
	e := newEnv(t, envOptions{})
	f, _ := e.fetchVV(proxyPath(0))
	e.clock.advance(e.store.TokenTTL() + time.Second)
	_, err := dialerFor(t, f).Connect(ctxT(t))
	var le *spice.LinkError
	if !errors.As(err, &le) || le.Code != spice.ErrPermissionDenied || le.Step != spice.StepLinkResult {
		t.Fatalf("expired token: %v, want PERMISSION_DENIED at the link result", err)
	}
	if got := e.server(0).LinkOK.Load(); got != 0 { // the proxy's caps probes stop before the ticket
		t.Errorf("backend accepted %d links, want 0: a refused token must not reach qemu", got)
	}
}

// TestDirectVV: the direct .vv carries the hypervisor's endpoint and the
// console's current ticket, read at request time, and links.
func TestDirectVV(t *testing.T) {
	e := newEnv(t, envOptions{})
	f, r := e.fetchVV(directPath(0))
	if r.header.Get("Content-Type") != api.ContentTypeVV || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", r.header)
	}
	want := vv.File{Type: "spice", Host: "127.0.0.1", Port: e.server(0).Port(), Password: ticketOf(0),
		Title: "vm0 direct on localhost", DeleteThisFile: true}
	if f.String() != want.String() || f.Password != ticketOf(0) {
		t.Fatalf("unexpected .vv:\n got %v\nwant %v", f, want)
	}
	s, err := dialerFor(t, f).Connect(ctxT(t))
	if err != nil {
		t.Fatalf("linking with the direct .vv: %v", err)
	}
	s.Close()

	// Rotation: the next .vv has the new ticket; serving it and proxy
	// .vv files never writes a ticket back into the store.
	if err := e.store.SetTicket(keyOf(0), "rotated-ticket"); err != nil {
		t.Fatal(err)
	}
	if f, _ := e.fetchVV(directPath(0)); f.Password != "rotated-ticket" {
		t.Fatalf("after SetTicket the direct .vv has password %q, want rotated-ticket", f.Password)
	}
	e.fetchVV(proxyPath(0))
	e.fetchVV(directPath(0))
	tg, err := e.store.Console(keyOf(0))
	if err != nil || tg.Console.Ticket != "rotated-ticket" {
		t.Fatalf("store ticket after serving .vv files: %q, %v; want rotated-ticket", tg.Console.Ticket, err)
	}
	// The handout is audited, without the ticket.
	n := 0
	for _, ev := range e.store.Audit() {
		if ev.Kind == api.EventDirectVV {
			n++
		}
		if strings.Contains(fmt.Sprint(ev), "ticket-0") || strings.Contains(fmt.Sprint(ev), "rotated-ticket") {
			t.Errorf("audit event carries a ticket: %+v", ev)
		}
	}
	if n != 3 {
		t.Errorf("%d %s audit events, want 3", n, api.EventDirectVV)
	}
}

// TestConcurrentMint: 1,000 concurrent proxy .vv requests mint 1,000
// distinct tokens and sessions (run with -race).
func TestConcurrentMint(t *testing.T) {
	e := newEnv(t, envOptions{consoles: 2})
	const n = 1000
	e.client.Transport.(*http.Transport).MaxConnsPerHost = 64
	type result struct {
		token, session string
		err            error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.client.Get(e.api.URL() + proxyPath(i%2))
			if err != nil {
				results[i].err = err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				results[i].err = fmt.Errorf("status %d", resp.StatusCode)
				return
			}
			f, err := vv.ParseReader(resp.Body)
			if err != nil {
				results[i].err = err
				return
			}
			results[i] = result{token: f.Password, session: resp.Header.Get(api.HeaderSession)}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	tokens, sessions := map[string]bool{}, map[string]bool{}
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if !tokenRE.MatchString(r.token) {
			t.Fatalf("request %d: token %q is not 48 characters of [A-Za-z0-9]", i, r.token)
		}
		tokens[r.token], sessions[r.session] = true, true
	}
	if len(tokens) != n || len(sessions) != n {
		t.Fatalf("%d distinct tokens and %d distinct sessions for %d requests", len(tokens), len(sessions), n)
	}
	if got := len(e.store.Sessions()); got != n {
		t.Fatalf("store has %d sessions, want %d", got, n)
	}
	t.Logf("%d concurrent .vv requests (64 connections) in %v", n, elapsed)
}
