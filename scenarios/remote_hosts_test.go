package scenarios_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/internal/testhosts"
	"github.com/spiceharness/spiceharness/scenarios"
)

// EnvRemoteScenarios picks what TestRemoteHosts runs on the hosts:
// "all" for every core scenario a hypervisor host can run, or a
// comma-separated list of names; unset, remoteDefault.
const EnvRemoteScenarios = "HARNESS_REMOTE_SCENARIOS"

// remoteDefault is the cheap set `make test` runs on the hosts: a
// session and keys through the proxy, TLS with the host's own
// certificate, and a real client's pixels against direct, each on a host
// reached over a veth.
var remoteDefault = []string{
	"key-through-proxy",
	"tls-backend",
	"pixels-proxy-equal-direct",
}

// remoteScenarios is what TestRemoteHosts runs: core scenarios whose
// lanes can be placed on hosts (scenarios.Skip says which cannot, such
// as the tunnel ones, whose qemu certificates must name the tunnel
// domain; those pinned to a libvirtd with harness.Libvirt run where they
// say and are left out).
func remoteScenarios(t *testing.T) []scenarios.Scenario {
	names := remoteDefault
	switch v := os.Getenv(EnvRemoteScenarios); v {
	case "":
	case "all":
		names = nil
		for _, s := range scenarios.All() {
			if s.Tier == scenarios.Core && !strings.HasPrefix(s.Name, "libvirt-") {
				names = append(names, s.Name)
			}
		}
	default:
		names = strings.Split(v, ",")
	}
	var out []scenarios.Scenario
	for _, n := range names {
		s, ok := scenarios.Lookup(strings.TrimSpace(n))
		if !ok {
			t.Fatalf("%s: unknown scenario %q", EnvRemoteScenarios, n)
		}
		out = append(out, s)
	}
	return out
}

// TestRemoteHosts runs core scenarios with their qemus on two extra
// hypervisor hosts (network namespaces on this machine, each with its
// own libvirtd: internal/testhosts) and the in-process proxy here, so
// every SPICE link crosses a veth to an address that is not loopback;
// then it kills one host's libvirtd mid-run and checks that only that
// host's lanes fail, naming it, while the other's pass and new lanes go
// to the host that is left. Needs root (skipped with the reason where
// namespaces cannot be made; under CI=true it fails instead).
func TestRemoteHosts(t *testing.T) {
	testenv.Short(t, "network namespaces, libvirtd and qemu")
	t.Parallel() // beside TestScenarios' lanes: its own hosts, its own slots
	rig := testhosts.Start(t, testhosts.Options{Hosts: 2, TLS: true})
	path, err := rig.WriteHostsFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hs, err := harness.LoadHosts(path)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	t.Run("scenarios", func(t *testing.T) {
		var mu sync.Mutex
		placed := map[string]int{}
		t.Cleanup(func() { t.Logf("lanes per host: %v", placed) })
		for _, s := range remoteScenarios(t) {
			t.Run(s.Name, func(t *testing.T) {
				t.Parallel()
				env := runScenario(t, s, harness.WithHosts(hs))
				if env == nil {
					return
				}
				if env.Host == nil {
					t.Fatalf("the lane ran on this machine, not on a host of %s", path)
				}
				for _, vm := range env.VMs {
					if c := vm.Console(); c.Hypervisor != env.Host.Name || c.HypervisorIP != env.Host.Address {
						t.Errorf("unexpected console %s/%s of %s: want hypervisor %s at %s", c.Hypervisor, c.HypervisorIP, vm, env.Host.Name, env.Host.Address)
					}
				}
				mu.Lock()
				placed[env.Host.Name]++
				mu.Unlock()
			})
		}
	})
	t.Logf("scenarios on the hosts: %v", time.Since(start).Round(time.Millisecond))
	if t.Failed() {
		return
	}
	t.Run("host-lost", func(t *testing.T) { hostLost(t, rig, hs) })
}

