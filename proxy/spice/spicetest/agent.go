package spicetest

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// agentWindow is the number of AGENT_DATA messages spice-server lets a
// client send ahead (REDS_AGENT_WINDOW_SIZE, MAIN_INIT's agent_tokens).
const agentWindow = 10

// agentRelay is spice-server's agent device: it relays the client's
// AGENT_DATA to the guest end of com.redhat.spice.0 in VDI chunks of
// port 1 and the guest's port-1 chunks back as AGENT_DATA of at most
// 2048 bytes, with the token flow control and the message-boundary rules
// spice-server enforces (a violation is counted and drops the client).
type agentRelay struct {
	srv *Server
	dev net.Conn
	wmu sync.Mutex // device writes

	mu        sync.Mutex
	cond      *sync.Cond
	client    *serverChannel // the main channel after AGENT_START
	toClient  uint32         // tokens the client granted (AGENT_START, AGENT_TOKEN)
	closed    bool
	filter    spice.AgentAssembler // the client's message boundaries
	fromGuest uint64
}

func newAgentRelay(s *Server, dev net.Conn) *agentRelay {
	r := &agentRelay{srv: s, dev: dev}
	r.cond = sync.NewCond(&r.mu)
	return r
}

// start runs the device reader until the server closes.
func (r *agentRelay) start() {
	r.srv.wg.Add(1)
	go func() {
		defer r.srv.wg.Done()
		r.readAgentDevice()
	}()
}

func (r *agentRelay) close() {
	r.mu.Lock()
	r.closed = true
	r.cond.Broadcast()
	r.mu.Unlock()
	r.dev.Close()
}

// attach is the client's AGENT_START.
func (r *agentRelay) attach(ch *serverChannel, tokens uint32) {
	r.mu.Lock()
	r.client, r.toClient = ch, tokens
	r.filter.Reset()
	r.cond.Broadcast()
	r.mu.Unlock()
}

func (r *agentRelay) addTokens(ch *serverChannel, n uint32) {
	r.mu.Lock()
	if r.client == ch {
		r.toClient += n
		r.cond.Broadcast()
	}
	r.mu.Unlock()
}

// detach forgets a main channel that closed and tells the guest, as
// spice-server does (VD_AGENT_CLIENT_DISCONNECTED on the server port).
func (r *agentRelay) detach(ch *serverChannel) {
	r.mu.Lock()
	was := r.client == ch
	if was {
		r.client = nil
		r.cond.Broadcast()
	}
	r.mu.Unlock()
	if was {
		msg := spice.AgentMessage{Type: spice.AgentClientDisconnected}.Marshal()
		r.writeChunk(spice.AgentPortServer, msg)
	}
}

func (r *agentRelay) writeChunk(port uint32, data []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	b := spice.AppendChunkHeader(make([]byte, 0, spice.ChunkHeaderSize+len(data)), port, uint32(len(data)))
	_, err := r.dev.Write(append(b, data...))
	return err
}

// errAgentViolation: the client broke the agent's flow control or
// framing.
var errAgentViolation = errors.New("spicetest: agent protocol violation")

// fromClient relays one AGENT_DATA; ch.agentTokens is what the client
// may still send.
func (r *agentRelay) fromClient(ch *serverChannel, body []byte) error {
	if ch.agentTokens == 0 {
		r.srv.AgentViolations.Add(1)
		return errAgentViolation
	}
	ch.agentTokens--
	if len(body) > spice.AgentMaxDataSize {
		r.srv.AgentViolations.Add(1)
		return errAgentViolation
	}
	r.mu.Lock()
	_, _, err := r.filter.Feed(body)
	r.mu.Unlock()
	if err != nil {
		r.srv.AgentViolations.Add(1)
		return errAgentViolation
	}
	if err := r.writeChunk(spice.AgentPortClient, body); err != nil {
		return err
	}
	// The device took it: the client may send one more.
	ch.agentTokens++
	return ch.w.WriteMessage(spice.MsgMainAgentToken, binary.LittleEndian.AppendUint32(nil, 1))
}

// readAgentDevice reads the guest's chunks and sends port-1 ones to the
// client in pieces of at most 2048 bytes, one token each.
func (r *agentRelay) readAgentDevice() {
	var hdr [spice.ChunkHeaderSize]byte
	for {
		if _, err := io.ReadFull(r.dev, hdr[:]); err != nil {
			return
		}
		port, size, _ := spice.ParseChunkHeader(hdr[:])
		data := make([]byte, size)
		if _, err := io.ReadFull(r.dev, data); err != nil {
			return
		}
		if port != spice.AgentPortClient {
			continue
		}
		var target *serverChannel
		for len(data) > 0 {
			k := min(len(data), spice.AgentMaxDataSize)
			r.mu.Lock()
			// Like spice-server, read on only when a client can take it.
			for !r.closed && (r.client == nil || r.toClient == 0) && (target == nil || r.client == target) {
				r.cond.Wait()
			}
			if target == nil {
				target = r.client
			}
			ok := !r.closed && r.client == target
			if ok {
				r.toClient--
				r.fromGuest++
			}
			r.mu.Unlock()
			if !ok {
				break // the client went away mid-message: drop the rest
			}
			target.w.WriteMessage(spice.MsgMainAgentData, data[:k])
			data = data[k:]
		}
	}
}
