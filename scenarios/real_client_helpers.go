package scenarios

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/tail"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// Programs the real-client channel scenarios need, beyond remote-viewer
// and Xvfb.
const (
	needSpicy       = "spicy:spice-client-gtk"
	needGenisoimage = "genisoimage:genisoimage"
	needCertutil    = "certutil:libnss3-tools"
	needXclip       = "xclip:xclip"
)

// realClientWait bounds how long a real client's data may take to show
// in the guest once the client runs: seconds on an idle machine (the
// guest runs under TCG), tens of them on a loaded one.
const realClientWait = 60 * time.Second

// sum256 is the hex sha256 of b, as the guest agent reports it.
func sum256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// guestEvent waits up to realClientWait for the guest agent's first
// event of type typ whose keys have the values of kv (pairs); on a
// timeout it fails t with what, the client's log tail and the guest's
// events of that type so far.
func guestEvent(ctx context.Context, t harness.T, vm *harness.VM, what string, clientLog func() string, typ string, kv ...string) guestproto.Event {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, realClientWait)
	defer cancel()
	ev, err := vm.GuestEvent(wctx, typ, withValues(kv...))
	if err != nil {
		var seen []string
		if evs, err := vm.Guest.Events(); err == nil {
			for _, e := range evs {
				if e.Type == typ || e.Type == guestproto.TypeError {
					seen = append(seen, e.String())
				}
			}
		}
		t.Fatalf("%s: %v\nthe guest's %s and error events so far:\n%s\n%s", what, err, typ,
			tail.Lines(strings.Join(seen, "\n"), 8), tail.Lines(clientLog(), 15))
	}
	return ev
}

// makeISO writes an ISO 9660 image (genisoimage) holding one file of
// payload, and returns its path and bytes.
func makeISO(ctx context.Context, dir string, payload []byte) (string, []byte, error) {
	src := filepath.Join(dir, "iso-root")
	if err := os.MkdirAll(src, 0o700); err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "payload.bin"), payload, 0o600); err != nil {
		return "", nil, err
	}
	iso := filepath.Join(dir, "shared-cd.iso")
	cmd := exec.CommandContext(ctx, "genisoimage", "-quiet", "-V", "HARNESS", "-R", "-o", iso, src)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("genisoimage: %v: %s", err, out)
	}
	b, err := os.ReadFile(iso)
	return iso, b, err
}

// softCardCerts are the nicknames of the software smartcard's three
// certificates (libcacard's CAC card holds three).
var softCardCerts = []string{"harness-card-1", "harness-card-2", "harness-card-3"}

// makeCardDB makes an NSS database (certutil, SQL format, empty
// password) in dir holding softCardCerts, each a self-signed
// certificate with its private key, as spice-gtk's software smartcard
// needs them.
func makeCardDB(ctx context.Context, dir string) (string, error) {
	db := filepath.Join(dir, "nssdb")
	if err := os.MkdirAll(db, 0o700); err != nil {
		return "", err
	}
	noise := filepath.Join(dir, "noise")
	seed := make([]byte, 64)
	for i := range seed {
		seed[i] = byte(i*131 + 7) // key generation noise; these keys guard nothing
	}
	if err := os.WriteFile(noise, seed, 0o600); err != nil {
		return "", err
	}
	run := func(args ...string) error {
		out, err := exec.CommandContext(ctx, "certutil", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("certutil %s: %v: %s", args[0], err, tail.Lines(string(out), 5))
		}
		return nil
	}
	if err := run("-N", "-d", "sql:"+db, "--empty-password"); err != nil {
		return "", err
	}
	for i, n := range softCardCerts {
		if err := run("-S", "-d", "sql:"+db, "-n", n, "-s", "CN="+n+",O=spice-harness", "-x", "-t", "CT,C,C",
			"-k", "rsa", "-g", "1024", "-v", "12", "-m", fmt.Sprint(1000+i), "-z", noise); err != nil {
			return "", err
		}
	}
	return db, nil
}

// clipboardText is n bytes of printable ASCII derived from seed (the
// X clipboard carries text: spice-gtk sends it as UTF8_TEXT).
func clipboardText(seed uint64, n int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-"
	b := guestproto.PatternBytes(seed, n)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return b
}

// firstGuestEvent waits up to realClientWait for the guest agent's first
// event (of any type) that match accepts; on a timeout it fails t with
// what and the client's log tail.
func firstGuestEvent(ctx context.Context, t harness.T, vm *harness.VM, what string, clientLog func() string, match func(guestproto.Event) bool) guestproto.Event {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, realClientWait)
	defer cancel()
	ev, err := vm.GuestEvent(wctx, "", match)
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, tail.Lines(clientLog(), 15))
	}
	return ev
}

// watchChannelClosed cancels ctx through stop, with a cause naming the
// channel, once qemu reports the first channel of type typ it
// initialized as disconnected (QMP SPICE_INITIALIZED gives the channel's
// client port, SPICE_DISCONNECTED the same port): a proxy that closes
// the channel ends the wait at once instead of at its bound. It returns
// when ctx ends. It subscribes before it reads the events seen so far,
// so none falls between the two (one seen twice changes nothing).
// (spice-gtk's own debug log cannot tell: its debug lines go to a
// buffered stdout.)
func watchChannelClosed(ctx context.Context, stop context.CancelCauseFunc, vm *harness.VM, typ spice.ChannelType) {
	sub := vm.Subscribe()
	defer sub.Close()
	port := ""
	closed := func(e qemu.Event) bool {
		client, _ := e.Data["client"].(map[string]any)
		p, _ := client["port"].(string)
		switch {
		case port == "" && e.Name == qemu.EventSPICEInitialized:
			if ct, ok := client["channel-type"].(float64); ok && spice.ChannelType(ct) == typ {
				port = p
			}
		case port != "" && e.Name == qemu.EventSPICEDisconnected && p == port:
			stop(fmt.Errorf("qemu reports the %s channel disconnected (client port %s): the proxy closed it", typ, port))
			return true
		}
		return false
	}
	for _, e := range vm.Events() {
		if closed(e) {
			return
		}
	}
	for {
		e, err := sub.Next(ctx, qemu.EventSPICEInitialized, qemu.EventSPICEDisconnected)
		if err != nil || closed(e) {
			return
		}
	}
}

// untilClosed is ctx, cancelled as soon as qemu reports the first
// channel of type typ disconnected (watchChannelClosed); call done when
// finished with it.
func untilClosed(ctx context.Context, vm *harness.VM, typ spice.ChannelType) (wctx context.Context, done func()) {
	wctx, stop := context.WithCancelCause(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchChannelClosed(wctx, stop, vm, typ)
	}()
	return wctx, func() { stop(nil); <-watched }
}
