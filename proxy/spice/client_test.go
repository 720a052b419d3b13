package spice_test

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
)

func startServer(t *testing.T, s *spicetest.Server) *spicetest.Server {
	t.Helper()
	if s.Password == "" {
		s.Password = "hunter2"
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClientSessionAgainstSyntheticServer(t *testing.T) {
	srv := startServer(t, &spicetest.Server{})
	ctx := ctxT(t)
	d := &spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: "hunter2"}
	s, err := d.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ID == 0 || s.ID != srv.SessionID() {
		t.Fatalf("session id %#x, server has %#x", s.ID, srv.SessionID())
	}
	if !s.Main.Mini {
		t.Fatal("both ends advertise MINI_HEADER but the channel uses full headers")
	}
	list, err := s.ChannelsList(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("CHANNELS_LIST = %v, %v", list, err)
	}
	disp, err := s.Open(ctx, spice.ChannelDisplay, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := disp.InitDisplay(); err != nil {
		t.Fatal(err)
	}
	if _, draw, err := disp.WaitFirstDraw(ctx); err != nil || draw.Type != spice.MsgDisplayDrawCopy {
		t.Fatalf("first draw: type %d, %v", draw.Type, err)
	}
	in, err := s.Open(ctx, spice.ChannelInputs, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Type("h"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, spice.ChannelCursor, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(srv.KeysDown()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := srv.KeysDown(); len(got) != 1 || got[0] != 0x23 {
		t.Fatalf("server saw KEY_DOWN %#x, want [0x23]", got)
	}
}

func TestClientDisplayStreamsPastAckWindow(t *testing.T) {
	// 200 messages: the server stalls at 40 un-ACKed unless the client
	// answers SET_ACK with ACK_SYNC and ACKs every 20.
	srv := startServer(t, &spicetest.Server{StreamBytes: 200 * 1024, StreamMessageSize: 1024})
	ctx := ctxT(t)
	s, err := (&spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: "hunter2"}).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	disp, err := s.Open(ctx, spice.ChannelDisplay, 0)
	if err != nil {
		t.Fatal(err)
	}
	disp.InitDisplay()
	n := 0
	for n < 200 {
		m, err := disp.Recv(ctx)
		if err != nil {
			t.Fatalf("after %d streamed messages: %v", n, err)
		}
		if m.Type == spice.MsgDisplayDrawCopy && len(m.Body) == 1024 {
			n++
		}
	}
}

func TestClientLinkErrors(t *testing.T) {
	srv := startServer(t, &spicetest.Server{})
	ctx := ctxT(t)
	_, err := (&spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: "wrong"}).Connect(ctx)
	var le *spice.LinkError
	if !errors.As(err, &le) || le.Step != spice.StepLinkResult || le.Code != spice.ErrPermissionDenied {
		t.Fatalf("wrong password: got %v, want link result PERMISSION_DENIED", err)
	}
	_, err = (&spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: "hunter2"}).DialChannel(ctx, 12345, spice.ChannelDisplay, 0)
	if !errors.Is(err, spice.ErrBadConnectionID) {
		t.Fatalf("foreign connection id: got %v, want BAD_CONNECTION_ID", err)
	}
	_, err = (&spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: "hunter2"}).DialChannel(ctx, 0, 42, 0)
	if !errors.As(err, &le) || le.Step != spice.StepLinkReply {
		t.Fatalf("channel type 42: got %v, want a link reply failure", err)
	}
	_, err = (&spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: string(make([]byte, 61))}).Connect(ctx)
	if !errors.Is(err, spice.ErrPasswordTooLong) {
		t.Fatalf("61-byte password: got %v", err)
	}
}

