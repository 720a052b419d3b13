package proxy

import (
	"encoding/binary"
	"io"

	"github.com/spiceharness/spiceharness/internal/mutant"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// The channels tier's mutants (internal/mutant) live here, away from the
// relay's own code: each one needs whole messages, so a leg it changes
// never streams (mutated), and pump asks mutate what to do with each
// message. With no mutation on, mutated is false and the relay is
// unchanged.

// mutated reports whether a channel-tier mutation changes messages on l.
func (ch *channel) mutated(l *leg) bool {
	p := ch.p
	switch {
	case l.dir == ToServer && isVMC(ch.typ) && mutant.On(p, mutant.SpicevmcOneWay):
		return true
	case l.dir == ToServer && ch.typ == spice.ChannelMain && mutant.On(p, mutant.AgentOwnCaps):
		return true
	case l.dir == ToServer && ch.typ == spice.ChannelDisplay && mutant.On(p, mutant.DisplayAckWindow):
		return true
	}
	return false
}

// mutantCap is the msg-cap-64k mutant's check: a message over 64 KiB on
// any channel but main is refused.
func (ch *channel) mutantCap(h spice.Header) bool {
	return ch.typ != spice.ChannelMain && h.Size > 64<<10 && mutant.On(ch.p, mutant.MsgCap64K)
}

// mutate handles one message of a mutated leg: it returns true when it
// dealt with the message (dropped or rewritten and written), false to
// forward it as usual.
func (ch *channel) mutate(l *leg, h spice.Header) (bool, error) {
	switch {
	case isVMC(ch.typ) && (h.Type == spice.MsgcSpicevmcData || h.Type == spice.MsgcSpicevmcCompressedData) && mutant.On(ch.p, mutant.SpicevmcOneWay):
		_, err := io.CopyN(io.Discard, l.src, int64(h.Size))
		return true, err
	case ch.typ == spice.ChannelDisplay && h.Type == spice.MsgcAck && mutant.On(ch.p, mutant.DisplayAckWindow):
		_, err := io.CopyN(io.Discard, l.src, int64(h.Size))
		return true, err
	case ch.typ == spice.ChannelMain && h.Type == spice.MsgcMainAgentData && mutant.On(ch.p, mutant.AgentOwnCaps):
		body := make([]byte, h.Size)
		if err := ch.readFull(l.src, body); err != nil {
			return true, err
		}
		ownAgentCaps(body)
		out := spice.AppendHeader(nil, ch.outHeader(l, h), l.dstMini)
		_, err := l.dst.Write(append(out, body...))
		return true, err
	}
	return false, nil
}

// ownAgentCaps replaces the caps of an AGENT_DATA piece that starts a
// VD_AGENT_ANNOUNCE_CAPABILITIES message (20-byte agent header, u32
// request, then the caps words) with a fixed set, keeping its length.
func ownAgentCaps(b []byte) {
	const hdr = 20
	if len(b) < hdr+8 || binary.LittleEndian.Uint32(b[4:]) != spice.AgentAnnounceCaps {
		return
	}
	own := spice.CapsOf(spice.AgentCapMouseState, spice.AgentCapMonitorsConfig, spice.AgentCapReply)
	for i := 0; hdr+4+4*i+4 <= len(b); i++ {
		var w uint32
		if i < len(own) {
			w = own[i]
		}
		binary.LittleEndian.PutUint32(b[hdr+4+4*i:], w)
	}
}

func isVMC(t spice.ChannelType) bool {
	return t == spice.ChannelUsbredir || t == spice.ChannelPort || t == spice.ChannelWebdav
}