// hostLost runs two lanes on each host up to a barrier, kills rig1's
// libvirtd, and lets them finish: rig0's pass, rig1's fail with a reason
// that names rig1, promptly. A lane started afterwards goes to rig0, and
// one that needs rig1 fails at once.
func hostLost(t *testing.T, rig *testhosts.Rig, hs *harness.Hosts) {
	ready := make(chan string, 4)
	proceed := make(chan struct{})
	probe := scenarios.Scenario{
		Name: "host-lost-probe", Tier: scenarios.Core,
		Description: "types through the proxy, waits for the test's go, types again",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			if err != nil {
				t.Fatalf("proxy session: %v", err)
			}
			defer s.Close()
			_, in, _, err := harness.OpenAll(ctx, s)
			if err != nil {
				t.Fatalf("open channels: %v", err)
			}
			if err := in.Type("a"); err != nil {
				t.Fatalf("type: %v", err)
			}
			if err := vm.WaitSerial(ctx, regexp.MustCompile(`READY> a`)); err != nil {
				t.Fatalf("first key: %v", err)
			}
			ready <- env.HostName()
			select {
			case <-proceed:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				t.Fatalf("lane ended: %v", context.Cause(ctx))
			}
			if err := in.Type("b"); err != nil {
				t.Fatalf("type: %v", err)
			}
			if err := vm.WaitSerial(ctx, regexp.MustCompile(`READY> ab`)); err != nil {
				t.Fatalf("second key: %v", err)
			}
		},
	}
	ctx := t.Context()
	results := make(chan scenarios.Result, 4)
	for _, host := range []string{"rig0", "rig0", "rig1", "rig1"} {
		go func() {
			results <- scenarios.Run(ctx, probe, scenarios.RunOptions{}, harness.WithHosts(hs), harness.RequireLabels(host))
		}()
	}
	got := map[string]int{}
	for range 4 {
		select {
		case h := <-ready:
			got[h]++
		case r := <-results:
			t.Fatalf("a probe ended before the kill: %s on %s: %s\n%s", r.Status, r.Host, r.Reason, strings.Join(r.Log, "\n"))
		}
	}
	if got["rig0"] != 2 || got["rig1"] != 2 {
		t.Fatalf("unexpected placement (-want +got): -map[rig0:2 rig1:2] +%v", got)
	}
	killed := time.Now()
	if err := rig.KillLibvirtd(1); err != nil {
		t.Fatal(err)
	}
	var rs []scenarios.Result
	for len(rs) < 2 { // rig1's lanes end on their own
		r := <-results
		if r.Host != "rig1" {
			t.Fatalf("a rig0 lane ended before the go: %s: %s\n%s", r.Status, r.Reason, strings.Join(r.Log, "\n"))
		}
		t.Logf("%s lane: %s %v after the kill: %s", r.Host, r.Status, time.Since(killed).Round(time.Millisecond), r.Reason)
		rs = append(rs, r)
	}
	close(proceed)
	for len(rs) < 4 {
		r := <-results
		t.Logf("%s lane: %s: %s", r.Host, r.Status, r.Reason)
		rs = append(rs, r)
	}
	for _, r := range rs {
		switch {
		case r.Host == "rig0" && r.Status != scenarios.Passed:
			t.Errorf("rig0 lane: %s: %s\n%s", r.Status, r.Reason, strings.Join(r.Log, "\n"))
		case r.Host == "rig1" && (r.Status != scenarios.Failed || !strings.Contains(r.Reason, "hypervisor host rig1")):
			t.Errorf("rig1 lane: %s %q; want a failure naming hypervisor host rig1", r.Status, r.Reason)
		}
	}
	if err := hs.Down("rig1"); err == nil {
		t.Errorf("rig1 is not marked down")
	}

	// The run goes on on rig0; a lane only rig1 could take fails at once.
	if r := scenarios.Run(ctx, probeNoWait(), scenarios.RunOptions{}, harness.WithHosts(hs)); r.Status != scenarios.Passed || r.Host != "rig0" {
		t.Errorf("a lane after the loss: %s on %q: %s; want a pass on rig0", r.Status, r.Host, r.Reason)
	}
	start := time.Now()
	r := scenarios.Run(ctx, probeNoWait(), scenarios.RunOptions{}, harness.WithHosts(hs), harness.RequireLabels("rig1"))
	if r.Status != scenarios.Failed || !strings.Contains(r.Reason, "rig1") || !strings.Contains(r.Reason, "down") {
		t.Errorf("a lane that needs rig1: %s: %q; want a failure saying rig1 is down", r.Status, r.Reason)
	}
	t.Logf("a lane that needs rig1 failed in %v: %s", time.Since(start).Round(time.Millisecond), r.Reason)
}

// probeNoWait types one key through the proxy.
func probeNoWait() scenarios.Scenario {
	return scenarios.Scenario{
		Name: "host-probe", Tier: scenarios.Core, Description: "one key through the proxy",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			if err != nil {
				t.Fatalf("proxy session: %v", err)
			}
			defer s.Close()
			_, in, _, err := harness.OpenAll(ctx, s)
			if err != nil {
				t.Fatalf("open channels: %v", err)
			}
			if err := in.Type("z"); err != nil {
				t.Fatalf("type: %v", err)
			}
			if err := vm.WaitSerial(ctx, regexp.MustCompile(`READY> z`)); err != nil {
				t.Fatalf("key: %v", err)
			}
		},
	}
}
