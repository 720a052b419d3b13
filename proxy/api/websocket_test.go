package api_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

// The WebSocket route mints a token and answers the URL, the password and
// spice_auto.html's pieces in JSON; without a listener it answers 503.
func TestWebSocketRoute(t *testing.T) {
	st := store.New(store.Options{TokenTTL: time.Minute})
	st.Load(static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{{UUID: uuidOf(0), Name: "vm0",
		Hypervisor: "localhost", HypervisorIP: "127.0.0.1", InsecurePort: 5900, Ticket: "t"}}})
	path := "/console/ws/lab/" + uuidOf(0)
	if code, _ := serve(t, api.Config{Store: st}, http.MethodGet, path, ""); code != http.StatusServiceUnavailable {
		t.Fatalf("unexpected status without a WebSocket listener: %d, want 503", code)
	}
	url := func(host string, port int, token string) string {
		return "ws://" + host + ":" + strconv.Itoa(port) + "/spice?token=" + token
	}
	code, body := serve(t, api.Config{Store: st, WebSocket: api.WebSocketEndpoint{Port: 6081, URL: url}}, http.MethodGet, path, "")
	if code != http.StatusOK {
		t.Fatalf("unexpected status %d: %v", code, body)
	}
	pw, _ := body["password"].(string)
	if pw == "" || body["url"] != "ws://127.0.0.1:6081/spice?token="+pw || body["path"] != "spice?token="+pw ||
		body["host"] != "127.0.0.1" || body["port"] != float64(6081) || body["subprotocol"] != spice.WebSocketSubprotocol {
		t.Fatalf("unexpected answer: %v", body)
	}
	if err := st.CheckToken(pw); err != nil {
		t.Fatalf("the answered token is not usable: %v", err)
	}
	if code, _ := serve(t, api.Config{Store: st, WebSocket: api.WebSocketEndpoint{Port: 6081, URL: url}}, http.MethodGet, "/console/ws/lab/nope", ""); code != http.StatusNotFound {
		t.Fatalf("unexpected status for an unknown console: %d", code)
	}
}
