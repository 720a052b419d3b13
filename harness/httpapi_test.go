package harness

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/static"
)

func TestSessionIDFromTitle(t *testing.T) {
	for title, want := range map[string]string{
		"vm1 via proxy session ID 4f2a":    "4f2a", // Kerbside
		"vm1 via proxy session Ab9":        "Ab9",  // this repository's API
		"my vm via proxy session ID x-y_z": "x-y_z",
		"vm1 direct connection":            "",
		"vm1 via proxy session ":           "",
		"vm1 via proxy session ID a b c":   "", // ids have no spaces
		"":                                 "",
	} {
		assert.Equal(t, want, SessionIDFromTitle(title), "title %q", title)
	}
}

// kerbsideAPI is a unit-test stand-in for Kerbside's API: GET routes,
// JSON only with Accept: application/json, a JWT from POST /auth. With
// postTerminate it is Kerbside after its CSRF fix: the terminate routes
// take POST and answer GET with 405.
type kerbsideAPI struct {
	postTerminate bool

	mu       sync.Mutex
	jwt      string
	logins   int
	requests []string
}

func (k *kerbsideAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.requests = append(k.requests, r.Method+" "+r.URL.Path+" accept="+r.Header.Get("Accept"))
	if r.URL.Path == "/auth" && r.Method == http.MethodPost {
		var body struct{ Username, Password string }
		json.NewDecoder(r.Body).Decode(&body)
		if body.Username != "admin" || body.Password != "s3cret" {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		k.logins++
		k.jwt = "jwt-" + strings.Repeat("x", k.logins)
		json.NewEncoder(w).Encode(map[string]any{"access_token": k.jwt, "token_type": "Bearer", "expires_in": 3600})
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+k.jwt || k.jwt == "" {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	want := http.MethodGet
	if k.postTerminate && strings.HasSuffix(r.URL.Path, "/terminate") {
		want = http.MethodPost
	}
	if r.Method != want {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html>terminated</html>"))
		return
	}
	switch r.URL.Path {
	case "/session/s1/terminate":
		json.NewEncoder(w).Encode(map[string]string{"result": "ok"})
	case "/console/lab/u1":
		json.NewEncoder(w).Encode(map[string]string{"uuid": "u1"})
	default:
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]any{"error": "console not found", "status": 404})
	}
}

func TestAPIClientKerbsideDialect(t *testing.T) {
	k := &kerbsideAPI{}
	srv := httptest.NewServer(k)
	defer srv.Close()
	ctx := context.Background()
	a := &APIClient{URL: srv.URL, User: "admin", Password: "s3cret"}

	require.NoError(t, a.TerminateSession(ctx, "s1"))
	ok, err := a.Listed(ctx, static.Key{Source: "lab", UUID: "u1"})
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = a.Listed(ctx, static.Key{Source: "lab", UUID: "nope"})
	require.NoError(t, err, "404 is not an error for Listed")
	assert.False(t, ok)

	// An expired JWT is renewed once.
	k.mu.Lock()
	k.jwt = "rotated-by-the-server"
	k.mu.Unlock()
	require.NoError(t, a.TerminateSession(ctx, "s1"))
	want := []string{
		"POST /auth accept=application/json",
		"POST /session/s1/terminate accept=application/json", // 405: the first release takes GET
		"GET /session/s1/terminate accept=application/json",
		"GET /console/lab/u1 accept=application/json",
		"GET /console/lab/nope accept=application/json",
		"GET /session/s1/terminate accept=application/json", // GET from now on
		"POST /auth accept=application/json",
		"GET /session/s1/terminate accept=application/json",
	}
	if d := cmp.Diff(want, k.requests); d != "" {
		t.Errorf("unexpected requests (-want +got):\n%s", d)
	}
	assert.Equal(t, "GET (POST answered 405 Method Not Allowed)", a.TerminateMethod())
}

// Kerbside since its CSRF fix: terminate is POST (with the bearer token
// and Accept: application/json), and GET would get 405.
func TestAPIClientTerminatesWithPOST(t *testing.T) {
	k := &kerbsideAPI{postTerminate: true, jwt: "tok"}
	srv := httptest.NewServer(k)
	defer srv.Close()
	a := &APIClient{URL: srv.URL, Token: "tok"}
	assert.Equal(t, "", a.TerminateMethod(), "before any terminate")
	require.NoError(t, a.TerminateSession(context.Background(), "s1"))
	require.NoError(t, a.TerminateSession(context.Background(), "s1"))
	want := []string{"POST /session/s1/terminate accept=application/json", "POST /session/s1/terminate accept=application/json"}
	if d := cmp.Diff(want, k.requests); d != "" {
		t.Errorf("unexpected requests (-want +got):\n%s", d)
	}
	assert.Equal(t, "POST", a.TerminateMethod())
	// Another error is no reason to try GET.
	err := a.TerminateSession(context.Background(), "nope")
	var he *HTTPError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, http.MethodPost, he.Method)
	assert.Equal(t, http.StatusNotFound, he.Status)
}

func TestAPIClientFailsFastWithAHint(t *testing.T) {
	k := &kerbsideAPI{}
	srv := httptest.NewServer(k)
	defer srv.Close()
	ctx := context.Background()

	wrong := &APIClient{URL: srv.URL, Token: "not-a-jwt", CredentialsHint: "HARNESS_EXTERNAL_TOKEN"}
	_, _, err := wrong.get(ctx, "/console")
	require.ErrorIs(t, err, ErrAPIAuth)
	assert.Contains(t, err.Error(), "HARNESS_EXTERNAL_TOKEN", "the message names what to set")
	assert.NotContains(t, err.Error(), "not-a-jwt", "the message never holds the token")

	badLogin := &APIClient{URL: srv.URL, User: "admin", Password: "wrong"}
	_, _, err = badLogin.get(ctx, "/console")
	require.ErrorIs(t, err, ErrAPIAuth)
	assert.NotContains(t, err.Error(), "wrong", "the message never holds the password")

	// Nothing listens: refused at once, saying where.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + ln.Addr().String()
	ln.Close()
	gone := &APIClient{URL: dead}
	err = gone.WaitListed(ctx, []static.Source{{Name: "lab", Consoles: []static.Console{{UUID: "u1"}}}}, 0, false)
	require.ErrorIs(t, err, ErrAPIUnreachable)
	assert.Contains(t, err.Error(), dead)

	// Other statuses are HTTPErrors with the status.
	_, _, err = (&APIClient{URL: srv.URL}).get(ctx, "/console")
	require.ErrorIs(t, err, ErrAPIAuth, "no token at all is an auth failure too")
	var he *HTTPError
	_, err = (&APIClient{URL: srv.URL, User: "admin", Password: "s3cret"}).VV(ctx, Proxy, static.Key{Source: "lab", UUID: "u9"})
	require.True(t, errors.As(err, &he), "got %v", err)
	assert.Equal(t, http.StatusNotFound, he.Status)
}
