package scenarios

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "display-drop-before-init",
		Description: "a client dropping its display channel right after link leaves qemu alive and usable",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			for round := 0; round < 3; round++ {
				s, f, err := env.Connect(ctx, harness.Proxy, vm)
				check(t, err, "session")
				// Link display through the proxy on a raw TLS socket and
				// drop it at once, before any DISPLAY_INIT: what a
				// crashing client does. spice-server 0.15 segfaults if
				// the proxy passes that close on as is.
				d := harness.Dialer(f.File)
				addr := net.JoinHostPort(f.Host, strconv.Itoa(f.TLSPort))
				raw, err := tls.Dial("tcp", addr, spice.TLSConfig(d.CA, f.Host, f.HostSubject))
				check(t, err, "TLS dial")
				_, err = spice.Link(raw, &spice.LinkMess{ConnectionID: s.ID, ChannelType: spice.ChannelDisplay,
					CommonCaps: spice.DefaultCommonCaps, ChannelCaps: spice.ClientChannelCaps(spice.ChannelDisplay)},
					f.Password, spice.LinkOptions{Deadline: time.Now().Add(10 * time.Second)})
				check(t, err, "display link")
				raw.Close()
				time.Sleep(1500 * time.Millisecond) // the crash came up to 1 s later
				alive(ctx, t, vm)
				s.Close()
			}
			// And a new session still gets pictures.
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			check(t, err, "new session")
			defer s.Close()
			openAll(ctx, t, s)
		},
	})
}
