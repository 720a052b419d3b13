package spice

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
)

// DefaultTimeout bounds each step of a link when Dialer.Timeout is 0.
const DefaultTimeout = 10 * time.Second

// DefaultCommonCaps are the common caps the client advertises:
// AUTH_SELECTION | AUTH_SPICE | MINI_HEADER (spice-gtk sends SASL instead
// of AUTH_SPICE; this client speaks only tickets).
var DefaultCommonCaps = CapsOf(CapAuthSelection, CapAuthSpice, CapMiniHeader)

// ClientChannelCaps returns the channel caps spice-gtk 0.42 sends for t,
// captured on the wire from spice-gtk 0.42 talking to qemu 7.2
// (spice-server 0.15.1): main 0xf, display 0x3bf, playback 0xe, record
// 0x6, the spicevmc channels 0x1, inputs and cursor none.
func ClientChannelCaps(t ChannelType) Caps {
	switch t {
	case ChannelMain:
		return Caps{0xf}
	case ChannelDisplay:
		return Caps{0x3bf}
	case ChannelPlayback:
		return Caps{0xe}
	case ChannelRecord:
		return Caps{0x6}
	case ChannelUsbredir, ChannelPort, ChannelWebdav:
		return Caps{0x1}
	}
	return nil
}

// ServerChannelCaps returns the channel caps qemu 7.2 (spice-server
// 0.15.1) replies with for t, captured on the wire from its link replies
// to spice-gtk 0.42; nil for types it has no caps for.
func ServerChannelCaps(t ChannelType) Caps {
	switch t {
	case ChannelMain:
		return Caps{0xf}
	case ChannelDisplay:
		return Caps{0x1052}
	case ChannelInputs:
		return Caps{0x1}
	case ChannelPlayback:
		return Caps{0xa}
	case ChannelRecord:
		return Caps{0x6}
	case ChannelUsbredir, ChannelPort, ChannelWebdav:
		return Caps{0x1}
	}
	return nil
}

// Dialer opens SPICE sessions and channels. Host and Port (plain) or
// TLSPort must be set; the other fields have working zero values.
type Dialer struct {
	Host    string
	Port    int // plain port; 0 means none
	TLSPort int // TLS port; 0 means none

	// Password is the ticket (or a proxy token). Never logged.
	Password string

	// Proxy, when set, is an HTTP proxy ("http://HOST:PORT", as a .vv's
	// proxy= or SPICE_PROXY) that every channel goes through: CONNECT
	// Host:port (Host passed through unchanged, so it may be a name only
	// the proxy understands), a 2xx answer, then the link, TLS end to end
	// with the server on the TLS port. A refusal fails the channel at
	// StepProxy with a *ProxyError. See DialProxy.
	Proxy string

	// WebSocket, when set, is a gateway URL (ws:// or wss://, token
	// included) that every channel opens a WebSocket of its own to, as
	// spice-html5 does: the "binary" subprotocol, the SPICE byte stream in
	// binary messages, plain SPICE inside (TLS is the WebSocket's, wss://,
	// checked against CA). Host and the ports are then unused. A refused
	// upgrade fails the channel at StepWebSocket with a *WebSocketError.
	WebSocket string
	// Origin is the Origin header of the WebSocket upgrade ("": none, as
	// a non-browser client; a browser always sends its page's).
	Origin string
	// DialContext opens the TCP connection of every channel (nil: a
	// net.Dialer): tests shape the bytes under SPICE or the WebSocket.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// CA verifies the TLS server (nil: the system roots). HostSubject,
	// when set, replaces the host name check with spice-gtk's exact,
	// ordered subject match. ServerName defaults to Host.
	CA          *x509.CertPool
	HostSubject string
	ServerName  string

	// Secure lists channel types that go straight to the TLS port, like a
	// .vv's secure-channels; SecureAll sends every channel there.
	// Otherwise channels try plain first and follow NEED_SECURED to TLS,
	// channel by channel, as spice-gtk does.
	Secure    []ChannelType
	SecureAll bool

	// QuickAck acknowledges every read at once (Linux's TCP_QUICKACK,
	// plain TCP channels only): latency measurements set it, so that the
	// client's own delayed ACKs (up to 40 ms) never hold up a sender that
	// waits for them.
	QuickAck bool

	// Timeout bounds each link (dial, TLS, link, auth, result); 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// MaxMessageSize bounds data messages read (0: DefaultMaxMessageSize).
	MaxMessageSize uint32

	// CommonCaps and ChannelCaps override what is advertised (nil:
	// DefaultCommonCaps and ClientChannelCaps).
	CommonCaps  Caps
	ChannelCaps func(ChannelType) Caps
}

func (d *Dialer) timeout() time.Duration {
	if d.Timeout > 0 {
		return d.Timeout
	}
	return DefaultTimeout
}

// dialOpts are what typed Open calls add to a link: channel caps other
// than the Dialer's, and the setup that installs their tap.
type dialOpts struct {
	caps  Caps // nil: the Dialer's
	setup func(*Channel)
}

func (d *Dialer) linkMess(connID uint32, t ChannelType, id uint8, o dialOpts) *LinkMess {
	common := d.CommonCaps
	if common == nil {
		common = DefaultCommonCaps
	}
	caps := o.caps
	if caps == nil {
		chcaps := ClientChannelCaps
		if d.ChannelCaps != nil {
			chcaps = d.ChannelCaps
		}
		caps = chcaps(t)
	}
	return &LinkMess{ConnectionID: connID, ChannelType: t, ChannelID: id, CommonCaps: common, ChannelCaps: caps}
}

