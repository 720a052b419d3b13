package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// harness up's ready line names the WebSocket listener and, per console,
// the route answering a URL and password; a Go client over WebSocket
// then opens a session through it.
func TestIntegrationUpWebSocket(t *testing.T) {
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	h := startHarness(t, "up", "--json", "--ws-listen", "127.0.0.1:0")
	r := h.ready
	if r.Proxy.WebSocketPort == 0 || len(r.Consoles) != 1 || r.Consoles[0].WebSocketURL == "" {
		t.Fatalf("ready line without the WebSocket listener: %+v", r)
	}
	resp, err := http.Get(r.Consoles[0].WebSocketURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct{ URL, Password, Subprotocol string }
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the ws_url answer: HTTP %d, %v", resp.StatusCode, err)
	}
	if want := fmt.Sprintf("ws://127.0.0.1:%d/spice?token=%s", r.Proxy.WebSocketPort, ans.Password); ans.URL != want || ans.Subprotocol != "binary" {
		t.Fatalf("unexpected answer: url matches %v, subprotocol %q", ans.URL == want, ans.Subprotocol)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := (&spice.Dialer{WebSocket: ans.URL, Password: ans.Password}).Connect(ctx)
	if err != nil {
		t.Fatalf("session over WebSocket: %v", err)
	}
	s.Close()
}
