package api

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// RouteWebSocket answers, in JSON, where a browser (spice-html5) or
// another WebSocket client reaches a console through the proxy's
// WebSocket listener: a URL carrying a freshly minted one-session token,
// and the same token as the SPICE password.
const RouteWebSocket = "/console/ws/{source}/{uuid}"

// WebSocketEndpoint is the proxy's WebSocket listener as clients reach it
// (take Port from proxy.Proxy's WebSocketAddr and URL from its
// WebSocketURL).
type WebSocketEndpoint struct {
	// Host is the listener's address as clients reach it ("":
	// DefaultProxyHost).
	Host string
	// Port is the listener's port; 0 (or a nil URL) makes the route
	// answer 503.
	Port int
	// URL is the WebSocket URL of a session token on host:port.
	URL func(host string, port int, token string) string
}

// WebSocketAnswer is the JSON answer of RouteWebSocket. URL and Password
// are credentials for one session until Expires (then for that session
// only): hand them to the client, never to a log.
type WebSocketAnswer struct {
	// URL is what every channel's WebSocket opens (spice-html5 uses the
	// main channel's URL for all of them).
	URL string `json:"url"`
	// Password is the SPICE ticket the client sends in each channel's
	// link (spice-html5's password): the URL's token.
	Password string `json:"password"`
	// Subprotocol is the WebSocket subprotocol to ask for.
	Subprotocol string `json:"subprotocol"`
	// Host, Port and Path are URL taken apart for spice-html5's
	// spice_auto.html (?host=&port=&path=&password=); Path has no leading
	// slash and keeps the query.
	Host    string    `json:"host"`
	Port    int       `json:"port"`
	Path    string    `json:"path"`
	Session string    `json:"session"`
	Expires time.Time `json:"expires"`
	Console string    `json:"console"`
}

// webSocket mints a token and answers where to open the session's
// WebSockets.
func (s *Server) webSocket(w http.ResponseWriter, r *http.Request) {
	k, ok := consoleKey(w, r)
	if !ok {
		return
	}
	ep := s.cfg.WebSocket
	if ep.Port == 0 || ep.URL == nil {
		writeError(w, r, http.StatusServiceUnavailable, "no WebSocket listener is configured (Config.WebSocket has no port)")
		return
	}
	m, err := s.cfg.Store.Mint(k)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	info(r).session = m.SessionID
	w.Header().Set(HeaderSession, m.SessionID)
	host := ep.Host
	if host == "" {
		host = DefaultProxyHost
	}
	raw := ep.URL(host, ep.Port, m.Token)
	a := WebSocketAnswer{URL: raw, Password: m.Token, Subprotocol: "binary", Host: host, Port: ep.Port,
		Session: m.SessionID, Expires: m.Expires.UTC(), Console: m.Target.Console.Name}
	if u, err := url.Parse(raw); err == nil {
		a.Path = strings.TrimPrefix(u.Path, "/")
		if u.RawQuery != "" {
			a.Path += "?" + u.RawQuery
		}
		if h, p, err := net.SplitHostPort(u.Host); err == nil {
			a.Host = h
			a.Port, _ = strconv.Atoi(p)
		}
	}
	writeJSON(w, http.StatusOK, a)
}
