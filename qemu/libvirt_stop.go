package qemu

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/spiceharness/spiceharness/internal/tail"
)

// watch waits for the domain to stop (or the connection to drop), then
// records the exit.
func (d *Domain) watch(life <-chan libvirt.DomainEventLifecycleMsg) {
	defer close(d.watchDone)
	status, hostLost := "", false
	for status == "" {
		select {
		case e, ok := <-life:
			if !ok {
				status = "libvirt event stream ended"
				break
			}
			if e.Dom.Name != d.cfg.name {
				continue
			}
			switch libvirt.DomainEventType(e.Event) {
			case libvirt.DomainEventStopped:
				status = "domain stopped: " + stoppedReason(e.Detail)
			case libvirt.DomainEventCrashed:
				status = "domain crashed"
			}
		case <-d.l.Disconnected():
			status = "connection to libvirtd lost (the domain is autodestroyed)"
			if d.HostName() != "" {
				status = "connection to the libvirtd of host " + d.HostName() + " lost (" + d.uri.Redacted() + ")"
			}
			hostLost = true
		}
	}
	close(d.stopped)
	e := &ExitError{VM: d.String(), Status: status, Code: -1, hostLost: hostLost && !d.core.expected.Load()}
	e.Log = tail.File(d.logPath, 20)
	e.Serial = tail.File(d.serialPath, 10)
	d.core.exit(e)
	if !e.Expected {
		d.cfg.logger.Error("qemu: domain ended unexpectedly", "vm", d.String(), "status", status)
	}
	go func() { // keep go-libvirt's sender unblocked until it closes
		for range life {
		}
	}()
}

func stoppedReason(detail int32) string {
	switch libvirt.DomainEventStoppedDetailType(detail) {
	case libvirt.DomainEventStoppedShutdown:
		return "shutdown"
	case libvirt.DomainEventStoppedDestroyed:
		return "destroyed"
	case libvirt.DomainEventStoppedCrashed:
		return "crashed"
	case libvirt.DomainEventStoppedFailed:
		return "failed"
	}
	return "detail " + strconv.Itoa(int(detail))
}

// Kill destroys the domain (virDomainDestroy) and waits until libvirt
// reports it stopped. The exit counts as expected.
func (d *Domain) Kill() error {
	if d == nil || d.dom.Name == "" {
		return nil
	}
	d.killMu.Lock()
	defer d.killMu.Unlock()
	select {
	case <-d.stopped:
		return nil
	default:
	}
	d.core.expected.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), killGrace+15*time.Second)
	defer cancel()
	_, err := call(ctx, func() (struct{}, error) { return struct{}{}, d.l.DomainDestroyFlags(d.dom, 0) })
	if err != nil {
		select {
		case <-d.stopped: // it was stopping anyway
			return nil
		case <-time.After(2 * time.Second):
		}
		return fmt.Errorf("qemu: %s: destroy: %w", d, err)
	}
	select {
	case <-d.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("qemu: %s: no stop event after destroy", d)
	}
}

// Close quits qemu over QMP, destroys the domain if it is still there
// after 5 s, closes the libvirt connection and removes the state dir.
// See VM.Close.
func (d *Domain) Close() error {
	if d == nil {
		return nil
	}
	d.closeOnce.Do(func() { d.closeErr = d.shutdown() })
	return d.closeErr
}

func (d *Domain) shutdown() error {
	created := d.dom.Name != ""
	crashed := d.core.crashed(created)
	var err error
	if created {
		err = d.core.quitOrKill(d.stopped, d.cfg.logger, d.Kill)
	}
	if d.l != nil && d.l.IsConnected() {
		if verr := d.deleteVolumes(); err == nil {
			err = verr
		}
	}
	d.hangUp()
	<-d.watchDone
	d.stopConsole()
	if d.consoleDone != nil {
		<-d.consoleDone // go-libvirt ends every stream when its connection closes
	}
	return d.core.finishClose(d.stateDir, d.cfg.keep, crashed, err)
}

// hangUp closes the libvirt connection, then ends the event
// subscriptions: in that order, see Domain.evCancel.
func (d *Domain) hangUp() {
	if d.l == nil {
		return
	}
	d.l.Disconnect()
	if d.evCancel != nil {
		d.evCancel()
	}
}
