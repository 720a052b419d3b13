package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
)

// benchUp times `harness up --json` from exec to its ready JSON line,
// then sends SIGINT and checks that it exits 0 within a bound and that no
// qemu of its lane is left (a process whose command line carries one of
// its consoles' uuids).
func benchUp(ctx context.Context, r *report, o *options) error {
	bin, err := filepath.Abs(o.harnessBin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w (run make build)", err)
	}
	var ready, down []float64
	for i := range o.upRuns {
		up, teardown, err := upOnce(ctx, bin)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		ready = append(ready, ms(up))
		down = append(down, ms(teardown))
		if o.verbose {
			progress("harness up run %d: ready %.0f ms, teardown %.0f ms", i+1, ms(up), ms(teardown))
		}
	}
	r.line("up.ready", fmtMS(median(ready))+fmt.Sprintf(" (median of %d; 1 VM, exec to the JSON line)", o.upRuns))
	r.line("up.teardown", fmtMS(median(down))+" (SIGINT to exit 0, no qemu left)")
	return nil
}

func upOnce(ctx context.Context, bin string) (ready, teardown time.Duration, err error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	defer outR.Close()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "up", "--json")
	cmd.Stdout = outW
	cmd.Stderr = &stderr
	start := time.Now()
	child, err := proc.Start(cmd)
	outW.Close()
	if err != nil {
		return 0, 0, err
	}
	defer child.Stop(5 * time.Second)
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(outR).ReadString('\n')
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case <-child.Exited():
		return 0, 0, fmt.Errorf("harness up exited before ready: %v\n%s", child.ProcessState(), tailString(stderr.String(), 10))
	case <-time.After(2 * time.Minute):
		return 0, 0, errors.New("harness up: no ready line in 2 minutes")
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	ready = time.Since(start)
	var rl struct {
		Consoles []struct {
			UUID string `json:"uuid"`
		} `json:"consoles"`
	}
	if err := json.Unmarshal([]byte(line), &rl); err != nil || len(rl.Consoles) == 0 {
		return 0, 0, fmt.Errorf("harness up: bad ready line %q: %v", line, err)
	}
	if n := qemusWith(rl.Consoles[0].UUID); n != 1 {
		return 0, 0, fmt.Errorf("harness up: %d qemu processes with the console's uuid while up, want 1", n)
	}
	start = time.Now()
	syscall.Kill(child.Pid(), syscall.SIGINT)
	select {
	case <-child.Exited():
	case <-time.After(30 * time.Second):
		return 0, 0, errors.New("harness up: still running 30 s after SIGINT")
	}
	teardown = time.Since(start)
	if st := child.ProcessState(); !st.Success() {
		return 0, 0, fmt.Errorf("harness up: exit %v after SIGINT\n%s", st, tailString(stderr.String(), 10))
	}
	for _, c := range rl.Consoles {
		if n := qemusWith(c.UUID); n != 0 {
			return 0, 0, fmt.Errorf("harness up: %d qemu processes left for console %s", n, c.UUID)
		}
	}
	return ready, teardown, nil
}

// qemusWith counts live processes whose argv holds s.
func qemusWith(s string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		if bytes.Contains(b, []byte(s)) && strings.Contains(string(b), "qemu") {
			n++
		}
	}
	return n
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
