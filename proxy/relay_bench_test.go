package proxy

// The streaming relay (channel.stream) on its own, over loopback TCP
// pairs: correctness where chunks and messages do not line up (headers
// split across reads, many messages in one read, firewall verdicts in
// the middle of a chunk, EOF inside a message), and a benchmark of its
// cost per message size for profiling:
//
//	go test -run '^$' -bench BenchmarkStream -cpuprofile cpu.out ./proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// streamRig is one relay leg between two TCP pairs: bytes written to in
// are relayed by stream to out.
type streamRig struct {
	ch      *channel
	l       *leg
	in, out net.Conn
}

func newStreamRig(tb testing.TB, typ spice.ChannelType, dir Direction, mini bool, mode FirewallMode) *streamRig {
	tb.Helper()
	p := &Proxy{Logger: slog.New(slog.DiscardHandler), Rules: DefaultRules(), Firewall: mode}
	p.metrics = newMetrics(p)
	in, src := tcpPair(tb)
	dst, out := tcpPair(tb)
	ch := &channel{p: p, log: p.Logger, typ: typ}
	l := &leg{dir: dir, src: src, dst: dst, srcMini: mini, dstMini: mini, rule: p.Rules[typ][dir],
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "b"}), msgs: prometheus.NewCounter(prometheus.CounterOpts{Name: "m"})}
	return &streamRig{ch: ch, l: l, in: in, out: out}
}

