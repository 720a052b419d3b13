package spice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// DefaultAgentCaps are the agent caps spice-gtk 0.42 announces: mouse
// state, monitors config (with positions), replies, display config,
// clipboard by demand with selections, no release on regrab and grab
// serials, detailed file transfer errors.
var DefaultAgentCaps = CapsOf(AgentCapMouseState, AgentCapMonitorsConfig, AgentCapReply, AgentCapDisplayConfig,
	AgentCapClipboardByDemand, AgentCapClipboardSelection, AgentCapMonitorsConfigPosition,
	AgentCapFileXferDetailedErrors, AgentCapClipboardNoReleaseOnRegrab, AgentCapClipboardGrabSerial)

// DefaultAgentTokens is how many AGENT_DATA messages the client lets the
// server send ahead (AGENT_START's num_tokens); it returns them with
// AGENT_TOKEN as it reads. spice-gtk sends ~0 instead, i.e. no flow
// control in that direction; a finite window also checks that a proxy
// forwards AGENT_TOKEN. spice-server gives the client 10 (MAIN_INIT's
// agent_tokens, or AGENT_CONNECTED_TOKENS).
const DefaultAgentTokens = 10

// FileXferChunkSize is the data size of one FILE_XFER_DATA message, as
// in spice-gtk (VD_AGENT_MAX_DATA_SIZE × 32 = 64 KiB): each travels in
// 33 AGENT_DATA messages.
const FileXferChunkSize = AgentMaxDataSize * 32

// Agent errors.
var (
	// ErrNoAgent: the server has no agent attached (the guest has not
	// opened com.redhat.spice.0), or it went away.
	ErrNoAgent = errors.New("spice: no agent connected")
	// ErrAgentClosed: the Agent (or its session) was closed.
	ErrAgentClosed = errors.New("spice: agent closed")
)

// XferError is a file transfer that ended with a status other than
// SUCCESS.
type XferError struct {
	Name   string
	Result uint32
}

var xferNames = [...]string{"CAN_SEND_DATA", "CANCELLED", "ERROR", "SUCCESS", "NOT_ENOUGH_SPACE", "SESSION_LOCKED", "VDAGENT_NOT_CONNECTED", "DISABLED"}

func (e *XferError) Error() string {
	r := fmt.Sprint(e.Result)
	if int(e.Result) < len(xferNames) {
		r = xferNames[e.Result]
	}
	return fmt.Sprintf("spice: file transfer of %q: agent answered %s", e.Name, r)
}

// AgentOptions configure Session.AgentWith.
type AgentOptions struct {
	// Caps are announced to the agent (nil: DefaultAgentCaps).
	Caps Caps
	// Tokens is AGENT_START's num_tokens (0: DefaultAgentTokens).
	Tokens uint32
	// MaxMessageSize bounds one agent message received (0:
	// AgentMaxMessageSizeLimit).
	MaxMessageSize uint32
}

// AgentStats counts what an Agent did.
type AgentStats struct {
	PiecesIn, PiecesOut     uint64 // AGENT_DATA messages received and sent
	MessagesIn, MessagesOut uint64 // agent messages received and sent
	RequestsServed          uint64 // clipboard requests answered with data
	GrabsDiscarded          uint64 // guest grabs with a stale serial
	Dropped                 uint64 // messages dropped unread from Recv
}

