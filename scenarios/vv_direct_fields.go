package scenarios

import (
	"context"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:        "vv-direct-fields",
		Description: "the direct console.vv carries qemu's own host, port and live ticket",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f, err := env.FetchVV(ctx, harness.Direct, vm)
			check(t, err, "fetch direct .vv")
			info, err := vm.QuerySpice(ctx)
			check(t, err, "query-spice")
			c := vm.Console()
			if f.Type != "spice" || f.Host != c.HypervisorIP || f.Port != info.Port || f.TLSPort != info.TLSPort {
				t.Errorf("direct .vv has %s:%d/%d (type %q); qemu serves %s:%d/%d", f.Host, f.Port, f.TLSPort, f.Type, info.Host, info.Port, info.TLSPort)
			}
			if f.Password != c.Ticket || f.Password == "" {
				t.Errorf("direct .vv password is not the console's live ticket")
			}
			if info.Auth != "spice" {
				t.Errorf("query-spice auth %q, want spice (ticketing on)", info.Auth)
			}
		},
	})
}
