package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/digitalocean/go-libvirt"
)

// The serial log of a domain on a remote host (RemoteHost): the serial
// port is a pty on that host, and its output comes back through a
// libvirt console stream into the local serial log.
//
// A pty drops what the guest writes while no one has it open, so the
// domain is created paused and resumed only once the console is
// attached. libvirt gives no reply when a console stream is open (the
// call returns when the stream ends), so attachConsole proves it with a
// second, non-forcing open: libvirt refuses that one with "Active
// console session exists" when ours came first, or ours (which forces)
// kicks it out (the probe's stream fails with an RPC error) when it came
// second. Either way ours holds the console when the probe returns;
// measured on libvirt 9.0, both orders happen.

// attachConsole starts streaming the serial console into the serial log
// and returns once it is attached. The stream ends when the domain stops
// or the connection closes; consoleDone is closed then.
func (d *Domain) attachConsole(ctx context.Context) error {
	f, err := os.OpenFile(d.serialPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("qemu: serial log: %w", err)
	}
	d.consoleDone = make(chan struct{})
	ours := make(chan error, 1)
	go func() {
		defer close(d.consoleDone)
		err := d.l.DomainOpenConsole(d.dom, libvirt.OptString{}, f, uint32(libvirt.DomainConsoleForce))
		f.Close()
		ours <- err
	}()
	probe := make(chan error, 1)
	go func() { probe <- d.l.DomainOpenConsole(d.dom, libvirt.OptString{}, io.Discard, 0) }()
	select {
	case err := <-ours:
		<-probe
		return fmt.Errorf("qemu: %s: serial console: %w", d, consoleErr(err))
	case err := <-probe:
		var le libvirt.Error
		switch {
		case errors.As(err, &le) && le.Code == uint32(libvirt.ErrOperationFailed) && strings.Contains(le.Message, "Active console session"):
			return nil // ours came first
		case errors.As(err, &le) && le.Code == uint32(libvirt.ErrRPC):
			return nil // ours came second and kicked the probe out
		}
		// Anything else (no console, domain gone) fails ours too.
		select {
		case oerr := <-ours:
			err = errors.Join(err, oerr)
		case <-ctx.Done():
		}
		return fmt.Errorf("qemu: %s: serial console: %w", d, consoleErr(err))
	case <-ctx.Done():
		return fmt.Errorf("qemu: %s: serial console: %w", d, context.Cause(ctx))
	}
}

func consoleErr(err error) error {
	if err == nil {
		return errors.New("the console stream ended at once")
	}
	return err
}
