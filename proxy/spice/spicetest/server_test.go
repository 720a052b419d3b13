package spicetest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, s *spicetest.Server) *spice.Dialer {
	t.Helper()
	s.Password = "hunter2"
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &spice.Dialer{Host: "127.0.0.1", Port: s.Port(), Password: s.Password, Timeout: 5 * time.Second}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// One session at a time (qemu's behaviour): a second main link replaces
// the session id, so the first session's id no longer links.
func TestOneSessionAtATime(t *testing.T) {
	d := start(t, &spicetest.Server{})
	c := ctx(t)
	s1, err := d.Connect(c)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := d.Connect(c)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s1.Open(c, spice.ChannelInputs, 0); !errors.Is(err, spice.ErrBadConnectionID) {
		t.Fatalf("unexpected error linking the replaced session (-want %v +got %v)", spice.ErrBadConnectionID, err)
	}
	if _, err := s2.Open(c, spice.ChannelInputs, 0); err != nil {
		t.Fatal(err)
	}
}

// MultiSession keeps sessions side by side; a session's main channel
// takes its other channels along when it closes, and its id then no
// longer links.
func TestMultiSession(t *testing.T) {
	key, err := spice.GenerateLinkKey()
	if err != nil {
		t.Fatal(err)
	}
	srv := &spicetest.Server{MultiSession: true, LinkKey: key}
	d := start(t, srv)
	c := ctx(t)
	var sessions []*spice.Session
	for range 3 {
		s, err := d.Connect(c)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		sessions = append(sessions, s)
	}
	if got := srv.Sessions(); got != 3 {
		t.Fatalf("unexpected live sessions (-want 3 +got %d)", got)
	}
	var inputs []*spice.Channel
	for _, s := range sessions {
		ch, err := s.Open(c, spice.ChannelInputs, 0)
		if err != nil {
			t.Fatalf("session %#x: %v", s.ID, err)
		}
		inputs = append(inputs, ch)
	}
	sessions[0].Main.Close()
	select {
	case <-inputs[0].Done():
	case <-time.After(5 * time.Second):
		t.Fatal("closing main did not close its session's inputs channel")
	}
	select {
	case <-inputs[1].Done():
		t.Fatalf("another session's channel closed: %v", inputs[1].Err())
	case <-time.After(50 * time.Millisecond):
	}
	for srv.Sessions() != 2 {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := d.DialChannel(c, sessions[0].ID, spice.ChannelCursor, 0); !errors.Is(err, spice.ErrBadConnectionID) {
		t.Fatalf("unexpected error linking an ended session (-want %v +got %v)", spice.ErrBadConnectionID, err)
	}
	if _, err := sessions[2].Open(c, spice.ChannelCursor, 0); err != nil {
		t.Fatal(err)
	}
}
