package testhosts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/internal/tail"
)

// daemonScript runs inside the host's network namespace, in a mount
// namespace of its own: private libvirt directories, then virtlogd in
// the background and libvirtd in its place. RIG_DIR is the host's
// directory.
//
// /dev/kvm gets a node of its own there, mode 0666 (what Debian's udev
// rule and scripts/services.sh set): the machine's node is root 0600
// without udev and root:kvm 0660 after qemu's package scripts ran, and
// when libvirt's qemu user cannot open it libvirt 9 re-probes qemu's
// capabilities at every domain start, which then takes 60 s (measured).
const daemonScript = `
mkdir -p /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt
mount -t tmpfs -o mode=0755 tmpfs /run/libvirt
mount --bind "$RIG_DIR/lib" /var/lib/libvirt
mount --bind "$RIG_DIR/cache" /var/cache/libvirt
mount --bind "$RIG_DIR/log" /var/log/libvirt
mount --bind "$RIG_DIR/etc" /etc/libvirt
if [ -c /dev/kvm ]; then
  mkdir -p "$RIG_DIR/dev"
  mount -t tmpfs -o mode=0755 tmpfs "$RIG_DIR/dev"
  set -- $(stat -c '0x%t 0x%T' /dev/kvm)
  mknod -m 0666 "$RIG_DIR/dev/kvm" c "$1" "$2"
  mount --bind "$RIG_DIR/dev/kvm" /dev/kvm
fi
NOTIFY_SOCKET="$RIG_DIR/virtlogd.notify" virtlogd -p "$RIG_DIR/virtlogd.pid" &
NOTIFY_SOCKET="$RIG_DIR/libvirtd.notify" exec libvirtd --listen -f "$RIG_DIR/etc/libvirtd.conf" -p "$RIG_DIR/libvirtd.pid"
`

// readyTimeout bounds a host's daemons' start (libvirtd probes qemu's
// capabilities on its first start: ~1-5 s here).
const readyTimeout = 60 * time.Second

// daemon is a host's libvirtd (and the virtlogd it started).
type daemon struct {
	child *proc.Child // nil when detached
	pid   int         // libvirtd
}

// startDaemons starts h's virtlogd and libvirtd and waits until both
// said READY=1 on their notify sockets.
func (r *Rig) startDaemons(ctx context.Context, h *Host) error {
	start := time.Now()
	var socks []*net.UnixConn
	for _, n := range []string{"virtlogd", "libvirtd"} {
		path := filepath.Join(h.Dir, n+".notify")
		os.Remove(path)
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			return fmt.Errorf("testhosts: %s: notify socket: %w", h.Name, err)
		}
		defer c.Close()
		socks = append(socks, c)
	}
	logf, err := os.OpenFile(filepath.Join(h.Dir, "daemons.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testhosts: %w", err)
	}
	defer logf.Close() // the children keep their own descriptor
	cmd := exec.Command("ip", "netns", "exec", h.Netns, "unshare", "--mount", "--propagation", "private", "sh", "-ec", daemonScript)
	cmd.Env = append(os.Environ(), "RIG_DIR="+h.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	d := &daemon{}
	if r.opts.Detached {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("testhosts: %s: %w", h.Name, err)
		}
		d.pid = cmd.Process.Pid
		defer cmd.Process.Release()
	} else {
		if d.child, err = proc.Start(cmd); err != nil {
			return fmt.Errorf("testhosts: %s: %w", h.Name, err)
		}
		d.pid = d.child.Pid()
	}
	h.daemon = d
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for i, c := range socks {
		if err := d.waitReady(ctx, c); err != nil {
			what := []string{"virtlogd", "libvirtd"}[i]
			return fmt.Errorf("testhosts: %s: %s did not start: %w\n  log (tail):\n%s", h.Name, what, err, tail.File(logf.Name(), 15))
		}
	}
	r.opts.Logf("testhosts: %s ready at %s (netns %s) in %v", h.Name, h.URI, h.Netns, time.Since(start).Round(time.Millisecond))
	return nil
}

// waitReady waits for READY=1 on c, the daemon's exit, or ctx's end.
func (d *daemon) waitReady(ctx context.Context, c *net.UnixConn) error {
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				got <- err
				return
			}
			for _, l := range strings.Split(string(buf[:n]), "\n") {
				if l == "READY=1" {
					got <- nil
					return
				}
			}
		}
	}()
	var exited <-chan struct{}
	if d.child != nil {
		exited = d.child.Exited()
	}
	select {
	case err := <-got:
		return err
	case <-exited:
		c.Close()
		<-got
		return fmt.Errorf("exited (%v)", d.child.ProcessState())
	case <-ctx.Done():
		c.Close() // ends the reader
		<-got
		return context.Cause(ctx)
	}
}

// killLibvirtd kills libvirtd with SIGKILL and waits until it is gone.
func (d *daemon) killLibvirtd() error {
	if err := syscall.Kill(d.pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("testhosts: kill libvirtd: %w", err)
	}
	if d.child != nil {
		<-d.child.Exited()
		return nil
	}
	return waitGone([]int{d.pid}, 10*time.Second)
}

// reap waits for the child after removeHost killed it.
func (d *daemon) reap() {
	if d.child == nil {
		return
	}
	select {
	case <-d.child.Exited():
	case <-time.After(10 * time.Second):
		// Killed and waited for by pidfd already: only a stuck reap.
		fmt.Fprintln(os.Stderr, "testhosts:", errors.New("libvirtd not reaped 10 s after SIGKILL"))
	}
}
