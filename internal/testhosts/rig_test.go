package testhosts

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/testenv"
)

const childEnv = "TESTHOSTS_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child())
	}
	testenv.VerifyTestMain(m)
}

// child makes a one-host rig, says where, and waits to be killed: a test
// run killed outright.
func child() int {
	r, err := Up(context.Background(), Options{Hosts: 1})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if os.Getenv(childEnv) == "signal" {
		r.closeOnSignal() // as Start does
	}
	fmt.Println("ready", r.Hosts[0].Netns, r.Hosts[0].Veth, r.Hosts[0].Dir)
	select {}
}

// startChild runs child in a new process and returns its host's parts.
func startChild(t *testing.T, mode string) (cmd *exec.Cmd, netns, veth, dir string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 4 || f[0] != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q, %v", line, err)
	}
	return cmd, f[1], f[2], f[3]
}

// TestIntegrationCleanupOnSignal: SIGTERM (or SIGINT, SIGHUP) to a
// process holding a rig removes the rig before the signal ends it.
func TestIntegrationCleanupOnSignal(t *testing.T) {
	testenv.Short(t, "network namespaces and libvirtd")
	if err := Check(); err != nil {
		testenv.Missing(t, "network namespaces", err.Error())
	}
	cmd, netns, veth, dir := startChild(t, "signal")
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("the child ended with %v, want death by SIGTERM (re-raised after cleanup)", err)
	}
	if left := leftovers(netns, veth, dir); len(left) > 0 {
		t.Errorf("SIGTERM left %v", left)
	}
}

func TestNames(t *testing.T) {
	for _, tt := range []struct{ prefix, netns, veth string }{
		{TestPrefix, "shrig-4194304-15", "shrig4194304x15"},
		{ManualPrefix, "shman-3", "shmanx3"},
	} {
		if got := vethOf(tt.prefix, tt.netns); got != tt.veth || len(got) > 15 {
			t.Errorf("vethOf(%q) = %q, want %q (at most 15 characters)", tt.netns, got, tt.veth)
		}
		if got := netnsOf(tt.prefix, tt.veth); got != tt.netns {
			t.Errorf("netnsOf(%q) = %q, want %q", tt.veth, got, tt.netns)
		}
	}
	if b := block(netip.MustParseAddr("198.18.1.7")); b != netip.MustParseAddr("198.18.1.4") {
		t.Errorf("block(198.18.1.7) = %v, want 198.18.1.4", b)
	}
	bs, err := freeBlocks(3)
	if err != nil || len(bs) != 3 {
		t.Fatalf("freeBlocks(3) = %v, %v", bs, err)
	}
	for _, b := range bs {
		if !Range.Contains(b) || b != block(b) {
			t.Errorf("free block %v: not a /30 of %v", b, Range)
		}
	}
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// leftovers lists what of a host is still there.
func leftovers(netns, veth, dir string) []string {
	var left []string
	if exists(filepath.Join("/run/netns", netns)) {
		left = append(left, "netns "+netns)
		if pids := netnsPids(netns); len(pids) > 0 {
			left = append(left, fmt.Sprintf("processes %v", pids))
		}
	}
	if _, err := net.InterfaceByName(veth); err == nil {
		left = append(left, "veth "+veth)
	}
	if exists(dir) {
		left = append(left, "dir "+dir)
	}
	return left
}

// whole reports whether leftovers lists a namespace, a veth and a dir.
func whole(left []string) bool {
	n := 0
	for _, l := range left {
		if strings.HasPrefix(l, "netns ") || strings.HasPrefix(l, "veth ") || strings.HasPrefix(l, "dir ") {
			n++
		}
	}
	return n == 3
}

// TestIntegrationRig: two hosts come up with a libvirtd each on its own
// address, reachable from here; a killed libvirtd stops answering; Close
// leaves nothing behind.
func TestIntegrationRig(t *testing.T) {
	testenv.Short(t, "network namespaces and libvirtd")
	if err := Check(); err != nil {
		testenv.Missing(t, "network namespaces", err.Error())
	}
	start := time.Now()
	r, err := Up(t.Context(), Options{Hosts: 2, TLS: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up: %v", time.Since(start))
	defer r.Close()
	for _, h := range r.Hosts {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(h.Addr.String(), "16509"), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: libvirtd on %s: %v\n%s", h.Name, h.Addr, err, h.LogTail(10))
		}
		c.Close()
		if !Range.Contains(h.Addr) || !Range.Contains(h.Peer) || h.HostSubject == "" || !slices.Contains(h.Labels, "spice-tls") {
			t.Errorf("unexpected host %+v", h)
		}
	}
	if err := r.KillLibvirtd(1); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(r.Hosts[1].Addr.String(), "16509"), 5*time.Second); err == nil {
		c.Close()
		t.Errorf("rig1's libvirtd still answers after KillLibvirtd")
	}
	start = time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("close: %v", time.Since(start))
	for _, h := range r.Hosts {
		if left := leftovers(h.Netns, h.Veth, h.Dir); len(left) > 0 {
			t.Errorf("%s left behind: %v", h.Name, left)
		}
	}
}

// TestIntegrationSweepStale: a run killed outright (SIGKILL: no cleanup
// at all) leaves its host; the next rig's sweep removes every part of it,
// its virtlogd included, and leaves live rigs alone.
func TestIntegrationSweepStale(t *testing.T) {
	testenv.Short(t, "network namespaces and libvirtd")
	if err := Check(); err != nil {
		testenv.Missing(t, "network namespaces", err.Error())
	}
	cmd, netns, veth, dir := startChild(t, "kill")
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if left := leftovers(netns, veth, dir); !whole(left) {
		t.Fatalf("the killed run left only %v; this test needs its whole host", left)
	}

	live, err := Up(t.Context(), Options{Hosts: 1}) // sweeps first
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if left := leftovers(netns, veth, dir); len(left) > 0 {
		t.Errorf("after the sweep, the killed run's host left %v", left)
	}
	if removed, err := Sweep(TestPrefix, false); err != nil || len(removed) > 0 {
		t.Errorf("a second sweep removed %v (%v); want nothing (the live rig is owned)", removed, err)
	}
	if h := live.Hosts[0]; !whole(leftovers(h.Netns, h.Veth, h.Dir)) {
		t.Errorf("the sweep touched the live rig: %v", leftovers(h.Netns, h.Veth, h.Dir))
	}
}
