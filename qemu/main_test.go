package qemu_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spiceharness/spiceharness/internal/testenv"
)

// TestMain runs the child mode of TestIntegrationNoOrphansAfterSIGKILL,
// then the tests, then checks that no goroutine leaked and that no qemu
// started by this test binary survived.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(orphanChild())
	}
	testenv.VerifyTestMain(m,
		testenv.Check(func() error {
			if names := survivingDomains(); len(names) > 0 {
				return fmt.Errorf("libvirt domains started by this test binary survived: %v", names)
			}
			return nil
		}),
		testenv.Check(func() error {
			if pids := ownQemus(os.Getpid()); len(pids) > 0 {
				return fmt.Errorf("qemu processes started by this test binary survived: %v", pids)
			}
			return nil
		}))
}

// ownQemus scans /proc for qemu processes whose state dir (from -qmp on
// their command line) records owner as its owner.
func ownQemus(owner int) []int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("qemu-system")) {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i, a := range args {
			if a != "-qmp" || i+1 >= len(args) {
				continue
			}
			dir := filepath.Dir(strings.TrimPrefix(args[i+1], "unix:"))
			rec, err := os.ReadFile(filepath.Join(dir, "owner"))
			if err != nil {
				continue
			}
			if f := strings.Fields(string(rec)); len(f) > 0 && f[0] == strconv.Itoa(owner) {
				pid, _ := strconv.Atoi(strings.Split(p, "/")[2])
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
