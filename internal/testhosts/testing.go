package testhosts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"

	"github.com/spiceharness/spiceharness/internal/testenv"
)

// ErrCannotMake: namespaces cannot be made on this machine (not root,
// iproute2, util-linux or libvirt missing, or the kernel refuses).
var ErrCannotMake = errors.New("testhosts: cannot make network namespaces here")

// Check says why hosts cannot be made here, or nil when they can. It
// makes and deletes one namespace to be sure.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root (network namespaces, veth pairs and mounts need root)", ErrCannotMake)
	}
	for _, p := range []struct{ prog, pkg string }{{"ip", "iproute2"}, {"unshare", "util-linux"}, {"libvirtd", "libvirt-daemon"}, {"virtlogd", "libvirt-daemon"}} {
		if _, err := exec.LookPath(p.prog); err != nil {
			return fmt.Errorf("%w: %s is not installed (Debian package %s; run make deps)", ErrCannotMake, p.prog, p.pkg)
		}
	}
	probe := TestPrefix + "-probe" + strconv.Itoa(os.Getpid())
	if err := ip("netns", "add", probe); err != nil {
		return fmt.Errorf("%w: %v", ErrCannotMake, err)
	}
	if err := ip("netns", "del", probe); err != nil {
		return fmt.Errorf("%w: %v", ErrCannotMake, err)
	}
	return nil
}

// Start makes a rig for t and removes it when t ends (and on SIGINT,
// SIGTERM or SIGHUP before that). Where namespaces cannot be made it
// skips t with the reason, and fails it under CI=true (where they must
// work). It also skips under -short.
func Start(t testing.TB, o Options) *Rig {
	t.Helper()
	testenv.Short(t, "network namespaces and libvirtd")
	if err := Check(); err != nil {
		testenv.Missing(t, "extra hypervisor hosts", err.Error()+"; run the test as root on a machine with iproute2 and libvirt (make deps)")
	}
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	ctx := context.Background()
	if c, ok := t.(interface{ Context() context.Context }); ok {
		ctx = c.Context()
	}
	r, err := Up(ctx, o)
	if err != nil {
		t.Fatalf("%v", err)
	}
	stop := r.closeOnSignal()
	t.Cleanup(func() {
		stop()
		if err := r.Close(); err != nil {
			t.Errorf("testhosts: %v", err)
		}
	})
	return r
}

// closeOnSignal removes the rig when the process gets SIGINT, SIGTERM or
// SIGHUP, then lets the signal do what it would have done. The returned
// func stops watching.
func (r *Rig) closeOnSignal() (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case sig := <-ch:
			r.Close()
			signal.Stop(ch)
			syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		case <-done:
			signal.Stop(ch)
		}
	}()
	return func() {
		select {
		case <-done:
		default:
			close(done)
		}
		<-finished
	}
}
