package vdagent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/internal/guestagent/vdagent"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
)

// event is one reported event.
type event struct {
	typ string
	kv  map[string]string
}

// reporter collects events for tests to wait on.
type reporter struct {
	mu      sync.Mutex
	events  []event
	changed chan struct{}
}

func newReporter() *reporter { return &reporter{changed: make(chan struct{})} }

func (r *reporter) Event(typ string, kv ...string) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	r.mu.Lock()
	r.events = append(r.events, event{typ, m})
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// wait returns the first event of typ (from index from on) whose keys
// hold want, and the index after it.
func (r *reporter) wait(ctx context.Context, from int, typ string, want map[string]string) (event, int, error) {
	for {
		r.mu.Lock()
		for i := from; i < len(r.events); i++ {
			e := r.events[i]
			if e.typ != typ {
				continue
			}
			ok := true
			for k, v := range want {
				if e.kv[k] != v {
					ok = false
				}
			}
			if ok {
				r.mu.Unlock()
				return e, i + 1, nil
			}
		}
		ch := r.changed
		all := fmt.Sprint(r.events)
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return event{}, 0, fmt.Errorf("no %s event with %v among %s: %w", typ, want, all, ctx.Err())
		}
	}
}

func (r *reporter) count(typ string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.typ == typ {
			n++
		}
	}
	return n
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

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

type rig struct {
	srv   *spicetest.Server
	guest *vdagent.Agent
	rep   *reporter
	sess  *spice.Session
	ag    *spice.Agent
}

// newRig starts the test server with the guest agent on the other end
// of its agent port, and a session whose Agent is started.
func newRig(t *testing.T, opts vdagent.Options, aopts spice.AgentOptions) (*rig, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	dev, guestEnd := net.Pipe()
	srv := &spicetest.Server{Password: "hunter2", Agent: dev}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	rep := newReporter()
	gctx, gcancel := context.WithCancel(context.Background())
	guest := vdagent.ServeWith(gctx, guestEnd, rep, opts)
	t.Cleanup(func() { gcancel(); <-guest.Done() })
	d := &spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: "hunter2"}
	s, err := d.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ag, err := s.AgentWith(ctx, aopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n := srv.AgentViolations.Load(); n != 0 {
			t.Errorf("the client broke the agent's flow control or framing %d times", n)
		}
	})
	return &rig{srv, guest, rep, s, ag}, ctx
}

