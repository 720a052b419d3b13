package webdav_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/internal/guestagent/webdav"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
)

type reporter struct {
	mu     sync.Mutex
	events []map[string]string
}

func (r *reporter) Event(typ string, kv ...string) {
	m := map[string]string{"type": typ}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	r.mu.Lock()
	r.events = append(r.events, m)
	r.mu.Unlock()
}

func (r *reporter) all() []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]string(nil), r.events...)
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestReadThroughTheChannel: the guest end reads files (one larger than
// a mux frame) and lists the folder the client shares over webdav:0,
// through the test server's webdav channel.
func TestReadThroughTheChannel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	files := map[string][]byte{"hello.txt": []byte("hello from the client\n"), "big file.bin": big}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dev, guestEnd := net.Pipe()
	srv := &spicetest.Server{Password: "hunter2", VMC: []spicetest.VMCDevice{{Type: spice.ChannelWebdav, Name: "org.spice-space.webdav.0", Conn: dev}}}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	s, err := (&spice.Dialer{Host: "127.0.0.1", Port: srv.Port(), Password: "hunter2"}).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	share, err := s.ShareFolder(ctx, spice.WebDAVFolder(dir))
	if err != nil {
		t.Fatal(err)
	}
	rep := &reporter{}
	gctx, gcancel := context.WithCancel(ctx)
	c := webdav.New(gctx, guestEnd, rep)
	defer func() { gcancel(); <-c.Done() }()

	for name, want := range files {
		got, err := c.Read(ctx, "/"+name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: read %d bytes (sha256 %s), want %d", name, len(got), sum(got), len(want))
		}
	}
	if _, err := c.Read(ctx, "/missing"); err == nil {
		t.Error("GET of a missing file: no error")
	}
	hrefs, err := c.List(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/", "/big%20file.bin", "/hello.txt"}, hrefs); diff != "" {
		t.Errorf("unexpected listing (-want +got):\n%s", diff)
	}
	ev := rep.all()
	if len(ev) != 4 || ev[0]["status"] != "200" || ev[2]["status"] != "404" || ev[3]["entries"] == "" {
		t.Errorf("unexpected events %v", ev)
	}
	for _, e := range ev[:2] {
		want := files[filepath.Base(e["path"])]
		if e["sha256"] != sum(want) {
			t.Errorf("event %v: want sha256 %s", e, sum(want))
		}
	}
	if clients, reqs := share.Stats(); clients != 4 || reqs != 4 {
		t.Errorf("the share saw %d clients and %d requests, want 4 and 4", clients, reqs)
	}
}
