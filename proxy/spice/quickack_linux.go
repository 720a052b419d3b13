package spice

import (
	"net"
	"syscall"
)

// quickAckConn acknowledges every read at once (TCP_QUICKACK, which
// Linux clears again on its own, so it is set after each read). A client
// that only reads on a channel otherwise delays its ACKs by up to 40 ms,
// and a sender with Nagle's algorithm on (spice-server corks its display
// channel) holds its next small message until that ACK: 40 ms steps in
// input-to-display timings that are the receiver's doing, not the path's.
type quickAckConn struct {
	*net.TCPConn
	rc syscall.RawConn
}

func withQuickAck(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	q := &quickAckConn{TCPConn: tc, rc: rc}
	q.quickAck()
	return q
}

func (q *quickAckConn) quickAck() {
	q.rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

func (q *quickAckConn) Read(b []byte) (int, error) {
	n, err := q.TCPConn.Read(b)
	q.quickAck()
	return n, err
}
