package qemu

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/fixtures/guest"
	"github.com/spiceharness/spiceharness/internal/proc"
)

// StateDirPrefix starts the name of every per-VM state dir
// (ROOT/sh-NNNN). Short on purpose: the QMP socket lives inside and unix
// socket paths stop at 107 bytes.
const StateDirPrefix = "sh-"

// makeStateDir creates ROOT/sh-XXXX (mode 0711, so a qemu run by
// libvirt as another user can reach files inside it by name) and records
// this process as its owner.
func makeStateDir(root string) (string, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("qemu: state root: %w", err)
	}
	dir, err := os.MkdirTemp(root, StateDirPrefix)
	if err != nil {
		return "", fmt.Errorf("qemu: state dir: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("qemu: state dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerName), []byte(ownerRecord(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("qemu: state dir: %w", err)
	}
	return dir, nil
}

// ownerRecord identifies a live process across pid reuse: "PID
// STARTTIME", the start time in clock ticks after boot.
func ownerRecord(pid int) string {
	return strconv.Itoa(pid) + " " + procStartTime(pid) + "\n"
}

// procStartTime is pid's start time (/proc/PID/stat field 22), or ""
// when the process does not exist.
func procStartTime(pid int) string {
	i, err := proc.Lookup(pid)
	if err != nil {
		return ""
	}
	return strconv.FormatUint(i.StartTime, 10)
}

// ownerAlive reports whether the process recorded in an owner file still
// runs (same pid, same start time).
func ownerAlive(record string) bool {
	f := strings.Fields(record)
	if len(f) != 2 {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return false
	}
	return procStartTime(pid) == f[1]
}

var sweepOnce sync.Map // root → *sync.Once

// sweepStale runs SweepStateDirs(root) once per root per process.
func sweepStale(root string) {
	o, _ := sweepOnce.LoadOrStore(root, new(sync.Once))
	o.(*sync.Once).Do(func() { SweepStateDirs(root) })
}

// SweepStateDirs removes the state dirs under root left by crashed runs:
// dirs named sh-* whose owner file names a process that is gone. Dirs
// without an owner file are not ours and are left alone. A qemu still
// running from such a dir
// (it should not: it dies with its parent) is killed first. Start calls
// it once per process; it returns the dirs it removed.
func SweepStateDirs(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("qemu: sweep %s: %w", root, err)
	}
	var removed []string
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), StateDirPrefix) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		owner, err := os.ReadFile(filepath.Join(dir, ownerName))
		if err != nil || ownerAlive(string(owner)) {
			continue
		}
		killStrayQemu(dir)
		if os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
	}
	return removed, nil
}

// killStrayQemu kills the qemu recorded in dir's pid file if it still
// runs with dir on its command line.
func killStrayQemu(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, pidName))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	i, err := proc.Lookup(pid)
	if err != nil || !slices.ContainsFunc(i.Cmdline, func(a string) bool { return strings.Contains(a, dir+"/") }) {
		return
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

var guestImage struct {
	sync.Mutex
	done map[string]bool
}

// builtinGuestImage writes the built-in guest once to a shared cache
// file under root (named after the guest's hash, mode 0644 so libvirt's
// qemu user can read it) and returns its path. An existing file is
// reused only if its content is exactly the image.
func builtinGuestImage(root string) (string, error) {
	path := filepath.Join(root, "spice-harness-guest-"+guest.Hash()+".img")
	guestImage.Lock()
	defer guestImage.Unlock()
	if guestImage.done[path] {
		return path, nil
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, guest.Image()) {
		if err := guest.WriteImage(path); err != nil {
			return "", fmt.Errorf("qemu: built-in guest image: %w", err)
		}
	}
	if guestImage.done == nil {
		guestImage.done = map[string]bool{}
	}
	guestImage.done[path] = true
	return path, nil
}

// Ports handed out recently by this process are not handed out again
// for a while, so parallel Starts here never race for one probe result.
// Other processes can still take a port between the probe and qemu's
// bind; Start retries on that.
var recentPorts = struct {
	sync.Mutex
	at map[int]time.Time
}{at: map[int]time.Time{}}

const portQuarantine = time.Minute

// pickPort returns a TCP port on addr that was free a moment ago (a
// variable so a test can make the probe lie).
var pickPort = probePort

func probePort(addr string) (int, error) {
	for range 64 {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			return 0, fmt.Errorf("qemu: probe a free port on %s: %w", addr, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		recentPorts.Lock()
		for p, at := range recentPorts.at { // keep the map small in long runs
			if time.Since(at) > portQuarantine {
				delete(recentPorts.at, p)
			}
		}
		t, seen := recentPorts.at[port]
		if !seen || time.Since(t) > portQuarantine {
			recentPorts.at[port] = time.Now()
			recentPorts.Unlock()
			return port, nil
		}
		recentPorts.Unlock()
	}
	return 0, fmt.Errorf("qemu: no free port on %s", addr)
}
