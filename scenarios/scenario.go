package scenarios

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
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
	// Channels: every SPICE channel type a real client opens (agent
	// clipboard and file transfer, USB redirection, WebDAV, smartcard,
	// audio both ways, a second head, video streams, mouse) reaches
	// qemu through the proxy and carries its data byte-exact; these
	// scenarios need the Linux test guest (make guest).
	Channels Tier = "channels"
)

// Tiers in report order.
var Tiers = []Tier{Core, Hardening, Browser, Channels}

// Surface is what of the system under test a scenario's verdict rests
// on. A scenario declares every surface it exercises (Exercises); reports
// count each scenario once, under the first of ProxySPICE, ProxyAPI,
// QemuDirect it has (Primary), so "core: 17 passed" says how many of the
// passes went through the proxy's SPICE path.
type Surface uint8

const (
	// ProxySPICE: SPICE links through the proxy under test (its
	// listeners, link handshake, relay, or a CONNECT tunnel it opens),
	// with the Go client or a real one.
	ProxySPICE Surface = 1 << iota
	// ProxyAPI: the proxy's `.vv` API (or the `.vv` files its target
	// writes), without a SPICE link through the proxy deciding the
	// verdict.
	ProxyAPI
	// QemuDirect: qemu itself (direct links, QMP, the sources.yaml the
	// lane wrote), not the proxy: the reference the other scenarios
	// compare against.
	QemuDirect

	surfaceAll = ProxySPICE | ProxyAPI | QemuDirect
)

// Surfaces in report order.
var Surfaces = []Surface{ProxySPICE, ProxyAPI, QemuDirect}

var surfaceNames = map[Surface]string{ProxySPICE: "proxy-spice", ProxyAPI: "proxy-api", QemuDirect: "qemu-direct"}

// Primary is the surface a report counts s under: ProxySPICE when s has
// it, else ProxyAPI, else QemuDirect (0 for none).
func (s Surface) Primary() Surface {
	for _, x := range Surfaces {
		if s&x != 0 {
			return x
		}
	}
	return 0
}

// Names lists s's surfaces in report order ("proxy-spice", "proxy-api",
// "qemu-direct").
func (s Surface) Names() []string {
	var out []string
	for _, x := range Surfaces {
		if s&x != 0 {
			out = append(out, surfaceNames[x])
		}
	}
	return out
}

func (s Surface) String() string { return strings.Join(s.Names(), "|") }

// ParseSurface reads what String wrote ("proxy-spice|proxy-api"; commas
// also separate).
func ParseSurface(v string) (Surface, error) {
	var s Surface
	for _, n := range strings.FieldsFunc(v, func(r rune) bool { return r == '|' || r == ',' }) {
		found := false
		for x, name := range surfaceNames {
			if name == strings.TrimSpace(n) {
				s, found = s|x, true
			}
		}
		if !found {
			return 0, fmt.Errorf("scenarios: unknown surface %q (want proxy-spice, proxy-api or qemu-direct)", n)
		}
	}
	return s, nil
}

// Scenario is one regression case. Register it from an init func in its
// own file:
//
//	func init() {
//		Register(Scenario{
//			Name:        "wrong-ticket",
//			Tier:        Core,
//			Description: "a direct link with a wrong ticket gets PERMISSION_DENIED",
//			Exercises:   QemuDirect,
//			Run: func(ctx context.Context, t harness.T, env *harness.Env) { … },
//		})
//	}
type Scenario struct {
	// Name is unique, lower-case words joined by '-'.
	Name string
	// Tier is Core, Hardening, Browser or Channels.
	Tier Tier
	// Description is one line.
	Description string
	// Exercises (required) declares what the verdict rests on: every
	// surface the scenario's checks go through, ProxySPICE | ProxyAPI |
	// QemuDirect. Set ProxySPICE when a SPICE link through the proxy
	// under test decides a check (the Go client or a real client on a
	// proxy or tunnel `.vv`); ProxyAPI when a check reads what the proxy's
	// API serves (a `.vv`'s fields, its headers) or calls it (terminate);
	// QemuDirect when a check talks to qemu without the proxy (a direct
	// link, QMP, the sources file). A scenario whose verdict could not
	// change whatever the proxy does is QemuDirect alone. Reports count
	// the passes apart by Primary, and a core tier with none through
	// ProxySPICE is reported as not exercising the proxy's SPICE path.
	Exercises Surface
	// Options configure the lane the scenario gets (harness.VMs(2),
	// harness.TokenTTL(time.Second), …).
	Options []harness.Option
	// Requires lists the capabilities of the proxy under test the
	// scenario needs (harness.CapTerminate, …). Against a target that
	// lacks one, the scenario is skipped with the capability named.
	// Checks that only need what a SPICE client sees need none.
	Requires []harness.Capability
	// Needs lists external programs beyond qemu (e.g. "spicy-screenshot",
	// "remote-viewer"), each with its Debian package after a colon; an
	// absolute path names a file a package installs.
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
// Run, Tier or Exercises, or an unknown capability (programming errors
// caught by any test run).
func Register(s Scenario) {
	mu.Lock()
	defer mu.Unlock()
	switch {
	case !nameRE.MatchString(s.Name):
		panic(fmt.Sprintf("scenarios: bad name %q (want lower-case words joined by '-')", s.Name))
	case s.Description == "" || s.Run == nil:
		panic(fmt.Sprintf("scenarios: %s needs a Description and a Run", s.Name))
	case s.Tier != Core && s.Tier != Hardening && s.Tier != Browser && s.Tier != Channels:
		panic(fmt.Sprintf("scenarios: %s has tier %q; want scenarios.Core, Hardening, Browser or Channels", s.Name, s.Tier))
	case s.Exercises == 0 || s.Exercises&^surfaceAll != 0:
		panic(fmt.Sprintf("scenarios: %s needs Exercises: what its verdict rests on, scenarios.ProxySPICE | ProxyAPI | QemuDirect", s.Name))
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
