package vdagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// Reporter receives the agent's events: a type and key/value pairs.
type Reporter interface {
	Event(typ string, kv ...string)
}

// Event types and their keys.
const (
	// TypeAgent: the client side changed. Keys: event (client: a client
	// announced its caps; client-disconnected: spice-server said it
	// left), caps (the client's agent caps, hex words).
	TypeAgent = "agent"
	// TypeClipboardGrab: the client took the clipboard. Keys: sel,
	// types (comma-separated clipboard types), serial.
	TypeClipboardGrab = "clipboard-grab"
	// TypeClipboard: clipboard data moved. Keys: dir (from-client or
	// to-client), sel, type, len, sha256.
	TypeClipboard = "clipboard"
	// TypeClipboardRelease: the client released the clipboard. Keys: sel.
	TypeClipboardRelease = "clipboard-release"
	// TypeFile: a file transfer ended. Keys: id, name, size (announced),
	// len (received), sha256, status (success, error or cancelled).
	TypeFile = "file"
	// TypeMonitorsConfig: one head of a client's MONITORS_CONFIG. Keys:
	// head, heads (how many), w, h, depth, x, y, flags.
	TypeMonitorsConfig = "monitors-config"
	// TypeAgentMouse: a VD_AGENT_MOUSE_STATE from spice-server. Keys: x,
	// y, buttons, display.
	TypeAgentMouse = "agent-mouse"
	// TypeAgentError: something on the port was wrong. Keys: what, err.
	TypeAgentError = "agent-error"
)

// DefaultCaps are what the agent announces: spice-vdagent 0.22's caps
// without audio volume sync and graphics device info, which it ignores.
var DefaultCaps = spice.CapsOf(spice.AgentCapMouseState, spice.AgentCapMonitorsConfig, spice.AgentCapReply,
	spice.AgentCapClipboardByDemand, spice.AgentCapClipboardSelection, spice.AgentCapSparseMonitorsConfig,
	spice.AgentCapGuestLineendLF, spice.AgentCapClipboardNoReleaseOnRegrab, spice.AgentCapClipboardGrabSerial)

// Options configure ServeWith.
type Options struct {
	// Caps are announced to the client (nil: DefaultCaps).
	Caps spice.Caps
	// FileDir, when set, is where received files are written (by their
	// base name); otherwise they are only hashed.
	FileDir string
	// MaxMessageSize bounds one agent message (0: spice's default).
	MaxMessageSize uint32
}

// Agent serves the port until it ends. Its methods are safe for
// concurrent use.
type Agent struct {
	port io.ReadWriter
	rep  Reporter
	opts Options

	wmu sync.Mutex // one chunk written at a time

	mu         sync.Mutex
	clientCaps spice.Caps
	connected  bool
	serial     [3]uint32
	owned      map[uint8]spice.ClipboardData
	xfers      map[uint32]*xfer

	done chan struct{}
	err  error
}

// Serve is ServeWith with default Options.
func Serve(ctx context.Context, port io.ReadWriter, r Reporter) *Agent {
	return ServeWith(ctx, port, r, Options{})
}

// ServeWith announces the agent's caps on port and serves it on a
// goroutine until reading fails or ctx ends (when port is an io.Closer
// it is closed then, to stop the read).
func ServeWith(ctx context.Context, port io.ReadWriter, r Reporter, o Options) *Agent {
	if o.Caps == nil {
		o.Caps = DefaultCaps
	}
	a := &Agent{port: port, rep: r, opts: o, owned: map[uint8]spice.ClipboardData{}, xfers: map[uint32]*xfer{}, done: make(chan struct{})}
	stop := func() bool { return true }
	if c, ok := port.(io.Closer); ok {
		stop = context.AfterFunc(ctx, func() { c.Close() })
	}
	go func() {
		defer close(a.done)
		defer stop()
		a.send(spice.AgentAnnounceCaps, spice.AnnounceCaps{Request: true, Caps: o.Caps}.Marshal())
		a.err = a.serve()
		if ctx.Err() != nil {
			a.err = ctx.Err()
		}
		a.mu.Lock()
		for id, x := range a.xfers {
			x.abort()
			delete(a.xfers, id)
		}
		a.mu.Unlock()
	}()
	return a
}

