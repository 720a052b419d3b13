package inproc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/harness/inproc"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/static"
)

func TestMain(m *testing.M) { testenv.VerifyTestMain(m) }

var tunnelCaps = []harness.Capability{harness.CapTunnelVV, harness.CapTunnelTicketTTL, harness.CapSignedHosts}

// The tunnel capabilities come with ConnectListen, and only with it.
func TestTunnelCapabilities(t *testing.T) {
	missing, name, err := harness.Missing(tunnelCaps, harness.WithTarget(inproc.New()))
	require.NoError(t, err)
	assert.Equal(t, "in-process", name)
	if d := cmp.Diff(tunnelCaps, missing); d != "" {
		t.Errorf("without a CONNECT listener (-want missing +got):\n%s", d)
	}
	missing, _, err = harness.Missing(append(tunnelCaps, harness.CapTerminatesSPICE, harness.CapInProcess),
		harness.WithTarget(inproc.New()), harness.ConnectListen("127.0.0.1:0"))
	require.NoError(t, err)
	assert.Empty(t, missing, "with a CONNECT listener the target offers the tunnel capabilities and stays a terminating proxy")
}

// TestIntegrationTunnelTicketsInStep: a tunnel .vv sets a fresh,
// expiring qemu ticket and the store and sources.yaml follow, so the
// terminating proxy keeps linking; when the ticket expires the lane
// re-arms a fresh one without expiry, which they follow too.
func TestIntegrationTunnelTicketsInStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const ttl = 2 * time.Second
	env := harness.Start(t, harness.WithTarget(inproc.New()), harness.ConnectListen("127.0.0.1:0"), harness.TunnelTicketTTL(ttl))
	vm := env.VM(0)
	tg, ok := inproc.Of(env)
	require.True(t, ok, "inproc.Of a lane with a CONNECT listener")
	before := vm.Console().Ticket

	f, err := env.FetchVV(ctx, harness.Tunnel, vm)
	require.NoError(t, err, "tunnel .vv")
	require.NotEqual(t, before, f.Password, "the tunnel .vv carries a fresh ticket")
	inStep := func(what, want string) {
		t.Helper()
		con, err := tg.Store().Console(vm.Key)
		require.NoError(t, err)
		assert.Equal(t, want, con.Console.Ticket, "%s: the store's ticket", what)
		sf, err := static.ParseFile(env.SourcesYAML)
		require.NoError(t, err)
		assert.Equal(t, want, sf.Consoles()[vm.Key].Ticket, "%s: sources.yaml's ticket", what)
		s, _, err := env.Connect(ctx, harness.Proxy, vm)
		require.NoError(t, err, "%s: a session through the terminating proxy", what)
		s.Close()
	}
	inStep("after the tunnel .vv", f.Password)

	// The re-arm replaces the ticket once it expired; the store is the
	// last to learn it (after qemu and sources.yaml).
	wctx, wcancel := context.WithTimeout(ctx, ttl+10*time.Second)
	defer wcancel()
	storeTicket := func() string {
		con, err := tg.Store().Console(vm.Key)
		require.NoError(t, err)
		return con.Console.Ticket
	}
	for storeTicket() == f.Password {
		select {
		case <-wctx.Done():
			t.Fatalf("the expired tunnel ticket was not re-armed: %v", wctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	rearmed := vm.Console().Ticket
	inStep("after the re-arm", rearmed)
	d := &spice.Dialer{Host: vm.Console().HypervisorIP, Port: vm.Console().InsecurePort, Password: f.Password}
	_, err = d.Connect(ctx)
	assert.True(t, errors.Is(err, spice.ErrPermissionDenied), "the tunnel ticket after its expiry: %v", err)
	// The re-armed ticket has no expiry.
	d.Password = rearmed
	until := time.Now().Add(ttl + time.Second)
	<-time.After(time.Until(until))
	s, err := d.Connect(ctx)
	require.NoError(t, err, "the re-armed ticket %v after the re-arm", ttl+time.Second)
	s.Close()
}
