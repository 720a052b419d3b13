package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

// APIClient speaks the Kerbside dialect of the `.vv` API, which this
// repository's API speaks too: every route is GET; listings and
// terminate answer JSON when the request says `Accept: application/json`
// (Kerbside answers HTML, or a redirect, when Accept is absent or names
// text/html); every route but / and /auth needs
// `Authorization: Bearer <token>`. Routes:
//
//	/console/proxy/{source}/{uuid}/console.vv   a .vv through the proxy, fresh token
//	/console/direct/{source}/{uuid}/console.vv  the hypervisor's own endpoint and ticket
//	/console/{source}/{uuid}                    one console (404 when unknown)
//	/console/{source}/{uuid}/terminate          end the console's sessions
//	/session/{id}/terminate                     end one session (404 when unknown)
//	POST /auth {"username","password"}          {"access_token": JWT, "expires_in": s}
//
// The session a proxy `.vv` opened is named in its title:
// "<name> via proxy session ID <id>" (Kerbside) or "<name> via proxy
// session <id>" (older writers).
type APIClient struct {
	// URL is the API's base URL ("http://127.0.0.1:13002").
	URL string
	// Token is a ready bearer token; or User and Password are sent to
	// POST /auth for one (renewed when it expires or a route answers 401).
	Token, User, Password string
	// CredentialsHint names, in messages about refused credentials, what
	// a person sets ("HARNESS_EXTERNAL_TOKEN or HARNESS_EXTERNAL_USER and
	// HARNESS_EXTERNAL_PASSWORD").
	CredentialsHint string
	// HTTP is the client (nil: one with a 30 s timeout).
	HTTP *http.Client

	mu      sync.Mutex
	jwt     string
	jwtTill time.Time
}

func (a *APIClient) http() *http.Client {
	if a.HTTP != nil {
		return a.HTTP
	}
	return http.DefaultClient
}

// ErrAPIUnreachable: nothing answers at the API's address.
var ErrAPIUnreachable = errors.New("harness: the API does not answer")

// ErrAPIAuth: the API refused the credentials (HTTP 401 or 403).
var ErrAPIAuth = errors.New("harness: the API refused the credentials")

// HTTPError is a non-2xx answer of the API that is not about credentials.
type HTTPError struct {
	Method, URL string
	Status      int
	Body        string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("harness: %s %s answered %d: %s", e.Method, e.URL, e.Status, e.Body)
}

