package harness

import (
	"context"

	"github.com/spiceharness/spiceharness/proxy/api"
)

// startAPI serves the `.vv` API for the lane's store and proxy, with the
// proxy's /metrics mounted (the API listens on loopback unless a key is
// set).
func (e *Env) startAPI(ctx context.Context) error {
	p := e.Proxy
	srv, err := api.New(api.Config{
		Store: e.Store,
		Proxy: api.ProxyEndpoint{Host: "127.0.0.1", Port: p.PlainAddr().Port, TLSPort: p.TLSAddr().Port,
			CAPEM: p.CAPEM(), HostSubject: p.HostSubject()},
		APIKey:  e.cfg.apiKey,
		Metrics: p.MetricsHandler(),
		Logger:  e.cfg.proxyLog,
	})
	if err != nil {
		return err
	}
	if err := srv.Start(e.cfg.apiAddr); err != nil {
		return err
	}
	e.APIURL = srv.URL()
	e.stopAPI = srv.Shutdown
	return nil
}
