package scenarios

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

const (
	// slowOtherMax bounds the other session's slowest key-to-echo delay
	// while a large message crawls in from the slow VM (~4 s at 64
	// KiB/s): ~30 ms on this machine; a relay that lets the slow message
	// hold it up makes a key wait for that message, seconds.
	slowOtherMax = time.Second
	// slowPingRatio bounds the large message's time through the proxy
	// against the direct path over the same two links: a relay that
	// passes bytes on as they come is about as fast; one that reads
	// each message whole before writing it makes the message cross the
	// two slow links one after the other, about twice as long.
	slowPingRatio = 1.5
	// netTestPingMin: spice-server's network test sends, right after
	// main links over TCP, a PING carrying ~250 KB (NET_TEST_BYTES):
	// the large message these checks time.
	netTestPingMin = 200 << 10
)

var (
	// slowBackendLink is the slow VM's backend leg: 64 KiB/s each way.
	slowBackendLink = harness.Link{Bandwidth: 64 << 10}
	// slowBothLink is both legs of the slow VM for the second check:
	// faster (the message crosses in about a second), still slow enough
	// that crossing the legs one after the other shows.
	slowBothLink = harness.Link{Bandwidth: 256 << 10}
)

// doneCtx is an ended context: Recv with it returns only what is queued.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func init() {
	Register(Scenario{
		Name:      "slow-backend",
		Tier:      Hardening,
		Exercises: ProxySPICE | QemuDirect,
		Description: "a session on a VM behind a 64 KiB/s backend link does not hold up the others: while its main channel's ~250 KB network-test PING " +
			"crawls in, keys of a session on another VM echo on its display promptly (each within 1 s); and with both of its legs at 256 KiB/s, " +
			"that PING arrives through the proxy within 1.5× of the direct path over the same links (bytes pass on as they come)",
		Options: []harness.Option{harness.VMs(2), harness.Network(harness.BackendLeg.VM(0), slowBackendLink)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			slow, fast := env.VM(0), env.VM(1)
			other, err := proxyEchoer(ctx, env, fast)
			require.NoError(t, err)
			defer other.Close()

			// 1. The other session types while the slow session's large
			// message crawls in (a few seconds at 64 KiB/s: the keys end
			// long before it).
			f, err := env.FetchVV(ctx, harness.Proxy, slow)
			require.NoError(t, err, "proxy .vv of the slow VM")
			s, err := harness.DialerFor(f).Connect(ctx)
			require.NoError(t, err, "session on the slow VM")
			// The network test's first PING is empty; once the client
			// has it (and answered), the large one is on its way.
			_, err = s.Main.WaitFor(ctx, spice.MsgPing)
			require.NoError(t, err, "the network test's first PING on the slow session's main channel")
			var delays []time.Duration
			for i := range 2 {
				ds, err := other.typeTimed(ctx, echoKeys[i*5:][:5], 25*time.Millisecond)
				require.NoError(t, err, "the other session's keys")
				delays = append(delays, ds...)
			}
			slowest := slices.Max(delays)
			t.Logf("the other session's keys while the slow VM's PING crawled in: slowest %s, median %s of %d", ms(slowest), ms(median(delays)), len(delays))
			if slowest > slowOtherMax {
				t.Errorf("a key of a session on another VM took %s to echo while a large message crawled in from a VM behind a 64 KiB/s link, over %s: "+
					"the slow backend holds up the other sessions (one lock, or one goroutine, across the sessions' relays?)", ms(slowest), ms(slowOtherMax))
			}
			// The check above means something only if the large message
			// was still crawling in when the keys were done.
			for {
				m, err := s.Main.Recv(doneCtx)
				if err != nil {
					break
				}
				if m.Type == spice.MsgPing && len(m.Body) >= netTestPingMin && !t.Failed() {
					t.Fatalf("the slow VM's large PING was in before the other session's keys were done: the check above proved nothing (is its link slow?)")
				}
			}
			select {
			case <-s.Main.Done():
				t.Fatalf("the slow session's main channel ended while the other session typed: %v", s.Main.Err())
			default:
			}
			s.Close()

			// 2. Both legs of the slow VM at 256 KiB/s: the PING through
			// the proxy, then straight from qemu (it serves one client).
			env.Net().Set(harness.BackendLeg.VM(0), slowBothLink)
			env.Net().Set(harness.ClientLeg.VM(0), slowBothLink)
			f, err = env.FetchVV(ctx, harness.Proxy, slow)
			require.NoError(t, err, "proxy .vv of the slow VM")
			viaProxy, err := netTestPing(ctx, harness.DialerFor(f))
			require.NoError(t, err, "through the proxy")
			d, err := env.DirectDialer(slow)
			require.NoError(t, err)
			direct, err := netTestPing(ctx, d)
			require.NoError(t, err, "direct")
			t.Logf("the ~250 KB PING over two 256 KiB/s legs: through the proxy %s, direct %s", ms(viaProxy), ms(direct))
			if float64(viaProxy) > slowPingRatio*float64(direct) {
				t.Errorf("a ~250 KB message took %s through the proxy, %s direct over the same two 256 KiB/s links: over %.1f×. "+
					"A relay that reads each message whole before writing any of it makes a large message cross the two links one after the other",
					ms(viaProxy), ms(direct), slowPingRatio)
			}
		},
	})
}

// netTestPing links a session with d and returns the time from the dial
// to the end of spice-server's network-test PING on main. The session
// is closed.
func netTestPing(ctx context.Context, d *spice.Dialer) (time.Duration, error) {
	d.QuickAck = true
	start := time.Now()
	s, err := d.Connect(ctx)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		m, err := s.Main.Recv(wctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("no PING of %d bytes or more on main within 20 s (spice-server's network test): %w", netTestPingMin, err)
			}
			return 0, err
		}
		if m.Type == spice.MsgPing && len(m.Body) >= netTestPingMin {
			return time.Since(start), nil
		}
	}
}
