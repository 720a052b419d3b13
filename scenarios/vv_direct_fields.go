package scenarios

import (
	"context"
	"net"
	"slices"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:        "vv-direct-fields",
		Tier:        Core,
		Exercises:   ProxyAPI,
		Description: "the direct console.vv carries qemu's own endpoint (its hypervisor's name or address), port and live ticket",
		Requires:    []harness.Capability{harness.CapDirectVV},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f, err := env.FetchVV(ctx, harness.Direct, vm)
			require.NoError(t, err, "fetch direct .vv")
			info, err := vm.QuerySpice(ctx)
			require.NoError(t, err, "query-spice")
			c := vm.Console()
			assert.Equal(t, "spice", f.Type, "type=")
			// Kerbside writes the hypervisor's name and falls back to its
			// address; either is right when it leads clients to qemu.
			if f.Host != c.HypervisorIP {
				addrs, err := net.DefaultResolver.LookupHost(ctx, f.Host)
				require.NoError(t, err, "resolve host=%s", f.Host)
				assert.True(t, slices.Contains(addrs, c.HypervisorIP), "host=%s resolves to %v, not to the hypervisor's %s", f.Host, addrs, c.HypervisorIP)
			}
			assert.Equal(t, info.Port, f.Port, "port= is qemu's plain SPICE port")
			assert.Equal(t, info.TLSPort, f.TLSPort, "tls-port= is qemu's TLS port")
			assert.NotEmpty(t, f.Password, "password=")
			assert.Equal(t, c.Ticket, f.Password, "password= is the console's live ticket")
			assert.Equal(t, "spice", info.Auth, "query-spice auth (ticketing on)")
		},
	})
}
