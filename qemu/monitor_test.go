package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeQMP is a QMP server on the other end of a pipe. handle answers one
// command (nil: no answer).
type fakeQMP struct {
	conn   net.Conn
	handle func(cmd map[string]any) []string
}

func startFake(t *testing.T, handle func(cmd map[string]any) []string) (*socketMonitor, func()) {
	t.Helper()
	client, server := net.Pipe()
	f := &fakeQMP{conn: server, handle: handle}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w := bufio.NewWriter(server)
		fmt.Fprintln(w, `{"QMP":{"version":{"qemu":{"major":7,"minor":2,"micro":22},"package":""},"capabilities":["oob"]}}`)
		w.Flush()
		sc := bufio.NewScanner(server)
		for sc.Scan() {
			var cmd map[string]any
			if json.Unmarshal(sc.Bytes(), &cmd) != nil {
				continue
			}
			var out []string
			if cmd["execute"] == "qmp_capabilities" {
				out = []string{`{"return":{}}`}
			} else {
				out = f.handle(cmd)
			}
			for _, l := range out {
				fmt.Fprintln(w, l)
			}
			w.Flush()
		}
	}()
	m := newSocketMonitor(client, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.connect(ctx); err != nil {
		t.Fatal(err)
	}
	return m, func() {
		m.close()
		server.Close()
		<-done
	}
}

func idOf(cmd map[string]any) string { b, _ := json.Marshal(cmd["id"]); return string(b) }

func TestMonitorKeepsErrorClass(t *testing.T) {
	m, stop := startFake(t, func(cmd map[string]any) []string {
		return []string{`{"id":` + idOf(cmd) + `,"error":{"class":"CommandNotFound","desc":"The command bogus has not been found"}}`}
	})
	defer stop()
	_, err := m.run(context.Background(), []byte(`{"execute":"bogus"}`))
	var qe *QMPError
	if !errors.As(err, &qe) {
		t.Fatalf("error %v is not a *QMPError", err)
	}
	want := &QMPError{Command: "bogus", Class: "CommandNotFound", Desc: "The command bogus has not been found"}
	if diff := cmp.Diff(want, qe); diff != "" {
		t.Errorf("unexpected QMP error (-want +got):\n%s", diff)
	}
	// Typed raw calls keep it too.
	err = newRaw(context.Background(), m).Quit()
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Command != "quit" {
		t.Errorf("raw call lost the QMP error class: %v", err)
	}
}

// TestMonitorLateReplyGoesNowhere: a command abandoned on timeout must
// not hand its reply to the next command (go-qemu matches by order).
func TestMonitorLateReplyGoesNowhere(t *testing.T) {
	var held string
	m, stop := startFake(t, func(cmd map[string]any) []string {
		if cmd["execute"] == "slow" {
			held = `{"id":` + idOf(cmd) + `,"return":"slow"}`
			return nil
		}
		// Answer the held reply first, then ours.
		out := []string{held, `{"id":` + idOf(cmd) + `,"return":"fast"}`}
		held = ""
		return out
	})
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := m.run(ctx, []byte(`{"execute":"slow"}`))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unexpected error for an unanswered command: %v", err)
	}
	got, err := m.run(context.Background(), []byte(`{"execute":"fast"}`))
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ Return string }
	json.Unmarshal(got, &r)
	if diff := cmp.Diff("fast", r.Return); diff != "" {
		t.Errorf("unexpected reply (-want +got):\n%s", diff)
	}
}

// TestMonitorEventsNeverBlockReplies floods events at a subscriber that
// never reads; replies must still arrive and the queue stay bounded.
func TestMonitorEventsNeverBlockReplies(t *testing.T) {
	hub := newEventHub()
	exited := make(chan struct{})
	sub := hub.subscribe(exited, func() error { return ErrExited })
	defer sub.Close()
	client, server := net.Pipe()
	go func() {
		w := bufio.NewWriter(server)
		fmt.Fprintln(w, `{"QMP":{"version":{"qemu":{"major":7,"minor":2,"micro":22},"package":""},"capabilities":[]}}`)
		w.Flush()
		sc := bufio.NewScanner(server)
		for sc.Scan() {
			var cmd map[string]any
			json.Unmarshal(sc.Bytes(), &cmd)
			if cmd["execute"] != "qmp_capabilities" {
				for i := range 5000 {
					fmt.Fprintf(w, `{"event":"SPICE_CONNECTED","data":{"n":%d},"timestamp":{"seconds":1,"microseconds":2}}`+"\n", i)
				}
			}
			if cmd["id"] == nil {
				fmt.Fprintln(w, `{"return":{}}`)
			} else {
				fmt.Fprintln(w, `{"id":`+idOf(cmd)+`,"return":{}}`)
			}
			w.Flush()
		}
	}()
	m := newSocketMonitor(client, hub.publish)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { m.close(); server.Close() }()
	if _, err := m.run(ctx, []byte(`{"execute":"query-status"}`)); err != nil {
		t.Fatalf("reply blocked behind unread events: %v", err)
	}
	if got := sub.Dropped(); got != 5000-queueLimit {
		t.Errorf("unexpected dropped count (-want +got):\n%s", cmp.Diff(5000-queueLimit, got))
	}
	e, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(float64(5000-queueLimit), e.Data["n"]); diff != "" {
		t.Errorf("oldest queued event is not the first kept one (-want +got):\n%s", diff)
	}
	if got := len(hub.snapshot()); got != historyLimit {
		t.Errorf("unexpected history length (-want +got):\n%s", cmp.Diff(historyLimit, got))
	}
}

// TestMonitorEndsCallsOnEOF: a connection that drops (qemu exiting)
// ends the call in flight at once.
func TestMonitorEndsCallsOnEOF(t *testing.T) {
	received := make(chan struct{}, 1)
	m, stop := startFake(t, func(cmd map[string]any) []string { received <- struct{}{}; return nil })
	defer stop()
	errc := make(chan error, 1)
	go func() {
		_, err := m.run(context.Background(), []byte(`{"execute":"query-status"}`))
		errc <- err
	}()
	<-received // the call is in flight: the fake has it and never answers
	m.conn.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, errMonitorClosed) {
			t.Fatalf("unexpected error after EOF: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("call still blocked after the connection closed")
	}
	if _, err := m.run(context.Background(), []byte(`{"execute":"query-status"}`)); !errors.Is(err, errMonitorClosed) {
		t.Fatalf("unexpected error on a closed monitor: %v", err)
	}
}
