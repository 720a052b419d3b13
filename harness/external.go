package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// apiGet performs an authenticated GET on the lane's API.
func (e *Env) apiGet(ctx context.Context, path string) (*http.Response, error) {
	return e.apiDo(ctx, http.MethodGet, path)
}

func (e *Env) apiDo(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, e.APIURL+path, nil)
	if err != nil {
		return nil, err
	}
	if key := e.apiKey(); key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return e.http.Do(req)
}

func (e *Env) apiKey() string {
	if e.External() {
		return e.cfg.externalToken
	}
	return e.cfg.apiKey
}

func consolePath(source, uuid string) string {
	return url.PathEscape(source) + "/" + url.PathEscape(uuid)
}

// waitExternal waits until the external API lists every console of the
// sources.yaml the harness wrote (the proxy loaded it).
func (e *Env) waitExternal(ctx context.Context) error {
	e.log.Info("waiting for the external proxy to load sources.yaml", "api", e.APIURL, "path", e.SourcesYAML)
	for _, vm := range e.VMs {
		if err := poll(ctx, func() (bool, error) {
			resp, err := e.apiGet(ctx, "/console/"+consolePath(vm.Key.Source, vm.Key.UUID))
			if err != nil {
				return false, nil
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		}); err != nil {
			return fmt.Errorf("harness: the external API %s never listed %s (did its proxy load %s?): %w", e.APIURL, vm.Key, e.SourcesYAML, err)
		}
	}
	return nil
}

// waitExternalTicket waits until the external proxy serves ticket in
// vm's direct .vv (it reloaded sources.yaml).
func (e *Env) waitExternalTicket(ctx context.Context, vm *VM, ticket string) error {
	return poll(ctx, func() (bool, error) {
		f, err := e.FetchVV(ctx, Direct, vm)
		if err != nil {
			return false, nil
		}
		return f.Password == ticket, nil
	})
}

// poll calls f every 100 ms until it reports done, fails, or ctx ends.
func poll(ctx context.Context, f func() (bool, error)) error {
	for {
		done, err := f()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
