package spice

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Mouse modes (flags; MAIN_INIT and MOUSE_MODE carry a set of them).
const (
	MouseModeServer uint32 = 1 // relative motion, the server draws the cursor
	MouseModeClient uint32 = 2 // absolute positions; needs a tablet or the agent
)

// mainState follows what a session's main channel says about the agent
// and the mouse mode. Its tap runs on main's reader: it consumes
// AGENT_DATA (for the Agent) and AGENT_TOKEN (credit for the Agent's
// sends) and only watches the rest, which Recv still sees.
type mainState struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	closed  bool          // main's reader stopped

	agentConnected bool
	agentGen       int    // counts AGENT_CONNECTED(_TOKENS)
	sendTokens     uint32 // AGENT_DATA messages the server accepts from us now
	mouseModes     uint32
	mouseMode      uint32
	channels       []ChannelID // the latest CHANNELS_LIST
	channelsErr    error

	agent *Agent // receives AGENT_DATA once started
}

func newMainState() *mainState { return &mainState{changed: make(chan struct{})} }

// notify wakes every waiter; call with mu held.
func (m *mainState) notify() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *mainState) install(c *Channel) {
	c.tap = m.tap
	c.closers = append(c.closers, func() {
		m.mu.Lock()
		m.closed = true
		m.notify()
		m.mu.Unlock()
	})
}

func (m *mainState) tap(msg Message) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch msg.Type {
	case MsgMainInit:
		if init, err := ParseMainInit(msg.Body); err == nil {
			m.mouseModes, m.mouseMode = init.SupportedMouseModes, init.CurrentMouseMode
			if init.AgentConnected != 0 {
				m.agentConnected, m.sendTokens = true, init.AgentTokens
				m.agentGen++
			}
		}
	case MsgMainAgentConnected, MsgMainAgentConnectedTokens:
		// 115 when the client has AGENT_CONNECTED_TOKENS, else 107
		// (whose client keeps MAIN_INIT's tokens).
		if msg.Type == MsgMainAgentConnectedTokens && len(msg.Body) >= 4 {
			m.sendTokens = le.Uint32(msg.Body)
		}
		m.agentConnected = true
		m.agentGen++
		if m.agent != nil {
			// The guest's agent came back: the Agent starts again.
			m.agent.in.push(agentEvent{connected: true})
		}
	case MsgMainAgentDisconnected:
		m.agentConnected, m.sendTokens = false, 0
		if m.agent != nil {
			m.agent.in.push(agentEvent{disconnected: true})
		}
	case MsgMainChannelsList:
		m.channels, m.channelsErr = ParseChannelsList(msg.Body)
		if m.channels == nil && m.channelsErr == nil {
			m.channels = []ChannelID{}
		}
	case MsgMainMouseMode:
		if len(msg.Body) >= 4 {
			m.mouseModes, m.mouseMode = uint32(le.Uint16(msg.Body)), uint32(le.Uint16(msg.Body[2:]))
		}
	case MsgMainAgentToken:
		if len(msg.Body) >= 4 {
			m.sendTokens += le.Uint32(msg.Body)
			m.notify()
		}
		return true
	case MsgMainAgentData:
		if m.agent != nil {
			m.agent.in.push(agentEvent{piece: msg.Body})
		}
		return true
	default:
		return false
	}
	m.notify()
	return false
}

// errMainClosed: the session's main channel ended.
var errMainClosed = errors.New("spice: main channel closed")

// wait waits until cond (called with mu held) holds.
func (m *mainState) wait(ctx context.Context, cond func() bool) error {
	for {
		m.mu.Lock()
		if cond() {
			m.mu.Unlock()
			return nil
		}
		if m.closed {
			m.mu.Unlock()
			return errMainClosed
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// MouseMode returns the mouse modes the server supports and the one in
// use, from MAIN_INIT and the latest SPICE_MSG_MAIN_MOUSE_MODE.
func (s *Session) MouseMode() (supported, current uint32) {
	s.main.mu.Lock()
	defer s.main.mu.Unlock()
	return s.main.mouseModes, s.main.mouseMode
}

// WaitMouseModeSupported waits until the server supports mode (from
// MAIN_INIT or a later MOUSE_MODE: spice-server adds the client mode
// once a tablet or the agent can take absolute positions).
func (s *Session) WaitMouseModeSupported(ctx context.Context, mode uint32) error {
	return s.main.wait(ctx, func() bool { return s.main.mouseModes&mode != 0 })
}

// RequestMouseMode asks for a mouse mode
// (SPICE_MSGC_MAIN_MOUSE_MODE_REQUEST) and waits until the server uses
// it (MOUSE_MODE). spice-server ignores a request for a mode it does not
// offer at that moment, so the request goes out once the mode is
// offered, and again whenever the offer changes, as spice-gtk re-asks.
// It offers client mode through a USB tablet only with exactly one
// display channel and once the guest has a surface and an absolute
// pointer, or whenever an agent is attached (qemu's agent-mouse=on;
// spice-server's reds_update_mouse_mode);
// measured on qemu 7.2: MAIN_INIT offered server mode only, and a
// MOUSE_MODE offering both came once the inputs channel linked.
func (s *Session) RequestMouseMode(ctx context.Context, mode uint32) error {
	m := s.main
	var lastOffer uint32
	asked := false
	for {
		m.mu.Lock()
		sup, cur, closed, ch := m.mouseModes, m.mouseMode, m.closed, m.changed
		m.mu.Unlock()
		switch {
		case cur == mode:
			return nil
		case closed:
			return errMainClosed
		case sup&mode != 0 && (!asked || sup != lastOffer):
			if err := s.Main.Send(MsgcMainMouseModeRequest, le.AppendUint16(nil, uint16(mode))); err != nil {
				return err
			}
			asked, lastOffer = true, sup
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("spice: mouse mode %d not granted (supported %#x, current %d): %w", mode, sup, cur, ctx.Err())
		}
	}
}