// Agent is the client end of the agent protocol on a session's main
// channel (clipboard, file transfer, monitors config). Get it with
// Session.Agent.
//
// Flow control both ways, as spice-server enforces it: every AGENT_DATA
// the client sends costs one of the tokens the server granted
// (MAIN_INIT's agent_tokens or AGENT_CONNECTED_TOKENS, then
// AGENT_TOKEN), and sends wait for tokens; the server may send as many
// AGENT_DATA as AGENT_START granted, and the Agent returns them with
// AGENT_TOKEN as it reads.
//
// One goroutine reassembles what arrives and answers the agent on its
// own (clipboard requests for data set with SetClipboard, capability
// requests); another writes, so neither ever waits on the other.
type Agent struct {
	s      *Session
	ms     *mainState
	caps   Caps
	tokens uint32

	in      *queue[agentEvent]
	out     *queue[*outMsg]
	recv    *dropQueue[AgentMessage]
	grabs   *dropQueue[ClipboardGrab]
	quit    chan struct{}
	wg      sync.WaitGroup
	closing sync.Once

	mu        sync.Mutex
	peerCaps  Caps
	announced chan struct{} // closed when the agent announced its caps
	owned     map[uint8]ClipboardData
	serial    [3]uint32 // shared grab serials per selection
	waiters   []*agentWaiter
	nextXfer  uint32

	asm   AgentAssembler
	stats struct{ piecesIn, piecesOut, msgsIn, msgsOut, served, discarded atomic.Uint64 }
}

// agentEvent is an AGENT_DATA body, or a connect/disconnect notice.
type agentEvent struct {
	piece        []byte
	connected    bool
	disconnected bool
}

type outMsg struct {
	msg  AgentMessage
	done chan error
}

type agentWaiter struct {
	match func(AgentMessage) bool
	ch    chan AgentMessage
}

// Agent starts the agent protocol with DefaultAgentCaps and
// DefaultAgentTokens: see AgentWith.
func (s *Session) Agent(ctx context.Context) (*Agent, error) { return s.AgentWith(ctx, AgentOptions{}) }

// AgentWith waits until the server has an agent attached (MAIN_INIT's
// agent_connected, or AGENT_CONNECTED_TOKENS later), sends AGENT_START
// and ANNOUNCE_CAPABILITIES (request = 1), and waits for the agent's
// own capabilities, which decide the layout of clipboard messages. A
// session has one Agent; later calls return it.
func (s *Session) AgentWith(ctx context.Context, o AgentOptions) (*Agent, error) {
	s.agentMu.Lock()
	defer s.agentMu.Unlock()
	s.mu.Lock()
	a := s.agent
	s.mu.Unlock()
	if a != nil {
		return a, a.waitAnnounced(ctx)
	}
	if err := s.main.wait(ctx, func() bool { return s.main.agentConnected }); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoAgent, err)
	}
	a = &Agent{
		s: s, ms: s.main, caps: o.Caps, tokens: o.Tokens,
		in: newQueue[agentEvent](), out: newQueue[*outMsg](),
		recv: newDropQueue[AgentMessage](recvQueue), grabs: newDropQueue[ClipboardGrab](16),
		quit: make(chan struct{}), announced: make(chan struct{}), owned: map[uint8]ClipboardData{},
	}
	a.asm.MaxSize = o.MaxMessageSize
	if a.caps == nil {
		a.caps = DefaultAgentCaps
	}
	if a.tokens == 0 {
		a.tokens = DefaultAgentTokens
	}
	s.main.mu.Lock()
	s.main.agent = a
	s.main.mu.Unlock()
	a.wg.Add(2)
	go a.readAgentMessages()
	go a.writeAgentMessages()
	s.mu.Lock()
	s.agent = a // from now on Session.Close closes it
	s.mu.Unlock()
	if err := a.start(); err != nil {
		return nil, err
	}
	return a, a.waitAnnounced(ctx)
}

// start sends AGENT_START and announces the client's caps.
func (a *Agent) start() error {
	a.mu.Lock()
	a.serial = [3]uint32{} // the agent resets its serials on a request
	a.mu.Unlock()
	if err := a.s.Main.Send(MsgcMainAgentStart, le.AppendUint32(nil, a.tokens)); err != nil {
		return err
	}
	a.enqueue(AgentMessage{Type: AgentAnnounceCaps, Data: AnnounceCaps{Request: true, Caps: a.caps}.Marshal()})
	return nil
}

