package api_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/static"
)

// TestIntegrationQemuDirectVV: a real qemu's console, loaded as a static
// source, is reachable with nothing but the direct .vv the API serves:
// the Go SPICE client and spicy-screenshot (spice-gtk) both link with its
// password; after a ticket rotation the next .vv has the new ticket and
// the old one is refused by qemu. A proxy .vv links through the real
// proxy to the same qemu.
func TestIntegrationQemuDirectVV(t *testing.T) {
	testenv.Short(t)
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	screenshot := testenv.NeedCommand(t, "spicy-screenshot", "spice-client-gtk")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	vm, err := qemu.Start(ctx, qemu.Accel(qemu.AccelTCG))
	t.Cleanup(func() {
		if err := vm.Close(); err != nil {
			t.Errorf("qemu Close: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.SetTicket(ctx); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitFor(ctx, qemu.ForSPICE(), qemu.ForGuestPrompt()); err != nil {
		t.Fatal(err)
	}
	ep := vm.Endpoint()
	con := static.Console{UUID: ep.UUID, Name: ep.Name, Hypervisor: ep.Host, HypervisorIP: ep.HostIP, InsecurePort: ep.Port, Ticket: ep.Ticket}
	key := static.Key{Source: "qemu", UUID: con.UUID}
	st := store.New(store.Options{})
	st.Load(static.Source{Name: "qemu", Type: static.TypeStatic, Consoles: []static.Console{con}})
	if src, err := st.Source("qemu"); err != nil || src.State != "ok" {
		t.Fatalf("source of the VM's console: %+v, %v", src, err)
	}
	p := &proxy.Proxy{Store: st, KeyPoolSize: 2}
	if err := p.Start("127.0.0.1:0", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	srv, err := api.New(api.Config{Store: st, Logger: slog.New(slog.DiscardHandler), Proxy: api.ProxyEndpoint{
		Port: p.PlainAddr().Port, TLSPort: p.TLSAddr().Port, CAPEM: p.CAPEM(), HostSubject: p.HostSubject()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	e := &env{t: t, api: srv, client: newClient(t)}
	directPath := "/console/direct/qemu/" + con.UUID + "/console.vv"

	f, _ := e.fetchVV(directPath)
	if f.Host != con.HypervisorIP || f.Port != con.InsecurePort || f.Password != con.Ticket || f.TLSPort != 0 {
		t.Fatalf("direct .vv %v does not describe the VM's console", f)
	}
	linkMain(t, ctx, f)
	if out, err := spicyScreenshot(ctx, t, screenshot, f); err != nil {
		t.Fatalf("spicy-screenshot with the direct .vv: %v\n%s", err, out)
	}

	// Rotate: qemu gets a new ticket, the store is told, the next .vv
	// carries it, and the old ticket is refused by qemu itself.
	old := f.Password
	if _, err := vm.SetTicket(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.SetTicket(key, vm.Endpoint().Ticket); err != nil {
		t.Fatal(err)
	}
	f, _ = e.fetchVV(directPath)
	if f.Password == old || f.Password != vm.Endpoint().Ticket {
		t.Fatal("the direct .vv after rotation does not carry the VM's new ticket")
	}
	stale := *f
	stale.Password = old
	if _, err := dialerFor(t, &stale).DialChannel(ctx, 0, spice.ChannelMain, 0); !errors.Is(err, spice.ErrPermissionDenied) {
		t.Fatalf("old ticket after rotation: %v, want PERMISSION_DENIED from qemu", err)
	}
	linkMain(t, ctx, f)
	if out, err := spicyScreenshot(ctx, t, screenshot, f); err != nil {
		t.Fatalf("spicy-screenshot with the rotated .vv: %v\n%s", err, out)
	}

	// Through the proxy, to the same qemu, with the proxy .vv (TLS, CA
	// and host-subject from the file).
	pf, _ := e.fetchVV("/console/proxy/qemu/" + con.UUID + "/console.vv")
	linkMain(t, ctx, pf)
}

func newClient(t *testing.T) *http.Client {
	c := &http.Client{Timeout: 20 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// linkMain opens and closes a session's main channel only: closing a
// display channel before DISPLAY_INIT would crash spice-server.
func linkMain(t *testing.T, ctx context.Context, f *vv.File) {
	t.Helper()
	s, err := dialerFor(t, f).Connect(ctx)
	if err != nil {
		t.Fatalf("Go SPICE client with %v: %v", f, err)
	}
	if s.ID == 0 {
		t.Error("session id 0 from MAIN_INIT")
	}
	s.Close()
}

// spicyScreenshot runs spice-gtk's headless client with the .vv's fields.
// The password goes on its command line, visible in ps: acceptable in a
// test only, where the ticket is a throwaway value of a throwaway VM.
func spicyScreenshot(ctx context.Context, t *testing.T, bin string, f *vv.File) ([]byte, error) {
	out := filepath.Join(t.TempDir(), "out.ppm")
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, bin, "-h", f.Host, "-p", strconv.Itoa(f.Port), "-w", f.Password, "-o", out)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return log.Bytes(), err
	}
	img, err := os.ReadFile(out)
	if err != nil || !bytes.HasPrefix(img, []byte("P6\n")) {
		return log.Bytes(), errors.New("no P6 PPM written")
	}
	return log.Bytes(), nil
}
