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
	case "qemu+tls", "qemu+ssh", "qemu+libssh", "qemu+libssh2":
		// go-libvirt's own dialers read the URI's parameters (pkipath,
		// no_verify, keyfile, known_hosts, socket) as libvirt does.
		return connectLibvirt(ctx, u, func() (*libvirt.Libvirt, error) { return libvirt.ConnectToURI(u) })
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
	return connectLibvirt(ctx, u, func() (*libvirt.Libvirt, error) {
		l := libvirt.NewWithDialer(dialer)
		return l, l.ConnectToURI(libvirt.RemoteURI(u))
	})
}

// connectLibvirt runs connect but returns when ctx ends (a connection
// made after that is closed). Its errors match ErrHostLost: the host's
// libvirtd cannot be reached.
func connectLibvirt(ctx context.Context, u *url.URL, connect func() (*libvirt.Libvirt, error)) (*libvirt.Libvirt, error) {
	type result struct {
		l   *libvirt.Libvirt
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := connect()
		done <- result{l, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("qemu: libvirt %s: %w: %w", u.Redacted(), ErrHostLost, r.err)
		}
		return r.l, nil
	case <-ctx.Done():
		go func() { // do not leak a connection made after we gave up
			if r := <-done; r.err == nil {
				r.l.Disconnect()
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
// default), "qemu+tls://HOST[:PORT]/system" (port 16514; client
// certificates from /etc/pki/libvirt or ?pkipath=DIR, as virsh reads
// them) and "qemu+ssh://[USER@]HOST[:PORT]/system" (to the remote
// libvirt socket through Go's ssh client: keys from ~/.ssh or
// ?keyfile=PATH, host keys from ~/.ssh/known_hosts). A libvirtd on
// another machine also needs RemoteHost.
func Libvirt(uri string) Option {
	return func(c *config) error {
		if _, err := parseLibvirtURI(uri); err != nil {
			return err
		}
		c.libvirtURI = uri
		return nil
	}
}

// CheckLibvirtURI reports whether uri is a libvirt URI Libvirt accepts
// (a *ConfigError saying why not).
func CheckLibvirtURI(uri string) error {
	_, err := parseLibvirtURI(uri)
	return err
}

// parseLibvirtURI normalises the accepted forms to a go-libvirt URI.
func parseLibvirtURI(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return nil, configErr("Libvirt", s, "want qemu:///system, qemu+tcp://host/system, qemu+tls://host/system, qemu+ssh://host/system, tcp://host:port or unix:///path")
	}
	switch u.Scheme {
	case "qemu", "qemu+unix", "qemu+tcp", "qemu+tls", "qemu+ssh", "qemu+libssh", "qemu+libssh2":
		if u.Scheme == "qemu" && u.Host != "" {
			u.Scheme = "qemu+tls" // libvirt's meaning of qemu://HOST
		}
		if u.Scheme != "qemu" && u.Scheme != "qemu+unix" && u.Hostname() == "" {
			return nil, configErr("Libvirt", s, "no host")
		}
		if u.User != nil {
			if _, hasPassword := u.User.Password(); hasPassword {
				return nil, configErr("Libvirt", u.Redacted(), "a password in the URI would show in logs and ps; use ssh keys")
			}
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
