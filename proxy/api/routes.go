package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/mux"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

// Route templates (gorilla/mux), Kerbside's layout.
const (
	RouteHealthz          = "/healthz"
	RouteMetrics          = "/metrics"
	RouteSources          = "/source"
	RouteSource           = "/source/{name}"
	RouteConsoles         = "/console"
	RouteConsole          = "/console/{source}/{uuid}"
	RouteProxyVV          = "/console/proxy/{source}/{uuid}/console.vv"
	RouteDirectVV         = "/console/direct/{source}/{uuid}/console.vv"
	RouteTerminateConsole = "/console/{source}/{uuid}/terminate"
	RouteSessions         = "/session"
	RouteSession          = "/session/{id}"
	RouteTerminateSession = "/session/{id}/terminate"
)

// MaxPathValue bounds a source name, console uuid or session id in a path.
const MaxPathValue = 512

func (s *Server) router() http.Handler {
	r := mux.NewRouter()
	// Path values are matched encoded and decoded by pathValue, so a
	// name may contain any character but '/'; unclean paths are not
	// redirected (404 instead of a 301 that is not JSON).
	r.UseEncodedPath()
	r.SkipClean(true)
	r.Use(routeName)
	get := []string{http.MethodGet}
	getPost := []string{http.MethodGet, http.MethodPost}
	r.HandleFunc(RouteHealthz, s.healthz).Methods(get...)
	if s.cfg.Metrics != nil {
		r.Handle(RouteMetrics, s.cfg.Metrics).Methods(get...)
	}
	if s.cfg.Reloader != nil {
		r.HandleFunc(RouteReload, s.reload).Methods(http.MethodPost)
		r.HandleFunc(RouteReload, s.lastReload).Methods(get...)
	}
	r.HandleFunc(RouteSources, s.listSources).Methods(get...)
	r.HandleFunc(RouteSource, s.getSource).Methods(get...)
	r.HandleFunc(RouteConsoles, s.listConsoles).Methods(get...)
	r.HandleFunc(RouteProxyVV, s.proxyVV).Methods(get...)
	r.HandleFunc(RouteDirectVV, s.directVV).Methods(get...)
	r.HandleFunc(RouteTunnelVV, s.tunnelVV).Methods(get...)
	r.HandleFunc(RouteWebSocket, s.webSocket).Methods(get...)
	r.HandleFunc(RouteConsole, s.getConsole).Methods(get...)
	r.HandleFunc(RouteTerminateConsole, s.terminateConsole).Methods(getPost...)
	r.HandleFunc(RouteSessions, s.listSessions).Methods(get...)
	r.HandleFunc(RouteSession, s.getSession).Methods(get...)
	r.HandleFunc(RouteTerminateSession, s.terminateSession).Methods(getPost...)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeError(w, req, http.StatusNotFound, fmt.Sprintf("no route for %s %s", req.Method, truncate(req.URL.EscapedPath(), 200)))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		allow := allowed(r, req)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, req, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed here; use %s", req.Method, strings.Join(allow, " or ")))
	})
	return r
}

// allowed lists the methods some route accepts for req's path (gorilla/mux
// does not set Allow on its 405).
func allowed(r *mux.Router, req *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := req.Clone(req.Context())
		probe.Method = m
		var match mux.RouteMatch
		if r.Match(probe, &match) && match.MatchErr == nil {
			out = append(out, m)
		}
	}
	return out
}

// ---- JSON ----

type errorBody struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error": "internal error: cannot encode the answer", "status": 500}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	info(r).errMsg = msg
	writeJSON(w, status, errorBody{Error: msg, Status: status})
}

// storeError answers a store error: 404 for what does not exist, 500
// (logged, not shown) otherwise.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrBadQuery):
		// The store's message names the parameter (state, cursor).
		writeError(w, r, http.StatusBadRequest, "query parameter "+strings.TrimPrefix(err.Error(), store.ErrBadQuery.Error()+": "))
	case errors.Is(err, store.ErrUnknownSource), errors.Is(err, store.ErrUnknownSession):
		writeError(w, r, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrUnknownConsole):
		msg := err.Error()
		ri := info(r)
		if src, serr := s.cfg.Store.Source(ri.source); serr == nil && src.State != "ok" {
			msg += fmt.Sprintf(": source %q is %s (%d problems; see /source/%s)", src.Name, src.State, len(src.Problems), url.PathEscape(src.Name))
		}
		writeError(w, r, http.StatusNotFound, msg)
	default:
		s.log.Error("api: store", "err", err)
		writeError(w, r, http.StatusInternalServerError, "internal error")
	}
}

