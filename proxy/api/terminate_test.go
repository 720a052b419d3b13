package api_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/store"
)

func waitDone(t *testing.T, what string, ch *spice.Channel) {
	t.Helper()
	select {
	case <-ch.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still open 10 s after terminate", what)
	}
}

// TestTerminateSession: POST /session/{id}/terminate closes the live
// channels of a session opened with a proxy .vv.
func TestTerminateSession(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := ctxT(t)
	f, r := e.fetchVV(proxyPath(0))
	sid := r.header.Get(api.HeaderSession)
	s, err := dialerFor(t, f).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := s.Open(ctx, spice.ChannelInputs, 0)
	if err != nil {
		t.Fatal(err)
	}
	res := e.do(http.MethodPost, "/session/"+sid+"/terminate")
	var got api.TerminateSessionResult
	if err := json.Unmarshal(res.body, &got); err != nil || res.status != http.StatusOK {
		t.Fatalf("terminate: %d %s", res.status, res.body)
	}
	if got != (api.TerminateSessionResult{Session: sid, Channels: 2}) {
		t.Errorf("terminate answered %+v, want session %s with 2 channels", got, sid)
	}
	waitDone(t, "main channel", s.Main)
	waitDone(t, "inputs channel", in)
	var info store.SessionInfo
	if err := json.Unmarshal(e.getOK("/session/"+sid).body, &info); err != nil || info.State != "ended" || info.Reason != "terminated" {
		t.Errorf("session after terminate: %+v, %v", info, err)
	}
	// Terminating again is harmless (GET, for Kerbside's clients).
	res = e.get("/session/" + sid + "/terminate")
	if err := json.Unmarshal(res.body, &got); err != nil || res.status != http.StatusOK || got.Channels != 0 {
		t.Errorf("second terminate: %d %s", res.status, res.body)
	}
}

// TestTerminateConsole: GET (Kerbside) or POST /console/{source}/{uuid}/terminate
// ends the console's live session and invalidates its unused tokens.
func TestTerminateConsole(t *testing.T) {
	e := newEnv(t, envOptions{consoles: 2})
	ctx := ctxT(t)
	f, _ := e.fetchVV(proxyPath(0))
	s, err := dialerFor(t, f).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	unused, _ := e.fetchVV(proxyPath(0))
	otherF, _ := e.fetchVV(proxyPath(1))
	other, err := dialerFor(t, otherF).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	res := e.get("/console/lab/" + uuidOf(0) + "/terminate")
	var got api.TerminateConsoleResult
	if err := json.Unmarshal(res.body, &got); err != nil || res.status != http.StatusOK {
		t.Fatalf("terminate: %d %s", res.status, res.body)
	}
	if got != (api.TerminateConsoleResult{Source: "lab", UUID: uuidOf(0), Sessions: 2, Channels: 1}) {
		t.Errorf("terminate answered %+v, want 2 sessions (one live, one unused token) and 1 channel", got)
	}
	waitDone(t, "main channel", s.Main)
	if _, err := dialerFor(t, unused).Connect(ctx); !errors.Is(err, spice.ErrPermissionDenied) {
		t.Errorf("unused token after terminate: %v, want PERMISSION_DENIED", err)
	}
	select {
	case <-other.Main.Done():
		t.Fatal("terminating console 0 closed console 1's session")
	default:
	}
	res = e.do(http.MethodPost, "/console/lab/"+uuidOf(1)+"/terminate")
	if err := json.Unmarshal(res.body, &got); err != nil || got.Sessions != 1 || got.Channels != 1 {
		t.Fatalf("POST terminate: %d %s", res.status, res.body)
	}
	waitDone(t, "console 1's main channel", other.Main)
}