// bearer returns the token to send, logging in with User and Password
// when needed.
func (a *APIClient) bearer(ctx context.Context, renew bool) (string, error) {
	if a.User == "" {
		return a.Token, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !renew && a.jwt != "" && time.Now().Before(a.jwtTill) {
		return a.jwt, nil
	}
	body, _ := json.Marshal(map[string]string{"username": a.User, "password": a.Password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+"/auth", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := a.http().Do(req)
	if err != nil {
		return "", a.transportErr(req, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return "", fmt.Errorf("%w: POST %s/auth as %q answered %d: check the user and password (%s)", ErrAPIAuth, a.URL, a.User, resp.StatusCode, a.hint())
	}
	if resp.StatusCode != http.StatusOK {
		return "", &HTTPError{Method: "POST", URL: a.URL + "/auth", Status: resp.StatusCode, Body: snippet(raw)}
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("harness: POST %s/auth: no access_token in the answer", a.URL)
	}
	a.jwt = tok.AccessToken
	life := time.Duration(tok.ExpiresIn) * time.Second
	if life <= 0 {
		life = 5 * time.Minute
	}
	a.jwtTill = time.Now().Add(life * 9 / 10)
	return a.jwt, nil
}

func (a *APIClient) hint() string {
	if a.CredentialsHint != "" {
		return a.CredentialsHint
	}
	return "the API's bearer token"
}

// get GETs path with the dialect's headers; one 401 renews a /auth token
// and retries.
func (a *APIClient) get(ctx context.Context, path string) (*http.Response, []byte, error) {
	for attempt := 0; ; attempt++ {
		tok, err := a.bearer(ctx, attempt > 0)
		if err != nil {
			return nil, nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+path, nil)
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Accept", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := a.http().Do(req)
		if err != nil {
			return nil, nil, a.transportErr(req, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, vv.MaxSize+1))
		resp.Body.Close()
		if err != nil {
			return nil, nil, err
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			if attempt == 0 && a.User != "" && resp.StatusCode == http.StatusUnauthorized {
				continue
			}
			what := "no bearer token was sent"
			if tok != "" {
				what = "the bearer token was refused"
			}
			return resp, body, fmt.Errorf("%w: GET %s answered %d (%s): set %s", ErrAPIAuth, a.URL+path, resp.StatusCode, what, a.hint())
		}
		if resp.StatusCode/100 != 2 {
			return resp, body, &HTTPError{Method: "GET", URL: a.URL + path, Status: resp.StatusCode, Body: snippet(body)}
		}
		return resp, body, nil
	}
}

// transportErr turns "connection refused" and friends into a message
// that says what to check.
func (a *APIClient) transportErr(req *http.Request, err error) error {
	var op *net.OpError
	if errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial") {
		return fmt.Errorf("%w: %s %s: %v (is the proxy's API running at %s?)", ErrAPIUnreachable, req.Method, req.URL.Redacted(), err, a.URL)
	}
	return fmt.Errorf("harness: %s %s: %w", req.Method, req.URL.Redacted(), err)
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// ConsolePath is "{source}/{uuid}" with each part path-escaped.
func ConsolePath(k static.Key) string {
	return url.PathEscape(k.Source) + "/" + url.PathEscape(k.UUID)
}

// VVURL is the URL of the kind `.vv` of k on the API at apiURL.
func VVURL(apiURL string, kind Kind, k static.Key) string {
	return apiURL + "/console/" + string(kind) + "/" + ConsolePath(k) + "/console.vv"
}

// VV fetches and parses the kind `.vv` of k.
func (a *APIClient) VV(ctx context.Context, kind Kind, k static.Key) (*VVResponse, error) {
	path := "/console/" + string(kind) + "/" + ConsolePath(k) + "/console.vv"
	resp, body, err := a.get(ctx, path)
	if err != nil {
		return nil, err
	}
	f, err := vv.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("harness: %s .vv of %s from %s: %w", kind, k, a.URL, err)
	}
	return &VVResponse{File: f, Raw: body, Header: resp.Header}, nil
}

// WebSocketEndpointURL is the API URL answering console k's WebSocket
// URL and password (this repository's API).
func WebSocketEndpointURL(apiURL string, k static.Key) string {
	return apiURL + "/console/ws/" + ConsolePath(k)
}

// WebSocket fetches GET /console/ws/{source}/{uuid} of this repository's
// API: a WebSocket URL and password (one session) on the proxy's
// WebSocket listener, as a VVResponse with WebSocketURL set.
func (a *APIClient) WebSocket(ctx context.Context, k static.Key) (*VVResponse, error) {
	resp, body, err := a.get(ctx, WebSocketEndpointURL("", k))
	if err != nil {
		return nil, err
	}
	var ans struct {
		URL      string `json:"url"`
		Password string `json:"password"`
		Session  string `json:"session"`
		Console  string `json:"console"`
	}
	if err := json.Unmarshal(body, &ans); err != nil || ans.URL == "" {
		return nil, fmt.Errorf("harness: the WebSocket answer for %s from %s has no url", k, a.URL)
	}
	f := &vv.File{Type: "spice", Password: ans.Password, Title: ans.Console + " via proxy session " + ans.Session}
	return &VVResponse{File: f, Header: resp.Header, WebSocketURL: ans.URL}, nil
}

// Listed reports whether the API knows the console k (GET
// /console/{source}/{uuid} answers 200; 404 is false, other failures are
// errors).
func (a *APIClient) Listed(ctx context.Context, k static.Key) (bool, error) {
	_, _, err := a.get(ctx, "/console/"+ConsolePath(k))
	var he *HTTPError
	if errors.As(err, &he) && he.Status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// TerminateSession ends session id (GET /session/{id}/terminate).
func (a *APIClient) TerminateSession(ctx context.Context, id string) error {
	_, _, err := a.get(ctx, "/session/"+url.PathEscape(id)+"/terminate")
	return err
}

// TerminateConsole ends every session of k.
func (a *APIClient) TerminateConsole(ctx context.Context, k static.Key) error {
	_, _, err := a.get(ctx, "/console/"+ConsolePath(k)+"/terminate")
	return err
}

var titleSessionRE = regexp.MustCompile(` via proxy session (?:ID )?(\S+)$`)

// SessionIDFromTitle reads the session id from a proxy `.vv` title
// ("<name> via proxy session ID <id>"), or "".
func SessionIDFromTitle(title string) string {
	if m := titleSessionRE.FindStringSubmatch(title); m != nil {
		return m[1]
	}
	return ""
}

// SessionID names the session a proxy `.vv` opened, from its title.
func (a *APIClient) SessionID(_ context.Context, f *VVResponse) (string, error) {
	if id := SessionIDFromTitle(f.Title); id != "" {
		return id, nil
	}
	return "", fmt.Errorf("harness: the proxy .vv's title %q names no session (want \"… via proxy session ID <id>\")", f.Title)
}

// WaitListed waits until the API lists every console of srcs and serves
// their current tickets in its direct `.vv` (when it has one), polling
// every interval. A refused credential or an unreachable API ends the
// wait at once.
func (a *APIClient) WaitListed(ctx context.Context, srcs []static.Source, interval time.Duration, direct bool) error {
	for _, s := range srcs {
		for _, c := range s.Consoles {
			k := static.Key{Source: s.Name, UUID: c.UUID}
			err := wait(ctx, interval, fmt.Sprintf("waiting for %s to serve %s", a.URL, k), func() (bool, error) {
				ok, err := a.Listed(ctx, k)
				if errors.Is(err, ErrAPIAuth) || errors.Is(err, ErrAPIUnreachable) {
					return false, permanent(err)
				}
				if !ok || err != nil || !direct {
					return ok, err
				}
				f, err := a.VV(ctx, Direct, k)
				if err != nil {
					return false, err
				}
				if f.Password != c.Ticket {
					return false, errors.New("its direct .vv still has an older ticket")
				}
				return true, nil
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}
