package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// A sniffer records the TCP segments on the loopback interface to and
// from a set of ports, with the kernel's receive timestamps, so that the
// trace section can show a session's steps on the wire: straight to qemu
// (where nothing else can see inside) and on both legs of the proxy. It
// needs CAP_NET_RAW (root). It reads only headers and the first bytes of
// each payload (link headers): tickets and tokens are never kept.
type sniffer struct {
	fd    int
	ports map[uint16]bool
	stop  chan struct{}
	done  chan struct{}

	mu   sync.Mutex
	segs []segment
	err  error
}

// segment is one TCP segment seen on lo.
type segment struct {
	at       time.Time
	src, dst uint16 // ports (every address is 127.0.0.1)
	syn, fin bool
	n        int      // payload bytes
	head     [16]byte // the payload's bytes 8..24: a link header's size at 4..8; a link message's channel type at 12
	headLen  int
}

// errNoRaw: the sniffer could not open a packet socket.
var errNoRaw = errors.New("a packet socket on lo needs CAP_NET_RAW (run as root)")

const (
	ethPIP       = 0x0800
	soTimestampN = 0x23 // SO_TIMESTAMPNS
	snapLen      = 128
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func startSniffer(ports ...int) (*sniffer, error) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, int(htons(ethPIP)))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoRaw, err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(ethPIP), Ifindex: lo.Index}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	// Other lanes' loopback traffic is dropped in the kernel.
	if err := syscall.AttachLsf(fd, portFilter(ports)); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("sniffer filter: %w", err)
	}
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, soTimestampN, 1)
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<20)
	tv := syscall.NsecToTimeval(int64(50 * time.Millisecond))
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	s := &sniffer{fd: fd, ports: map[uint16]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	for _, p := range ports {
		s.ports[uint16(p)] = true
	}
	go s.run()
	return s, nil
}

// portFilter is a classic BPF program for a packet socket that sees IPv4
// packets from their network header: it keeps the first snapLen bytes
// of unfragmented TCP segments from or to one of ports, and drops the
// rest.
func portFilter(ports []int) []syscall.SockFilter {
	const (
		ldB   = syscall.BPF_LD | syscall.BPF_B | syscall.BPF_ABS
		ldH   = syscall.BPF_LD | syscall.BPF_H | syscall.BPF_ABS
		ldHX  = syscall.BPF_LD | syscall.BPF_H | syscall.BPF_IND
		ldxIP = syscall.BPF_LDX | syscall.BPF_B | syscall.BPF_MSH
		jeq   = syscall.BPF_JMP | syscall.BPF_JEQ | syscall.BPF_K
		jset  = syscall.BPF_JMP | syscall.BPF_JSET | syscall.BPF_K
		ret   = syscall.BPF_RET | syscall.BPF_K
	)
	n := len(ports)
	// Layout: 0 proto, 1 jeq tcp, 2 frag, 3 jset, 4 ldx, 5 src, 6..6+n
	// ports, 6+n dst, 7+n..7+2n ports, 7+2n drop, 8+2n accept.
	drop := 7 + 2*n
	accept := drop + 1
	prog := []syscall.SockFilter{
		{Code: ldB, K: 9},
		{Code: jeq, K: syscall.IPPROTO_TCP, Jt: 0, Jf: uint8(drop - 2)},
		{Code: ldH, K: 6},
		{Code: jset, K: 0x1fff, Jt: uint8(drop - 4), Jf: 0},
		{Code: ldxIP, K: 0},
		{Code: ldHX, K: 0},
	}
	for i, p := range ports {
		at := 6 + i
		prog = append(prog, syscall.SockFilter{Code: jeq, K: uint32(p), Jt: uint8(accept - at - 1)})
	}
	prog = append(prog, syscall.SockFilter{Code: ldHX, K: 2})
	for i, p := range ports {
		at := 7 + n + i
		prog = append(prog, syscall.SockFilter{Code: jeq, K: uint32(p), Jt: uint8(accept - at - 1)})
	}
	return append(prog, syscall.SockFilter{Code: ret, K: 0}, syscall.SockFilter{Code: ret, K: snapLen})
}

func (s *sniffer) run() {
	defer close(s.done)
	buf := make([]byte, snapLen)
	oob := make([]byte, 64)
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		n, oobn, _, from, err := syscall.Recvmsg(s.fd, buf, oob, syscall.MSG_TRUNC)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				continue
			}
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		// lo shows every packet twice: as sent and as received.
		if ll, ok := from.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == syscall.PACKET_OUTGOING {
			continue
		}
		at := time.Now()
		if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == soTimestampN && len(m.Data) >= int(unsafe.Sizeof(syscall.Timespec{})) {
					ts := (*syscall.Timespec)(unsafe.Pointer(&m.Data[0]))
					at = time.Unix(ts.Sec, ts.Nsec)
				}
			}
		}
		if seg, ok := s.parse(buf[:min(n, len(buf))], at); ok {
			s.mu.Lock()
			s.segs = append(s.segs, seg)
			s.mu.Unlock()
		}
	}
}

