package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/spiceharness/spiceharness/proxy/store"
)

// RouteReload reloads the sources (POST) or shows the last reload (GET);
// it exists when Config.Reloader is set.
const RouteReload = "/reload"

// ErrNoReload is what a Reloader returns when it has nothing to reload
// (no sources file); POST /reload then answers 409.
var ErrNoReload = errors.New("nothing to reload: this server was given no sources file")

// Reloader reloads the sources the API serves: package proxy/daemon
// implements it for `harness serve`.
type Reloader interface {
	// Reload re-reads the sources now (POST /reload). The error is
	// ErrNoReload, or ctx's; a file with problems is not an error but a
	// report whose Result says so.
	Reload(ctx context.Context) (ReloadReport, error)
	// LastReload is the latest report (GET /reload); false before the
	// first reload.
	LastReload() (ReloadReport, bool)
}

// Results of a reload.
const (
	// ReloadOK: the file is valid and is what is served.
	ReloadOK = "ok"
	// ReloadPartial: the file has errors; its good sources were loaded,
	// each errored source keeps its last good consoles, and no source
	// was removed unless every error belongs to a named source.
	ReloadPartial = "partial"
	// ReloadRefused: the file could not be read or parsed; nothing
	// changed.
	ReloadRefused = "refused"
)

// ReloadReport is one reload, as GET and POST /reload answer it and as
// the daemon logs it. It never holds a ticket or key.
type ReloadReport struct {
	// Seq counts reloads from 1.
	Seq uint64 `json:"seq"`
	// Trigger is what asked for it: start, change, signal, api or call.
	Trigger string `json:"trigger"`
	// Result is ReloadOK, ReloadPartial or ReloadRefused.
	Result string    `json:"result"`
	At     time.Time `json:"at"`
	File   string    `json:"file,omitempty"`
	// Sources and Consoles count what is served afterwards; Errored
	// names the errored sources.
	Sources  int      `json:"sources"`
	Consoles int      `json:"consoles"`
	Errored  []string `json:"errored"`
	// Changes says what happened to each source (store.Apply).
	Changes []store.Change `json:"changes"`
	// Problems are every error of the file (why it was refused, when it
	// was); Warnings counts its warnings (see /source/{name}).
	Problems []Problem `json:"problems"`
	Warnings int       `json:"warnings"`
	// TLS is what the reload did with the proxy's certificate, when it
	// re-read one (manual reloads of a certificate from files or a state
	// dir).
	TLS *TLSReloadReport `json:"tls,omitempty"`
}

// TLSReloadReport is a certificate reload: Result is unchanged, reloaded
// or refused (Error says why; the served certificate is kept);
// HostSubject and Expires describe the certificate served afterwards.
type TLSReloadReport struct {
	Result      string    `json:"result"`
	Origin      string    `json:"origin"`
	HostSubject string    `json:"host_subject"`
	Expires     time.Time `json:"expires"`
	Error       string    `json:"error,omitempty"`
}

// reloadAnswer is a report answered with an error status: the usual
// error fields beside it.
type reloadAnswer struct {
	ReloadReport
	Error  string `json:"error"`
	Status int    `json:"status"`
}

// reload answers POST /reload: 200 with the report when the file is
// valid, 422 with it when the file has errors (partial or refused), so
// `curl -f` fails on a bad file.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	rep, err := s.cfg.Reloader.Reload(r.Context())
	switch {
	case errors.Is(err, ErrNoReload):
		writeError(w, r, http.StatusConflict, err.Error())
		return
	case err != nil:
		s.log.Error("api: reload", "err", err)
		writeError(w, r, http.StatusServiceUnavailable, "reload did not run: "+err.Error())
		return
	}
	s.answerReport(w, r, rep)
}

// lastReload answers GET /reload, with the status POST would have given.
func (s *Server) lastReload(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.cfg.Reloader.LastReload()
	if !ok {
		writeError(w, r, http.StatusNotFound, "no reload yet")
		return
	}
	s.answerReport(w, r, rep)
}

func (s *Server) answerReport(w http.ResponseWriter, r *http.Request, rep ReloadReport) {
	if rep.Errored == nil {
		rep.Errored = []string{}
	}
	if rep.Changes == nil {
		rep.Changes = []store.Change{}
	}
	if rep.Problems == nil {
		rep.Problems = []Problem{}
	}
	if rep.Result == ReloadOK {
		writeJSON(w, http.StatusOK, rep)
		return
	}
	msg := "the sources file has errors: each errored source keeps its last good consoles"
	if rep.Result == ReloadRefused {
		msg = "the sources file could not be read or parsed: nothing changed"
	}
	info(r).errMsg = msg
	writeJSON(w, http.StatusUnprocessableEntity, reloadAnswer{ReloadReport: rep, Error: msg, Status: http.StatusUnprocessableEntity})
}