// ---- path values ----

// pathValue decodes and checks one path value: the rules of a source name
// or console uuid in sources.yaml (printable text, no '/', no white space
// at either end), which also keeps the log clean.
func pathValue(r *http.Request, name string) (string, error) {
	raw := mux.Vars(r)[name]
	v, err := url.PathUnescape(raw)
	if err != nil {
		return "", fmt.Errorf("malformed %s in path: bad percent-encoding", name)
	}
	switch {
	case v == "":
		return "", fmt.Errorf("malformed %s in path: empty", name)
	case len(v) > MaxPathValue:
		return "", fmt.Errorf("malformed %s in path: %d bytes, more than %d", name, len(v), MaxPathValue)
	case !utf8.ValidString(v):
		return "", fmt.Errorf("malformed %s in path: not UTF-8", name)
	case strings.Contains(v, "/"):
		return "", fmt.Errorf("malformed %s in path: contains '/'", name)
	case strings.TrimSpace(v) != v:
		return "", fmt.Errorf("malformed %s in path: white space at either end", name)
	case strings.IndexFunc(v, func(c rune) bool { return unicode.IsControl(c) || c == utf8.RuneError }) >= 0:
		return "", fmt.Errorf("malformed %s in path: contains a control character", name)
	}
	return v, nil
}

// consoleKey reads {source} and {uuid}, answering 400 when malformed.
func consoleKey(w http.ResponseWriter, r *http.Request) (static.Key, bool) {
	src, err := pathValue(r, "source")
	if err == nil {
		info(r).source = src
		var uuid string
		if uuid, err = pathValue(r, "uuid"); err == nil {
			info(r).uuid = uuid
			return static.Key{Source: src, UUID: uuid}, true
		}
	}
	writeError(w, r, http.StatusBadRequest, err.Error())
	return static.Key{}, false
}

// sessionID reads {id}: store session ids are [A-Za-z0-9].
func sessionID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := mux.Vars(r)["id"]
	if id == "" || len(id) > 64 || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" {
		writeError(w, r, http.StatusBadRequest, "malformed session id in path: 1-64 characters of [A-Za-z0-9]")
		return "", false
	}
	info(r).session = id
	return id, true
}

// ---- listings ----

