package inproc

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

// ReloadInterval is how often Serve checks its sources.yaml for changes.
const ReloadInterval = 500 * time.Millisecond

// Server is the proxy and `.vv` API serving a sources.yaml (harness
// serve).
type Server struct {
	Path   string
	Store  *store.Store
	Proxy  *proxy.Proxy
	APIURL string

	log       *slog.Logger
	mu        sync.Mutex
	stopAPI   func(context.Context) error
	stopWatch func()
	once      sync.Once
	closeErr  error
}

// ServeConfig configures Serve.
type ServeConfig struct {
	Settings harness.Settings
	Logger   *slog.Logger // progress
}

// Serve runs the proxy and the `.vv` API for the static sources in path,
// in front of qemus the harness did not start. It reloads path when it
// changes (and on Reload); an errored source is kept with its problems;
// live sessions are never cut by a reload.
func Serve(ctx context.Context, path string, cfg ServeConfig) (*Server, error) {
	s := cfg.Settings
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	srv := &Server{Path: path, log: cfg.Logger}
	srv.Store = store.New(store.Options{TokenTTL: s.TokenTTL})
	if _, err := srv.Reload(); err != nil {
		var pe *static.ParseError
		if !errors.As(err, &pe) {
			return nil, err
		}
	}
	srv.Proxy = &proxy.Proxy{Store: srv.Store, AllowPlain: s.AllowPlain, BackendTimeout: s.BackendTimeout,
		HandshakeTimeout: s.HandshakeTimeout, Logger: s.Logger}
	if err := srv.Proxy.Start(orLoopback(s.PlainAddr), orLoopback(s.TLSAddr)); err != nil {
		return nil, errors.Join(err, srv.Close())
	}
	srv.log.Info("proxy listening", "plain", srv.Proxy.PlainAddr().String(), "tls", srv.Proxy.TLSAddr().String(), "allow_plain", s.AllowPlain)
	a, err := api.New(api.Config{
		Store: srv.Store,
		Proxy: api.ProxyEndpoint{Host: "127.0.0.1", Port: srv.Proxy.PlainAddr().Port, TLSPort: srv.Proxy.TLSAddr().Port,
			CAPEM: srv.Proxy.CAPEM(), HostSubject: srv.Proxy.HostSubject()},
		APIKey: s.APIKey, Metrics: srv.Proxy.MetricsHandler(), Logger: s.Logger,
	})
	if err == nil {
		err = a.Start(orLoopback(s.APIAddr))
	}
	if err != nil {
		return nil, errors.Join(err, srv.Close())
	}
	srv.APIURL, srv.stopAPI = a.URL(), a.Shutdown
	srv.log.Info("API listening", "url", srv.APIURL)
	srv.watch()
	return srv, nil
}

// Reload re-reads the sources file into the store.
func (srv *Server) Reload() (*static.File, error) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	f, err := static.ParseFile(srv.Path)
	if f == nil {
		srv.log.Error("cannot read sources.yaml", "path", srv.Path, "err", err)
		return nil, err
	}
	for _, p := range f.Problems {
		srv.log.Warn("sources.yaml: " + p.String())
	}
	keep := map[string]bool{}
	for _, s := range f.Sources {
		keep[s.Name] = true
	}
	for _, s := range srv.Store.Sources() {
		if !keep[s.Name] {
			srv.Store.Remove(s.Name)
		}
	}
	srv.Store.Load(f.Sources...)
	if srv.Proxy != nil {
		srv.Proxy.WarmCaps()
	}
	n := 0
	for _, s := range f.Sources {
		n += len(s.Consoles)
	}
	srv.log.Info("sources loaded", "path", srv.Path, "sources", len(f.Sources), "consoles", n, "errors", len(f.Errors()))
	return f, err
}

func (srv *Server) watch() {
	stat := func() (time.Time, int64) {
		st, err := os.Stat(srv.Path)
		if err != nil {
			return time.Time{}, -1
		}
		return st.ModTime(), st.Size()
	}
	lastMod, lastSize := stat()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(ReloadInterval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			mod, size := stat()
			if size < 0 || (mod.Equal(lastMod) && size == lastSize) {
				continue
			}
			lastMod, lastSize = mod, size
			srv.Reload()
		}
	}()
	var once sync.Once
	srv.stopWatch = func() { once.Do(func() { close(done); wg.Wait() }) }
}

// Close stops the watcher, the API and the proxy.
func (srv *Server) Close() error {
	srv.once.Do(func() {
		var errs []error
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.stopWatch != nil {
			srv.stopWatch()
		}
		if srv.stopAPI != nil {
			errs = append(errs, srv.stopAPI(ctx))
		}
		if srv.Proxy != nil {
			dctx, dcancel := context.WithTimeout(ctx, time.Second)
			if err := srv.Proxy.Shutdown(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				errs = append(errs, err)
			}
			dcancel()
		}
		srv.closeErr = errors.Join(errs...)
	})
	return srv.closeErr
}
