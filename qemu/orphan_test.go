package qemu_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/poll"
	"github.com/spiceharness/spiceharness/internal/proc"
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

func TestIntegrationNoOrphansAfterSIGKILL(t *testing.T) {
	needQemu(t)
	var pids []int
	for _, f := range runOrphanChild(t, "direct") {
		pid, _ := strconv.Atoi(f)
		pids = append(pids, pid)
	}
	// The kernel kills them when the parent dies; nothing here can
	// wait on that event, so poll.
	ctx := ctxT(t, 5*time.Second)
	for _, pid := range pids {
		err := poll.Until(ctx, 10*time.Millisecond, func(context.Context) error {
			if proc.Alive(pid) {
				return fmt.Errorf("qemu %d still running", pid)
			}
			return nil
		})
		if err != nil {
			syscall.Kill(pid, syscall.SIGKILL) // do not leak it either way
			t.Fatalf("after its parent was SIGKILLed: %v", err)
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
	ctx := ctxT(t, 10*time.Second)
	var left []string
	err := poll.Until(ctx, 50*time.Millisecond, func(ctx context.Context) error {
		out, err := execOutput(ctx, "virsh", "-c", "qemu:///system", "list", "--name")
		if err != nil {
			return fmt.Errorf("virsh list: %w\n%s", err, out)
		}
		running := strings.Fields(out)
		left = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return !slices.Contains(running, n) })
		if len(left) > 0 {
			return fmt.Errorf("domains %v still running", left)
		}
		return nil
	})
	if err != nil {
		dctx := ctxT(t, 30*time.Second)
		for _, n := range left {
			execOutput(dctx, "virsh", "-c", "qemu:///system", "destroy", n)
		}
		t.Fatalf("after their owner was SIGKILLed: %v", err)
	}
}

// TestIntegrationStartThreadExits: qemu's parent-death signal is tied to
// the OS thread that forked it, not to the process. Call Start from a
// goroutine that locks its thread and exits still locked, so the Go
// runtime ends that thread: qemu must live on. (A Start that forked from
// the caller's thread fails this test.)
func TestIntegrationStartThreadExits(t *testing.T) {
	needQemu(t)
	ctx := ctxT(t, 60*time.Second)
	type result struct {
		vm  qemu.VM
		err error
		tid int
	}
	rc := make(chan result, 1)
	var onOwnThread func()
	onOwnThread = func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if syscall.Gettid() == os.Getpid() {
			// The main thread is never ended by the runtime; hop off it.
			runtime.UnlockOSThread()
			go onOwnThread()
			return
		}
		vm, err := qemu.Start(ctx, qemu.Accel(qemu.AccelTCG))
		rc <- result{vm, err, syscall.Gettid()}
	}
	go onOwnThread()
	r := <-rc
	defer r.vm.Close()
	if r.err != nil {
		t.Fatal(r.err)
	}
	// The runtime ends the thread when its goroutine returns locked;
	// nothing reports that, so poll /proc for it.
	task := "/proc/self/task/" + strconv.Itoa(r.tid)
	err := poll.Until(ctxT(t, 5*time.Second), 10*time.Millisecond, func(context.Context) error {
		if _, err := os.Stat(task); err == nil {
			return fmt.Errorf("thread %d still exists", r.tid)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the runtime did not end the thread that called Start; the test proves nothing: %v", err)
	}
	// A parent-death signal is sent while the thread exits, before its
	// /proc entry goes; a SIGKILLed qemu runs no more user code. So a
	// QMP answer now proves no signal came.
	if _, err := r.vm.Run(ctx, "query-status"); err != nil {
		t.Fatalf("qemu died with the thread that called Start: %v", err)
	}
	select {
	case <-r.vm.Exited():
		t.Fatalf("qemu died with the thread that called Start: %v", r.vm.Wait(ctx))
	default:
	}
}
