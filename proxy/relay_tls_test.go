package proxy

// spice-gtk 0.42 (Debian 12's) reads a TLS channel with OpenSSL and,
// after each message, looks for the next one only while the socket is
// readable: it never asks OpenSSL whether a record it already decrypted
// holds more (it calls neither SSL_pending nor SSL_has_pending). A whole
// message left in the last record after the end of another therefore
// waits in OpenSSL's buffer until more bytes reach the socket — for ever
// when the server then waits for the client (CHANNELS_LIST on main).

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// tlsPair puts TLS over a TCP pair: the server end for the relay to
// write, the client end to read.
func tlsPair(tb testing.TB, srv, cli net.Conn) (*tls.Conn, *tls.Conn) {
	tb.Helper()
	ca, err := pki.NewCA("relay test CA")
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := ca.Issue(pkix.Name{CommonName: "127.0.0.1"}, "127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	s := tls.Server(srv, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	c := tls.Client(cli, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	errc := make(chan error, 1)
	go func() { errc <- s.Handshake() }()
	if err := c.Handshake(); err != nil {
		tb.Fatal(err)
	}
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
	return s, c
}

// countingConn counts the bytes written to it.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// recordReader reads a TLS stream as OpenSSL does by default (no read
// ahead): never past the end of the record being read, so that what it
// has not read is what is left in the socket.
type recordReader struct {
	net.Conn
	hdr  [5]byte
	nhdr int // header bytes read of the current record
	body int // body bytes of the current record still to read
	n    atomic.Int64
}

func (r *recordReader) Read(b []byte) (int, error) {
	var n int
	var err error
	if r.nhdr < len(r.hdr) {
		n, err = r.Conn.Read(b[:min(len(b), len(r.hdr)-r.nhdr)])
		copy(r.hdr[r.nhdr:], b[:n])
		if r.nhdr += n; r.nhdr == len(r.hdr) {
			r.body = int(binary.BigEndian.Uint16(r.hdr[3:]))
		}
	} else {
		n, err = r.Conn.Read(b[:min(len(b), r.body)])
		r.body -= n
	}
	if r.nhdr == len(r.hdr) && r.body == 0 {
		r.nhdr = 0
	}
	r.n.Add(int64(n))
	return n, err
}

// TestStreamToTLSStrandsNoMessage relays bursts of messages, each read by
// the relay in one read or in pieces, toward a TLS client that reads the
// way spice-gtk 0.42 does (spice_channel_iterate_read): once the relay
// has written a burst, the client reads whole messages while its socket
// holds unread bytes, and then would wait for the socket. Every message
// of the burst must have been read by then.
func TestStreamToTLSStrandsNoMessage(t *testing.T) {
	for _, mini := range []bool{true, false} {
		// Small messages as qemu sends them at a session's start (NAME,
		// UUID, PINGs, CHANNELS_LIST…), then larger ones spanning
		// records, then small ones again.
		bursts := [][]int{{0, 3, 20, 100}, {5000}, {40000, 7, 0}, {300, 70000, 2}, {1}}
		for name, segs := range map[string][]int{
			"one read":      nil,
			"headers split": {spice.HeaderSize(mini) + 1, 5, 100, 33},
			"at boundaries": {spice.HeaderSize(mini), spice.HeaderSize(mini) + 3},
		} {
			t.Run(fmt.Sprintf("mini=%v/%s", mini, name), func(t *testing.T) {
				r := newStreamRig(t, spice.ChannelMain, ToClient, mini, FirewallOff)
				sent := &countingConn{Conn: r.l.dst}
				got := &recordReader{Conn: r.out}
				srv, cli := tlsPair(t, sent, got)
				r.l.dst = srv
				done := make(chan error, 1)
				go func() { done <- r.ch.stream(r.l) }()
				total := 0
				for b, sizes := range bursts {
					var burst []byte
					for _, n := range sizes {
						burst = append(burst, message(spice.MsgPing, n, mini, 0)...)
					}
					writeSegments(r.in, burst, segs...)
					total += len(burst)
					for end := time.Now().Add(10 * time.Second); counter(r.l.bytes) < float64(total); time.Sleep(time.Millisecond) {
						if time.Now().After(end) {
							t.Fatalf("burst %d: the relay wrote %v of %d bytes", b, counter(r.l.bytes), total)
						}
					}
					read := 0
					for got.n.Load() < sent.n.Load() {
						m, err := readMessage(cli, mini)
						if err != nil {
							t.Fatal(err)
						}
						if want := message(spice.MsgPing, sizes[read], mini, 0); string(m) != string(want) {
							t.Fatalf("burst %d message %d: unexpected bytes (-want %x +got %x)", b, read, want, m)
						}
						read++
					}
					if read != len(sizes) {
						t.Fatalf("burst %d: unexpected messages read before the socket ran dry (-want %d +got %d): the rest wait in the TLS layer, where spice-gtk 0.42 never looks", b, len(sizes), read)
					}
				}
				r.in.Close()
				if err := <-done; err != nil {
					t.Fatalf("unexpected error (-want nil +got %v)", err)
				}
				srv.Close()
			})
		}
	}
}

// readMessage reads one whole message (header and body) from c.
func readMessage(c io.Reader, mini bool) ([]byte, error) {
	m := make([]byte, spice.HeaderSize(mini))
	if _, err := io.ReadFull(c, m); err != nil {
		return nil, err
	}
	h := spice.DecodeHeader(m, mini)
	m = append(m, make([]byte, h.Size)...)
	_, err := io.ReadFull(c, m[spice.HeaderSize(mini):])
	return m, err
}

// BenchmarkStreamTLS is BenchmarkStream toward a TLS peer, where each
// message goes out in its own Write (so its own TLS records).
func BenchmarkStreamTLS(b *testing.B) { benchStream(b, true) }
