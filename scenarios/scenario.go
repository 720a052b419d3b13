package scenarios

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"sync"

	"github.com/spiceharness/spiceharness/harness"
)

// Tier says what a scenario's failure means.
type Tier string

const (
	// Core: SPICE correctness every proxy must have (sessions open,
	// pixels, keys, NEED_SECURED, TLS backends, ticket rotation).
	Core Tier = "core"
	// Hardening: what a trustworthy proxy also does (single-use tokens,
	// connection-id binding, qemu crash guard, real caps, terminate,
	// hostile inputs, faults).
	Hardening Tier = "hardening"
	// Browser: the WebSocket family (spice-html5's transport, one
	// WebSocket per channel): sessions, idle sockets, token replay,
	// origins and hostile frames through any WebSocket target.
	Browser Tier = "browser"
)

// Tiers in report order.
var Tiers = []Tier{Core, Hardening, Browser}

// Scenario is one regression case. Register it from an init func in its
// own file:
//
//	func init() {
//		Register(Scenario{
//			Name:        "wrong-ticket",
//			Tier:        Core,
//			Description: "a direct link with a wrong ticket gets PERMISSION_DENIED",
//			Run: func(ctx context.Context, t harness.T, env *harness.Env) { … },
//		})
//	}
type Scenario struct {
	// Name is unique, lower-case words joined by '-'.
	Name string
	// Tier is Core, Hardening or Browser.
	Tier Tier
	// Description is one line.
	Description string
	// Options configure the lane the scenario gets (harness.VMs(2),
	// harness.TokenTTL(time.Second), …).
	Options []harness.Option
	// Requires lists the capabilities of the proxy under test the
	// scenario needs (harness.CapTerminate, …). Against a target that
	// lacks one, the scenario is skipped with the capability named.
	// Checks that only need what a SPICE client sees need none.
	Requires []harness.Capability
	// Needs lists external programs beyond qemu (e.g. "spicy-screenshot",
	// "remote-viewer"), each with its Debian package after a colon.
	Needs []string
	// Run is the scenario. ctx ends at the scenario's deadline, or at
	// once when the proxy under test dies (context.Cause says how).
	Run func(ctx context.Context, t harness.T, env *harness.Env)
}

var (
	mu       sync.Mutex
	registry = map[string]Scenario{}
	nameRE   = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
)

// Register adds s; it panics on a duplicate or malformed name, a missing
// Run or Tier, or an unknown capability (programming errors caught by
// any test run).
func Register(s Scenario) {
	mu.Lock()
	defer mu.Unlock()
	switch {
	case !nameRE.MatchString(s.Name):
		panic(fmt.Sprintf("scenarios: bad name %q (want lower-case words joined by '-')", s.Name))
	case s.Description == "" || s.Run == nil:
		panic(fmt.Sprintf("scenarios: %s needs a Description and a Run", s.Name))
	case s.Tier != Core && s.Tier != Hardening && s.Tier != Browser:
		panic(fmt.Sprintf("scenarios: %s has tier %q; want scenarios.Core, Hardening or Browser", s.Name, s.Tier))
	}
	for _, c := range s.Requires {
		if !harness.KnownCapability(c) {
			panic(fmt.Sprintf("scenarios: %s requires unknown capability %q", s.Name, c))
		}
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
