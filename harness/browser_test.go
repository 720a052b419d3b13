package harness

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/internal/tail"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/qemu"
)

// needBrowser skips t (fails it under CI=true) without Chromium or
// spice-html5.
func needBrowser(t *testing.T) {
	t.Helper()
	if _, err := FindChromium(""); err != nil {
		testenv.Missing(t, "chromium", err.Error())
	}
	if _, err := FindSpiceHTML5(""); err != nil {
		testenv.Missing(t, "spice-html5", err.Error())
	}
}

// startWebsockify runs Debian's websockify in front of target (no token
// plugin: one fixed target) and returns its WebSocket URL.
func startWebsockify(t *testing.T, ctx context.Context, target string) string {
	t.Helper()
	bin := testenv.NeedCommand(t, "websockify", "websockify")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	cmd := exec.Command(bin, "--verbose", "127.0.0.1:"+strconv.Itoa(port), target)
	cmd.Stdout, cmd.Stderr = &out, &out
	child, err := proc.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		child.Stop(2 * time.Second)
		if t.Failed() {
			t.Logf("websockify:\n%s", tail.Lines(out.String(), 20))
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "ws://" + addr + "/"
		}
		select {
		case <-child.Exited():
			t.Fatalf("websockify exited: %s", out.String())
		case <-ctx.Done():
			t.Fatalf("websockify never listened: %v", ctx.Err())
		case <-time.After(20 * time.Millisecond):
			// websockify says nothing when it listens: its port is the
			// only sign.
		}
	}
}

// bootGuest starts the test guest with a ticket and waits for its prompt.
func bootGuest(t *testing.T, ctx context.Context) qemu.VM {
	t.Helper()
	testenv.Short(t, "qemu")
	if _, err := qemu.FindBinary(); err != nil {
		testenv.Missing(t, "qemu", "run make deps")
	}
	vm, err := qemu.Start(ctx)
	t.Cleanup(func() { vm.Close() })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.SetTicket(ctx); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitFor(ctx, qemu.ForSPICE(), qemu.ForGuestPrompt()); err != nil {
		t.Fatal(err)
	}
	return vm
}

// The browser oracle against websockify in front of qemu: the page's
// canvas, and the page as Chromium composites it, equal spicy-screenshot's
// picture of the same screen; keys typed into the page reach the guest;
// a wrong password is a typed error; Close leaves no Chromium running.
func TestIntegrationBrowserWebsockify(t *testing.T) {
	needBrowser(t)
	testenv.NeedCommand(t, "spicy-screenshot", "spice-client-gtk")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	vm := bootGuest(t, ctx)
	ticket, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := Screenshot(ctx, Endpoint{Host: vm.Endpoint().HostIP, Port: vm.Endpoint().Port, Password: ticket}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if ticket, err = vm.SetTicket(ctx); err != nil { // the capture's was on an argv
		t.Fatal(err)
	}
	wsURL := startWebsockify(t, ctx, vm.Endpoint().Addr())

	start := time.Now()
	b, err := StartBrowser(ctx, BrowserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		if proc.Alive(b.Pid()) {
			t.Errorf("chromium %d alive after Close", b.Pid())
		}
	}()
	t.Logf("chromium up in %v", time.Since(start))
	p, err := b.Open(ctx, WebSocketEndpoint{URL: wsURL, Password: ticket})
	if err != nil {
		t.Fatal(err)
	}
	first, err := p.WaitPainted(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pids := testenv.ArgvHolding(ticket); len(pids) > 0 {
		t.Errorf("the password is on the command line of processes %v", pids)
	}
	t.Logf("first paint %v after connect (%v after StartBrowser)", first, time.Since(start))
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	img, err := p.WaitCanvas(wctx, func(img *Image) bool { return img.DiffPixels(ref) == 0 })
	wcancel()
	if err != nil {
		n := -1
		if img != nil {
			n = img.DiffPixels(ref)
			t.Logf("canvas %dx%d, reference %dx%d", img.W, img.H, ref.W, ref.H)
		}
		t.Fatalf("canvas never equal to spicy-screenshot's picture (%d pixels differ): %v", n, err)
	}
	vis, err := p.Visible(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := vis.DiffPixels(ref); n != 0 {
		t.Errorf("the page as Chromium shows it: %d pixels unlike spicy-screenshot's (%dx%d)", n, vis.W, vis.H)
	}
	if err := p.Type(ctx, "html5 42"); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	if err := vm.WaitSerial(sctx, regexp.MustCompile(`READY> html5 42`)); err != nil {
		st, _ := p.State(ctx)
		t.Fatalf("keys typed into the page did not reach the guest: %v\nstate %+v\nserial:\n%s", err, st, vm.SerialTail(5))
	}
	st, err := p.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sockets: %+v", st.Sockets)
	if err := p.Err(ctx); err != nil {
		t.Errorf("page reports an error on a working console: %v", err)
	}

	// A wrong password: spice-html5's own error, typed.
	bad, err := b.Open(ctx, WebSocketEndpoint{URL: wsURL, Password: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.WaitPainted(ctx)
	var pe *PageError
	if !errors.As(err, &pe) || !errors.Is(err, ErrPageNotPainted) {
		t.Fatalf("wrong password: want a *PageError, got %v", err)
	}
	if fmt.Sprint(pe.Errors) != "[Permission denied.]" {
		t.Errorf("wrong password: unexpected spice-html5 errors %q\n%v", pe.Errors, pe)
	}
	t.Logf("wrong password: %v", err)

	// The page's spice-html5 keeps a ticket's leading zero bytes: about
	// one in 160 would be short with Debian's ticket.js as it is.
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	short, err := pageCall[int](bad, ctx, `async function(n) {
		const t = await import('./spice-html5/ticket.js');
		const { RSAKey } = await import('./spice-html5/thirdparty/rsa.js');
		const k = new RSAKey();
		k.setPublic(n, "10001");
		let short = 0;
		for (let i = 0; i < 1000; i++) {
			if (t.rsa_encrypt(k, "password\u0000").length != 128) short++;
		}
		return short;
	}`, key.N.Text(16))
	if err != nil || short != 0 {
		t.Errorf("spice-html5's rsa_encrypt on the page: %d of 1000 tickets short of 128 bytes (%v)", short, err)
	}
}

// patchTicketJS must find its code in the installed spice-html5: a new
// ticket.js that drops it is noticed here, not as a flaky link.
func TestPatchTicketJS(t *testing.T) {
	dir, err := FindSpiceHTML5("")
	if err != nil {
		testenv.Missing(t, "spice-html5", err.Error())
	}
	src, err := os.ReadFile(filepath.Join(dir, "ticket.js"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(patchTicketJS(src))
	if !strings.Contains(got, ticketFullHex) || strings.Contains(got, ticketShortHex) {
		t.Errorf("ticket.js in %s has no %q to patch: check whether its rsa_encrypt still drops leading zero bytes", dir, ticketShortHex)
	}
}
