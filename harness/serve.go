package harness

import (
	"context"
	"errors"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

// ReloadInterval is how often Serve checks its sources.yaml for changes.
const ReloadInterval = 500 * time.Millisecond

// Serve runs the proxy and the `.vv` API for the static sources in path,
// in front of qemus the harness did not start (`harness serve`). It
// reloads path when it changes (and on Reload): each source is replaced
// atomically; sources gone from the file are removed; an errored source
// is kept with its problems and serves nothing, without stopping the
// others. Live sessions are never cut by a reload.
//
// The returned Env has no VMs. Close stops everything.
func Serve(ctx context.Context, path string, opts ...Option) (*Env, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	e := &Env{Source: c.source, cfg: c, log: c.logger, SourcesYAML: path, http: &http.Client{Timeout: 30 * time.Second}}
	e.Store = store.New(store.Options{TokenTTL: c.tokenTTL})
	if _, err := e.Reload(); err != nil {
		var pe *static.ParseError
		if !errors.As(err, &pe) {
			return nil, err // unreadable: nothing to serve
		}
	}
	e.Proxy = &proxy.Proxy{Store: e.Store, AllowPlain: c.allowPlain, Firewall: c.firewall, BackendTimeout: c.backendTO,
		HandshakeTimeout: c.handshakeTO, MaxHandshakes: c.maxHS, MaxHandshakesPerSource: c.maxHSSource, Logger: c.proxyLog}
	if err := e.Proxy.Start(c.plainAddr, c.tlsAddr); err != nil {
		return nil, errors.Join(err, e.Close())
	}
	e.log.Info("proxy listening", "plain", e.Proxy.PlainAddr().String(), "tls", e.Proxy.TLSAddr().String(), "allow_plain", c.allowPlain)
	if err := e.startAPI(ctx); err != nil {
		return nil, errors.Join(err, e.Close())
	}
	e.log.Info("API listening", "url", e.APIURL)
	e.watch()
	return e, nil
}

// Reload re-reads the sources file into the store. It returns the parsed
// file; its error (a *static.ParseError) lists the problems, which are
// also logged. Sources that parsed are loaded even when others did not.
func (e *Env) Reload() (*static.File, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, err := static.ParseFile(e.SourcesYAML)
	if f == nil {
		e.log.Error("cannot read sources.yaml", "path", e.SourcesYAML, "err", err)
		return nil, err
	}
	for _, p := range f.Problems {
		e.log.Warn("sources.yaml: " + p.String())
	}
	keep := map[string]bool{}
	for _, s := range f.Sources {
		keep[s.Name] = true
	}
	for _, s := range e.Store.Sources() {
		if !keep[s.Name] {
			e.Store.Remove(s.Name)
		}
	}
	e.Store.Load(f.Sources...)
	if e.Proxy != nil {
		e.Proxy.WarmCaps() // new consoles: probe now, not on their first client
	}
	n := 0
	for _, s := range f.Sources {
		n += len(s.Consoles)
	}
	e.log.Info("sources loaded", "path", e.SourcesYAML, "sources", len(f.Sources), "consoles", n, "errors", len(f.Errors()))
	return f, err
}

// watch polls the sources file and reloads it when its size or mtime
// changes, until Close.
func (e *Env) watch() {
	stat := func() (time.Time, int64) {
		st, err := os.Stat(e.SourcesYAML)
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
			e.Reload()
		}
	}()
	var once sync.Once
	e.stopWatch = func() { once.Do(func() { close(done); wg.Wait() }) }
}
