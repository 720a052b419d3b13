package testhosts

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiceharness/spiceharness/internal/proc"
)

// Range is where host addresses come from: 198.18.0.0/15, reserved for
// network benchmarks (RFC 2544), so they never collide with a real
// network's.
var Range = netip.MustParsePrefix("198.18.0.0/15")

// ip runs `ip ARGS…` and returns its combined output in the error.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testhosts: ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// lockAllocation takes the machine-wide lock under which rigs pick
// addresses and sweep; the returned func releases it (idempotent).
func lockAllocation() (func(), error) {
	path := filepath.Join(os.TempDir(), "spice-harness-testhosts.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testhosts: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("testhosts: lock: %w", err)
	}
	var once sync.Once
	return func() { once.Do(func() { f.Close() }) }, nil
}

// freeBlocks returns the first n /30 blocks of Range that no interface
// of the root namespace has an address in.
func freeBlocks(n int) ([]netip.Addr, error) {
	used := map[netip.Addr]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("testhosts: %w", err)
	}
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil || !Range.Contains(pfx.Addr()) {
			continue
		}
		used[block(pfx.Addr())] = true
	}
	var out []netip.Addr
	for b := Range.Addr(); Range.Contains(b) && len(out) < n; b = block(b).Next().Next().Next().Next() {
		if !used[b] {
			out = append(out, b)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("testhosts: no %d free /30 blocks left in %s", n, Range)
	}
	return out, nil
}

// block is the first address of a's /30.
func block(a netip.Addr) netip.Addr {
	b := a.As4()
	b[3] &^= 3
	return netip.AddrFrom4(b)
}

// makeNetns makes h's namespace and veth pair and sets their addresses.
func makeNetns(h *Host) error {
	steps := [][]string{
		{"netns", "add", h.Netns},
		{"link", "add", h.Veth, "type", "veth", "peer", "name", "eth0", "netns", h.Netns},
		{"addr", "add", h.Peer.String() + "/30", "dev", h.Veth},
		{"link", "set", h.Veth, "up"},
		{"-n", h.Netns, "addr", "add", h.Addr.String() + "/30", "dev", "eth0"},
		{"-n", h.Netns, "link", "set", "eth0", "up"},
		{"-n", h.Netns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// listNetns lists the network namespaces whose name starts with
// prefix-.
func listNetns(prefix string) ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("testhosts: ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.HasPrefix(name, prefix+"-") {
			names = append(names, name)
		}
	}
	return names, nil
}

// netnsPids lists the processes in namespace name.
func netnsPids(name string) []int {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// removeHost kills every process in the namespace, waits until they are
// gone, deletes the veth and the namespace and removes dir. Each part
// is skipped when already gone.
func removeHost(netns, veth, dir string, d *daemon) error {
	var errs []error
	for range 3 { // a process may fork while we kill
		pids := netnsPids(netns)
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		if err := waitGone(pids, 10*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("testhosts: %s: %w", netns, err))
		}
	}
	if d != nil {
		d.reap()
	}
	if _, err := net.InterfaceByName(veth); err == nil {
		errs = append(errs, ip("link", "del", veth))
	}
	if _, err := os.Stat(filepath.Join("/run/netns", netns)); err == nil {
		errs = append(errs, ip("netns", "del", netns))
	}
	if dir != "" {
		errs = append(errs, os.RemoveAll(dir))
	}
	return errors.Join(errs...)
}

// waitGone waits until every pid has exited (pidfd readiness: an event,
// not a poll of /proc), at most bound.
func waitGone(pids []int, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for _, p := range pids {
		fd, err := unix.PidfdOpen(p, 0)
		if err != nil {
			continue // already gone
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			ms := int(time.Until(deadline).Milliseconds())
			if ms <= 0 {
				unix.Close(fd)
				return fmt.Errorf("pid %d still runs after SIGKILL", p)
			}
			n, err := unix.Poll(fds, ms)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n > 0 {
				break
			}
		}
		unix.Close(fd)
	}
	return nil
}

// Sweep removes what rigs with prefix left behind: namespaces,
// interfaces and directories whose owner process is gone. With force it
// removes them all (scripts/testhosts.sh down). It returns the
// namespaces and directories removed.
func Sweep(prefix string, force bool) ([]string, error) {
	var removed []string
	var errs []error
	names, err := listNetns(prefix)
	if err != nil {
		return nil, err
	}
	tmp := os.TempDir()
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
		dir := filepath.Join(tmp, n)
		if !force && owned(dir, n) {
			continue
		}
		errs = append(errs, removeHost(n, vethOf(prefix, n), dir, nil))
		removed = append(removed, n)
	}
	// Directories and interfaces without a namespace (a run killed
	// half-way through making or removing a host).
	dirs, _ := filepath.Glob(filepath.Join(tmp, prefix+"-*"))
	for _, dir := range dirs {
		n := filepath.Base(dir)
		if seen[n] || (!force && owned(dir, n)) {
			continue
		}
		errs = append(errs, removeHost(n, vethOf(prefix, n), dir, nil))
		removed = append(removed, dir)
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if !strings.HasPrefix(i.Name, prefix) || !strings.Contains(i.Name, "x") {
			continue
		}
		n := netnsOf(prefix, i.Name)
		if seen[n] || (!force && owned(filepath.Join(tmp, n), n)) {
			continue
		}
		errs = append(errs, ip("link", "del", i.Name))
		removed = append(removed, i.Name)
	}
	return removed, errors.Join(errs...)
}

// owned reports whether the rig that made namespace n still runs: its
// directory's owner record names a live process, or it is a detached
// (manual) rig, or the owner record is not written yet by a live pid
// named in n.
func owned(dir, n string) bool {
	rec, err := os.ReadFile(filepath.Join(dir, "owner"))
	if err == nil {
		return string(rec) == "detached\n" || alive(string(rec))
	}
	parts := strings.Split(n, "-")
	if len(parts) == 3 { // PREFIX-PID-K
		if pid, err := strconv.Atoi(parts[1]); err == nil {
			return syscall.Kill(pid, 0) == nil
		}
	}
	return false
}

// vethOf is the root-side interface of namespace n: PREFIX-ID-K ->
// PREFIXIDxK, PREFIX-K -> PREFIXxK.
func vethOf(prefix, n string) string {
	parts := strings.Split(strings.TrimPrefix(n, prefix+"-"), "-")
	if len(parts) == 2 {
		return prefix + parts[0] + "x" + parts[1]
	}
	return prefix + "x" + parts[0]
}

// netnsOf is vethOf's inverse.
func netnsOf(prefix, veth string) string {
	id, k, _ := strings.Cut(strings.TrimPrefix(veth, prefix), "x")
	if id == "" {
		return prefix + "-" + k
	}
	return prefix + "-" + id + "-" + k
}

// startTime is pid's start time in clock ticks after boot, "" when it
// does not exist.
func startTime(pid int) string {
	i, err := proc.Lookup(pid)
	if err != nil {
		return ""
	}
	return strconv.FormatUint(i.StartTime, 10)
}
