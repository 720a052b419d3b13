package testenv

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// procStat reads a process's state letter and parent pid from
// /proc/PID/stat; ok is false when it is gone.
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	// "pid (comm) state ppid …": comm may hold spaces, so cut after ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0], ppid, true
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z"
}

// pids lists every process id in /proc.
func pids() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if p, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// ArgvHolding lists the processes whose command line contains secret
// (tickets and tokens must never be there: every user can read argv).
func ArgvHolding(secret string) []int {
	var out []int
	for _, p := range pids() {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline"); err == nil && bytes.Contains(b, []byte(secret)) {
			out = append(out, p)
		}
	}
	return out
}

// ChildrenOf lists the live (not zombie) children of pid.
func ChildrenOf(pid int) []int {
	var out []int
	for _, p := range pids() {
		if state, ppid, ok := procStat(p); ok && ppid == pid && state != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// Children lists this process's live child processes as "pid cmdline".
func Children() []string {
	var out []string
	for _, p := range ChildrenOf(os.Getpid()) {
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline")
		out = append(out, strconv.Itoa(p)+" "+strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))))
	}
	return out
}

// MainOption adds to what VerifyTestMain does around the tests.
type MainOption func(*mainConfig)

type mainConfig struct {
	teardown []func()
	checks   []func() error
}

// Teardown runs f after the tests and before the leak checks (to stop a
// package-wide resource such as a shared key pool).
func Teardown(f func()) MainOption {
	return func(c *mainConfig) { c.teardown = append(c.teardown, f) }
}

// Check adds a leak check of the package's own (surviving libvirt
// domains, …): a non-nil error fails the run.
func Check(f func() error) MainOption {
	return func(c *mainConfig) { c.checks = append(c.checks, f) }
}

// VerifyTestMain runs the tests, then fails the run if a goroutine leaked
// (goleak), a child process (qemu, Xvfb, remote-viewer, …) is still
// alive, or a Check fails: every VM and helper program must have an
// owner that stopped it.
func VerifyTestMain(m *testing.M, opts ...MainOption) {
	var c mainConfig
	for _, o := range opts {
		o(&c)
	}
	code := m.Run()
	for _, f := range c.teardown {
		f()
	}
	if code == 0 {
		// Children being reaped right now get a moment.
		var left []string
		for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if left = Children(); len(left) == 0 || time.Now().After(end) {
				break
			}
		}
		if len(left) > 0 {
			fmt.Fprintf(os.Stderr, "testenv: child processes left running after the tests:\n  %s\n", strings.Join(left, "\n  "))
			code = 1
		}
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
		for _, check := range c.checks {
			if err := check(); err != nil {
				fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
				code = 1
			}
		}
	}
	os.Exit(code)
}