func tlsPair(t *testing.T, subject string) (*pki.CA, *tls.Config) {
	t.Helper()
	ca, err := pki.NewCA("spicetest CA")
	if err != nil {
		t.Fatal(err)
	}
	name, err := pki.ParseSubject(subject)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(name, "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return ca, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
}

func TestClientTLSHostSubject(t *testing.T) {
	const subject = "C=XX,L=Testville,O=ProtoTest,CN=localhost"
	ca, cfg := tlsPair(t, subject)
	srv := startServer(t, &spicetest.Server{TLS: cfg})
	ctx := ctxT(t)
	for _, tc := range []struct {
		name, host, subject string
		ok                  bool
	}{
		{"SAN match", "127.0.0.1", "", true},
		{"exact subject", "127.0.0.1", subject, true},
		{"subject with spaces after commas", "127.0.0.1", "C=XX, L=Testville, O=ProtoTest, CN=localhost", true},
		{"CN only", "127.0.0.1", "CN=localhost", false},
		{"reversed order", "127.0.0.1", "CN=localhost,O=ProtoTest,L=Testville,C=XX", false},
		{"wrong CN", "127.0.0.1", "C=XX,L=Testville,O=ProtoTest,CN=other", false},
		// host-subject replaces the host name check.
		{"host not in SANs, no subject", "127.0.0.2", "", false},
		{"host not in SANs, subject", "127.0.0.2", subject, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &spice.Dialer{Host: "127.0.0.1", ServerName: tc.host, TLSPort: srv.Port(), Password: "hunter2", CA: ca.Pool(), HostSubject: tc.subject}
			s, err := d.Connect(ctx)
			if tc.ok {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				if !s.Main.Secure {
					t.Fatal("channel not marked secure")
				}
				s.Close()
				return
			}
			var le *spice.LinkError
			if !errors.As(err, &le) || le.Step != spice.StepTLS {
				t.Fatalf("want a TLS step failure, got %v", err)
			}
		})
	}
	// A different CA fails even with the right subject.
	other, _ := tlsPair(t, subject)
	_, err := (&spice.Dialer{Host: "127.0.0.1", TLSPort: srv.Port(), Password: "hunter2", CA: other.Pool(), HostSubject: subject}).Connect(ctx)
	var le *spice.LinkError
	if !errors.As(err, &le) || le.Step != spice.StepTLS {
		t.Fatalf("wrong CA: want TLS failure, got %v", err)
	}
}

func TestClientFollowsNeedSecured(t *testing.T) {
	ca, cfg := tlsPair(t, "O=spicetest,CN=localhost")
	secure := startServer(t, &spicetest.Server{TLS: cfg})
	plain := startServer(t, &spicetest.Server{NeedSecured: true})
	ctx := ctxT(t)
	d := &spice.Dialer{Host: "127.0.0.1", Port: plain.Port(), TLSPort: secure.Port(), Password: "hunter2", CA: ca.Pool()}
	s, err := d.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Main.FollowedNeedSecured || !s.Main.Secure {
		t.Fatalf("main did not follow NEED_SECURED to TLS (followed=%v secure=%v)", s.Main.FollowedNeedSecured, s.Main.Secure)
	}
	// Without a TLS port the client reports NEED_SECURED from the reply.
	_, err = (&spice.Dialer{Host: "127.0.0.1", Port: plain.Port(), Password: "hunter2"}).Connect(ctx)
	var le *spice.LinkError
	if !errors.As(err, &le) || le.Step != spice.StepLinkReply || le.Code != spice.ErrNeedSecured {
		t.Fatalf("no TLS port: got %v, want link reply NEED_SECURED", err)
	}
}

func TestClientClosingDisplayEarlySendsDisplayInit(t *testing.T) {
	srv := startServer(t, &spicetest.Server{})
	ctx := ctxT(t)
	s, err := (&spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: "hunter2"}).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	disp, err := s.Open(ctx, spice.ChannelDisplay, 0)
	if err != nil {
		t.Fatal(err)
	}
	disp.Close()
	s.Close()
	if !srv.WaitIdle(5 * time.Second) {
		t.Fatal("server still has connections after the session closed")
	}
	if srv.Crashed.Load() {
		t.Fatal("closing a display channel before DISPLAY_INIT would have crashed spice-server")
	}
}

func TestClientDeadline(t *testing.T) {
	srv := startServer(t, &spicetest.Server{Silent: true})
	start := time.Now()
	_, err := (&spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: "x", Timeout: 200 * time.Millisecond}).Connect(context.Background())
	var le *spice.LinkError
	if !errors.As(err, &le) || le.Step != spice.StepLinkReply {
		t.Fatalf("silent server: got %v, want a link reply timeout", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("the 200 ms link deadline did not fire (took %v)", time.Since(start))
	}
}
