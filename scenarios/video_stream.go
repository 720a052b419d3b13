package scenarios

import (
	"context"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

func init() {
	Register(Scenario{
		Name:        "video-stream",
		Tier:        Channels,
		Exercises:   ProxySPICE | QemuDirect,
		Description: "the guest animates a region (streaming-video=all): STREAM_CREATE, a frame of DATA per update and STREAM_DESTROY arrive through the proxy, and the final picture equals the direct one",
		Options:     everyChannelLane(),
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			guestCommand(ctx, t, vm, guestproto.CmdDraw, "head", "0")
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "main through the proxy")
			d, err := s.OpenDisplay(ctx, 0)
			require.NoError(t, err, "display:0 through the proxy")
			_, _, err = screenDigest(ctx, d)
			require.NoError(t, err, "display:0's first picture")
			// 75 frames of noise at 25 fps: spice-server makes a stream of
			// a region updated that often (after ~20 frames) and sends
			// each later frame as one MJPEG frame (over 64 KiB for noise
			// of 512x384); the stream ends a second after the last frame.
			const frames = 75
			ack := guestCommand(ctx, t, vm, guestproto.CmdAnimate, "head", "0", "frames", itoa(frames), "fps", "25")
			t.Logf("the guest animated %s frames in %s ms", ack.Value("frames"), ack.Value("ms"))
			// The animation ended with the ack; its stream ends about a
			// second later.
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			st, err := d.WaitStreams(wctx, func(st spice.StreamStats) bool { return st.Created >= 1 && st.Destroyed >= st.Created })
			cancel()
			if err != nil {
				st = d.Streams()
				t.Fatalf("stream messages through the proxy after %d frames: %d created, %d destroyed, %d DATA (%d bytes): %v", frames, st.Created, st.Destroyed, st.DataMessages, st.DataBytes, err)
			}
			if st.DataMessages < 10 {
				t.Fatalf("%d stream DATA messages through the proxy for %d frames, want at least 10", st.DataMessages, frames)
			}
			t.Logf("through the proxy: %d stream(s), %d DATA messages, %d bytes (%d a frame)", st.Created, st.DataMessages, st.DataBytes, st.DataBytes/uint64(st.DataMessages))
			s.Close()
			waitNoSession(ctx, t, vm, s.ID)
			// The final picture: the last frame stays on screen; a session
			// through the proxy and one direct get the same lossless picture.
			var digests []string
			connectBoth(ctx, t, env, vm, func(path string, s *spice.Session) {
				d, err := s.OpenDisplay(ctx, 0)
				require.NoError(t, err, "%s: display:0", path)
				digest, _, err := screenDigest(ctx, d)
				require.NoError(t, err, "%s: display:0's picture", path)
				digests = append(digests, digest)
			})
			if digests[0] != digests[1] {
				t.Errorf("the final picture through the proxy differs from the direct one (sha256 %s, direct %s)", digests[0], digests[1])
			}
		},
	})
}
