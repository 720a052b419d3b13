package harness

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/qemu"
)

// TestChannelsOption: channels add up across options, reach qemu as one
// option per call, and a conflict is refused before anything boots.
func TestChannelsOption(t *testing.T) {
	bare := WithTarget(func(Settings) (Target, error) { return bareTarget{}, nil })
	c, err := newConfig([]Option{bare, Channels(qemu.AgentChannel()), Channels(qemu.PortChannel("org.example.echo"), qemu.Tablet())})
	require.NoError(t, err)
	assert.Equal(t, []qemu.Channel{qemu.AgentChannel(), qemu.PortChannel("org.example.echo"), qemu.Tablet()}, (&Env{cfg: c}).Channels())
	assert.Len(t, c.qemuOpts, 2)

	_, err = newConfig([]Option{bare, AllChannels(), Channels(qemu.PortChannel(qemu.EchoPortName))})
	assert.ErrorContains(t, err, "named twice")
	_, err = newConfig([]Option{bare, Channels(qemu.USBRedirChannels(0))})
	assert.ErrorIs(t, err, qemu.ErrInvalidConfig)
}
