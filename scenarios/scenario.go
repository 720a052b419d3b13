package scenarios

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"sync"

	"github.com/spiceharness/spiceharness/harness"
)

// Scenario is one regression case. Register it from an init func in its
// own file:
//
//	func init() {
//		Register(Scenario{
//			Name:        "wrong-ticket",
//			Description: "a direct link with a wrong ticket gets PERMISSION_DENIED",
//			Run: func(ctx context.Context, t harness.T, env *harness.Env) { … },
//		})
//	}
type Scenario struct {
	// Name is unique, lower-case words joined by '-'.
	Name string
	// Description is one line.
	Description string
	// Options configure the lane the scenario gets (harness.VMs(2),
	// harness.TokenTTL(time.Second), …).
	Options []harness.Option
	// Internal marks a scenario that needs the in-process proxy (its
	// store, audit or metrics): it does not apply to an external proxy.
	Internal bool
	// Needs lists external programs beyond qemu (e.g. "spicy-screenshot",
	// "remote-viewer"), each with its Debian package after a colon.
	Needs []string
	// Run is the scenario. ctx ends at the scenario's deadline.
	Run func(ctx context.Context, t harness.T, env *harness.Env)
}

var (
	mu       sync.Mutex
	registry = map[string]Scenario{}
	nameRE   = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
)

// Register adds s; it panics on a duplicate or malformed name, or a
// missing Run (a programming error caught by any test run).
func Register(s Scenario) {
	mu.Lock()
	defer mu.Unlock()
	switch {
	case !nameRE.MatchString(s.Name):
		panic(fmt.Sprintf("scenarios: bad name %q (want lower-case words joined by '-')", s.Name))
	case s.Description == "" || s.Run == nil:
		panic(fmt.Sprintf("scenarios: %s needs a Description and a Run", s.Name))
	}
	if _, dup := registry[s.Name]; dup {
		panic(fmt.Sprintf("scenarios: %s registered twice", s.Name))
	}
	registry[s.Name] = s
}

// All returns every scenario, sorted by name.
func All() []Scenario {
	mu.Lock()
	defer mu.Unlock()
	out := make([]Scenario, 0, len(registry))
	for _, s := range registry {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup finds a scenario by name.
func Lookup(name string) (Scenario, bool) {
	mu.Lock()
	defer mu.Unlock()
	s, ok := registry[name]
	return s, ok
}