func (a *Agent) waitAnnounced(ctx context.Context) error {
	a.mu.Lock()
	ch := a.announced
	a.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-a.quit:
		return ErrAgentClosed
	case <-ctx.Done():
		return fmt.Errorf("spice: waiting for the agent's capabilities: %w", ctx.Err())
	}
}

// close stops both goroutines and fails what waits.
func (a *Agent) close() {
	a.closing.Do(func() {
		close(a.quit)
		a.in.close()
		a.out.close()
		a.ms.mu.Lock()
		if a.ms.agent == a {
			a.ms.agent = nil
		}
		a.ms.notify()
		a.ms.mu.Unlock()
		a.wg.Wait()
		for {
			m, ok := a.out.pop(context.Background())
			if !ok {
				break
			}
			m.done <- ErrAgentClosed
		}
	})
}

// PeerCaps are the caps the agent announced.
func (a *Agent) PeerCaps() Caps {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.peerCaps
}

// Layout is the clipboard message layout in use.
func (a *Agent) Layout() ClipboardLayout {
	a.mu.Lock()
	defer a.mu.Unlock()
	return ClipboardLayoutOf(a.caps, a.peerCaps)
}

// Stats reports what the Agent counted.
func (a *Agent) Stats() AgentStats {
	return AgentStats{
		PiecesIn: a.stats.piecesIn.Load(), PiecesOut: a.stats.piecesOut.Load(),
		MessagesIn: a.stats.msgsIn.Load(), MessagesOut: a.stats.msgsOut.Load(),
		RequestsServed: a.stats.served.Load(), GrabsDiscarded: a.stats.discarded.Load(),
		Dropped: a.recv.drops(),
	}
}

// enqueue queues a message for the writer.
func (a *Agent) enqueue(m AgentMessage) chan error {
	o := &outMsg{msg: m, done: make(chan error, 1)}
	a.out.push(o)
	return o.done
}

