package scenarios

import (
	"context"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:        "proxy-handshake",
		Description: "a token from the proxy .vv links main through the proxy to qemu's session",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			before := spiceConnections(vm)
			s, f, err := env.Connect(ctx, harness.Proxy, vm)
			check(t, err, "link main through the proxy")
			defer s.Close()
			if !s.Main.Secure {
				t.Errorf("main channel not on TLS")
			}
			if spiceConnections(vm) <= before {
				t.Errorf("qemu reported no SPICE connection for the proxied session")
			}
			info, err := vm.QuerySpice(ctx)
			check(t, err, "query-spice")
			if len(info.Channels) == 0 {
				t.Errorf("qemu lists no connected channel")
			}
			// The ticket never reaches the client: only the token does.
			if f.Password == vm.Console().Ticket {
				t.Errorf("proxy .vv carries qemu's ticket")
			}
		},
	})
}
