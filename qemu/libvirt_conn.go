package qemu

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// go-libvirt plumbing: dialling libvirtd and bounding its blocking calls.

// dialLibvirt connects to libvirtd at u within ctx.
func dialLibvirt(ctx context.Context, u *url.URL) (*libvirt.Libvirt, error) {
	timeout := 15 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	var dialer socket.Dialer
	switch u.Scheme {
	case "qemu+tcp":
		opts := []dialers.RemoteOption{dialers.WithRemoteTimeout(timeout)}
		if p := u.Port(); p != "" {
			opts = append(opts, dialers.UsePort(p))
		}
		dialer = dialers.NewRemote(u.Hostname(), opts...)
	default:
		opts := []dialers.LocalOption{dialers.WithLocalTimeout(timeout)}
		if s := u.Query().Get("socket"); s != "" {
			opts = append(opts, dialers.WithSocket(s))
		}
		dialer = dialers.NewLocal(opts...)
	}
	l := libvirt.NewWithDialer(dialer)
	done := make(chan error, 1)
	go func() { done <- l.ConnectToURI(libvirt.RemoteURI(u)) }()
	select {
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("qemu: libvirt %s: %w", u.Redacted(), err)
		}
		return l, nil
	case <-ctx.Done():
		go func() { // do not leak a connection made after we gave up
			if <-done == nil {
				l.Disconnect()
			}
		}()
		return nil, fmt.Errorf("qemu: libvirt %s: %w", u.Redacted(), ctx.Err())
	}
}

// call runs fn (a blocking go-libvirt call) but returns when ctx ends;
// fn then finishes on its own (every go-libvirt call ends when the
// connection closes, which Close guarantees).
func call[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	rc := make(chan result, 1)
	go func() {
		v, err := fn()
		rc <- result{v, err}
	}()
	select {
	case r := <-rc:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, context.Cause(ctx)
	}
}
