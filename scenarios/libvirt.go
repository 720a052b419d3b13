package scenarios

import (
	"context"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// The ticket and serial checks on a libvirt-managed VM, over libvirtd's
// unix socket and over TCP (how a lane reaches other hypervisor hosts).
func init() {
	for _, tr := range []struct{ name, uri string }{
		{"unix", "qemu:///system"},
		{"tcp", "qemu+tcp://127.0.0.1/system"},
	} {
		Register(Scenario{
			Name:        "libvirt-" + tr.name + "-ticket-and-keys",
			Tier:        Core,
			Exercises:   ProxySPICE | QemuDirect,
			Description: "on a libvirt domain (" + tr.uri + "): fresh ticket links, wrong ticket refused, keys through the proxy reach the serial log",
			Options:     []harness.Option{harness.Libvirt(tr.uri)},
			Needs:       []string{"libvirtd:libvirt-daemon", "virsh:libvirt-clients"},
			Run: func(ctx context.Context, t harness.T, env *harness.Env) {
				vm := env.VM(0)
				bad := directDialer(vm)
				bad.Password = "wrong"
				_, err := bad.Connect(ctx)
				wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)
				s, err := directDialer(vm).Connect(ctx)
				require.NoError(t, err, "direct link with the fresh ticket")
				s.Close()

				p, _, err := env.Connect(ctx, harness.Proxy, vm)
				require.NoError(t, err, "proxy session")
				defer p.Close()
				_, in, _ := openAll(ctx, t, p)
				require.NoError(t, in.Type("virt"), "type")
				waitSerial(ctx, t, vm, `READY> virt`)
			},
		})
	}
}
