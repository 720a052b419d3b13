package api

import (
	"fmt"
	"net/http"

	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/proxy/vv"
)

// ContentTypeVV is the media type of a .vv answer.
const ContentTypeVV = "application/x-virt-viewer"

// HeaderSession carries the session id a proxy .vv opens (the same id
// as in its title; not a secret).
const HeaderSession = "X-Spice-Session"

// EventDirectVV is the audit event of a direct .vv served: the console's
// ticket was handed to a client.
const EventDirectVV store.EventKind = "direct_vv_served"

// proxyVV mints a token and answers a .vv pointing at the proxy.
func (s *Server) proxyVV(w http.ResponseWriter, r *http.Request) {
	k, ok := consoleKey(w, r)
	if !ok {
		return
	}
	ep := s.cfg.Proxy
	if ep.Port == 0 && ep.TLSPort == 0 {
		writeError(w, r, http.StatusServiceUnavailable, "no proxy endpoint is configured (Config.Proxy has no port)")
		return
	}
	m, err := s.cfg.Store.Mint(k)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	info(r).session = m.SessionID
	w.Header().Set(HeaderSession, m.SessionID)
	if ep.Current != nil {
		ep.CAPEM, ep.HostSubject = ep.Current()
	}
	s.writeVV(w, r, &vv.File{
		Type:           "spice",
		Host:           ep.Host,
		Port:           ep.Port,
		TLSPort:        ep.TLSPort,
		Password:       m.Token,
		CA:             string(ep.CAPEM),
		HostSubject:    ep.HostSubject,
		Title:          fmt.Sprintf("%s via proxy session %s", m.Target.Console.Name, m.SessionID),
		DeleteThisFile: true,
		SecureChannels: ep.SecureChannels,
	})
}

// directVV answers a .vv pointing at the hypervisor itself, with the
// console's ticket as stored right now. It never writes to the store's
// consoles (Kerbside's proxy route wrote an empty ticket back).
func (s *Server) directVV(w http.ResponseWriter, r *http.Request) {
	k, ok := consoleKey(w, r)
	if !ok {
		return
	}
	t, err := s.cfg.Store.Console(k)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	c := t.Console
	s.cfg.Store.Record(store.Event{Kind: EventDirectVV, Source: k.Source, UUID: k.UUID, Detail: "ticket handed out in a direct .vv"})
	s.writeVV(w, r, &vv.File{
		Type:           "spice",
		Host:           c.HypervisorIP,
		Port:           c.InsecurePort,
		TLSPort:        c.SecurePort,
		Password:       c.Ticket,
		CA:             t.CACert,
		HostSubject:    c.HostSubject,
		Title:          fmt.Sprintf("%s direct on %s", c.Name, c.Hypervisor),
		DeleteThisFile: true,
	})
}

func (s *Server) writeVV(w http.ResponseWriter, r *http.Request, f *vv.File) {
	body, err := vv.Render(f)
	if err != nil {
		// Only reachable with a console the static checks let through
		// but GKeyFile cannot carry; the error never holds the password.
		s.log.Error("api: render .vv", "err", err)
		writeError(w, r, http.StatusInternalServerError, "cannot render the .vv: "+err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", ContentTypeVV)
	h.Set("Content-Disposition", `attachment; filename="console.vv"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}
