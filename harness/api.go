package harness

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/spiceharness/spiceharness/proxy/api"
)

// startAPI serves the `.vv` API for the lane's store and proxy, with the
// proxy's /metrics mounted (the API listens on loopback unless a key is
// set).
func (e *Env) startAPI(ctx context.Context) error { return e.startAPIOn(e.cfg.apiAddr) }

// RestartAPI stops the lane's `.vv` API and starts a new one on the same
// address, store and proxy, as an operator restarting the API would:
// live sessions must not notice, and APIURL stays valid. For fault
// injection; it needs the in-process API (not External).
func (e *Env) RestartAPI(ctx context.Context) error {
	if e.stopAPI == nil || e.Store == nil || e.Proxy == nil {
		return errors.New("harness: RestartAPI needs the in-process API and proxy")
	}
	u, err := url.Parse(e.APIURL)
	if err != nil {
		return err
	}
	if err := e.stopAPI(ctx); err != nil {
		return fmt.Errorf("harness: stopping the API: %w", err)
	}
	e.stopAPI = nil
	e.http.CloseIdleConnections() // they led to the old server
	if err := e.startAPIOn(u.Host); err != nil {
		return fmt.Errorf("harness: restarting the API on %s: %w", u.Host, err)
	}
	e.log.Info("API restarted", "url", e.APIURL)
	return nil
}

func (e *Env) startAPIOn(addr string) error {
	p := e.Proxy
	cfg := api.Config{
		Store: e.Store,
		Proxy: api.ProxyEndpoint{Host: "127.0.0.1", Port: p.PlainAddr().Port, TLSPort: p.TLSAddr().Port,
			CAPEM: p.CAPEM(), HostSubject: p.HostSubject()},
		APIKey:  e.cfg.apiKey,
		Metrics: p.MetricsHandler(),
		Logger:  e.cfg.proxyLog,
	}
	if a := p.ConnectAddr(); a != nil { // the CONNECT listener is up: serve tunnel .vv files
		cfg.Tunnel = api.TunnelEndpoint{Host: "127.0.0.1", Port: a.Port, Sign: p.SignTunnel}
	}
	srv, err := api.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Start(addr); err != nil {
		return err
	}
	e.APIURL = srv.URL()
	e.stopAPI = srv.Shutdown
	return nil
}
