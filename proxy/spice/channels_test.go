package spice_test

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
)

// pattern is n deterministic bytes.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// echo copies what arrives on c back to it until c closes.
func echo(c net.Conn) { io.Copy(c, c) }

// TestVMCChannelsCarryBytesBothWays: usbredir, a named port and webdav
// move a payload larger than one DATA message byte-exact both ways, and
// OpenPort finds a port by its PORT_INIT name.
func TestVMCChannelsCarryBytesBothWays(t *testing.T) {
	var devs []spicetest.VMCDevice
	for _, d := range []spicetest.VMCDevice{
		{Type: spice.ChannelUsbredir}, {Type: spice.ChannelPort, Name: "org.example.other"},
		{Type: spice.ChannelPort, Name: "org.example.echo"}, {Type: spice.ChannelWebdav, Name: "org.spice-space.webdav.0"},
	} {
		a, b := net.Pipe()
		go echo(b)
		t.Cleanup(func() { b.Close() })
		d.Conn = a
		devs = append(devs, d)
	}
	srv := startServer(t, &spicetest.Server{VMC: devs, Channels: []spice.ChannelID{
		{Type: spice.ChannelUsbredir}, {Type: spice.ChannelPort}, {Type: spice.ChannelPort, ID: 1}, {Type: spice.ChannelWebdav},
	}})
	ctx := ctxT(t)
	s, err := (&spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: "hunter2"}).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := s.OpenVMC(ctx, spice.ChannelUsbredir, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.OpenPort(ctx, "org.example.echo")
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != (spice.ChannelID{Type: spice.ChannelPort, ID: 1}) || !p.Opened() {
		t.Fatalf("OpenPort found %v (opened %v), want port:1 open", p.ID, p.Opened())
	}
	w, err := s.OpenWebDAV(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if w.Init.Name != "org.spice-space.webdav.0" {
		t.Fatalf("unexpected webdav PORT_INIT name %q", w.Init.Name)
	}
	for _, v := range []*spice.VMC{u, p.VMC, w.VMC} {
		data := pattern(3*spice.VMCMaxData+17, byte(v.ID.Type))
		if _, err := v.Write(data); err != nil {
			t.Fatal(err)
		}
		got, err := v.ReadFull(ctx, len(data))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%v: echoed %d bytes, %v; want the %d sent", v.ID, len(got), err, len(data))
		}
	}
	// Last: looking links each port again, which takes the device from
	// the channels above (one client per channel, as in spice-server).
	if _, err := s.OpenPort(ctx, "org.example.none"); err == nil {
		t.Fatal("OpenPort found a port nobody offers")
	}
}

func TestPlaybackRawPCMAndRecord(t *testing.T) {
	srv := startServer(t, &spicetest.Server{Audio: true})
	ctx := ctxT(t)
	s, err := (&spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: "hunter2"}).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pb, err := s.OpenPlayback(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	mode, err := pb.Mode(ctx)
	if err != nil || mode.Mode != spice.AudioModeRaw {
		t.Fatalf("playback MODE %+v, %v; want raw without Opus", mode, err)
	}
	pcm := pattern(48000*4/10, 9) // 100 ms
	if err := srv.PlayPCM(pcm); err != nil {
		t.Fatal(err)
	}
	st, err := pb.Start(ctx)
	if err != nil || st != (spice.AudioStart{Channels: 2, Format: spice.AudioFormatS16, Frequency: 48000}) {
		t.Fatalf("unexpected PLAYBACK_START %+v, %v", st, err)
	}
	got, err := pb.ReadPCM(ctx, len(pcm))
	if err != nil || !bytes.Equal(got, pcm) {
		t.Fatalf("PCM: %d bytes, %v", len(got), err)
	}

	rec, err := s.OpenRecord(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.StartRecord(); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.WaitStart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rec.SendMode(0, spice.AudioModeRaw); err != nil {
		t.Fatal(err)
	}
	if err := rec.SendStartMark(0); err != nil {
		t.Fatal(err)
	}
	if err := rec.SendPCM(0, pcm, 0); err != nil {
		t.Fatal(err)
	}
	err = srv.WaitFor(ctx, func() bool { _, _, got := srv.Recorded(); return len(got) >= len(pcm) })
	m, marks, rpcm := srv.Recorded()
	if err != nil || m != spice.AudioModeRaw || marks != 1 || !bytes.Equal(rpcm, pcm) {
		t.Fatalf("recorded mode %d, %d marks, %d of %d bytes: %v", m, marks, len(rpcm), len(pcm), err)
	}
}

func TestMouseWaitsForMotionAcks(t *testing.T) {
	srv := startServer(t, &spicetest.Server{})
	ctx := ctxT(t)
	s, err := (&spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: "hunter2"}).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := s.OpenInputs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := in.Motion(ctx, 2, -1); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Position(ctx, 100, 200, 1); err != nil {
		t.Fatal(err)
	}
	if err := in.Click(spice.MouseButtonLeft); err != nil {
		t.Fatal(err)
	}
	want := []spice.Message{}
	for range 10 {
		want = append(want, spice.Message{Header: spice.Header{Type: spice.MsgcInputsMouseMotion}, Body: spice.MarshalMouseMotion(2, -1, 0)})
	}
	want = append(want,
		spice.Message{Header: spice.Header{Type: spice.MsgcInputsMousePosition}, Body: spice.MarshalMousePosition(100, 200, 0, 1)},
		spice.Message{Header: spice.Header{Type: spice.MsgcInputsMousePress}, Body: spice.MarshalMouseButton(spice.MouseButtonLeft, spice.ButtonMaskLeft)},
		spice.Message{Header: spice.Header{Type: spice.MsgcInputsMouseRelease}, Body: spice.MarshalMouseButton(spice.MouseButtonLeft, 0)},
	)
	if err := srv.WaitFor(ctx, func() bool { return len(srv.MouseEvents()) >= len(want) }); err != nil {
		t.Fatalf("server saw %d mouse messages, want %d: %v", len(srv.MouseEvents()), len(want), err)
	}
	got := srv.MouseEvents()
	norm := func(ms []spice.Message) [][2]any {
		var out [][2]any
		for _, m := range ms {
			out = append(out, [2]any{m.Type, m.Body})
		}
		return out
	}
	if diff := cmp.Diff(norm(want), norm(got)); diff != "" {
		t.Errorf("unexpected mouse messages (-want +got):\n%s", diff)
	}
	if sent, acked := in.MotionAcked(); sent != 11 || acked < 8 {
		t.Errorf("motions sent %d, ACKed %d; want 11 and at least 8", sent, acked)
	}
}