func TestCapsExchange(t *testing.T) {
	t.Parallel()
	r, ctx := newRig(t, vdagent.Options{}, spice.AgentOptions{})
	if diff := cmp.Diff(vdagent.DefaultCaps, r.ag.PeerCaps()); diff != "" {
		t.Errorf("unexpected agent caps at the client (-want +got):\n%s", diff)
	}
	if _, _, err := r.rep.wait(ctx, 0, vdagent.TypeAgent, map[string]string{"event": "client"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(spice.DefaultAgentCaps, r.guest.ClientCaps()); diff != "" {
		t.Errorf("unexpected client caps at the guest (-want +got):\n%s", diff)
	}
	if l := r.ag.Layout(); !l.Selection || !l.Serial {
		t.Errorf("unexpected clipboard layout %+v: both ends announce selections and grab serials", l)
	}
}

// TestClipboardToGuest: data larger than one agent chunk (64 KiB,
// 1 MiB) reaches the guest whole, as the answer to the request the
// guest makes on the client's grab.
func TestClipboardToGuest(t *testing.T) {
	t.Parallel()
	r, ctx := newRig(t, vdagent.Options{}, spice.AgentOptions{})
	next := 0
	for _, n := range []int{1, 64 << 10, 1 << 20} {
		data := pattern(n, byte(n))
		if err := r.ag.SetClipboard(ctx, data); err != nil {
			t.Fatal(err)
		}
		var err error
		if _, next, err = r.rep.wait(ctx, next, vdagent.TypeClipboard, map[string]string{"dir": "from-client", "len": strconv.Itoa(n), "sha256": sum(data)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.ag.Stats().RequestsServed; got != 3 {
		t.Errorf("unexpected requests served (-want +got):\n%s", cmp.Diff(uint64(3), got))
	}
}

// TestClipboardFromGuest: the guest's grab reaches the client, which
// requests the data and gets it whole.
func TestClipboardFromGuest(t *testing.T) {
	t.Parallel()
	r, ctx := newRig(t, vdagent.Options{}, spice.AgentOptions{})
	for _, n := range []int{1, 64 << 10, 1 << 20} {
		data := pattern(n, byte(n>>8))
		r.guest.SetClipboard(data, "text/plain")
		got, err := r.ag.GuestClipboard(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Type != spice.ClipboardUTF8Text || !bytes.Equal(got.Data, data) {
			t.Fatalf("clipboard of %d bytes: got type %d, %d bytes (sha256 %s), want %s", n, got.Type, len(got.Data), sum(got.Data), sum(data))
		}
	}
}

func TestFileTransfer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, ctx := newRig(t, vdagent.Options{FileDir: dir}, spice.AgentOptions{})
	data := pattern(1<<20+17, 7) // 17 FILE_XFER_DATA messages; the 8 MiB one runs against qemu
	start := time.Now()
	if err := r.ag.SendFile(ctx, "one.bin", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes in %v", len(data), time.Since(start))
	if _, _, err := r.rep.wait(ctx, 0, vdagent.TypeFile, map[string]string{"name": "one.bin", "status": "success", "len": strconv.Itoa(len(data)), "sha256": sum(data)}); err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadFile(filepath.Join(dir, "one.bin"))
	if err != nil || !bytes.Equal(disk, data) {
		t.Fatalf("file on disk: %d bytes, %v", len(disk), err)
	}
	// An empty file, and a name the guest refuses.
	if err := r.ag.SendFile(ctx, "empty", bytes.NewReader(nil), 0); err != nil {
		t.Fatal(err)
	}
	err = r.ag.SendFile(ctx, "../escape", bytes.NewReader([]byte("x")), 1)
	var xe *spice.XferError
	if !errors.As(err, &xe) || xe.Result != spice.XferFailed {
		t.Fatalf("unexpected result for a path name (-want ERROR +got): %v", err)
	}
}

func TestMonitorsConfig(t *testing.T) {
	t.Parallel()
	r, ctx := newRig(t, vdagent.Options{}, spice.AgentOptions{})
	cfg := spice.MonitorsConfig{Flags: spice.MonitorsConfigFlagUsePos, Monitors: []spice.MonConfig{
		{Width: 1024, Height: 768, Depth: 32}, {Width: 800, Height: 600, Depth: 32, X: 1024},
	}}
	rep, err := r.ag.SetMonitors(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Error != spice.AgentSuccess {
		t.Errorf("unexpected reply %+v", rep)
	}
	for i, m := range cfg.Monitors {
		want := map[string]string{"head": strconv.Itoa(i), "heads": "2", "w": strconv.Itoa(int(m.Width)), "h": strconv.Itoa(int(m.Height)), "x": strconv.Itoa(int(m.X))}
		if _, _, err := r.rep.wait(ctx, 0, vdagent.TypeMonitorsConfig, want); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTokenWindow: with a window of 2 tokens the server can send the
// client only two AGENT_DATA ahead; a 256 KiB clipboard (129 of them)
// still arrives because the client returns tokens as it reads.
func TestTokenWindow(t *testing.T) {
	t.Parallel()
	r, ctx := newRig(t, vdagent.Options{}, spice.AgentOptions{Tokens: 2})
	data := pattern(256<<10, 3)
	r.guest.SetClipboard(data, "text/plain")
	got, err := r.ag.GuestClipboard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Data, data) {
		t.Fatalf("clipboard: %d bytes, want %d", len(got.Data), len(data))
	}
	if st := r.ag.Stats(); st.PiecesIn < 129 {
		t.Errorf("unexpected AGENT_DATA received: %d, want at least 129 for 256 KiB", st.PiecesIn)
	}
}

func TestClientDisconnect(t *testing.T) {
	t.Parallel()
	r, ctx := newRig(t, vdagent.Options{}, spice.AgentOptions{})
	r.sess.Close()
	if _, _, err := r.rep.wait(ctx, 0, vdagent.TypeAgent, map[string]string{"event": "client-disconnected"}); err != nil {
		t.Fatal(err)
	}
	if r.guest.ClientCaps() != nil {
		t.Error("the guest still has the gone client's caps")
	}
}
