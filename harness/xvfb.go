package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/internal/tail"
)

// peerPid is the pid of the process at the other end of a unix socket.
func peerPid(c *net.UnixConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	pid := -1
	raw.Control(func(fd uintptr) {
		if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

// Xvfb is a private X server.
type Xvfb struct {
	Display string // ":N"
	child   *proc.Child
}

// StartXvfb starts Xvfb on a free display (-displayfd) with a 1024x768
// screen and no TCP listener. -noreset matters: by default an X server
// resets when its last client disconnects, so the readiness probe's own
// disconnect made the next client fail ("cannot open display") while the
// server reset (4 of 15 runs on a loaded machine).
func StartXvfb(ctx context.Context) (*Xvfb, error) {
	bin, err := exec.LookPath("Xvfb")
	if err != nil {
		return nil, fmt.Errorf("harness: Xvfb not found (install xvfb, or run make deps): %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(bin, "-displayfd", "3", "-screen", "0", "1024x768x24", "-nolisten", "tcp", "-noreset")
	cmd.ExtraFiles = []*os.File{w}
	var stderr syncbuf.Buffer // read here while the copier writes
	cmd.Stderr = &stderr
	child, err := proc.Start(cmd)
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("harness: start Xvfb: %w", err)
	}
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 32)
		n, _ := r.Read(b)
		got <- strings.TrimSpace(string(b[:n]))
	}()
	var d string
	select {
	case d = <-got:
	case <-ctx.Done():
		child.Stop(time.Second)
		return nil, fmt.Errorf("harness: Xvfb: %w", ctx.Err())
	}
	if d == "" {
		child.Stop(time.Second)
		return nil, fmt.Errorf("harness: Xvfb gave no display: %s", tail.Lines(stderr.String(), 5))
	}
	// Xvfb reports its display on -displayfd before it accepts clients
	// (measured: 7 of 10 immediate connections failed), so wait until
	// an X connection setup succeeds — with this Xvfb: while other lanes
	// start and stop theirs, a socket of the same display number can
	// still belong to a dying server.
	giveUp := time.After(10 * time.Second)
	for !x11Ready(d, child.Pid()) {
		select {
		case <-giveUp:
			child.Stop(time.Second)
			return nil, fmt.Errorf("harness: Xvfb on :%s did not accept a client within 10 s: %s", d, tail.Lines(stderr.String(), 5))
		case <-child.Exited():
			return nil, fmt.Errorf("harness: Xvfb exited: %s", tail.Lines(stderr.String(), 5))
		case <-ctx.Done():
			child.Stop(time.Second)
			return nil, fmt.Errorf("harness: Xvfb never accepted a client: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return &Xvfb{Display: ":" + d, child: child}, nil
}

// x11Ready reports whether both of display d's unix sockets (abstract,
// which libX11 tries first, and the file) belong to pid and complete an
// X11 connection setup.
func x11Ready(d string, pid int) bool {
	return x11Accepts("@/tmp/.X11-unix/X"+d, pid) && x11Accepts("/tmp/.X11-unix/X"+d, pid)
}

func x11Accepts(addr string, pid int) bool {
	c, err := net.DialTimeout("unix", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	if peerPid(c.(*net.UnixConn)) != pid {
		return false
	}
	c.SetDeadline(time.Now().Add(time.Second))
	// Little-endian setup request, protocol 11.0, no authorization.
	if _, err := c.Write([]byte{'l', 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		return false
	}
	var status [1]byte
	_, err = io.ReadFull(c, status[:])
	return err == nil && status[0] == 1
}

// Close stops the X server.
func (x *Xvfb) Close() error {
	if x == nil {
		return nil
	}
	x.child.Stop(2 * time.Second)
	return nil
}

// CaptureRoot grabs the whole X screen (ImageMagick import).
func (x *Xvfb) CaptureRoot(ctx context.Context) (*Image, error) {
	cmd := exec.CommandContext(ctx, "import", "-display", x.Display, "-window", "root", "-depth", "8", "ppm:-")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("harness: import -window root: %w", err)
	}
	return DecodePPM(out)
}
