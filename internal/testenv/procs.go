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

// Children lists this process's live (not zombie) child processes as
// "pid cmdline" strings.
func Children() []string {
	self := strconv.Itoa(os.Getpid())
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 2 || f[1] != self || f[0] == "Z" {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		out = append(out, e.Name()+" "+strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))))
	}
	return out
}

// VerifyTestMain runs the tests, then fails the run if a goroutine leaked
// (goleak) or a child process (qemu, Xvfb, remote-viewer, …) is still
// alive: every VM and helper program must have an owner that stopped it.
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	code := m.Run()
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
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
