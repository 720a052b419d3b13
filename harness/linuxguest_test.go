package harness

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// TestLinuxGuestOption: the option asks qemu for the Linux guest and a
// qxl head, and a VM without it refuses GuestEvent with the fix in the
// message. (Booting it is qemu's TestIntegrationLinuxGuest: one Linux
// boot in the default run is enough.)
func TestLinuxGuestOption(t *testing.T) {
	bare := WithTarget(func(Settings) (Target, error) { return bareTarget{}, nil })
	c, err := newConfig([]Option{bare, LinuxGuest()})
	require.NoError(t, err)
	assert.True(t, c.linuxGuest)
	assert.Len(t, c.qemuOpts, 2)

	vm := &VM{VM: qemuVMStub{}}
	_, err = vm.GuestEvent(context.Background(), guestproto.TypeReady, nil)
	assert.ErrorContains(t, err, "harness.LinuxGuest()")
	assert.NoError(t, (*VM)(nil).Close())
}

// qemuVMStub is a VM that only has a name.
type qemuVMStub struct{ qemu.VM }

func (qemuVMStub) String() string { return "stub" }
