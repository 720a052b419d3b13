package proxy

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A backend link is cut by Shutdown only before its ticket is written
// (spice.Link's second write): after it, qemu may have linked the channel.
func TestFaultLinkConnInterrupt(t *testing.T) {
	for _, tc := range []struct {
		name        string
		writesFirst int
		wantCut     bool
	}{
		{"before the link message", 0, true},
		{"waiting for the link reply", 1, true},
		{"after the ticket", 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			go io.Copy(io.Discard, b)
			lc := &linkConn{Conn: a}
			for range tc.writesFirst {
				if _, err := lc.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			lc.interrupt()
			// Link sets its own deadline: it must not undo the cut.
			lc.SetDeadline(time.Now().Add(time.Minute))
			_, err := lc.Write([]byte("ticket"))
			if cut := errors.Is(err, errLinkInterrupted); cut != tc.wantCut {
				t.Fatalf("unexpected write after interrupt, cut (-want +got):\n%s\n(error: %v)", cmp.Diff(tc.wantCut, cut), err)
			}
			if tc.wantCut {
				start := time.Now()
				if _, err := lc.Read(make([]byte, 1)); !isTimeout(err) || time.Since(start) > time.Second {
					t.Errorf("a read after the cut: %v after %v, want an immediate timeout", err, time.Since(start))
				}
			}
		})
	}
}
