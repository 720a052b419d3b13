package spicetest

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// serverChannel is one linked channel of the test server: it answers
// pings and acks and streams what its type streams.
type serverChannel struct {
	srv     *Server
	c       net.Conn
	typ     spice.ChannelType
	id      uint8
	caps    spice.Caps // the client's channel caps
	w       *spice.Writer
	r       *spice.Reader
	session uint32

	answered atomic.Bool // the display worker answered DISPLAY_INIT

	ackMu   sync.Mutex
	ackCond *sync.Cond
	unacked int
	synced  bool

	agentTokens uint32 // main: AGENT_DATA the client may still send
	motions     int    // inputs: motions and positions, ACKed by fours
}

const ackWindow = 20

func (ch *serverChannel) serve() {
	ch.ackCond = sync.NewCond(&ch.ackMu)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ch.c.Close()
	start := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	switch ch.typ {
	case spice.ChannelMain:
		init := spice.MainInit{SessionID: ch.session, DisplayChannelsHint: 1, SupportedMouseModes: 1, CurrentMouseMode: 1, AgentTokens: agentWindow}
		if ch.srv.agent != nil {
			init.AgentConnected = 1
			ch.agentTokens = agentWindow
			defer ch.srv.agent.detach(ch)
		}
		ch.w.WriteMessage(spice.MsgMainInit, init.Marshal())
		ch.w.WriteMessage(spice.MsgPing, spice.Ping{ID: 1}.Marshal())
	case spice.ChannelPlayback, spice.ChannelRecord:
		ch.srv.attachAudio(ch)
		defer ch.srv.detachAudio(ch)
	case spice.ChannelUsbredir, spice.ChannelPort, spice.ChannelWebdav:
		v := ch.srv.vmcFor(ch.typ, ch.id)
		v.attach(ch)
		defer v.detach(ch)
	case spice.ChannelInputs:
		ch.w.WriteMessage(spice.MsgInputsInit, []byte{0, 0})
	case spice.ChannelCursor:
		ch.w.WriteMessage(spice.MsgSetAck, spice.SetAck{Generation: 1, Window: ackWindow}.Marshal())
		ch.w.WriteMessage(spice.MsgCursorInit, make([]byte, 9))
	}
	displayInit := false
	defer func() {
		if ch.typ == spice.ChannelDisplay && !ch.answered.Load() {
			ch.srv.Crashed.Store(true)
		}
		cancel()
		ch.ackMu.Lock()
		ch.synced = true
		ch.unacked = -1 << 30
		ch.ackCond.Broadcast()
		ch.ackMu.Unlock()
	}()
	for {
		msg, err := ch.r.ReadMessage()
		if err != nil {
			return
		}
		ch.srv.Received.Add(int64(len(msg.Body)))
		switch {
		case msg.Type == spice.MsgcAckSync:
			ch.ackMu.Lock()
			ch.synced = true
			ch.ackMu.Unlock()
		case msg.Type == spice.MsgcAck:
			ch.ackMu.Lock()
			if ch.synced {
				ch.unacked -= ackWindow
				ch.ackCond.Broadcast()
			}
			ch.ackMu.Unlock()
		case ch.typ == spice.ChannelMain && msg.Type == spice.MsgcMainAttachChannels:
			ch.w.WriteMessage(spice.MsgMainChannelsList, spice.MarshalChannelsList(ch.srv.Channels))
		case ch.typ == spice.ChannelDisplay && msg.Type == spice.MsgcDisplayInit && !displayInit:
			displayInit = true
			start(ch.streamDisplay)
		case ch.typ == spice.ChannelInputs && msg.Type == spice.MsgcInputsKeyDown && len(msg.Body) >= 4:
			ch.srv.keysMu.Lock()
			ch.srv.keysDown = append(ch.srv.keysDown, binary.LittleEndian.Uint32(msg.Body))
			ch.srv.keysMu.Unlock()
			ch.srv.changed()
		case ch.typ == spice.ChannelInputs && msg.Type >= spice.MsgcInputsMouseMotion && msg.Type <= spice.MsgcInputsMouseRelease:
			ch.mouseMessage(msg)
		case ch.typ == spice.ChannelMain && ch.srv.agent != nil:
			if ch.agentMessage(msg) != nil {
				return
			}
		case ch.typ == spice.ChannelRecord:
			ch.srv.recordMessage(msg)
		case ch.typ == spice.ChannelUsbredir || ch.typ == spice.ChannelPort || ch.typ == spice.ChannelWebdav:
			if msg.Type == spice.MsgcSpicevmcData {
				if _, err := ch.srv.vmcFor(ch.typ, ch.id).Conn.Write(msg.Body); err != nil {
					return
				}
			}
		}
	}
}

// agentMessage handles the client's agent messages on main.
func (ch *serverChannel) agentMessage(msg spice.Message) error {
	r := ch.srv.agent
	switch msg.Type {
	case spice.MsgcMainAgentStart:
		if len(msg.Body) >= 4 {
			r.attach(ch, binary.LittleEndian.Uint32(msg.Body))
		}
	case spice.MsgcMainAgentToken:
		if len(msg.Body) >= 4 {
			r.addTokens(ch, binary.LittleEndian.Uint32(msg.Body))
		}
	case spice.MsgcMainAgentData:
		return r.fromClient(ch, msg.Body)
	}
	return nil
}

// mouseMessage records a mouse message and ACKs motions by fours, as
// spice-server does.
func (ch *serverChannel) mouseMessage(msg spice.Message) {
	ch.srv.mouseMu.Lock()
	ch.srv.mouse = append(ch.srv.mouse, msg)
	ch.srv.mouseMu.Unlock()
	ch.srv.changed()
	if msg.Type == spice.MsgcInputsMouseMotion || msg.Type == spice.MsgcInputsMousePosition {
		if ch.motions++; ch.motions%spice.MotionAckBunch == 0 {
			ch.w.WriteMessage(spice.MsgInputsMouseMotionAck, nil)
		}
	}
}

// send writes a message counted against the ack window (2 × window
// un-ACKed messages, as spice-server allows).
func (ch *serverChannel) send(ctx context.Context, typ uint16, body []byte) error {
	ch.ackMu.Lock()
	for ch.unacked >= 2*ackWindow && ctx.Err() == nil {
		ch.ackCond.Wait()
	}
	ch.unacked++
	ch.ackMu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return ch.w.WriteMessage(typ, body)
}

func (ch *serverChannel) streamDisplay(ctx context.Context) {
	delay := ch.srv.DisplayInitDelay
	if delay <= 0 {
		delay = 20 * time.Millisecond
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(delay):
	}
	ch.answered.Store(true)
	ch.w.WriteMessage(spice.MsgSetAck, spice.SetAck{Generation: 1, Window: ackWindow}.Marshal())
	surface := make([]byte, 20)
	binary.LittleEndian.PutUint32(surface[4:], 720)
	binary.LittleEndian.PutUint32(surface[8:], 400)
	if ch.send(ctx, spice.MsgDisplaySurfaceCreate, surface) != nil {
		return
	}
	if ch.send(ctx, spice.MsgDisplayDrawCopy, make([]byte, 6903)) != nil {
		return
	}
	ch.send(ctx, spice.MsgDisplayMark, nil)
	size := ch.srv.StreamMessageSize
	if size <= 0 {
		size = 64 << 10
	}
	body := make([]byte, size)
	for left := ch.srv.StreamBytes; left > 0; left -= int64(size) {
		if ch.send(ctx, spice.MsgDisplayDrawCopy, body) != nil {
			return
		}
	}
}
