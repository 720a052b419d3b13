package harness

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// echoServer answers every line with itself.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func TestNetworkLatencySetAndReset(t *testing.T) {
	n := newNet(map[Leg]Link{ClientLeg: {Latency: 20 * time.Millisecond}})
	defer n.close()
	addr, err := n.through(clientLeg, 1, echoServer(t), sideDialed)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if d := roundTrip(t, c, r); d < 40*time.Millisecond {
		t.Errorf("round trip over a 20 ms link took %v, want ≥ 40 ms", d)
	}
	// A live connection takes a new link.
	n.Set(ClientLeg, Link{})
	roundTrip(t, c, r) // a chunk the interrupted latency toxic held
	if d := roundTrip(t, c, r); d > 20*time.Millisecond {
		t.Errorf("round trip after Set(no latency) took %v", d)
	}
	if got := n.Conns(ClientLeg.VM(0)); got != 1 {
		t.Errorf("Conns = %d, want 1", got)
	}
	if got := n.Reset(ClientLeg); got != 1 {
		t.Errorf("Reset reset %d connections, want 1", got)
	}
	_, err = r.ReadString('\n')
	if !errors.Is(err, syscall.ECONNRESET) && err != io.EOF {
		t.Errorf("read after Reset: %v, want a reset", err)
	}
}

func TestNetworkDropAndResetAfter(t *testing.T) {
	n := newNet(map[Leg]Link{BackendLeg: {Drop: Downstream}, BackendLeg.VM(1): {ResetAfter: time.Millisecond}})
	defer n.close()
	echo := echoServer(t)
	dropAddr, _ := n.through(backendLeg, 1, echo, sideAccepted)
	resetAddr, _ := n.through(backendLeg, 2, echo, sideAccepted)
	c, err := net.Dial("tcp", resetAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x\n"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read on a ResetAfter link: %v, want a reset", err)
	}
	d, err := net.Dial("tcp", dropAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Write([]byte("lost\n"))
	// The upstream way still works: a half-close reaches the echo
	// server, whose own close comes back as EOF once the drop toxic sees
	// the end of its stream; the echoed line never does.
	d.(*net.TCPConn).CloseWrite()
	d.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(d)
	if err != nil || len(b) != 0 {
		t.Errorf("read on a link dropping downstream: %q, %v; want nothing, then EOF", b, err)
	}
}
