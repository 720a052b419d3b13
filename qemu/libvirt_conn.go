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

// Libvirt selects the libvirt backend: the VM becomes a transient domain
// on the libvirtd at uri. Accepted forms: "qemu:///system" (local unix
// socket), "qemu+unix:///system?socket=PATH", "unix:///PATH/libvirt-sock",
// "qemu+tcp://HOST[:PORT]/system" and "tcp://HOST[:PORT]" (port 16509 by
// default).
func Libvirt(uri string) Option {
	return func(c *config) error {
		if _, err := parseLibvirtURI(uri); err != nil {
			return err
		}
		c.libvirtURI = uri
		return nil
	}
}

// parseLibvirtURI normalises the accepted forms to a go-libvirt URI.
func parseLibvirtURI(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return nil, configErr("Libvirt", s, "want qemu:///system, qemu+tcp://host/system, tcp://host:port or unix:///path")
	}
	switch u.Scheme {
	case "qemu", "qemu+unix", "qemu+tcp":
		if u.Scheme == "qemu" && u.Host != "" {
			return nil, configErr("Libvirt", s, "qemu://host means TLS, which is not supported; use qemu+tcp://")
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/system"
		}
		return u, nil
	case "tcp":
		if u.Host == "" {
			return nil, configErr("Libvirt", s, "no host")
		}
		return &url.URL{Scheme: "qemu+tcp", Host: u.Host, Path: "/system"}, nil
	case "unix":
		if u.Path == "" {
			return nil, configErr("Libvirt", s, "no socket path")
		}
		q := url.Values{"socket": {u.Path}}
		return &url.URL{Scheme: "qemu+unix", Path: "/system", RawQuery: q.Encode()}, nil
	}
	return nil, configErr("Libvirt", s, "unsupported scheme %q", u.Scheme)
}
