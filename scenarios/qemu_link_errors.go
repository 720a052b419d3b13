package scenarios

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strconv"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "qemu-link-errors",
		Tier:        Core,
		Exercises:   QemuDirect,
		Description: "qemu itself answers bad magic 2, major 3 VERSION_MISMATCH 4, wrong ticket 7, foreign connection id 8",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			c := vm.Console()
			addr := net.JoinHostPort(c.HypervisorIP, strconv.Itoa(c.InsecurePort))
			good := (&spice.LinkMess{ChannelType: spice.ChannelMain, CommonCaps: spice.DefaultCommonCaps, ChannelCaps: spice.ClientChannelCaps(spice.ChannelMain)}).Marshal()
			for _, tc := range []struct {
				name string
				off  int
				val  uint32
				want spice.LinkErr
			}{
				{"bad magic", 0, 0x12345678, spice.ErrInvalidMagic},
				{"major 3", 4, 3, spice.ErrVersionMismatch},
				{"major 1", 4, 1, spice.ErrVersionMismatch},
			} {
				b := bytes.Clone(good)
				binary.LittleEndian.PutUint32(b[tc.off:], tc.val)
				conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
				require.NoError(t, err, "dial qemu")
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				conn.Write(b)
				r, err := spice.ReadLinkReply(conn, spice.DefaultMaxLinkSize)
				conn.Close()
				require.NoError(t, err, tc.name+": read qemu's reply")
				if r.Error != tc.want {
					t.Errorf("%s: qemu answered %v, want %v", tc.name, r.Error, tc.want)
				}
			}
			d := &spice.Dialer{Host: c.HypervisorIP, Port: c.InsecurePort, Password: "wrong-ticket"}
			_, err := d.Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)

			d.Password = c.Ticket
			s, err := d.Connect(ctx)
			require.NoError(t, err, "link with the ticket")
			defer s.Close()
			_, err = d.DialChannel(ctx, s.ID^0x0f0f0f0f, spice.ChannelDisplay, 0)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrBadConnectionID)
			// The live session is unaffected by the refusals.
			if _, err := s.Open(ctx, spice.ChannelCursor, 0); err != nil {
				t.Errorf("session after the refusals: %v", err)
			}
			alive(ctx, t, vm)
		},
	})
}
