package harness

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

func TestConnectProxyConfig(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  ConnectProxyConfig
		want string
	}{
		"neither":   {ConnectProxyConfig{}, EnvConnectProxy},
		"both":      {ConnectProxyConfig{URL: "http://127.0.0.1:3128", Squid: true}, "not both"},
		"not http":  {ConnectProxyConfig{URL: "socks5://127.0.0.1:1080"}, "http://HOST:PORT"},
		"no scheme": {ConnectProxyConfig{URL: "127.0.0.1:3128"}, "--connect-proxy"},
	} {
		_, err := ConnectProxy(tc.cfg)(Settings{})
		assert.ErrorContains(t, err, tc.want, name)
	}
	tg, err := ConnectProxy(ConnectProxyConfig{URL: "http://user:secret@127.0.0.1:3128"})(Settings{TunnelTicketTTL: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, "connect-proxy http://127.0.0.1:3128", tg.Name(), "the name never shows a password")
	// A CONNECT proxy: tunnel .vv files with the lane's tickets, nothing
	// of a terminating proxy.
	if d := cmp.Diff([]Capability{CapSPICEClients, CapTunnelTicketTTL, CapTunnelVV}, Capabilities(tg)); d != "" {
		t.Errorf("unexpected capabilities (-want +got):\n%s", d)
	}
}

func TestConnectProxyFromEnvironment(t *testing.T) {
	for _, v := range []string{EnvExternalAPI, EnvExec, EnvConnectProxy, EnvSquid} {
		t.Setenv(v, "")
	}
	t.Setenv(EnvSquid, "yes")
	_, err := newConfig(nil)
	assert.ErrorContains(t, err, EnvSquid+`="yes"`)

	t.Setenv(EnvSquid, "1")
	t.Setenv(EnvExec, "myproxy")
	_, err = newConfig(nil)
	assert.ErrorContains(t, err, EnvExec+" and "+EnvSquid+" are all set")

	t.Setenv(EnvExec, "")
	c, err := newConfig(nil)
	require.NoError(t, err)
	tg, err := c.newTarget()
	require.NoError(t, err)
	assert.Equal(t, "connect-proxy squid (started per lane)", tg.Name())

	t.Setenv(EnvSquid, "")
	t.Setenv(EnvConnectProxy, "http://127.0.0.1:3128")
	c, err = newConfig(nil)
	require.NoError(t, err)
	tg, err = c.newTarget()
	require.NoError(t, err)
	assert.Equal(t, EnvConnectProxy, c.targetFrom)
	assert.Equal(t, "connect-proxy http://127.0.0.1:3128", tg.Name())
}

func TestGrantOf(t *testing.T) {
	srcs := []static.Source{{Name: "s", Consoles: []static.Console{
		{UUID: "a", HypervisorIP: "127.0.0.1", InsecurePort: 5902, SecurePort: 5903},
		{UUID: "b", HypervisorIP: "127.0.0.1", InsecurePort: 5900},
	}}}
	g, err := grantOf(srcs)
	require.NoError(t, err)
	if d := cmp.Diff(squidGrant{dest: "127.0.0.1/32", ports: []int{5900, 5903}}, g, cmp.AllowUnexported(squidGrant{})); d != "" {
		t.Errorf("unexpected grant: the .vv's port of each console, TLS when it has one (-want +got):\n%s", d)
	}
	srcs[0].Consoles[1].HypervisorIP = "127.0.0.2"
	_, err = grantOf(srcs)
	assert.ErrorContains(t, err, "one address")
	_, err = grantOf(nil)
	assert.Error(t, err)
}

func TestClientEnvDropsSPICEProxy(t *testing.T) {
	t.Setenv("SPICE_PROXY", "http://elsewhere:3128")
	env, err := clientEnv("X=1")
	require.NoError(t, err)
	for _, kv := range env {
		assert.False(t, strings.HasPrefix(kv, "SPICE_PROXY="), "a caller's SPICE_PROXY reaches the client: %s", kv)
	}
	assert.Equal(t, "X=1", env[len(env)-1])
}

