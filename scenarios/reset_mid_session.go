package scenarios

import (
	"context"
	"fmt"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/qemu"
)

// resetFreedWithin bounds how long qemu may keep the reset session's
// channels: the proxy learns of the reset on its next read of the client
// (at once, every pump is reading) and closes the backend side then.
const resetFreedWithin = 5 * time.Second

func init() {
	Register(Scenario{
		Name:      "reset-mid-session",
		Tier:      Hardening,
		Exercises: ProxySPICE | QemuDirect,
		Description: "when the client's connections are reset (RST) mid-session, the client sees every channel closed, the proxy closes the session's links " +
			"to qemu (qemu reports none left within 5 s), and a session on another VM through the same proxy carries on typing",
		// The client leg goes through the harness's shaping listener (no
		// toxics), so the test can reset it.
		Options: []harness.Option{harness.VMs(2), harness.Network(harness.ClientLeg, harness.Link{})},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			victim, other := env.VM(0), env.VM(1)
			s, _, err := env.Connect(ctx, harness.Proxy, victim)
			require.NoError(t, err, "session on vm 1")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)
			b, err := proxyEchoer(ctx, env, other)
			require.NoError(t, err)
			defer b.Close()
			_, err = b.typeTimed(ctx, "ab", 25*time.Millisecond)
			require.NoError(t, err, "the other session before the reset")
			info, err := victim.QuerySpice(ctx)
			require.NoError(t, err, "query-spice vm 1")
			require.NotEmpty(t, info.Channels, "qemu of vm 1 has no SPICE channel before the reset")

			n := env.Net().Reset(harness.ClientLeg.VM(0))
			require.GreaterOrEqual(t, n, 4, "connections reset on vm 1's client leg (main, display, inputs, cursor)")
			start := time.Now()
			waitClosed(t, start, 10*time.Second, "the reset", s.Main, display, inputs, cursor)

			// The proxy frees the session: qemu's side of every channel
			// closes.
			left, err := waitNoSpiceChannels(ctx, victim, resetFreedWithin)
			if err != nil {
				t.Errorf("qemu of vm 1 still has %d SPICE channel(s) %s after the client's connections were reset: "+
					"the proxy keeps the backend side of a channel whose client is gone (%v)", left, resetFreedWithin, err)
			}
			t.Logf("qemu of vm 1 had no channel left %s after the reset", ms(time.Since(start)))

			// The other session carries on.
			_, err = b.typeTimed(ctx, "cd", 25*time.Millisecond)
			require.NoError(t, err, "the other session after the reset")
			wantOpen(t, "after another session's reset", b.s.Main, b.display, b.inputs)
		},
	})
}

// waitNoSpiceChannels waits until qemu reports no SPICE channel, up to
// within; it returns how many were left when it gave up.
func waitNoSpiceChannels(ctx context.Context, vm *harness.VM, within time.Duration) (int, error) {
	return waitSpiceChannelsGone(ctx, vm, within, nil)
}

// waitSpiceChannelsGone polls qemu's query-spice until none of its
// channels that of accepts (nil: any) is left, up to within; it returns
// how many were left when it gave up. No QMP event says that a set of
// channels is gone as a whole, hence the poll.
func waitSpiceChannelsGone(ctx context.Context, vm *harness.VM, within time.Duration, of func(qemu.SpiceChannel) bool) (int, error) {
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	left := -1
	for {
		info, err := vm.QuerySpice(wctx)
		if err == nil {
			left = 0
			for _, c := range info.Channels {
				if of == nil || of(c) {
					left++
				}
			}
			if left == 0 {
				return 0, nil
			}
		}
		select {
		case <-wctx.Done():
			return left, fmt.Errorf("%w (last query-spice error: %v)", context.Cause(wctx), err)
		case <-time.After(50 * time.Millisecond): // polling qemu's state, which no event announces as a whole
		}
	}
}
