package guestagent

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/u-root/u-root/pkg/kmodule"
)

var globFn = filepath.Glob

// modulesList is where the image lists the modules (guestimage writes
// it: "boot NAME" and "late NAME" lines).
const modulesList = "/etc/guest-modules"

func readModuleList() (boot, late []string, err error) {
	f, err := os.Open(modulesList)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		phase, name, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch {
		case !ok:
		case phase == "boot":
			boot = append(boot, name)
		case phase == "late":
			late = append(late, name)
		}
	}
	return boot, late, sc.Err()
}

// loadModules loads names and their dependencies (from the image's
// modules.dep), all at once: a driver whose probe sleeps (HDA codec
// probing, USB port resets) does not hold up the others. It returns how
// many loaded; failures are error events.
func (a *agent) loadModules(names []string) int {
	p, err := kmodule.NewProber(kmodule.ProbeOpts{})
	if err != nil {
		errorf(a.rep, "modules", err)
		return 0
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Probe(name, ""); err != nil {
				errorf(a.rep, "module "+name, fmt.Errorf("load: %w", err))
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return n
}