// parse reads an IPv4 + TCP header; n may be more than len(b) (the
// packet was truncated to the snap length).
func (s *sniffer) parse(b []byte, at time.Time) (segment, bool) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != syscall.IPPROTO_TCP {
		return segment{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if len(b) < ihl+20 {
		return segment{}, false
	}
	t := b[ihl:]
	src, dst := binary.BigEndian.Uint16(t[0:2]), binary.BigEndian.Uint16(t[2:4])
	if !s.ports[src] && !s.ports[dst] {
		return segment{}, false
	}
	doff := int(t[12]>>4) * 4
	flags := t[13]
	seg := segment{at: at, src: src, dst: dst, syn: flags&0x02 != 0 && flags&0x10 == 0, fin: flags&0x01 != 0, n: total - ihl - doff}
	if p := ihl + doff; len(b) > p+8 {
		seg.headLen = copy(seg.head[:], b[p+8:min(len(b), p+24)])
	}
	return seg, true
}

// take returns the segments seen since the last take.
func (s *sniffer) take() []segment {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.segs
	s.segs = nil
	return out
}

func (s *sniffer) Close() error {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	syscall.Close(s.fd)
	return err
}

// conn is one TCP connection's segments, client side first.
type conn struct {
	client, server uint16
	syn            time.Time
	segs           []segment
}

// conns groups segments by connection, in the order of their SYNs;
// connections whose SYN was not seen are left out.
func conns(segs []segment, serverPort func(uint16) bool) []*conn {
	by := map[[2]uint16]*conn{}
	var out []*conn
	sort.SliceStable(segs, func(i, j int) bool { return segs[i].at.Before(segs[j].at) })
	for _, sg := range segs {
		c, srv := sg.src, sg.dst
		if serverPort(sg.src) && !serverPort(sg.dst) {
			c, srv = sg.dst, sg.src
		}
		k := [2]uint16{c, srv}
		cn := by[k]
		if cn == nil {
			if !sg.syn {
				continue
			}
			cn = &conn{client: c, server: srv, syn: sg.at}
			by[k] = cn
			out = append(out, cn)
		}
		cn.segs = append(cn.segs, sg)
	}
	return out
}

// channel is the channel type of c's link message (0: unknown).
func (c *conn) channel() uint8 {
	for _, sg := range c.segs {
		if sg.src == c.client && sg.n > 0 {
			if sg.headLen > 12 {
				return sg.head[12]
			}
			return 0
		}
	}
	return 0
}

// linkSteps are the steps of a plain SPICE link seen on the wire, as
// times since the connection's SYN (absent: not seen).
type linkSteps struct {
	linkSent, replyRecv, ticketSent, resultRecv, firstToClient, firstToServer time.Time
}

// steps finds a plain link's steps in c by counting bytes: the client's
// link message (16-byte header, its size at bytes 12..16), the server's
// reply (likewise), the client's ticket (128 bytes, after a 4-byte
// mechanism word when both sides offer AUTH_SELECTION), the 4-byte link
// result, then the first message each way.
func (c *conn) steps() linkSteps {
	var st linkSteps
	var up, down int            // payload bytes so far each way
	linkEnd, replyEnd := -1, -1 // stream offsets, once known
	ticketEnd := -1
	for _, sg := range c.segs {
		if sg.n <= 0 {
			continue
		}
		if sg.src == c.client {
			if up == 0 && sg.headLen >= 8 {
				linkEnd = 16 + int(binary.LittleEndian.Uint32(sg.head[4:8]))
			}
			up += sg.n
			switch {
			case st.linkSent.IsZero() && linkEnd > 0 && up >= linkEnd:
				st.linkSent = sg.at
			case !st.linkSent.IsZero() && st.ticketSent.IsZero() && up >= linkEnd+128:
				st.ticketSent, ticketEnd = sg.at, up
			case ticketEnd > 0 && st.firstToServer.IsZero() && up > ticketEnd && !st.resultRecv.IsZero():
				st.firstToServer = sg.at
			}
			continue
		}
		if down == 0 && sg.headLen >= 8 {
			replyEnd = 16 + int(binary.LittleEndian.Uint32(sg.head[4:8]))
		}
		down += sg.n
		if st.replyRecv.IsZero() && replyEnd > 0 && down >= replyEnd {
			st.replyRecv = sg.at
		}
		if !st.ticketSent.IsZero() && st.resultRecv.IsZero() && down >= replyEnd+4 {
			st.resultRecv = sg.at
		}
		if !st.resultRecv.IsZero() && st.firstToClient.IsZero() && down > replyEnd+4 {
			st.firstToClient = sg.at
		}
	}
	return st
}
