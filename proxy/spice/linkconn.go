package spice

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// LinkOptions tune Link.
type LinkOptions struct {
	// Deadline bounds the whole link stage; zero means none.
	Deadline time.Time
	// MaxReplySize bounds the reply's size field (0: DefaultMaxLinkSize).
	MaxReplySize uint32
}

// Link runs the client side of the link stage for one channel on conn:
// send m, read the reply, send the auth mechanism word (when both sides
// advertised AUTH_SELECTION) and the RSA-OAEP ticket for password, then
// read the 4-byte link result. Nothing beyond the result is read, so
// data that follows in the same segment stays in conn.
//
// Every failure is a *LinkError naming the step, with the peer's code
// when it sent one. On success the connection is ready for data
// messages, framed per UseMiniHeader(m.CommonCaps, reply.CommonCaps).
func Link(conn net.Conn, m *LinkMess, password string, opts LinkOptions) (*LinkReply, error) {
	fail := func(step string, code LinkErr, err error) (*LinkReply, error) {
		return nil, &LinkError{Step: step, Channel: m.ChannelType, ID: m.ChannelID, Code: code, Err: err}
	}
	if len(password) > MaxPasswordLength+1 {
		// spice-gtk's limit is 60 (of which spice-server keeps 59).
		return fail(StepAuth, LinkOK, ErrPasswordTooLong)
	}
	if !opts.Deadline.IsZero() {
		if err := conn.SetDeadline(opts.Deadline); err != nil {
			return fail(StepLinkSend, LinkOK, err)
		}
		defer conn.SetDeadline(time.Time{})
	}
	if _, err := conn.Write(m.Marshal()); err != nil {
		return fail(StepLinkSend, LinkOK, err)
	}
	maxReply := opts.MaxReplySize
	if maxReply == 0 {
		maxReply = DefaultMaxLinkSize
	}
	reply, err := ReadLinkReply(conn, maxReply)
	if err != nil {
		if errors.Is(err, io.EOF) {
			// spice-server closes without a reply for a channel it does
			// not have (type 42, display:1, playback without audio).
			err = fmt.Errorf("server closed without a link reply (channel not available?): %w", err)
		}
		code, _ := CodeOf(err)
		return fail(StepLinkReply, code, err)
	}
	if reply.Error != LinkOK {
		return fail(StepLinkReply, reply.Error, nil)
	}
	auth := make([]byte, 0, 4+TicketSize)
	if m.CommonCaps.Has(CapAuthSelection) && reply.CommonCaps.Has(CapAuthSelection) {
		if !reply.CommonCaps.Has(CapAuthSpice) {
			return fail(StepAuth, LinkOK, errors.New("no compatible auth mechanism: server does not offer AUTH_SPICE"))
		}
		auth = le.AppendUint32(auth, AuthSpice)
	}
	ticket, err := EncryptTicket(reply.PubKey, password)
	if err != nil {
		return fail(StepAuth, LinkOK, err)
	}
	if _, err := conn.Write(append(auth, ticket...)); err != nil {
		return fail(StepAuth, LinkOK, err)
	}
	var res [4]byte
	if _, err := io.ReadFull(conn, res[:]); err != nil {
		return fail(StepLinkResult, LinkOK, err)
	}
	code := LinkErr(le.Uint32(res[:]))
	if uint32(code) == Magic {
		// spice-server answers an unknown mechanism with a whole error
		// link reply instead of a 4-byte result.
		var rest [LinkHeaderSize - 4]byte
		if _, err := io.ReadFull(conn, rest[:]); err != nil {
			return fail(StepLinkResult, LinkOK, err)
		}
		r, err := ReadLinkReplyBody(conn, le.Uint32(rest[8:]), maxReply)
		if err != nil {
			code, _ := CodeOf(err)
			return fail(StepLinkResult, code, err)
		}
		code = r.Error
	}
	if code != LinkOK {
		return fail(StepLinkResult, code, nil)
	}
	return reply, nil
}
