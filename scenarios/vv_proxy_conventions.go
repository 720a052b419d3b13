package scenarios

import (
	"context"
	"regexp"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:      "vv-proxy-conventions",
		Tier:      Core,
		Exercises: ProxyAPI,
		Description: "this repository's API: its proxy .vv headers, a 48-character token, delete-this-file, the title naming the session, " +
			"and the proxy's own listeners as ports",
		Requires: []harness.Capability{harness.CapInProcess, harness.CapSPICEListener},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			require.NoError(t, err, "fetch proxy .vv")
			for h, want := range map[string]string{
				"Content-Type":        "application/x-virt-viewer",
				"Content-Disposition": `attachment; filename="console.vv"`,
				"Cache-Control":       "no-store",
			} {
				assert.Equal(t, want, f.Header.Get(h), "header %s", h)
			}
			assert.True(t, f.DeleteThisFile, "delete-this-file=1")
			assert.Regexp(t, `^[A-Za-z0-9]{48}$`, f.Password, "the token's shape")
			name := regexp.QuoteMeta(vm.Console().Name)
			assert.Regexp(t, `^`+name+` via proxy session [A-Za-z0-9]+$`, f.Title, "title")
			plain, tls := env.Target().(harness.SPICEListener).SPICEAddrs()
			assert.Equal(t, plain, joinHostPort(f.Host, f.Port), "port= is the proxy's plain listener")
			assert.Equal(t, tls, joinHostPort(f.Host, f.TLSPort), "tls-port= is the proxy's TLS listener")
		},
	})
}
