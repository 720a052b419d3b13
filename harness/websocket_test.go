package harness

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

func TestWebSocketConfig(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  WebSocketConfig
		want string
	}{
		"nothing":          {WebSocketConfig{}, "no URL template"},
		"both":             {WebSocketConfig{URL: "ws://x/", Websockify: true}, "not both"},
		"not ws":           {WebSocketConfig{URL: "http://127.0.0.1:6081/"}, "ws:// or wss://"},
		"unknown":          {WebSocketConfig{URL: "ws://127.0.0.1:6081/{tokn}"}, "unknown placeholder {tokn}"},
		"token needs file": {WebSocketConfig{URL: "ws://127.0.0.1:6081/?token={token}"}, "token file"},
	} {
		_, err := WebSocket(tc.cfg)(Settings{})
		assert.ErrorContains(t, err, tc.want, name)
	}
	tg, err := WebSocket(WebSocketConfig{URL: "ws://127.0.0.1:6081/websockify?token={token}", TokenFile: "/tmp/t"})(Settings{TunnelTicketTTL: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, "websocket ws://127.0.0.1:6081", tg.Name(), "the name shows no path or query")
	// A relaying gateway: WebSocket endpoints with the lane's qemu
	// tickets; no spice-gtk clients, nothing of a terminating proxy, no
	// origin policy unless one is named.
	if d := cmp.Diff([]Capability{CapTunnelTicketTTL, CapWebSocket}, Capabilities(tg)); d != "" {
		t.Errorf("unexpected capabilities (-want +got):\n%s", d)
	}
	tg, err = WebSocket(WebSocketConfig{Websockify: true})(Settings{TunnelTicketTTL: time.Minute})
	require.NoError(t, err)
	if d := cmp.Diff([]Capability{CapTunnelTicketTTL, CapWebSocket, CapWebSocketOrigin}, Capabilities(tg)); d != "" {
		t.Errorf("unexpected capabilities of websockify (-want +got):\n%s", d)
	}
}

func TestWebsockifyTokenFile(t *testing.T) {
	b, err := WebsockifyTokenFile(map[string]string{"b": "127.0.0.1:5901", "a": "127.0.0.1:5900"})
	require.NoError(t, err)
	assert.Equal(t, "a: 127.0.0.1:5900\nb: 127.0.0.1:5901\n", string(b))
	_, err = WebsockifyTokenFile(map[string]string{"a:b": "127.0.0.1:5900"})
	assert.ErrorContains(t, err, "token")
	_, err = WebsockifyTokenFile(map[string]string{"a": "5900"})
	assert.ErrorContains(t, err, "HOST:PORT")
}

// Debian's websockify refuses an unknown token (it drops the connection
// without an HTTP answer: websockify 0.10) and a foreign or missing
// origin (403, ExpectOrigin) before the upgrade.
func TestIntegrationWebsockify(t *testing.T) {
	if testing.Short() {
		t.Skip("starts websockify")
	}
	if _, err := exec.LookPath("websockify"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("websockify is required in CI: run make deps")
		}
		t.Skip("websockify not installed (make deps)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	port, err := freePort()
	require.NoError(t, err)
	w, err := StartWebsockify(ctx, WebsockifyOptions{Targets: map[string]string{"tok": "127.0.0.1:" + strconv.Itoa(port)}, Origin: "origin", Dir: t.TempDir()})
	require.NoError(t, err)
	defer w.Close()
	st, err := os.Stat(filepath.Join(w.Dir, "tokens"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the token file")
	defer func() {
		if strings.Contains(w.Log(), "nope") {
			t.Errorf("websockify's log shows a token:\n%s", w.Log())
		}
	}()
	for name, tc := range map[string]struct {
		token, origin string
		status        int
	}{
		"unknown token":  {"nope", w.Origin, 0},
		"foreign origin": {"tok", "http://evil.example", http.StatusForbidden},
		"no origin":      {"tok", "", http.StatusForbidden},
	} {
		d := &spice.Dialer{WebSocket: w.URL + "/websockify?token=" + tc.token, Origin: tc.origin, Timeout: 10 * time.Second}
		_, err := d.DialChannel(ctx, 0, spice.ChannelMain, 0)
		var we *spice.WebSocketError
		if assert.ErrorAs(t, err, &we, name) {
			assert.Equal(t, tc.status, we.Status, name)
		}
	}
}
