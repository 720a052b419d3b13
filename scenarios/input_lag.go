package scenarios

import (
	"context"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

// Input lag under latency: the bound is wide (a loaded 2-core machine
// runs this), yet a relay that holds a small message back (Nagle's
// algorithm waiting for a delayed ACK, batching, a read that waits for
// more) adds 40 ms-class steps that cross it. The exact figures are
// `make bench`'s (section input), not this check's.
const (
	inputLagKeys     = 50
	inputLagRatio    = 1.5
	inputLagAddedMax = 15 * time.Millisecond
	// inputLagGap is the typist's pace: 40 keys a second, as a fast
	// typist's bursts or a paste.
	inputLagGap = 25 * time.Millisecond
)

// inputLagLink is the client leg of input-lag: 20 ms ± 5 ms each way.
var inputLagLink = harness.Link{Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond}

// inputLagLAN is its backend leg: the proxy and the hypervisors on one
// LAN, 1 ms each way.
var inputLagLAN = harness.Link{Latency: time.Millisecond}

func init() {
	Register(Scenario{
		Name:      "input-lag",
		Tier:      Hardening,
		Exercises: ProxySPICE | QemuDirect,
		Description: "over a 20 ms ± 5 ms client link, the median delay from a key to the display message drawing its echo " +
			"through the proxy stays within 1.5× and +15 ms of the same keys sent straight to qemu over the same link (50 keys each, interleaved)",
		Options: []harness.Option{harness.VMs(2), harness.Network(harness.ClientLeg, inputLagLink), harness.Network(harness.BackendLeg, inputLagLAN)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			// Two VMs, so the direct session does not displace the
			// proxied one (qemu serves one client at a time).
			p, err := proxyEchoer(ctx, env, env.VM(0))
			require.NoError(t, err)
			defer p.Close()
			d, err := directEchoer(ctx, env, env.VM(1))
			require.NoError(t, err)
			defer d.Close()
			var viaProxy, direct []time.Duration
			const bursts = 2
			for i := range bursts {
				keys := (echoKeys + echoKeys)[i*inputLagKeys/bursts%len(echoKeys):][:inputLagKeys/bursts]
				order := []*echoer{p, d}
				if i%2 == 1 {
					order = []*echoer{d, p}
				}
				for _, e := range order {
					ds, err := e.typeTimed(ctx, keys, inputLagGap)
					require.NoError(t, err)
					if e == p {
						viaProxy = append(viaProxy, ds...)
					} else {
						direct = append(direct, ds...)
					}
					e.settle(ctx, 50*time.Millisecond, time.Second)
				}
			}
			mp, md := median(viaProxy), median(direct)
			t.Logf("key → echo drawn, median of %d: through the proxy %s, direct %s (link %s)", inputLagKeys, ms(mp), ms(md), inputLagLink)
			if float64(mp) > inputLagRatio*float64(md) || mp > md+inputLagAddedMax {
				t.Errorf("keys through the proxy take %s (median) to echo on the display, direct %s over the same link: "+
					"over %.1f× or +%s. A relay stall of this size is Nagle's algorithm left on (a small message waits for the peer's delayed ACK), "+
					"batching, or a read that waits for a whole message", ms(mp), ms(md), inputLagRatio, ms(inputLagAddedMax))
			}
		},
	})
}
