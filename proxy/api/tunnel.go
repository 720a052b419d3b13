package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/proxy/tunnel"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

// RouteTunnelVV answers a .vv that reaches the console through the HTTP
// CONNECT proxy (the Proxmox `spiceproxy` way): proxy=, a signed host,
// the hypervisor's own TLS port (its plain port when it has none), CA and
// subject, and a short-lived ticket.
const RouteTunnelVV = "/console/tunnel/{source}/{uuid}/console.vv"

// KeyProxy is the .vv key naming the HTTP proxy spice-gtk sends CONNECT
// to ("http://HOST:PORT"); vv.File keeps it in its Proxy field.
const KeyProxy = vv.KeyProxy

// EventTunnelVV is the audit event of a tunnel .vv served: a ticket and
// a signed host were handed to a client.
const EventTunnelVV store.EventKind = "tunnel_vv_served"

// TunnelEndpoint is what a tunnel .vv advertises: the CONNECT proxy as
// clients reach it, and how to sign hosts for it (take them from
// proxy.Proxy's ConnectAddr and SignTunnel).
type TunnelEndpoint struct {
	// Host is the CONNECT proxy's address as clients reach it ("":
	// DefaultProxyHost).
	Host string
	// Port is the CONNECT listener's port; 0 (or a nil Sign) makes the
	// tunnel route answer 503.
	Port int
	// Sign returns the host for console k, whose SPICE ports are port and
	// tlsPort, and when it stops opening tunnels.
	Sign func(k static.Key, port, tlsPort int) (host string, expires time.Time, err error)
	// Terminate ends console k's tunnels (cuts the open ones, revokes the
	// hosts signed so far) and returns how many it cut; the console
	// terminate route calls it. nil: terminate leaves tunnels alone.
	Terminate func(k static.Key) int
}

// TunnelTicketFunc issues the password of a tunnel .vv for console k: a
// qemu ticket valid until expires (zero: no expiry). The harness, which
// holds qemu's QMP, sets a fresh ticket per .vv (set_password, then
// expire_password) and updates the store; nil uses the ticket the store
// holds.
type TunnelTicketFunc func(ctx context.Context, k static.Key) (ticket string, expires time.Time, err error)

// tunnelVV answers a .vv that reaches the console through the CONNECT
// proxy.
func (s *Server) tunnelVV(w http.ResponseWriter, r *http.Request) {
	k, ok := consoleKey(w, r)
	if !ok {
		return
	}
	ep := s.cfg.Tunnel
	if ep.Port == 0 || ep.Sign == nil {
		writeError(w, r, http.StatusServiceUnavailable, "no CONNECT proxy is configured (Config.Tunnel has no port or Sign)")
		return
	}
	t, err := s.cfg.Store.Console(k)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	ticket, ticketExpires, source := t.Console.Ticket, time.Time{}, "stored ticket"
	if s.cfg.TunnelTicket != nil {
		ticket, ticketExpires, err = s.cfg.TunnelTicket(r.Context(), k)
		if err != nil {
			s.log.Error("api: tunnel ticket", "source", k.Source, "uuid", k.UUID, "err", err)
			writeError(w, r, http.StatusBadGateway, "cannot issue a ticket for the console")
			return
		}
		source = "fresh ticket"
	}
	// With a TLS port the .vv (and its host) names only that one, as
	// Proxmox does: the tunnel crosses the network between client and
	// proxy, and on the TLS port the whole session is encrypted end to
	// end with qemu.
	c := t.Console
	port, tlsPort := c.InsecurePort, c.SecurePort
	if tlsPort != 0 {
		port = 0
	}
	host, hostExpires, err := ep.Sign(k, port, tlsPort)
	if err != nil {
		s.log.Error("api: sign tunnel host", "source", k.Source, "uuid", k.UUID, "err", err)
		writeError(w, r, http.StatusInternalServerError, "cannot sign a tunnel host for the console")
		return
	}
	detail := fmt.Sprintf("%s and tunnel host %s (until %s) handed out", source, tunnel.Fingerprint(host), hostExpires.UTC().Format(time.RFC3339))
	if !ticketExpires.IsZero() {
		detail += fmt.Sprintf("; ticket until %s", ticketExpires.UTC().Format(time.RFC3339))
	}
	s.cfg.Store.Record(store.Event{Kind: EventTunnelVV, Source: k.Source, UUID: k.UUID, Detail: detail})
	f := &vv.File{
		Type:           "spice",
		Host:           host,
		Port:           port,
		TLSPort:        tlsPort,
		Password:       ticket,
		Title:          fmt.Sprintf("%s via CONNECT tunnel", c.Name),
		DeleteThisFile: true,
	}
	if tlsPort != 0 {
		f.CA, f.HostSubject = t.CACert, c.HostSubject
	}
	proxyHost := ep.Host
	if proxyHost == "" {
		proxyHost = DefaultProxyHost
	}
	f.Proxy = "http://" + net.JoinHostPort(proxyHost, strconv.Itoa(ep.Port))
	s.writeVV(w, r, f)
}
