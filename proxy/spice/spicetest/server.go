package spicetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// Server is a synthetic SPICE server. Set fields before Start.
type Server struct {
	// Password is the ticket clients must present.
	Password string
	// TLS, when set, makes the server listen with TLS.
	TLS *tls.Config
	// NeedSecured answers every link with NEED_SECURED (a plain port
	// whose channels are forced to TLS).
	NeedSecured bool
	// Channels is what CHANNELS_LIST announces (default display, cursor,
	// inputs).
	Channels []spice.ChannelID
	// StreamBytes, when > 0, makes each display channel stream that many
	// bytes of DRAW_COPY bodies after the first draw, in messages of
	// StreamMessageSize (default 64 KiB), honouring the ack window.
	StreamBytes       int64
	StreamMessageSize int
	// Keys supplies link keys (nil: a private pool).
	Keys *spice.KeyPool
	// Silent accepts TCP and never answers (for dial/handshake deadlines).
	Silent bool
	// DisplayInitDelay is how long the display worker takes to answer
	// DISPLAY_INIT (default 20 ms); a close before that is a crash.
	DisplayInitDelay time.Duration
	// NoMiniHeader leaves MINI_HEADER out of the reply caps, so a client
	// that advertises it and a server that does not must agree on full
	// headers (the proxy re-frames).
	NoMiniHeader bool
	// MultiSession keeps every session alive until its main channel
	// closes, instead of qemu's one session at a time (where a new main
	// link replaces the session id). Closing a main channel then closes
	// that session's other channels, as spice-server does.
	MultiSession bool
	// LinkKey, when set, is used for every link instead of a fresh key
	// from Keys. qemu generates a key per link (~10 ms of CPU); load
	// benchmarks share one so that only the proxy's own cost is measured.
	LinkKey *spice.LinkKey
	// Agent, when set, is the guest end of the agent's virtio port
	// (com.redhat.spice.0): MAIN_INIT says an agent is connected, and
	// the server relays AGENT_DATA to it in VDI chunks and back, with
	// spice-server's token flow control and framing rules (a client
	// breaking them is counted in AgentViolations and dropped). The
	// server closes it when it closes.
	Agent net.Conn
	// VMC are the server's spicevmc channels (usbredir, port, webdav).
	VMC []VMCDevice
	// Audio offers playback and record channels (PlayPCM, StartRecord,
	// Recorded).
	Audio bool

	ln      net.Listener
	ownKeys bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	session uint32
	closed  bool
	// sessions are the live sessions in MultiSession mode, each with the
	// connections of its non-main channels.
	sessions map[uint32]map[net.Conn]struct{}

	// Links counts link messages read; LinkOK counts successful links.
	Links, LinkOK atomic.Int64
	// Crashed is set when a display channel closed before the server
	// answered DISPLAY_INIT (its worker takes a while, emulated by
	// DisplayInitDelay):
	// real spice-server 0.15 segfaults there.
	Crashed atomic.Bool
	// KeysDown records KEY_DOWN codes received on inputs channels.
	keysMu   sync.Mutex
	keysDown []uint32
	// Received counts data bytes received from clients.
	Received atomic.Int64
	// AgentViolations counts clients that sent AGENT_DATA without a
	// token, larger than 2048 bytes, or across a message boundary.
	AgentViolations atomic.Int64

	agent   *agentRelay
	vmc     []*vmcDevice
	audio   audio
	mouseMu sync.Mutex
	mouse   []spice.Message

	seenMu sync.Mutex
	seen   chan struct{} // closed and replaced when recorded state changes
}

// changed wakes WaitFor.
func (s *Server) changed() {
	s.seenMu.Lock()
	if s.seen != nil {
		close(s.seen)
	}
	s.seen = make(chan struct{})
	s.seenMu.Unlock()
}

// WaitFor waits until cond (which reads Recorded, MouseEvents, KeysDown
// …) holds, checking again whenever a client message changed them.
func (s *Server) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		s.seenMu.Lock()
		if s.seen == nil {
			s.seen = make(chan struct{})
		}
		ch := s.seen
		s.seenMu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Start listens on 127.0.0.1 with a random port.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if s.TLS != nil {
		ln = tls.NewListener(ln, s.TLS)
	}
	if s.Keys == nil && s.LinkKey == nil {
		s.Keys, s.ownKeys = spice.NewKeyPool(8), true
	}
	if s.Channels == nil {
		s.Channels = []spice.ChannelID{{Type: spice.ChannelDisplay}, {Type: spice.ChannelCursor}, {Type: spice.ChannelInputs}}
	}
	s.ln = ln
	s.conns = map[net.Conn]struct{}{}
	s.sessions = map[uint32]map[net.Conn]struct{}{}
	if s.Agent != nil {
		s.agent = newAgentRelay(s, s.Agent)
		s.agent.start()
	}
	s.startVMC()
	s.wg.Add(1)
	go s.acceptLoop()
	return nil
}

// offers reports whether the server has channel t:id (spice-server
// closes the link of any other without a reply).
func (s *Server) offers(t spice.ChannelType, id uint8) bool {
	switch t {
	case spice.ChannelMain, spice.ChannelInputs, spice.ChannelCursor, spice.ChannelDisplay:
		return id == 0
	case spice.ChannelPlayback, spice.ChannelRecord:
		return s.Audio && id == 0
	case spice.ChannelUsbredir, spice.ChannelPort, spice.ChannelWebdav:
		return s.vmcFor(t, id) != nil
	}
	return false
}

// MouseEvents returns the mouse messages (motion, position, press,
// release) inputs channels received.
func (s *Server) MouseEvents() []spice.Message {
	s.mouseMu.Lock()
	defer s.mouseMu.Unlock()
	return append([]spice.Message(nil), s.mouse...)
}

