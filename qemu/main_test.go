package qemu_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spiceharness/spiceharness/internal/proc"
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

// ownQemus lists the qemu processes whose state dir (from -qmp on their
// command line) records owner as its owner.
func ownQemus(owner int) []int {
	all, err := proc.All()
	if err != nil {
		panic(err) // without /proc this check could not fail
	}
	var pids []int
	for _, p := range all {
		if !slices.ContainsFunc(p.Cmdline, func(a string) bool { return strings.Contains(a, "qemu-system") }) {
			continue
		}
		for i, a := range p.Cmdline {
			if a != "-qmp" || i+1 >= len(p.Cmdline) {
				continue
			}
			dir := filepath.Dir(strings.TrimPrefix(p.Cmdline[i+1], "unix:"))
			rec, err := os.ReadFile(filepath.Join(dir, "owner"))
			if err != nil {
				continue
			}
			if f := strings.Fields(string(rec)); len(f) > 0 && f[0] == strconv.Itoa(owner) {
				pids = append(pids, p.PID)
			}
		}
	}
	return pids
}