// Problem is a sources.yaml problem in JSON: the `file:line:col: field:
// message` string and its parts.
type Problem struct {
	Problem  string `json:"problem"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Col      int    `json:"col,omitempty"`
	Field    string `json:"field,omitempty"`
	Message  string `json:"message"`
	Severity string `json:"severity"`
}

// Source is the JSON of a source: store.SourceInfo with its problems.
type Source struct {
	store.SourceInfo
	Problems []Problem `json:"problems"`
	Warnings []Problem `json:"warnings"`
}

// Console is the JSON of a console: store.ConsoleInfo (never the ticket)
// and the paths of its routes.
type Console struct {
	store.ConsoleInfo
	ProxyVV   string `json:"proxy_vv"`
	DirectVV  string `json:"direct_vv"`
	Terminate string `json:"terminate"`
}

func problems(ps []static.Problem) []Problem {
	out := make([]Problem, 0, len(ps))
	for _, p := range ps {
		out = append(out, Problem{Problem: p.String(), File: p.File, Line: p.Line, Col: p.Col, Field: p.Field,
			Message: p.Message, Severity: p.Severity.String()})
	}
	return out
}

func sourceJSON(si store.SourceInfo) Source {
	return Source{SourceInfo: si, Problems: problems(si.Problems), Warnings: problems(si.Warnings)}
}

func consoleJSON(ci store.ConsoleInfo) Console {
	p := url.PathEscape(ci.Source) + "/" + url.PathEscape(ci.UUID)
	return Console{ConsoleInfo: ci, ProxyVV: "/console/proxy/" + p + "/console.vv",
		DirectVV: "/console/direct/" + p + "/console.vv", Terminate: "/console/" + p + "/terminate"}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

func (s *Server) listSources(w http.ResponseWriter, r *http.Request) {
	list := s.cfg.Store.Sources()
	out := make([]Source, 0, len(list))
	for _, si := range list {
		out = append(out, sourceJSON(si))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getSource(w http.ResponseWriter, r *http.Request) {
	name, err := pathValue(r, "name")
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	info(r).source = name
	si, err := s.cfg.Store.Source(name)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sourceJSON(si))
}

// Query parameters of the paged listings, GET /session and GET /console.
const (
	// QueryLimit is the page size: 1 to store.MaxPageSize (1000);
	// store.DefaultPageSize (100) when absent.
	QueryLimit = "limit"
	// QueryCursor continues a listing where the previous page ended. Take
	// it from that page's Link header as it is; it is opaque.
	QueryCursor = "cursor"
	// QueryState (GET /session only) keeps the sessions in one state:
	// live (not ended: minted, connecting or active), minted, connecting,
	// active or ended.
	QueryState = "state"
)

// page reads the paging parameters of a listing, answering 400 for a
// malformed limit or a parameter the route does not take.
func page(w http.ResponseWriter, r *http.Request, allowed ...string) (q url.Values, limit int, ok bool) {
	q = r.URL.Query()
	allowed = append(allowed, QueryLimit, QueryCursor)
	for name, vs := range q {
		if !slices.Contains(allowed, name) {
			writeError(w, r, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q: this listing takes %s", truncate(name, 64), strings.Join(allowed, ", ")))
			return nil, 0, false
		}
		if len(vs) > 1 {
			writeError(w, r, http.StatusBadRequest, fmt.Sprintf("query parameter %q given %d times: give it once", name, len(vs)))
			return nil, 0, false
		}
	}
	if v := q.Get(QueryLimit); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxPageSize {
			writeError(w, r, http.StatusBadRequest, fmt.Sprintf("query parameter limit=%q: want a number of items from 1 to %d", truncate(v, 64), store.MaxPageSize))
			return nil, 0, false
		}
		limit = n
	}
	return q, limit, true
}

// setNext points the Link header (RFC 8288, as GitHub's API does) at the
// next page: the same path and parameters with the new cursor.
func setNext(w http.ResponseWriter, r *http.Request, q url.Values, next string) {
	if next == "" {
		return
	}
	q.Set(QueryCursor, next)
	w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.EscapedPath(), q.Encode()))
}

func (s *Server) listConsoles(w http.ResponseWriter, r *http.Request) {
	q, limit, ok := page(w, r)
	if !ok {
		return
	}
	p, err := s.cfg.Store.ListConsoles(store.ConsoleQuery{Limit: limit, Cursor: q.Get(QueryCursor)})
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := make([]Console, 0, len(p.Consoles))
	for _, ci := range p.Consoles {
		out = append(out, consoleJSON(ci))
	}
	setNext(w, r, q, p.Next)
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getConsole(w http.ResponseWriter, r *http.Request) {
	k, ok := consoleKey(w, r)
	if !ok {
		return
	}
	ci, err := s.cfg.Store.ConsoleInfo(k)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, consoleJSON(ci))
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	q, limit, ok := page(w, r, QueryState)
	if !ok {
		return
	}
	p, err := s.cfg.Store.ListSessions(store.SessionQuery{State: q.Get(QueryState), Limit: limit, Cursor: q.Get(QueryCursor)})
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	setNext(w, r, q, p.Next)
	writeJSON(w, http.StatusOK, append(make([]store.SessionInfo, 0, len(p.Sessions)), p.Sessions...))
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	id, ok := sessionID(w, r)
	if !ok {
		return
	}
	si, err := s.cfg.Store.Session(id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, si)
}

// ---- terminate ----

// TerminateConsoleResult answers /console/{source}/{uuid}/terminate.
type TerminateConsoleResult struct {
	Source   string `json:"source"`
	UUID     string `json:"uuid"`
	Sessions int    `json:"sessions"`
	Channels int    `json:"channels"`
	// Tunnels is how many CONNECT tunnels to the console were cut (the
	// hosts signed for it so far are revoked too); absent without a
	// CONNECT listener.
	Tunnels *int `json:"tunnels,omitempty"`
}

// TerminateSessionResult answers /session/{id}/terminate.
type TerminateSessionResult struct {
	Session  string `json:"session"`
	Channels int    `json:"channels"`
}

func (s *Server) terminateConsole(w http.ResponseWriter, r *http.Request) {
	k, ok := consoleKey(w, r)
	if !ok {
		return
	}
	sessions, channels, err := s.cfg.Store.TerminateConsole(k)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	res := TerminateConsoleResult{Source: k.Source, UUID: k.UUID, Sessions: sessions, Channels: channels}
	if f := s.cfg.Tunnel.Terminate; f != nil {
		n := f(k)
		res.Tunnels = &n
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) terminateSession(w http.ResponseWriter, r *http.Request) {
	id, ok := sessionID(w, r)
	if !ok {
		return
	}
	channels, err := s.cfg.Store.Terminate(id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, TerminateSessionResult{Session: id, Channels: channels})
}
