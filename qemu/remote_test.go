package qemu_test

import (
	"bytes"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/testhosts"
	"github.com/spiceharness/spiceharness/qemu"
)

// syncBuf is a log sink tests can read while VMs write to it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func remoteOpts(h *testhosts.Host, extra ...qemu.Option) []qemu.Option {
	return append([]qemu.Option{qemu.Libvirt(h.URI), qemu.RemoteHost(h.Name, ""), qemu.SPICEAddr(h.Addr.String())}, extra...)
}

// TestIntegrationRemoteHost: a VM on another host (a network namespace
// with its own libvirtd, reached over qemu+tls and a veth): the guest
// image goes through a storage volume upload once and is reused, the
// serial log comes back over the console stream from the first byte,
// tickets and keys go over QMP through libvirt, SPICE and its TLS port
// listen on the host's address with the host's certificate, and the
// host's name is in the VM's identity.
func TestIntegrationRemoteHost(t *testing.T) {
	rig := testhosts.Start(t, testhosts.Options{Hosts: 1, TLS: true, LibvirtTLS: true})
	h := rig.Hosts[0]
	if !strings.HasPrefix(h.URI, "qemu+tls://") {
		t.Fatalf("unexpected URI %s: this test reaches the host over libvirt's TLS transport", h.URI)
	}
	var log syncBuf
	logger := slog.New(slog.NewTextHandler(&log, nil))
	ctx := ctxT(t, startTimeout)

	vm := startVM(t, remoteOpts(h, qemu.HostTLS(h.HostSubject), qemu.Logger(logger))...)
	if _, err := vm.SetTicket(ctx); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitFor(ctx, qemu.ForSPICE(), qemu.ForGuestPrompt()); err != nil {
		t.Fatal(err)
	}
	ep := vm.Endpoint()
	if ep.Host != h.Name || ep.HostIP != h.Addr.String() || ep.Port == 0 || ep.TLSPort == 0 || ep.HostSubject != h.HostSubject {
		t.Errorf("unexpected endpoint %#v; want host %s at %s with both ports and subject %q", ep, h.Name, h.Addr, h.HostSubject)
	}
	if s := vm.String(); !strings.Contains(s, " on "+h.Name+" ") || !strings.Contains(s, h.URI) {
		t.Errorf("unexpected String() %q: want the host's name and URI", s)
	}
	if !strings.Contains(log.String(), "guest image uploaded to the host") {
		t.Errorf("first VM on the host: no upload logged:\n%s", log.String())
	}
	if err := vm.SendKeys(ctx, "h", "i"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitSerial(ctx, regexp.MustCompile(`READY> hi`)); err != nil {
		t.Fatal(err)
	}
	if !spiceLogin(t, ep.HostIP, ep.Port, ep.Ticket) {
		t.Errorf("spicy-screenshot with the fresh ticket was refused on %s", ep.Addr())
	}

	// A second VM on the host boots the cached image.
	vm2 := startVM(t, remoteOpts(h, qemu.Logger(logger))...)
	if err := vm2.WaitFor(ctx, qemu.ForGuestPrompt()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "guest image uploaded"); n != 1 {
		t.Errorf("unexpected uploads (-want +got): -1 +%d\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "guest image cached on the host") {
		t.Errorf("second VM: the cached image was not used:\n%s", log.String())
	}
}

// TestIntegrationRemoteHostLost: when the host's libvirtd is killed, the
// VM's connection drops and it ends at once with an *ExitError that
// matches ErrHostLost and names the host; Close still returns.
func TestIntegrationRemoteHostLost(t *testing.T) {
	rig := testhosts.Start(t, testhosts.Options{Hosts: 1})
	h := rig.Hosts[0]
	ctx := ctxT(t, startTimeout)
	vm, err := qemu.Start(ctx, remoteOpts(h, qemu.Accel(qemu.AccelTCG), qemu.Logger(testLogger(t)))...)
	defer func() {
		if err := vm.Close(); err != nil && !errors.Is(err, qemu.ErrHostLost) {
			t.Errorf("Close: %v", err)
		}
	}()
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitFor(ctx, qemu.ForGuestPrompt()); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := rig.KillLibvirtd(0); err != nil {
		t.Fatal(err)
	}
	<-vm.Exited()
	t.Logf("the VM saw its host go %v after the kill", time.Since(killed).Round(time.Millisecond))
	err = vm.Wait(ctx)
	var ee *qemu.ExitError
	if !errors.As(err, &ee) || !errors.Is(err, qemu.ErrHostLost) || !strings.Contains(err.Error(), h.Name) {
		t.Fatalf("unexpected exit error %v: want an *ExitError matching ErrHostLost that names %s", err, h.Name)
	}
	if _, err := vm.SetTicket(ctx); !errors.Is(err, qemu.ErrHostLost) {
		t.Errorf("SetTicket after the host went: %v, want ErrHostLost", err)
	}
}
