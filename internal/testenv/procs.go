package testenv

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spiceharness/spiceharness/internal/poll"
	"github.com/spiceharness/spiceharness/internal/proc"
)

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool { return proc.Alive(pid) }

// processes lists the processes in /proc; a test helper that cannot read
// /proc has nothing to check against, so it fails loudly.
func processes() []proc.Info {
	all, err := proc.All()
	if err != nil {
		panic("testenv: " + err.Error())
	}
	return all
}

// ArgvHolding lists the processes whose command line contains secret
// (tickets and tokens must never be there: every user can read argv).
func ArgvHolding(secret string) []int {
	var out []int
	for _, p := range processes() {
		if slices.ContainsFunc(p.Cmdline, func(a string) bool { return strings.Contains(a, secret) }) {
			out = append(out, p.PID)
		}
	}
	return out
}

// ChildrenOf lists the live (not zombie) children of pid.
func ChildrenOf(pid int) []int {
	var out []int
	for _, p := range processes() {
		if p.PPID == pid && p.Alive() {
			out = append(out, p.PID)
		}
	}
	return out
}

// Children lists this process's live child processes as "pid cmdline".
func Children() []string {
	var out []string
	for _, p := range processes() {
		if p.PPID == os.Getpid() && p.Alive() {
			out = append(out, strconv.Itoa(p.PID)+" "+strings.Join(p.Cmdline, " "))
		}
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
		// Children being reaped right now get a moment: no event tells
		// when another package's child is gone.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := poll.Until(ctx, 50*time.Millisecond, func(context.Context) error {
			if left := Children(); len(left) > 0 {
				return fmt.Errorf("child processes left running after the tests:\n  %s", strings.Join(left, "\n  "))
			}
			return nil
		})
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
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