// Send sends one agent message and waits until its last AGENT_DATA is
// written (spent tokens included).
func (a *Agent) Send(ctx context.Context, typ uint32, data []byte) error {
	select {
	case err := <-a.enqueue(AgentMessage{Type: typ, Data: data}):
		return err
	case <-a.quit:
		return ErrAgentClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Recv returns the next agent message the Agent did not handle itself.
func (a *Agent) Recv(ctx context.Context) (AgentMessage, error) {
	select {
	case m := <-a.recv.ch:
		return m, nil
	default:
	}
	select {
	case m := <-a.recv.ch:
		return m, nil
	case <-a.quit:
		return AgentMessage{}, ErrAgentClosed
	case <-ctx.Done():
		return AgentMessage{}, ctx.Err()
	}
}

// await registers a waiter for the next message match accepts; the
// reader hands it over instead of queueing it for Recv. Register
// before sending what causes the answer.
func (a *Agent) await(match func(AgentMessage) bool) *agentWaiter {
	w := &agentWaiter{match: match, ch: make(chan AgentMessage, 1)}
	a.mu.Lock()
	a.waiters = append(a.waiters, w)
	a.mu.Unlock()
	return w
}

func (a *Agent) forget(w *agentWaiter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, x := range a.waiters {
		if x == w {
			a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
			return
		}
	}
}

func (a *Agent) wait(ctx context.Context, w *agentWaiter, what string) (AgentMessage, error) {
	defer a.forget(w)
	select {
	case m := <-w.ch:
		return m, nil
	case <-a.quit:
		return AgentMessage{}, ErrAgentClosed
	case <-ctx.Done():
		return AgentMessage{}, fmt.Errorf("spice: waiting for the agent's %s: %w", what, ctx.Err())
	}
}

// WaitFor waits for the next agent message of one of the given types
// that the Agent does not handle itself.
func (a *Agent) WaitFor(ctx context.Context, types ...uint32) (AgentMessage, error) {
	w := a.await(func(m AgentMessage) bool {
		for _, t := range types {
			if m.Type == t {
				return true
			}
		}
		return false
	})
	return a.wait(ctx, w, fmt.Sprint(types))
}

// readAgentMessages reassembles the AGENT_DATA the tap queued, returns
// tokens for them and dispatches each message.
func (a *Agent) readAgentMessages() {
	defer a.wg.Done()
	var consumed uint32
	ctx := context.Background()
	for {
		ev, ok := a.in.pop(ctx)
		if !ok {
			return
		}
		switch {
		case ev.disconnected:
			a.asm.Reset()
			a.mu.Lock()
			a.peerCaps, a.announced = nil, make(chan struct{})
			a.mu.Unlock()
			continue
		case ev.connected:
			consumed = 0
			a.start()
			continue
		}
		a.stats.piecesIn.Add(1)
		// Return tokens by halves of the window; a window of ~0 (what
		// spice-gtk grants) is never returned.
		if consumed++; a.tokens != ^uint32(0) && consumed >= (a.tokens+1)/2 {
			a.s.Main.Send(MsgcMainAgentToken, le.AppendUint32(nil, consumed))
			consumed = 0
		}
		msg, done, err := a.asm.Feed(ev.piece)
		if err != nil || !done {
			continue
		}
		a.stats.msgsIn.Add(1)
		a.dispatch(msg)
	}
}

// dispatch handles what the Agent answers itself, then hands the
// message to a waiter or to Recv.
func (a *Agent) dispatch(m AgentMessage) {
	switch m.Type {
	case AgentAnnounceCaps:
		ac, err := ParseAnnounceCaps(m.Data)
		if err != nil {
			return
		}
		a.mu.Lock()
		a.peerCaps = ac.Caps
		select {
		case <-a.announced:
		default:
			close(a.announced)
		}
		a.mu.Unlock()
		if ac.Request {
			a.enqueue(AgentMessage{Type: AgentAnnounceCaps, Data: AnnounceCaps{Caps: a.caps}.Marshal()})
		}
	case AgentClipboardRequest:
		if r, err := ParseClipboardRequest(m.Data, a.Layout()); err == nil {
			a.answerRequest(r)
		}
		return
	case AgentClipboardGrab:
		l := a.Layout()
		g, err := ParseClipboardGrab(m.Data, l)
		if err != nil || int(g.Selection) >= len(a.serial) {
			return
		}
		a.mu.Lock()
		stale := l.Serial && g.Serial != a.serial[g.Selection]
		if !stale {
			a.serial[g.Selection]++
			delete(a.owned, g.Selection)
		}
		a.mu.Unlock()
		if stale {
			a.stats.discarded.Add(1)
			return
		}
		a.grabs.push(g)
		return
	}
	a.mu.Lock()
	for i, w := range a.waiters {
		if w.match(m) {
			a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
			a.mu.Unlock()
			w.ch <- m
			return
		}
	}
	a.mu.Unlock()
	a.recv.push(m)
}

// writeAgentMessages sends queued messages, each cut into AGENT_DATA
// pieces that wait for a token each. A message is dropped (its sender
// told ErrNoAgent) when the agent goes away before its last piece.
func (a *Agent) writeAgentMessages() {
	defer a.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-a.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		o, ok := a.out.pop(ctx)
		if !ok {
			return
		}
		o.done <- a.write(ctx, o.msg)
	}
}

func (a *Agent) write(ctx context.Context, m AgentMessage) error {
	a.ms.mu.Lock()
	gen := a.ms.agentGen
	a.ms.mu.Unlock()
	for _, p := range m.Pieces() {
		err := a.ms.wait(ctx, func() bool {
			return a.ms.agentGen != gen || !a.ms.agentConnected || a.ms.sendTokens > 0 || a.ms.agent != a
		})
		if err != nil {
			if ctx.Err() != nil {
				return ErrAgentClosed
			}
			return err
		}
		a.ms.mu.Lock()
		ok := a.ms.agentGen == gen && a.ms.agentConnected && a.ms.agent == a
		if ok {
			a.ms.sendTokens--
		}
		a.ms.mu.Unlock()
		if !ok {
			return ErrNoAgent
		}
		if err := a.s.Main.Send(MsgcMainAgentData, p); err != nil {
			return err
		}
		a.stats.piecesOut.Add(1)
	}
	a.stats.msgsOut.Add(1)
	return nil
}

// answerRequest answers a clipboard request from the agent: the data
// SetClipboard set for that selection if it has that type, else a
// CLIPBOARD of type NONE (as spice-gtk answers when it has nothing).
func (a *Agent) answerRequest(r ClipboardRequest) {
	a.mu.Lock()
	d, ok := a.owned[r.Selection]
	l := ClipboardLayoutOf(a.caps, a.peerCaps)
	a.mu.Unlock()
	reply := ClipboardData{Selection: r.Selection, Type: ClipboardNone}
	if ok && d.Type == r.Type {
		reply = d
		a.stats.served.Add(1)
	}
	a.enqueue(AgentMessage{Type: AgentClipboard, Data: reply.Marshal(l)})
}

// SetClipboard makes the client own the guest's clipboard with UTF-8
// text: a CLIPBOARD_GRAB offering UTF8_TEXT, after which the Agent
// answers every CLIPBOARD_REQUEST with data (an agent asks when a guest
// application pastes; the harness's guest agent asks at once). It
// returns once the grab is written.
func (a *Agent) SetClipboard(ctx context.Context, data []byte) error {
	return a.SetClipboardAs(ctx, SelectionClipboard, ClipboardUTF8Text, data)
}

// SetClipboardAs is SetClipboard for a selection and type of choice.
func (a *Agent) SetClipboardAs(ctx context.Context, sel uint8, typ uint32, data []byte) error {
	if int(sel) >= len(a.serial) {
		return fmt.Errorf("spice: clipboard selection %d", sel)
	}
	a.mu.Lock()
	l := ClipboardLayoutOf(a.caps, a.peerCaps)
	if !l.Selection && sel != SelectionClipboard {
		a.mu.Unlock()
		return fmt.Errorf("spice: the agent has no clipboard selections (selection %d)", sel)
	}
	a.owned[sel] = ClipboardData{Selection: sel, Type: typ, Data: data}
	g := ClipboardGrab{Selection: sel, Serial: a.serial[sel], Types: []uint32{typ}}
	if l.Serial {
		a.serial[sel]++
	}
	a.mu.Unlock()
	return a.Send(ctx, AgentClipboardGrab, g.Marshal(l))
}

// RequestClipboard asks the agent for its clipboard as typ and waits
// for the CLIPBOARD answer.
func (a *Agent) RequestClipboard(ctx context.Context, sel uint8, typ uint32) (ClipboardData, error) {
	l := a.Layout()
	w := a.await(func(m AgentMessage) bool {
		if m.Type != AgentClipboard {
			return false
		}
		c, err := ParseClipboardData(m.Data, l)
		return err == nil && c.Selection == sel
	})
	if err := a.Send(ctx, AgentClipboardRequest, ClipboardRequest{Selection: sel, Type: typ}.Marshal(l)); err != nil {
		a.forget(w)
		return ClipboardData{}, err
	}
	m, err := a.wait(ctx, w, "clipboard data")
	if err != nil {
		return ClipboardData{}, err
	}
	return ParseClipboardData(m.Data, l)
}

// GuestClipboard waits for the guest to grab its clipboard (a
// CLIPBOARD_GRAB the Agent has not returned before), then requests the
// first type it offers and returns the data.
func (a *Agent) GuestClipboard(ctx context.Context) (ClipboardData, error) {
	var g ClipboardGrab
	select {
	case g = <-a.grabs.ch:
	case <-a.quit:
		return ClipboardData{}, ErrAgentClosed
	case <-ctx.Done():
		return ClipboardData{}, fmt.Errorf("spice: waiting for the guest's clipboard grab: %w", ctx.Err())
	}
	if len(g.Types) == 0 {
		return ClipboardData{}, fmt.Errorf("%w: a clipboard grab offering no type", ErrMalformed)
	}
	return a.RequestClipboard(ctx, g.Selection, g.Types[0])
}

// SendFile transfers size bytes of r to the guest as a file called name
// the way spice-gtk does: FILE_XFER_START, then, once the agent answers
// CAN_SEND_DATA, FILE_XFER_DATA messages of FileXferChunkSize bytes,
// then it waits for the agent's final status. Anything but SUCCESS is
// an *XferError.
func (a *Agent) SendFile(ctx context.Context, name string, r io.Reader, size int64) error {
	a.mu.Lock()
	a.nextXfer++
	id := a.nextXfer
	a.mu.Unlock()
	status := func() *agentWaiter {
		return a.await(func(m AgentMessage) bool {
			s, err := ParseFileXferStatus(m.Data)
			return m.Type == AgentFileXferStatus && err == nil && s.ID == id
		})
	}
	result := func(w *agentWaiter) (uint32, error) {
		m, err := a.wait(ctx, w, "file transfer status")
		if err != nil {
			return 0, err
		}
		s, _ := ParseFileXferStatus(m.Data)
		return s.Result, nil
	}
	w := status()
	if err := a.Send(ctx, AgentFileXferStart, FileXferStart{ID: id, Name: name, Size: uint64(size)}.Marshal()); err != nil {
		a.forget(w)
		return err
	}
	res, err := result(w)
	if err != nil {
		return err
	}
	if res != XferCanSendData {
		return &XferError{Name: name, Result: res}
	}
	w = status() // the final status may come before the last data is written
	buf := make([]byte, FileXferChunkSize)
	for left := size; left > 0; {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), left)])
		if err != nil {
			a.forget(w)
			a.Send(ctx, AgentFileXferStatus, FileXferStatus{ID: id, Result: XferCancelled}.Marshal())
			return fmt.Errorf("spice: reading %q for the transfer: %w", name, err)
		}
		if err := a.Send(ctx, AgentFileXferData, MarshalFileXferData(id, buf[:n])); err != nil {
			a.forget(w)
			return err
		}
		left -= int64(n)
	}
	if size == 0 {
		// spice-gtk sends one empty FILE_XFER_DATA for an empty file.
		if err := a.Send(ctx, AgentFileXferData, MarshalFileXferData(id, nil)); err != nil {
			a.forget(w)
			return err
		}
	}
	if res, err = result(w); err != nil {
		return err
	}
	if res != XferSuccess {
		return &XferError{Name: name, Result: res}
	}
	return nil
}

// SetMonitors sends MONITORS_CONFIG and waits for the agent's REPLY.
// spice-server hands the message to the display devices instead of the
// agent when every one of them has a guest driver taking client monitor
// configs (qxl with the Linux qxl driver on every head), and then no
// REPLY comes (use SendMonitors). With a non-qxl head (std VGA) it always
// reaches the agent.
func (a *Agent) SetMonitors(ctx context.Context, c MonitorsConfig) (AgentReplyMsg, error) {
	w := a.await(func(m AgentMessage) bool {
		r, err := ParseAgentReply(m.Data)
		return m.Type == AgentReply && err == nil && r.Type == AgentMonitorsConfig
	})
	if err := a.SendMonitors(ctx, c); err != nil {
		a.forget(w)
		return AgentReplyMsg{}, err
	}
	m, err := a.wait(ctx, w, "monitors config reply")
	if err != nil {
		return AgentReplyMsg{}, err
	}
	return ParseAgentReply(m.Data)
}

// SendMonitors sends MONITORS_CONFIG without waiting for a reply.
func (a *Agent) SendMonitors(ctx context.Context, c MonitorsConfig) error {
	return a.Send(ctx, AgentMonitorsConfig, c.Marshal())
}
