package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
)

// Hostile connections, in the order the generator cycles through them.
var hostileKinds = []string{"random bytes", "link header claiming 4 GiB", "TLS ClientHello, then silence",
	"link written a byte a second", "4 bytes of bad magic"}

// hostileLimit is how long a hostile connection may stay open: past the
// proxy's 10 s handshake deadline, with slack.
const hostileLimit = 20 * time.Second

// result is how one hostile connection went.
type result struct {
	kind string
	end  string        // what the client received and how it ended
	took time.Duration // from connect to the end
	// answer is, for bad magic, from its 4 bytes to the whole reply.
	answer time.Duration
}

// hostile opens connections at rate until ctx ends, each on its own
// goroutine, and collects how each ended.
type hostile struct {
	l     *lane
	rate  float64
	hello []byte // a real TLS ClientHello

	wg      sync.WaitGroup
	mu      sync.Mutex
	results []result
	errs    int // connections that could not even be opened
}

func newHostile(l *lane, rate float64) (*hostile, error) {
	hello, err := spicetest.ClientHello()
	if err != nil {
		return nil, err
	}
	return &hostile{l: l, rate: rate, hello: hello}, nil
}

// run generates connections until ctx ends, then waits for all of them
// to end (each is bounded by hostileLimit).
func (h *hostile) run(ctx context.Context) {
	every := time.Duration(float64(time.Second) / h.rate)
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			h.wg.Wait()
			return
		case <-t.C:
		}
		kind := hostileKinds[i%len(hostileKinds)]
		secure := (i/len(hostileKinds))%2 == 1 // random bytes go to both ports
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			r, err := h.one(kind, secure)
			h.mu.Lock()
			defer h.mu.Unlock()
			if err != nil {
				h.errs++
				return
			}
			h.results = append(h.results, r)
		}()
	}
}

func (h *hostile) one(kind string, secure bool) (result, error) {
	port := h.l.ready.Proxy.Port
	if kind == hostileKinds[2] || (kind == hostileKinds[0] && secure) {
		port = h.l.ready.Proxy.TLSPort
	}
	if kind == hostileKinds[0] {
		kind += map[bool]string{false: " (plain port)", true: " (TLS port)"}[secure]
	}
	start := time.Now()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	c.SetDeadline(start.Add(hostileLimit))
	r := result{kind: kind}
	switch {
	case strings.HasPrefix(kind, "random bytes"):
		b := make([]byte, 64+int(randByte())*4)
		rand.Read(b)
		c.Write(b)
		r.end = ending(c, !secure)
	case kind == hostileKinds[1]:
		c.Write(spice.AppendLinkHeader(nil, 0xffffffff))
		r.end = ending(c, true)
	case kind == hostileKinds[2]:
		c.Write(h.hello)
		r.end = ending(c, false)
	case kind == hostileKinds[3]:
		r.end = slowWriter(c)
	case kind == hostileKinds[4]:
		sent := time.Now()
		c.Write([]byte{0xde, 0xad, 0xbe, 0xef})
		rep, err := spice.ReadLinkReply(c, spice.DefaultMaxLinkSize)
		r.answer = time.Since(sent)
		if err != nil {
			r.end = closing(err)
			r.answer = 0
		} else {
			r.end = "reply " + rep.Error.Name() + ", " + closing(drain(c))
		}
	}
	r.took = time.Since(start)
	return r, nil
}

// ending reads what the proxy sends until it closes: a link reply when
// spiceReply (on the plain port), then anything.
func ending(c net.Conn, spiceReply bool) string {
	if spiceReply {
		rep, err := spice.ReadLinkReply(c, spice.DefaultMaxLinkSize)
		if err != nil {
			return closing(err)
		}
		return "reply " + rep.Error.Name() + ", " + closing(drain(c))
	}
	n, err := io.Copy(io.Discard, c)
	if n > 0 {
		return "TLS records, " + closing(err)
	}
	return closing(err)
}

// slowWriter writes a valid main link one byte a second and watches for
// the proxy to close.
func slowWriter(c net.Conn) string {
	link := (&spice.LinkMess{ChannelType: spice.ChannelMain, CommonCaps: spice.Caps{0x0d}, ChannelCaps: spice.Caps{0x0f}}).Marshal()
	for _, b := range link {
		if _, err := c.Write([]byte{b}); err != nil {
			return closing(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
			if err == nil {
				return "data"
			}
			return closing(err)
		}
	}
	return "the whole link written (42 s): never cut"
}

func drain(c net.Conn) error {
	_, err := io.Copy(io.Discard, c)
	return err
}

// closing names how a read ended: nil is a clean EOF (io.Copy).
func closing(err error) string {
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return "closed"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case isTimeout(err):
		return fmt.Sprintf("open after %v", hostileLimit)
	}
	return "error: " + err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func randByte() byte {
	var b [1]byte
	rand.Read(b[:])
	return b[0]
}

// kindSummary is the hostile connections of one kind.
type kindSummary struct {
	kind    string
	n       int
	ends    map[string]int
	tookP50 time.Duration
	tookMax time.Duration
	// bad magic: from its 4 bytes to the reply
	answerP50, answerP99, answerMax time.Duration
}

func (h *hostile) summary() ([]kindSummary, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	by := map[string][]result{}
	for _, r := range h.results {
		by[r.kind] = append(by[r.kind], r)
	}
	var out []kindSummary
	for kind, rs := range by {
		k := kindSummary{kind: kind, n: len(rs), ends: map[string]int{}}
		var took, ans []time.Duration
		for _, r := range rs {
			k.ends[r.end]++
			took = append(took, r.took)
			if r.answer > 0 {
				ans = append(ans, r.answer)
			}
		}
		k.tookP50, _, k.tookMax = quantiles(took)
		k.answerP50, k.answerP99, k.answerMax = quantiles(ans)
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].kind < out[j].kind })
	return out, h.errs
}

// quantiles returns the median, 99th percentile and maximum.
func quantiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*99/100)], ds[len(ds)-1]
}