// run relays in the background; the result is stream's error once the
// source is closed (or the firewall stopped it), and everything out got
// (nothing when discard).
func (r *streamRig) run(discard ...bool) <-chan struct {
	err error
	got []byte
} {
	res := make(chan struct {
		err error
		got []byte
	}, 1)
	got := make(chan []byte, 1)
	go func() {
		if len(discard) > 0 && discard[0] {
			io.Copy(io.Discard, r.out)
			got <- nil
			return
		}
		b, _ := io.ReadAll(r.out)
		got <- b
	}()
	go func() {
		err := r.ch.stream(r.l)
		r.l.dst.Close()
		res <- struct {
			err error
			got []byte
		}{err, <-got}
	}()
	return res
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

func message(typ uint16, size int, mini bool, serial uint64) []byte {
	b := spice.AppendHeader(nil, spice.Header{Serial: serial, Type: typ, Size: uint32(size)}, mini)
	for i := range size {
		b = append(b, byte(i*7+int(typ)))
	}
	return b
}

// writeSegments writes b in pieces of the given sizes (the rest in one
// piece), pausing between them so the relay sees separate reads.
func writeSegments(w net.Conn, b []byte, sizes ...int) {
	for _, n := range sizes {
		n = min(n, len(b))
		w.Write(b[:n])
		b = b[n:]
		time.Sleep(2 * time.Millisecond)
	}
	if len(b) > 0 {
		w.Write(b)
	}
}

func TestStreamRelaysWhateverTheSegmentation(t *testing.T) {
	for _, mini := range []bool{true, false} {
		var all []byte
		sizes := []int{0, 1, 5, 17, 100, 511, 512, 513, 4096, chunkSize - 6, chunkSize, chunkSize + 1, 200000, 3}
		for i, n := range sizes {
			all = append(all, message(spice.MsgDisplayDrawCopy, n, mini, uint64(i+1))...)
		}
		hsz := spice.HeaderSize(mini)
		for name, segs := range map[string][]int{
			"one write":             nil,
			"byte by byte at first": {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
			"headers split":         {hsz - 1, 2, hsz + 1 + 5 - 2, 3, 700, 1, 1, 90000, 17, 5},
			"odd pieces":            {7, 13, 512, 511, 1000, 65536, 3, 65535, 100000},
		} {
			t.Run(fmt.Sprintf("mini=%v/%s", mini, name), func(t *testing.T) {
				r := newStreamRig(t, spice.ChannelDisplay, ToClient, mini, FirewallEnforce)
				res := r.run()
				writeSegments(r.in, all, segs...)
				r.in.Close()
				got := <-res
				if got.err != nil {
					t.Fatalf("unexpected error (-want nil +got %v)", got.err)
				}
				if !bytes.Equal(got.got, all) {
					t.Fatalf("unexpected bytes relayed (-want %d bytes +got %d bytes, equal prefix %d)", len(all), len(got.got), commonPrefix(all, got.got))
				}
				if m, b := counter(r.l.msgs), counter(r.l.bytes); m != float64(len(sizes)) || b != float64(len(all)) {
					t.Fatalf("unexpected counters (-want %d messages, %d bytes +got %v, %v)", len(sizes), len(all), m, b)
				}
			})
		}
	}
}

func commonPrefix(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// A blocked message is never written, not even part of its header; the
// messages before it in the same chunk are.
func TestStreamFirewallInsideAChunk(t *testing.T) {
	good := append(message(spice.MsgDisplayDrawCopy, 100, true, 0), message(spice.MsgDisplayMark, 0, true, 0)...)
	for name, bad := range map[string][]byte{
		"type not allowed":  message(999, 10, true, 0),
		"over the hard cap": spice.AppendHeader(nil, spice.Header{Type: spice.MsgDisplayDrawCopy, Size: HardMaxMessage + 1}, true),
	} {
		stream := append(append(append([]byte(nil), good...), bad...), message(spice.MsgDisplayMark, 0, true, 0)...)
		for _, split := range []int{len(stream), len(good) + 3} {
			t.Run(fmt.Sprintf("%s/split at %d", name, split), func(t *testing.T) {
				r := newStreamRig(t, spice.ChannelDisplay, ToClient, true, FirewallEnforce)
				res := r.run()
				writeSegments(r.in, stream, split)
				got := <-res
				if !errors.Is(got.err, errFirewall) {
					t.Fatalf("unexpected error (-want %v +got %v)", errFirewall, got.err)
				}
				if !bytes.Equal(got.got, good) {
					t.Fatalf("unexpected bytes relayed (-want %x +got %x)", good, got.got)
				}
			})
		}
	}
	t.Run("warn mode forwards", func(t *testing.T) {
		r := newStreamRig(t, spice.ChannelDisplay, ToClient, true, FirewallWarn)
		stream := append(append([]byte(nil), good...), message(999, 10, true, 0)...)
		res := r.run()
		r.in.Write(stream)
		r.in.Close()
		got := <-res
		if got.err != nil || !bytes.Equal(got.got, stream) {
			t.Fatalf("unexpected result (-want nil, %d bytes +got %v, %d bytes)", len(stream), got.err, len(got.got))
		}
	})
}

// The source ending inside a message (header or body) is an unexpected
// EOF; at a message boundary it is a clean end (nil).
func TestStreamEOFInsideAMessage(t *testing.T) {
	msg := message(spice.MsgDisplayDrawCopy, 100, true, 0)
	for name, tc := range map[string]struct {
		send, want []byte
		err        error
	}{
		"in the body":   {msg[:50], msg[:50], io.ErrUnexpectedEOF},
		"in the header": {append(append([]byte(nil), msg...), msg[:3]...), msg, io.ErrUnexpectedEOF},
		"at a boundary": {msg, msg, nil},
	} {
		t.Run(name, func(t *testing.T) {
			r := newStreamRig(t, spice.ChannelDisplay, ToClient, true, FirewallEnforce)
			res := r.run()
			r.in.Write(tc.send)
			r.in.Close()
			got := <-res
			if !errors.Is(got.err, tc.err) || !bytes.Equal(got.got, tc.want) {
				t.Fatalf("unexpected result (-want %v, %d bytes +got %v, %d bytes)", tc.err, len(tc.want), got.err, len(got.got))
			}
		})
	}
}

// BenchmarkStream relays back-to-back display messages of one size
// through stream over loopback TCP (writer and reader in this process).
func BenchmarkStream(b *testing.B) { benchStream(b, false) }

// benchStream relays batches of display messages of each size, the
// client leg over TLS when overTLS.
func benchStream(b *testing.B, overTLS bool) {
	for _, size := range []int{64, 1 << 10, 16 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("msg=%d", size), func(b *testing.B) {
			r := newStreamRig(b, spice.ChannelDisplay, ToClient, true, FirewallEnforce)
			if overTLS {
				r.l.dst, r.out = tlsPair(b, r.l.dst, r.out)
			}
			const batch = 64
			var one []byte
			for range batch {
				one = append(one, message(spice.MsgDisplayDrawCopy, size, true, 0)...)
			}
			res := r.run(true)
			b.SetBytes(int64(len(one) / batch))
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				if _, err := r.in.Write(one); err != nil {
					b.Fatal(err)
				}
			}
			r.in.Close()
			if got := <-res; got.err != nil {
				b.Fatal(got.err)
			}
		})
	}
}
