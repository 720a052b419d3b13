package qemu_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/qemu"
)

// childEnv turns the test binary into the child of
// TestIntegrationNoOrphansAfterSIGKILL.
const childEnv = "QEMU_TEST_ORPHAN_CHILD"

// orphanChild starts two VMs, prints their pids (direct) or domain
// names (libvirt, one per transport) and waits to be killed.
func orphanChild() int {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var ids []string
	for i := range 2 {
		opts := []qemu.Option{qemu.Accel(qemu.AccelTCG)}
		if os.Getenv(childEnv) == "libvirt" {
			opts = append(opts, qemu.Libvirt(libvirtTransports[i].uri))
		}
		vm, err := qemu.Start(ctx, opts...)
		if err != nil {
			fmt.Println("ERROR", strings.ReplaceAll(err.Error(), "\n", " | "))
			vm.Close()
			return 1
		}
		switch v := vm.(type) {
		case *qemu.Process:
			ids = append(ids, strconv.Itoa(v.Pid()))
		case *qemu.Domain:
			ids = append(ids, v.DomainName())
		}
	}
	fmt.Println("IDS", strings.Join(ids, " "))
	select {} // until SIGKILL
}

// runOrphanChild starts the child in mode, returns what it printed and
// kills it with SIGKILL.
func runOrphanChild(t *testing.T, mode string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "IDS ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not report its VMs: %q %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	return strings.Fields(strings.TrimPrefix(line, "IDS "))
}

// alive reports whether pid runs (a zombie waiting for its reaper does
// not count: it is dead).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func TestIntegrationNoOrphansAfterSIGKILL(t *testing.T) {
	needQemu(t)
	var pids []int
	for _, f := range runOrphanChild(t, "direct") {
		pid, _ := strconv.Atoi(f)
		pids = append(pids, pid)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL) // do not leak it either way
				t.Fatalf("qemu %d still running 5s after its parent was SIGKILLed", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The child's state dirs are now stale; the sweep must remove them.
	removed, err := qemu.SweepStateDirs(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) < 2 {
		t.Errorf("sweep removed %d state dirs, want at least the child's 2: %v", len(removed), removed)
	}
}

// TestIntegrationLibvirtNoOrphansAfterSIGKILL: domains are created with
// autodestroy, so libvirtd destroys them when a SIGKILLed harness's
// connections drop.
func TestIntegrationLibvirtNoOrphansAfterSIGKILL(t *testing.T) {
	needLibvirt(t)
	names := runOrphanChild(t, "libvirt")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := execOutput(ctx, "virsh", "-c", "qemu:///system", "list", "--name")
		if err != nil {
			t.Fatalf("virsh list: %v\n%s", err, out)
		}
		var left []string
		for _, n := range names {
			if strings.Contains(out, n) {
				left = append(left, n)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, n := range left {
				execOutput(ctx, "virsh", "-c", "qemu:///system", "destroy", n)
			}
			t.Fatalf("domains %v still running 10s after their owner was SIGKILLed", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