func (d *Dialer) wantsTLS(t ChannelType) bool {
	if d.WebSocket != "" {
		return false // TLS is the WebSocket's (wss://), never inside it
	}
	return d.SecureAll || d.Port == 0 || slices.Contains(d.Secure, t)
}

// DialChannel links one channel with the given connection id (0 for a
// new session's main channel, else the session id) and starts reading
// it. It follows NEED_SECURED to the TLS port when one is configured.
func (d *Dialer) DialChannel(ctx context.Context, connID uint32, t ChannelType, id uint8) (*Channel, error) {
	return d.dial(ctx, connID, t, id, dialOpts{})
}

func (d *Dialer) dial(ctx context.Context, connID uint32, t ChannelType, id uint8, o dialOpts) (*Channel, error) {
	secure := d.wantsTLS(t)
	ch, err := d.dialOnce(ctx, connID, t, id, secure, o)
	if !secure && errors.Is(err, ErrNeedSecured) && d.TLSPort != 0 {
		ch, err = d.dialOnce(ctx, connID, t, id, true, o)
		if ch != nil {
			ch.FollowedNeedSecured = true
		}
	}
	return ch, err
}

func (d *Dialer) dialOnce(ctx context.Context, connID uint32, t ChannelType, id uint8, secure bool, o dialOpts) (*Channel, error) {
	m := d.linkMess(connID, t, id, o)
	fail := func(step string, err error) error {
		return &LinkError{Step: step, Channel: t, ID: id, Err: err}
	}
	port := d.Port
	if secure {
		port = d.TLSPort
	}
	if port == 0 && d.WebSocket == "" {
		return nil, fail(StepDial, errors.New("no port configured (plain or TLS)"))
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	var conn net.Conn
	var err error
	if d.WebSocket != "" {
		if conn, err = d.dialWebSocket(ctx); err != nil {
			return nil, fail(StepWebSocket, err)
		}
	} else {
		var step string
		if conn, step, err = d.dialTCP(ctx, port); err != nil {
			return nil, fail(step, err)
		}
	}
	if secure {
		name := d.ServerName
		if name == "" {
			name = d.Host
		}
		tc := tls.Client(conn, TLSConfig(d.CA, name, d.HostSubject))
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fail(StepTLS, err)
		}
		conn = tc
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	deadline, _ := ctx.Deadline()
	reply, err := Link(conn, m, d.Password, LinkOptions{Deadline: deadline})
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return newChannel(conn, m, reply, secure, d.MaxMessageSize, o.setup), nil
}

// Session is a linked main channel and the channels opened under its id.
type Session struct {
	ID   uint32
	Init MainInit
	Main *Channel

	d       *Dialer
	main    *mainState
	agentMu sync.Mutex // one AgentWith at a time
	mu      sync.Mutex
	// chans are closed with the session.
	chans   []*Channel
	agent   *Agent
	closers []func() // typed helpers with goroutines of their own
}

// onClose runs f when the session closes, before its channels close.
func (s *Session) onClose(f func()) {
	s.mu.Lock()
	s.closers = append(s.closers, f)
	s.mu.Unlock()
}

// Connect links a new session's main channel (connection_id 0), reads
// SPICE_MSG_MAIN_INIT for the session id and sends ATTACH_CHANNELS, as
// spice-gtk does.
func (d *Dialer) Connect(ctx context.Context) (*Session, error) {
	ms := newMainState()
	main, err := d.dial(ctx, 0, ChannelMain, 0, dialOpts{setup: ms.install})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	msg, err := main.WaitFor(ctx, MsgMainInit)
	if err == nil {
		var init MainInit
		if init, err = ParseMainInit(msg.Body); err == nil {
			if err = main.Send(MsgcMainAttachChannels, nil); err == nil {
				return &Session{ID: init.SessionID, Init: init, Main: main, d: d, main: ms}, nil
			}
		}
	}
	main.Close()
	return nil, &LinkError{Step: StepMainInit, Channel: ChannelMain, Err: err}
}

// ChannelsList waits for SPICE_MSG_MAIN_CHANNELS_LIST on main (main
// itself is never listed) and returns the latest one. The message stays
// in main's queue for Recv as well.
func (s *Session) ChannelsList(ctx context.Context) ([]ChannelID, error) {
	var list []ChannelID
	var perr error
	err := s.main.wait(ctx, func() bool {
		list, perr = s.main.channels, s.main.channelsErr
		return list != nil || perr != nil
	})
	if err != nil {
		return nil, fmt.Errorf("spice: waiting for CHANNELS_LIST: %w", err)
	}
	return append([]ChannelID(nil), list...), perr
}

// Open links another channel of this session (connection_id = session
// id). Its messages all go to Recv; the typed Open calls (OpenPort,
// OpenPlayback, …) decode theirs.
func (s *Session) Open(ctx context.Context, t ChannelType, id uint8) (*Channel, error) {
	return s.open(ctx, t, id, dialOpts{})
}

func (s *Session) open(ctx context.Context, t ChannelType, id uint8, o dialOpts) (*Channel, error) {
	ch, err := s.d.dial(ctx, s.ID, t, id, o)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.chans = append(s.chans, ch)
	s.mu.Unlock()
	return ch, nil
}

// Close closes every channel of the session, main last.
func (s *Session) Close() error {
	s.mu.Lock()
	chans, ag, closers := s.chans, s.agent, s.closers
	s.chans, s.agent, s.closers = nil, nil, nil
	s.mu.Unlock()
	var errs []error
	for _, f := range closers {
		f()
	}
	if ag != nil {
		ag.close()
	}
	for _, c := range chans {
		errs = append(errs, c.Close())
	}
	errs = append(errs, s.Main.Close())
	return errors.Join(errs...)
}
