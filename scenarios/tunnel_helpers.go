package scenarios

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// tunnelLane is the lane of the tunnel scenarios: the in-process proxy
// also listens for CONNECT (ignored by a connect-proxy target, whose
// proxy is the CONNECT proxy), and qemu serves TLS, so tunnels carry TLS
// end to end and the .vv names qemu's CA and subject.
var tunnelLane = []harness.Option{harness.ConnectListen("127.0.0.1:0"), harness.TLSBackends()}

// fetchTunnelVV fetches vm's tunnel .vv and checks it names a proxy.
func fetchTunnelVV(ctx context.Context, t harness.T, env *harness.Env, vm *harness.VM) *harness.VVResponse {
	t.Helper()
	f, err := env.FetchVV(ctx, harness.Tunnel, vm)
	require.NoError(t, err, "fetch the tunnel .vv")
	require.NotEmpty(t, f.Proxy, "the tunnel .vv has no proxy=")
	return f
}

// wantProxyRefused fails t unless err is the CONNECT proxy's refusal (an
// HTTP status of 400 or more) and returns it.
func wantProxyRefused(t harness.T, err error, what string) *spice.ProxyError {
	t.Helper()
	pe, ok := proxyRefusal(err)
	if !ok {
		t.Fatalf("%s: want the CONNECT proxy to refuse it (an HTTP error status), got %v", what, err)
	}
	return pe
}

// tampered changes one character of the host's first label, keeping it
// in the signed hosts' alphabet (lower-case base32).
func tampered(host string) string {
	i := min(10, len(host)-1)
	c := byte('a')
	if host[i] == 'a' {
		c = 'b'
	}
	return host[:i] + string(c) + host[i+1:]
}

// connectVia opens a CONNECT tunnel to target through the .vv's proxy
// and closes it; it returns the proxy's refusal, if any.
func connectVia(ctx context.Context, f *harness.VVResponse, target string) error {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := spice.DialProxy(cctx, f.Proxy, target)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// firstAccepted proves that nothing reached ln since it opened: it
// connects to ln itself and requires the first connection ln accepts to
// be its own (the kernel queues connections in order).
func firstAccepted(ctx context.Context, t harness.T, ln net.Listener, what string) {
	t.Helper()
	mine, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err, "barrier connection to %s", ln.Addr())
	defer mine.Close()
	got := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(got)
			return
		}
		got <- c
	}()
	select {
	case c, ok := <-got:
		require.True(t, ok, "accept on %s", ln.Addr())
		defer c.Close()
		if c.RemoteAddr().String() != mine.LocalAddr().String() {
			t.Errorf("%s reached %s: it accepted %s before the barrier's own connection", what, ln.Addr(), c.RemoteAddr())
		}
	case <-time.After(10 * time.Second): // only the bound that fails a lost barrier
		t.Fatalf("%s never accepted the barrier's connection", ln.Addr())
	}
}

// headLine is the first line of what a CONNECT proxy answered, for logs.
func headLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	s = strings.TrimRight(s, "\r")
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	if s == "" {
		return "(closed, no answer)"
	}
	return fmt.Sprintf("%q", s)
}
