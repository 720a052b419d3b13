package proc_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/internal/proc"
)

func TestLookupSelf(t *testing.T) {
	i, err := proc.Lookup(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	want := proc.Info{PID: os.Getpid(), PPID: os.Getppid(), State: i.State, StartTime: i.StartTime, Cmdline: os.Args}
	if diff := cmp.Diff(want, i); diff != "" {
		t.Errorf("unexpected Info of this process (-want +got):\n%s", diff)
	}
	if i.StartTime == 0 || !i.Alive() {
		t.Errorf("this process: start time %d, alive %v", i.StartTime, i.Alive())
	}
}

func TestLookupGone(t *testing.T) {
	if _, err := proc.Lookup(1 << 30); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lookup of a pid that cannot exist: want fs.ErrNotExist, got %v", err)
	}
}

// TestChildLifecycle: a child started with Start is listed with its argv
// and this process as parent, and is gone once Stop returns.
func TestChildLifecycle(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep(1)")
	}
	c, err := proc.Start(exec.Command(sleep, "600"))
	if err != nil {
		t.Fatal(err)
	}
	all, err := proc.All()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(all, func(i proc.Info) bool { return i.PID == c.Pid() })
	if i < 0 {
		t.Fatalf("child %d not listed by All", c.Pid())
	}
	if diff := cmp.Diff([]string{sleep, "600"}, all[i].Cmdline); diff != "" || all[i].PPID != os.Getpid() {
		t.Errorf("unexpected child: ppid %d, argv (-want +got):\n%s", all[i].PPID, diff)
	}
	if err := c.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if proc.Alive(c.Pid()) {
		t.Errorf("child %d alive after Stop", c.Pid())
	}
}