// Done is closed when the agent stopped.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Err is why it stopped (after Done).
func (a *Agent) Err() error {
	<-a.done
	return a.err
}

// ClientCaps are the caps the client announced (nil while none is).
func (a *Agent) ClientCaps() spice.Caps {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.clientCaps
}

// layout is the clipboard layout with the client; call with mu held.
func (a *Agent) layout() spice.ClipboardLayout {
	return spice.ClipboardLayoutOf(a.opts.Caps, a.clientCaps)
}

// send writes one message as one chunk to the client port.
func (a *Agent) send(typ uint32, data []byte) error {
	msg := spice.AgentMessage{Type: typ, Data: data}.Marshal()
	b := spice.AppendChunkHeader(make([]byte, 0, spice.ChunkHeaderSize+len(msg)), spice.AgentPortClient, uint32(len(msg)))
	a.wmu.Lock()
	defer a.wmu.Unlock()
	_, err := a.port.Write(append(b, msg...))
	return err
}

func (a *Agent) report(typ string, kv ...string) {
	if a.rep != nil {
		a.rep.Event(typ, kv...)
	}
}

// errChunkTooLarge: a chunk bigger than spice-server ever sends.
var errChunkTooLarge = errors.New("vdagent: chunk larger than 2048 bytes")

// serve reads chunks and handles each completed message.
func (a *Agent) serve() error {
	var hdr [spice.ChunkHeaderSize]byte
	asm := map[uint32]*spice.AgentAssembler{}
	for {
		if _, err := io.ReadFull(a.port, hdr[:]); err != nil {
			return err
		}
		port, size, _ := spice.ParseChunkHeader(hdr[:])
		if size > spice.AgentMaxDataSize {
			a.report(TypeAgentError, "what", "chunk", "err", fmt.Sprintf("chunk of %d bytes on port %d", size, port))
			return errChunkTooLarge
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(a.port, data); err != nil {
			return err
		}
		if port != spice.AgentPortClient && port != spice.AgentPortServer {
			a.report(TypeAgentError, "what", "chunk", "err", fmt.Sprintf("chunk for port %d", port))
			continue
		}
		as := asm[port]
		if as == nil {
			as = &spice.AgentAssembler{MaxSize: a.opts.MaxMessageSize}
			asm[port] = as
		}
		msg, done, err := as.Feed(data)
		if err != nil {
			a.report(TypeAgentError, "what", "message", "err", err.Error())
			continue
		}
		if done {
			a.handle(port, msg)
		}
	}
}

func (a *Agent) handle(port uint32, m spice.AgentMessage) {
	switch m.Type {
	case spice.AgentAnnounceCaps:
		a.announced(m.Data)
	case spice.AgentClientDisconnected:
		a.mu.Lock()
		a.connected, a.clientCaps = false, nil
		for id, x := range a.xfers {
			x.abort()
			delete(a.xfers, id)
		}
		a.mu.Unlock()
		a.report(TypeAgent, "event", "client-disconnected")
	case spice.AgentMouseState:
		if len(m.Data) >= 13 {
			b := m.Data
			a.report(TypeAgentMouse, "x", u32(b), "y", u32(b[4:]), "buttons", u32(b[8:]), "display", strconv.Itoa(int(b[12])))
		}
	case spice.AgentClipboardGrab:
		a.clientGrab(m.Data)
	case spice.AgentClipboard:
		a.clientData(m.Data)
	case spice.AgentClipboardRequest:
		a.clientRequest(m.Data)
	case spice.AgentClipboardRelease:
		a.mu.Lock()
		l := a.layout()
		a.mu.Unlock()
		sel := spice.SelectionClipboard
		if l.Selection && len(m.Data) >= 1 {
			sel = m.Data[0]
		}
		a.report(TypeClipboardRelease, "sel", strconv.Itoa(int(sel)))
	case spice.AgentFileXferStart:
		a.xferStart(m.Data)
	case spice.AgentFileXferData:
		a.xferData(m.Data)
	case spice.AgentFileXferStatus:
		a.xferStatus(m.Data)
	case spice.AgentMonitorsConfig:
		a.monitors(m.Data)
	case spice.AgentDisplayConfig:
		a.send(spice.AgentReply, spice.AgentReplyMsg{Type: spice.AgentDisplayConfig, Error: spice.AgentSuccess}.Marshal())
	}
}

func u32(b []byte) string {
	return strconv.FormatUint(uint64(b[0])|uint64(b[1])<<8|uint64(b[2])<<16|uint64(b[3])<<24, 10)
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func capsString(c spice.Caps) string {
	var parts []string
	for _, w := range c {
		parts = append(parts, fmt.Sprintf("%#x", w))
	}
	return strings.Join(parts, ",")
}

// announced takes the client's caps; a request resets the grab serials
// (a new client) and is answered with the agent's caps.
func (a *Agent) announced(b []byte) {
	ac, err := spice.ParseAnnounceCaps(b)
	if err != nil {
		a.report(TypeAgentError, "what", "announce", "err", err.Error())
		return
	}
	a.mu.Lock()
	a.clientCaps, a.connected = ac.Caps, true
	if ac.Request {
		a.serial = [3]uint32{}
	}
	var grabs []spice.ClipboardGrab
	for sel, d := range a.owned {
		grabs = append(grabs, spice.ClipboardGrab{Selection: sel, Types: []uint32{d.Type}})
	}
	a.mu.Unlock()
	if ac.Request {
		a.send(spice.AgentAnnounceCaps, spice.AnnounceCaps{Caps: a.opts.Caps}.Marshal())
		a.report(TypeAgent, "event", "client", "caps", capsString(ac.Caps))
		// A clipboard set before this client came is offered to it.
		for _, g := range grabs {
			a.grab(g)
		}
	}
}

// TypeFromMIME maps a MIME type to a clipboard type ("" and text/* to
// UTF8_TEXT); 0 (NONE) for what the agent protocol has no type for.
func TypeFromMIME(mime string) uint32 {
	mime = strings.ToLower(strings.TrimSpace(mime))
	if i := strings.IndexByte(mime, ';'); i >= 0 {
		mime = strings.TrimSpace(mime[:i])
	}
	switch mime {
	case "", "text/plain", "text", "utf8_string", "string":
		return spice.ClipboardUTF8Text
	case "image/png":
		return spice.ClipboardPNG
	case "image/bmp":
		return spice.ClipboardBMP
	case "image/tiff":
		return spice.ClipboardTIFF
	case "image/jpeg", "image/jpg":
		return spice.ClipboardJPG
	}
	return spice.ClipboardNone
}

// SetClipboard makes the guest own the clipboard with data of the given
// MIME type: a CLIPBOARD_GRAB to the client now (or to the next client
// that announces itself), then the data for every request. A MIME type
// the protocol has no clipboard type for is reported as an error.
func (a *Agent) SetClipboard(data []byte, mime string) {
	typ := TypeFromMIME(mime)
	if typ == spice.ClipboardNone {
		a.report(TypeAgentError, "what", "clipboard-set", "err", "no agent clipboard type for MIME type "+strconv.Quote(mime))
		return
	}
	a.mu.Lock()
	a.owned[spice.SelectionClipboard] = spice.ClipboardData{Selection: spice.SelectionClipboard, Type: typ, Data: data}
	connected := a.connected
	a.mu.Unlock()
	if connected {
		a.grab(spice.ClipboardGrab{Selection: spice.SelectionClipboard, Types: []uint32{typ}})
	}
}

// grab sends a CLIPBOARD_GRAB with the next serial.
func (a *Agent) grab(g spice.ClipboardGrab) {
	a.mu.Lock()
	l := a.layout()
	if int(g.Selection) < len(a.serial) {
		g.Serial = a.serial[g.Selection]
		if l.Serial {
			a.serial[g.Selection]++
		}
	}
	a.mu.Unlock()
	a.send(spice.AgentClipboardGrab, g.Marshal(l))
}

// clientGrab takes a client's grab (the serial rule is spice-vdagent's:
// the expected serial, or the one before it when both grabbed at once,
// in which case the client wins) and asks for the data at once.
func (a *Agent) clientGrab(b []byte) {
	a.mu.Lock()
	l := a.layout()
	g, err := spice.ParseClipboardGrab(b, l)
	if err != nil || int(g.Selection) >= len(a.serial) {
		a.mu.Unlock()
		a.report(TypeAgentError, "what", "clipboard-grab", "err", fmt.Sprint("bad grab: ", err))
		return
	}
	if l.Serial {
		switch g.Serial {
		case a.serial[g.Selection]:
			a.serial[g.Selection]++
		case a.serial[g.Selection] - 1: // both grabbed: the client wins
		default:
			want := a.serial[g.Selection]
			a.mu.Unlock()
			a.report(TypeAgentError, "what", "clipboard-grab", "err", fmt.Sprintf("stale serial %d, want %d", g.Serial, want))
			return
		}
	}
	delete(a.owned, g.Selection)
	a.mu.Unlock()
	types := make([]string, len(g.Types))
	want := uint32(0)
	for i, t := range g.Types {
		types[i] = strconv.Itoa(int(t))
		if want == 0 || t == spice.ClipboardUTF8Text {
			want = t
		}
	}
	a.report(TypeClipboardGrab, "sel", strconv.Itoa(int(g.Selection)), "types", strings.Join(types, ","), "serial", strconv.Itoa(int(g.Serial)))
	if want != 0 {
		a.send(spice.AgentClipboardRequest, spice.ClipboardRequest{Selection: g.Selection, Type: want}.Marshal(l))
	}
}

func (a *Agent) clientData(b []byte) {
	a.mu.Lock()
	l := a.layout()
	a.mu.Unlock()
	c, err := spice.ParseClipboardData(b, l)
	if err != nil {
		a.report(TypeAgentError, "what", "clipboard", "err", err.Error())
		return
	}
	a.report(TypeClipboard, "dir", "from-client", "sel", strconv.Itoa(int(c.Selection)), "type", strconv.Itoa(int(c.Type)),
		"len", strconv.Itoa(len(c.Data)), "sha256", sum(c.Data))
}

// clientRequest answers the client's request from SetClipboard's data,
// or with type NONE when the guest has nothing of that type.
func (a *Agent) clientRequest(b []byte) {
	a.mu.Lock()
	l := a.layout()
	r, err := spice.ParseClipboardRequest(b, l)
	d, ok := a.owned[r.Selection]
	a.mu.Unlock()
	if err != nil {
		a.report(TypeAgentError, "what", "clipboard-request", "err", err.Error())
		return
	}
	reply := spice.ClipboardData{Selection: r.Selection, Type: spice.ClipboardNone}
	if ok && d.Type == r.Type {
		reply = d
	}
	if err := a.send(spice.AgentClipboard, reply.Marshal(l)); err == nil && reply.Type != spice.ClipboardNone {
		a.report(TypeClipboard, "dir", "to-client", "sel", strconv.Itoa(int(r.Selection)), "type", strconv.Itoa(int(r.Type)),
			"len", strconv.Itoa(len(reply.Data)), "sha256", sum(reply.Data))
	}
}

func (a *Agent) monitors(b []byte) {
	mc, err := spice.ParseMonitorsConfig(b)
	if err != nil {
		a.report(TypeAgentError, "what", "monitors-config", "err", err.Error())
		a.send(spice.AgentReply, spice.AgentReplyMsg{Type: spice.AgentMonitorsConfig, Error: spice.AgentError}.Marshal())
		return
	}
	n := strconv.Itoa(len(mc.Monitors))
	for i, m := range mc.Monitors {
		a.report(TypeMonitorsConfig, "head", strconv.Itoa(i), "heads", n, "w", strconv.Itoa(int(m.Width)), "h", strconv.Itoa(int(m.Height)),
			"depth", strconv.Itoa(int(m.Depth)), "x", strconv.Itoa(int(m.X)), "y", strconv.Itoa(int(m.Y)), "flags", strconv.Itoa(int(mc.Flags)))
	}
	a.send(spice.AgentReply, spice.AgentReplyMsg{Type: spice.AgentMonitorsConfig, Error: spice.AgentSuccess}.Marshal())
}