func TestTunnelTicketTTLOption(t *testing.T) {
	bare := WithTarget(func(Settings) (Target, error) { return bareTarget{}, nil })
	_, err := newConfig([]Option{bare, TunnelTicketTTL(time.Second)})
	assert.ErrorContains(t, err, "at least 2s")
	c, err := newConfig([]Option{bare, TunnelTicketTTL(5 * time.Second), ConnectListen("127.0.0.1:0")})
	require.NoError(t, err)
	assert.Equal(t, 5*time.Second, c.settings.TunnelTicketTTL)
	assert.Equal(t, TunnelDomain, c.settings.TunnelDomain)
	c, err = newConfig([]Option{bare})
	require.NoError(t, err)
	assert.Equal(t, DefaultTunnelTicketTTL, c.settings.TunnelTicketTTL)
	assert.Empty(t, c.settings.TunnelDomain, "no CONNECT listener, no tunnel domain")
}

// TestConnectProxyStartFailsFast: a URL nothing answers at fails Start
// with a message naming the flag and the variable.
func TestConnectProxyStartFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	tg, err := ConnectProxy(ConnectProxyConfig{URL: "http://" + addr})(Settings{})
	require.NoError(t, err)
	err = tg.Start(context.Background(), &Env{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), EnvConnectProxy)
	var op *net.OpError
	assert.True(t, errors.As(err, &op), "the dial error is kept: %v", err)
}

// relayProxy is a permissive HTTP CONNECT proxy standing in for an
// external one: it relays every CONNECT to 127.0.0.1 and counts them.
type relayProxy struct {
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	targets []string
}

func startRelayProxy(t *testing.T) *relayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &relayProxy{ln: ln}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() { defer r.wg.Done(); r.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); r.wg.Wait() })
	return r
}

func (r *relayProxy) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	r.mu.Lock()
	r.targets = append(r.targets, req.Host)
	r.mu.Unlock()
	b, err := net.Dial("tcp", req.Host)
	if err != nil {
		io.WriteString(c, "HTTP/1.0 502 Bad Gateway\r\n\r\n")
		return
	}
	defer b.Close()
	io.WriteString(c, "HTTP/1.0 200 Connection established\r\n\r\n")
	done := make(chan struct{})
	go func() { io.Copy(b, br); b.(*net.TCPConn).CloseWrite(); close(done) }()
	io.Copy(c, b)
	c.Close()
	<-done
}

func (r *relayProxy) Targets() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.targets...)
}

// TestIntegrationConnectProxyURL: against a CONNECT proxy given by URL,
// the lane's .vv names it, the console's address and TLS port, qemu's CA
// and subject and a fresh ticket; the Go client links through it, every
// channel a CONNECT to that port.
func TestIntegrationConnectProxyURL(t *testing.T) {
	rp := startRelayProxy(t)
	url := "http://" + rp.ln.Addr().String()
	env := Start(t, WithTarget(ConnectProxy(ConnectProxyConfig{URL: url})), TLSBackends())
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	vm := env.VM(0)
	before := vm.Console().Ticket
	f, err := env.FetchVV(ctx, Proxy, vm)
	require.NoError(t, err)
	c := vm.Console()
	want := vv.File{Type: "spice", Host: c.HypervisorIP, TLSPort: c.SecurePort, Password: c.Ticket, CA: string(env.BackendCA.CertPEM),
		HostSubject: c.HostSubject, Title: c.Name + " via CONNECT proxy", DeleteThisFile: true, Proxy: url}
	if d := cmp.Diff(&want, f.File); d != "" {
		t.Errorf("unexpected .vv (-want +got):\n%s", d)
	}
	assert.NotEqual(t, before, f.Password, "a fresh ticket")
	back, err := vv.Parse(f.Raw)
	require.NoError(t, err)
	assert.Equal(t, f.File, back, "Raw is the File rendered")
	s, _, err := env.Connect(ctx, Tunnel, vm)
	require.NoError(t, err, "a session through the CONNECT proxy")
	_, err = s.Open(ctx, spice.ChannelInputs, 0)
	require.NoError(t, err)
	s.Close()
	target := net.JoinHostPort(c.HypervisorIP, strconv.Itoa(c.SecurePort))
	if d := cmp.Diff([]string{target, target}, rp.Targets()); d != "" {
		t.Errorf("unexpected CONNECT targets (-want +got):\n%s", d)
	}
}