// Addr is the listening address.
func (s *Server) Addr() *net.TCPAddr { return s.ln.Addr().(*net.TCPAddr) }

// Port is the listening port.
func (s *Server) Port() int { return s.Addr().Port }

// SessionID is the current session id (0 before the first main link); in
// MultiSession mode, the latest one.
func (s *Server) SessionID() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.session
}

// KeysDown returns the KEY_DOWN codes received so far.
func (s *Server) KeysDown() []uint32 {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	return append([]uint32(nil), s.keysDown...)
}

// Close stops the server, closes every connection and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	if s.agent != nil {
		s.agent.close()
	}
	for _, v := range s.vmc {
		v.close()
	}
	s.wg.Wait()
	if s.ownKeys {
		s.Keys.Close()
	}
	return err
}

// Sessions is the number of live sessions in MultiSession mode.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Conns is the number of open client connections.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// WaitIdle waits until no client connection is open, or timeout.
func (s *Server) WaitIdle(timeout time.Duration) bool {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if s.Conns() == 0 {
			return true
		}
	}
	return false
}

// DropAll closes every client connection (as qemu dying would), keeping
// the listener.
func (s *Server) DropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serveConn(c)
		}()
	}
}

// Server caps, as qemu 7.2 sends them.
var serverCommon = spice.CapsOf(spice.CapAuthSelection, spice.CapAuthSpice, spice.CapMiniHeader)

// ServerChannelCaps returns qemu 7.2's channel caps for t (the server
// replies with them).
var ServerChannelCaps = spice.ServerChannelCaps

func (s *Server) serveConn(c net.Conn) {
	if s.Silent {
		io.Copy(io.Discard, c)
		return
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	m, err := spice.ReadLinkMess(c, spice.DefaultMaxLinkSize)
	if err != nil {
		if code, ok := spice.CodeOf(err); ok {
			c.Write(spice.MarshalLinkError(code))
		}
		return
	}
	s.Links.Add(1)
	if s.NeedSecured {
		c.Write(spice.MarshalLinkError(spice.ErrNeedSecured))
		return
	}
	if !s.offers(m.ChannelType, m.ChannelID) {
		return // spice-server closes without a reply
	}
	key := s.LinkKey
	if key == nil {
		var err error
		if key, err = s.Keys.Get(); err != nil {
			return
		}
	}
	common := serverCommon
	if s.NoMiniHeader {
		common = common.Without(spice.CapMiniHeader)
	}
	reply := &spice.LinkReply{PubKey: key.Public, CommonCaps: common, ChannelCaps: ServerChannelCaps(m.ChannelType)}
	if _, err := c.Write(reply.Marshal()); err != nil {
		return
	}
	if m.CommonCaps.Has(spice.CapAuthSelection) {
		var mech [4]byte
		if _, err := io.ReadFull(c, mech[:]); err != nil {
			return
		}
		if binary.LittleEndian.Uint32(mech[:]) != spice.AuthSpice {
			c.Write(spice.MarshalLinkError(spice.ErrInvalidData))
			return
		}
	}
	ticket := make([]byte, spice.TicketSize)
	if _, err := io.ReadFull(c, ticket); err != nil {
		return
	}
	pw, err := spice.DecryptTicket(key.Private, ticket)
	if err != nil || s.Password == "" || pw != s.Password {
		c.Write(binary.LittleEndian.AppendUint32(nil, uint32(spice.ErrPermissionDenied)))
		return
	}
	session, ok := s.join(c, m)
	if !ok {
		c.Write(binary.LittleEndian.AppendUint32(nil, uint32(spice.ErrBadConnectionID)))
		return
	}
	if s.MultiSession {
		defer s.leave(c, m, session)
	}
	if _, err := c.Write(binary.LittleEndian.AppendUint32(nil, 0)); err != nil {
		return
	}
	s.LinkOK.Add(1)
	c.SetDeadline(time.Time{})
	mini := spice.UseMiniHeader(common, m.CommonCaps)
	ch := &serverChannel{srv: s, c: c, typ: m.ChannelType, id: m.ChannelID, caps: m.ChannelCaps,
		w: spice.NewWriter(c, mini), r: spice.NewReader(c, mini, 0), session: session}
	ch.serve()
}

// join admits a linked channel to a session: a main channel with
// connection id 0 starts one (replacing the current one unless
// MultiSession); other channels must name a live session.
func (s *Server) join(c net.Conn, m *spice.LinkMess) (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.ChannelType == spice.ChannelMain && m.ConnectionID == 0 {
		for {
			var b [4]byte
			rand.Read(b[:])
			id := binary.LittleEndian.Uint32(b[:]) | 1
			if _, taken := s.sessions[id]; taken {
				continue
			}
			s.session = id
			if s.MultiSession {
				s.sessions[id] = map[net.Conn]struct{}{}
			}
			return id, true
		}
	}
	if m.ConnectionID == 0 {
		return 0, false
	}
	if !s.MultiSession {
		return s.session, m.ConnectionID == s.session
	}
	chans, ok := s.sessions[m.ConnectionID]
	if !ok {
		return 0, false
	}
	if m.ChannelType != spice.ChannelMain {
		chans[c] = struct{}{}
	}
	return m.ConnectionID, true
}

// leave forgets a MultiSession channel; a main channel takes its session
// and that session's other channels with it.
func (s *Server) leave(c net.Conn, m *spice.LinkMess, session uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	chans, ok := s.sessions[session]
	if !ok {
		return
	}
	if m.ChannelType != spice.ChannelMain {
		delete(chans, c)
		return
	}
	delete(s.sessions, session)
	for other := range chans {
		other.Close()
	}
}
