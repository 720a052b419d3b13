package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/digitalocean/go-libvirt"
)

// The serial log of a domain on a remote host (RemoteHost): the serial
// port is a pty on that host, and its output comes back through a
// libvirt console stream into the local serial log.
//
// A pty drops what the guest writes while no one has it open, so the
// domain is created paused and resumed only once the console is
// attached. go-libvirt's console call returns only when the stream
// ends, but in its two-way form it starts reading what to send to the
// guest right after libvirt accepted the stream: the first Read of
// consoleInput is the "attached" event. consoleInput never sends a byte
// (the guest's serial input stays silent); it ends when the VM closes.
//
// (A second, non-forcing open as a probe, which libvirt refuses while a
// console is attached, was tried first: under load libvirt 9.0 then
// sometimes failed one stream with "stream is not open", or left the
// domain unable to resume.)

// consoleInput is the guest-bound half of the console stream.
type consoleInput struct {
	attached chan struct{} // closed at the first Read
	once     sync.Once
	stop     chan struct{} // closed by Close: Read returns io.EOF
}

func (c *consoleInput) Read([]byte) (int, error) {
	c.once.Do(func() { close(c.attached) })
	<-c.stop
	return 0, io.EOF
}

// attachConsole starts streaming the serial console into the serial log
// and returns once libvirt has attached it. The stream ends when the
// domain stops or the connection closes; consoleDone is closed then.
func (d *Domain) attachConsole(ctx context.Context) error {
	f, err := os.OpenFile(d.serialPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("qemu: serial log: %w", err)
	}
	in := &consoleInput{attached: make(chan struct{}), stop: make(chan struct{})}
	d.consoleIn = in
	d.consoleDone = make(chan struct{})
	ended := make(chan error, 1)
	go func() {
		defer close(d.consoleDone)
		err := d.l.DomainOpenConsoleBidirectional(d.dom, libvirt.OptString{}, in, f, uint32(libvirt.DomainConsoleForce))
		f.Close()
		ended <- err
	}()
	select {
	case <-in.attached:
		return nil
	case err := <-ended:
		if err == nil {
			err = errors.New("the console stream ended at once")
		}
		return fmt.Errorf("qemu: %s: serial console: %w", d, err)
	case <-ctx.Done():
		return fmt.Errorf("qemu: %s: serial console: %w", d, context.Cause(ctx))
	}
}

// stopConsole ends the guest-bound half of the console stream (after
// the connection closed, so nothing reaches the guest).
func (d *Domain) stopConsole() {
	if d.consoleIn != nil {
		select {
		case <-d.consoleIn.stop:
		default:
			close(d.consoleIn.stop)
		}
	}
}
