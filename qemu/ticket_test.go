package qemu_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
)

func TestIntegrationTickets(t *testing.T) {
	var logBuf syncbuf.Buffer
	vm := startVM(t, qemu.Logger(slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	ctx := ctxT(t, 60*time.Second)
	con := vm.Endpoint()
	if con.Ticket != "" {
		t.Fatalf("ticket set before SetTicket")
	}
	if err := vm.WaitSPICE(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := vm.QuerySpice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := qemu.SpiceInfo{Enabled: true, Host: "127.0.0.1", Port: con.Port, Auth: "spice", MouseMode: info.MouseMode}
	if diff := cmp.Diff(want, info); diff != "" {
		t.Errorf("unexpected query-spice (-want +got):\n%s", diff)
	}
	tickets := checkTickets(t, vm)

	// Tickets never leave the process: not in argv, not in qemu's log.
	p := vm.(*qemu.Process)
	log, err := os.ReadFile(p.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tickets {
		if strings.Contains(strings.Join(p.Argv(), " "), tk) {
			t.Errorf("ticket in argv")
		}
		if strings.Contains(string(log), tk) {
			t.Errorf("ticket in qemu log")
		}
		if strings.Contains(logBuf.String(), tk) {
			t.Errorf("ticket in the harness log")
		}
	}
}

// checkTickets runs the ticket lifecycle on a fresh VM of either
// backend: refused until SetTicket; only the current ticket works;
// RotateTicket retires the old one; ExpireTicket refuses everyone; a
// later SetTicket lifts the expiry. The Go client gives exact link
// results; spicy-screenshot (a real client) confirms the final ticket.
// It returns the tickets it set.
func checkTickets(t *testing.T, vm qemu.VM) []string {
	ctx := ctxT(t, 60*time.Second)
	con := vm.Endpoint()
	wantLink(t, con, spice.ErrPermissionDenied, "before SetTicket", "", "x")
	t1, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(t1) != qemu.TicketLen || !regexp.MustCompile(`^[A-Za-z0-9]+$`).MatchString(t1) {
		t.Fatalf("unexpected ticket format (length %d)", len(t1))
	}
	if vm.Endpoint().Ticket != t1 {
		t.Fatalf("Console().Ticket is not the ticket SetTicket returned")
	}
	wantLink(t, con, spice.ErrPermissionDenied, "after SetTicket, no or wrong ticket", "", t1[1:], "wrong")
	wantLink(t, con, spice.LinkOK, "after SetTicket, fresh ticket", t1)

	t2, err := vm.RotateTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if t2 == t1 {
		t.Fatal("RotateTicket returned the old ticket")
	}
	wantLink(t, con, spice.ErrPermissionDenied, "after RotateTicket, old ticket", t1)
	wantLink(t, con, spice.LinkOK, "after RotateTicket, new ticket", t2)

	if err := vm.ExpireTicket(ctx); err != nil {
		t.Fatal(err)
	}
	wantLink(t, con, spice.ErrPermissionDenied, "after ExpireTicket", t2, "")
	t3, err := vm.RotateTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantLink(t, con, spice.ErrPermissionDenied, "after a rotation that follows an expiry, old tickets", t1, t2)
	wantLink(t, con, spice.LinkOK, "after a rotation that follows an expiry, new ticket", t3)
	if !spiceLogin(t, con.HostIP, con.Port, t3) {
		t.Error("spicy-screenshot was refused with the current ticket")
	}
	if spiceLogin(t, con.HostIP, con.Port, t2) {
		t.Error("spicy-screenshot got in with a retired ticket")
	}
	for _, tk := range []string{t1, t2, t3} {
		if strings.Contains(vm.String(), tk) {
			t.Errorf("ticket in String()")
		}
	}
	return []string{t1, t2, t3}
}

// TestIntegrationTicketsAndSessions: SetTicket keeps a connected session,
// RotateTicket disconnects it.
func TestIntegrationTicketsAndSessions(t *testing.T) {
	vm := startVM(t)
	ctx := ctxT(t, 60*time.Second)
	t1, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	con := vm.Endpoint()
	d := &spice.Dialer{Host: con.HostIP, Port: con.Port, Password: t1}
	s, err := d.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := vm.SetTicket(ctx); err != nil {
		t.Fatal(err)
	}
	// Barrier: spice-server drops clients and answers QMP on the same
	// main loop, so a query-spice after set_password sees any drop.
	info, err := vm.QuerySpice(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Channels) == 0 {
		t.Fatal("SetTicket dropped a connected session: query-spice lists no channel")
	}
	select {
	case <-s.Main.Done():
		t.Fatalf("SetTicket dropped a connected session: %v", s.Main.Err())
	default:
	}
	if _, err := vm.RotateTicket(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Main.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("RotateTicket left a connected session in")
	}
}

// TestIntegrationTicketFor: SetTicketFor's ticket links until its
// expiry and is refused from then on; a session linked before keeps its
// channels; SetTicket lifts the expiry.
func TestIntegrationTicketFor(t *testing.T) {
	vm := startVM(t)
	ctx := ctxT(t, 60*time.Second)
	if err := vm.WaitSPICE(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := vm.SetTicketFor(ctx, time.Second); !errors.Is(err, qemu.ErrInvalidConfig) {
		t.Fatalf("SetTicketFor(1s): %v, want ErrInvalidConfig", err)
	}
	const life = 3 * time.Second
	before := time.Now()
	tk, expires, err := vm.SetTicketFor(ctx, life)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Endpoint().Ticket != tk {
		t.Fatalf("Endpoint().Ticket is not the ticket SetTicketFor returned")
	}
	if expires.Before(before.Add(life)) || expires.After(time.Now().Add(life)) {
		t.Errorf("expiry %v is not %v after the call", expires.Sub(before), life)
	}
	con := vm.Endpoint()
	d := &spice.Dialer{Host: con.HostIP, Port: con.Port, Password: tk}
	s, err := d.Connect(ctx)
	if err != nil {
		t.Fatalf("link with the fresh ticket: %v", err)
	}
	defer s.Close()
	// qemu counts whole seconds: a second after the expiry it has passed.
	select {
	case <-time.After(time.Until(expires.Add(time.Second))):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	wantLink(t, con, spice.ErrPermissionDenied, "after the expiry", tk)
	if _, err := s.Open(ctx, spice.ChannelInputs, 0); !errors.Is(err, spice.ErrPermissionDenied) {
		t.Errorf("a new channel of the live session after the expiry: %v, want PERMISSION_DENIED", err)
	}
	select {
	case <-s.Main.Done():
		t.Fatalf("the expiry ended a linked session: %v", s.Main.Err())
	default:
	}
	if err := s.Main.Send(spice.MsgcMainAttachChannels, nil); err != nil {
		t.Errorf("the live main channel after the expiry: %v", err)
	}
	t2, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantLink(t, con, spice.LinkOK, "SetTicket after the expiry", t2)
}

func TestIntegrationTLS(t *testing.T) {
	ca, err := pki.NewCA("qemu test CA")
	if err != nil {
		t.Fatal(err)
	}
	vm := startVM(t, qemu.TLS(ca), qemu.TLSNames("*.tunnel.example"))
	ctx := ctxT(t, 60*time.Second)
	con := vm.Endpoint()
	if con.TLSPort == 0 || con.TLSPort == con.Port {
		t.Fatalf("unexpected ports %d/%d", con.Port, con.TLSPort)
	}
	if diff := cmp.Diff("O=spice-harness,CN=localhost", con.HostSubject); diff != "" {
		t.Errorf("unexpected host subject (-want +got):\n%s", diff)
	}
	if err := vm.WaitSPICE(ctx); err != nil {
		t.Fatal(err)
	}
	ticket, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := &spice.Dialer{Host: "127.0.0.1", TLSPort: con.TLSPort, SecureAll: true, Password: ticket, CA: ca.Pool(), HostSubject: con.HostSubject}
	ch, err := d.DialChannel(ctx, 0, spice.ChannelMain, 0)
	if err != nil {
		t.Fatalf("TLS link with the CA and host subject: %v", err)
	}
	if !ch.Secure {
		t.Error("channel not linked over TLS")
	}
	ch.Close()
	// TLSNames: a name under the wildcard passes a host name check (what
	// spicy-screenshot does), one outside it does not.
	d.HostSubject = ""
	for name, ok := range map[string]bool{"abc.tunnel.example": true, "a.b.tunnel.example": false, "other.example": false} {
		d.ServerName = name
		ch, err := d.DialChannel(ctx, 0, spice.ChannelMain, 0)
		if ok != (err == nil) {
			t.Errorf("TLS link checked against %q: %v, want success %v", name, err, ok)
		}
		if err == nil {
			ch.Close()
		}
	}
	if _, err := os.Stat(filepath.Join(vm.(*qemu.Process).StateDir(), "x509", "server-key.pem")); err != nil {
		t.Errorf("x509 dir: %v", err)
	}
}
