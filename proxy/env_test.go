package proxy_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
	"go.uber.org/goleak"
)

// backendKeys is shared by the synthetic servers so that each test does
// not start its own RSA generator (the machine has two cores).
var backendKeys *spice.KeyPool

func TestMain(m *testing.M) {
	backendKeys = spice.NewKeyPool(8)
	testenv.VerifyTestMain(m, testenv.Teardown(backendKeys.Close))
}

// env is a proxy in front of synthetic SPICE servers, over real loopback
// sockets.
type env struct {
	t       *testing.T
	store   *store.Store
	proxy   *proxy.Proxy
	servers map[string]*spicetest.Server // by console uuid
	clock   *clock
}

type clock struct{ off time.Duration }

func (c *clock) now() time.Time { return time.Now().Add(c.off) }

func newEnv(t *testing.T, configure func(*proxy.Proxy), servers ...*spicetest.Server) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{}, servers: map[string]*spicetest.Server{}}
	e.store = store.New(store.Options{Now: e.clock.now, TokenTTL: time.Minute})
	if len(servers) == 0 {
		servers = []*spicetest.Server{{}}
	}
	src := static.Source{Name: "lab", Type: static.TypeStatic}
	for i, s := range servers {
		if s.Password == "" {
			s.Password = fmt.Sprintf("ticket-%d", i)
		}
		if s.Keys == nil {
			s.Keys = backendKeys
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		uuid := fmt.Sprintf("00000000-0000-0000-0000-%012d", i)
		e.servers[uuid] = s
		src.Consoles = append(src.Consoles, static.Console{UUID: uuid, Name: fmt.Sprintf("vm%d", i), Hypervisor: "localhost",
			HypervisorIP: "127.0.0.1", InsecurePort: s.Port(), Ticket: s.Password})
	}
	e.store.Load(src)
	e.proxy = &proxy.Proxy{Store: e.store, KeyPoolSize: 4}
	if testing.Verbose() {
		e.proxy.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if configure != nil {
		configure(e.proxy)
	}
	if err := e.proxy.Start("127.0.0.1:0", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.proxy.Close() })
	return e
}

func (e *env) uuid(i int) string { return fmt.Sprintf("00000000-0000-0000-0000-%012d", i) }

func (e *env) server(i int) *spicetest.Server { return e.servers[e.uuid(i)] }

func (e *env) mint(i int) store.Minted {
	e.t.Helper()
	m, err := e.store.Mint(static.Key{Source: "lab", UUID: e.uuid(i)})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// session mints a token for console i and links a session's main
// channel with it over TLS; the session is closed by the test's cleanup.
func (e *env) session(t *testing.T, ctx context.Context, i int) (*spice.Session, store.Minted) {
	t.Helper()
	m := e.mint(i)
	s, err := e.dialer(m.Token).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, m
}

// dialer is a TLS client of the proxy (plain port set too, so
// NEED_SECURED can be followed).
func (e *env) dialer(password string) *spice.Dialer {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.proxy.CAPEM())
	return &spice.Dialer{Host: "127.0.0.1", TLSPort: e.proxy.TLSAddr().Port, Password: password, CA: pool,
		HostSubject: e.proxy.HostSubject()}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func eventually(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
}

// noLeaks fails t if a goroutine started after baseline (a
// goleak.IgnoreCurrent taken then) is still running. The proxy's
// goroutines end on events (closes, deadlines of at most a few seconds);
// goleak retries for about 0.4 s only, so first give them up to 5 s.
func noLeaks(t *testing.T, baseline goleak.Option) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); goleak.Find(baseline) != nil && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	goleak.VerifyNone(t, baseline)
}
