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

// orphanChild starts two VMs, prints their pids and waits to be killed.
func orphanChild() int {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var pids []string
	for range 2 {
		vm, err := qemu.Start(ctx, qemu.Accel(qemu.AccelTCG))
		if err != nil {
			fmt.Println("ERROR", strings.ReplaceAll(err.Error(), "\n", " | "))
			vm.Close()
			return 1
		}
		pids = append(pids, strconv.Itoa(vm.(*qemu.Process).Pid()))
	}
	fmt.Println("PIDS", strings.Join(pids, " "))
	select {} // until SIGKILL
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
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "PIDS ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not report its qemu pids: %q %v", line, err)
	}
	var pids []int
	for _, f := range strings.Fields(strings.TrimPrefix(line, "PIDS ")) {
		pid, _ := strconv.Atoi(f)
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("qemu %d not running before the kill", pid)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
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
