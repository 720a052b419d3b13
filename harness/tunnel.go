package harness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/static"
)

// DefaultTunnelTicketTTL is how long the ticket in a tunnel `.vv` opens
// new links unless TunnelTicketTTL says otherwise: Proxmox's 30 s
// (`expire_password +30`). remote-viewer opens its channels within a
// second of reading the file.
const DefaultTunnelTicketTTL = 30 * time.Second

// TunnelDomain is the domain of the signed hosts of a lane's CONNECT
// listener (hosts are LABEL.TunnelDomain). With TLSBackends, qemu's
// certificates name *.TunnelDomain too, so clients that check the host
// name rather than a host-subject (spicy-screenshot) accept qemu's
// certificate through the tunnel.
const TunnelDomain = "tunnel.spice-harness.test"

// ErrUnknownConsole: a console key the lane has no VM for.
var ErrUnknownConsole = errors.New("harness: no VM of this lane has that console")

// tunnelTickets is the lane's state of tunnel tickets, guarded by Env.mu:
// a generation per VM, bumped by every ticket change, and the re-arm
// waiting for each VM's current tunnel ticket to expire.
type tunnelTickets struct {
	gen    map[int]uint64
	cancel map[int]chan struct{}
}

// TunnelTicket issues the password of a tunnel `.vv` for console k, the
// way Proxmox does for each `.vv`: a fresh qemu ticket that opens new
// links for the lane's TunnelTicketTTL (QMP set_password, then
// expire_password +N). It returns the ticket and its expiry. It is the
// in-process target's api.Config.TunnelTicket hook and what the
// connect-proxy target puts in its `.vv` files.
//
// qemu has one password per display, so under the lane's ticket lock
// (the one SetTicket takes) the lane's sources.yaml and the target
// follow: a terminating proxy serving the same VM links with the new
// ticket. When the ticket expires, unless a later tunnel `.vv` or
// SetTicket replaced it, the lane sets a fresh ticket without expiry
// (and the target loads it), so the terminating proxy's new links work
// again; between the expiry and that re-arm (two QMP round trips) they
// are refused. Sessions linked in time keep their channels, but open no
// new one after the expiry (qemu checks the ticket at link time). See
// docs/tunnels.md, "Tickets: one password per qemu".
func (e *Env) TunnelTicket(ctx context.Context, k static.Key) (ticket string, expires time.Time, err error) {
	vm := e.vmOf(k)
	if vm == nil {
		return "", time.Time{}, fmt.Errorf("%w: %s", ErrUnknownConsole, k)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ttl := e.cfg.settings.TunnelTicketTTL
	ticket, expires, err = vm.SetTicketFor(ctx, ttl)
	if err != nil {
		return "", time.Time{}, err
	}
	gen := e.bumpTicketGen(vm)
	if err := e.writeSources(); err != nil {
		return "", time.Time{}, err
	}
	if err := e.target.Load(ctx, e.Sources()); err != nil {
		return "", time.Time{}, fmt.Errorf("harness: the proxy under test did not take the tunnel ticket of %s: %w", vm.Key, err)
	}
	e.armTunnelRearm(vm, gen, expires)
	return ticket, expires, nil
}

// TunnelTicketTTL is how long the tickets of the lane's tunnel `.vv`
// files open new links.
func (e *Env) TunnelTicketTTL() time.Duration { return e.cfg.settings.TunnelTicketTTL }

func (e *Env) vmOf(k static.Key) *VM {
	for _, vm := range e.VMs {
		if vm != nil && vm.Key == k {
			return vm
		}
	}
	return nil
}

// bumpTicketGen records a ticket change of vm (under e.mu) and stops the
// re-arm of its previous tunnel ticket, if any.
func (e *Env) bumpTicketGen(vm *VM) uint64 {
	t := &e.tunnel
	if t.gen == nil {
		t.gen, t.cancel = map[int]uint64{}, map[int]chan struct{}{}
	}
	if c := t.cancel[vm.Index]; c != nil {
		close(c)
		delete(t.cancel, vm.Index)
	}
	t.gen[vm.Index]++
	return t.gen[vm.Index]
}

// armTunnelRearm (under e.mu) waits for expires, then gives vm a fresh
// ticket without expiry unless its ticket changed since gen.
func (e *Env) armTunnelRearm(vm *VM, gen uint64, expires time.Time) {
	stop := make(chan struct{})
	e.tunnel.cancel[vm.Index] = stop
	e.arms.Add(1)
	go func() {
		defer e.arms.Done()
		timer := time.NewTimer(time.Until(expires))
		defer timer.Stop()
		select {
		case <-stop:
			return
		case <-e.closed:
			return
		case <-timer.C:
		}
		e.rearmTunnel(vm, gen)
	}()
}

// rearmTunnel replaces vm's expired tunnel ticket by one without expiry.
func (e *Env) rearmTunnel(vm *VM, gen uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), qemu.DefaultQMPTimeout)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-e.closed:
			cancel()
		case <-done:
		}
	}()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tunnel.gen[vm.Index] != gen {
		return // a later tunnel .vv or SetTicket replaced that ticket
	}
	delete(e.tunnel.cancel, vm.Index)
	e.bumpTicketGen(vm)
	if _, err := vm.SetTicket(ctx); err != nil {
		e.log.Warn("re-arming the ticket after a tunnel ticket expired", "vm", vm.String(), "err", err)
		return
	}
	if err := e.writeSources(); err != nil {
		e.log.Warn("writing sources.yaml after re-arming a ticket", "err", err)
		return
	}
	if err := e.target.Load(ctx, e.Sources()); err != nil {
		e.log.Warn("the proxy under test did not take the re-armed ticket", "vm", vm.String(), "err", err)
		return
	}
	e.log.Info("tunnel ticket expired: fresh ticket without expiry set", "vm", vm.String())
}
