package spice

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// DefaultMaxMessageSize bounds one data message body unless configured
// otherwise. qemu's largest routine message is main's 256 012-byte test
// PING; a 1024x768x32 uncompressed draw is 3 MiB.
const DefaultMaxMessageSize = 32 << 20

// UseMiniHeader reports whether a connection uses 6-byte mini headers:
// only when both ends advertised MINI_HEADER in their common caps. (qemu
// decides from the client's caps and spice-gtk from the server's; both
// always advertise it, and requiring both is the rule neither can break.)
func UseMiniHeader(local, remote Caps) bool {
	return local.Has(CapMiniHeader) && remote.Has(CapMiniHeader)
}

// Header is a data message header. Serial and SubList exist only in full
// (18-byte) headers.
type Header struct {
	Serial  uint64
	Type    uint16
	Size    uint32
	SubList uint32
}

// HeaderSize returns 6 or 18.
func HeaderSize(mini bool) int {
	if mini {
		return MiniHeaderSize
	}
	return FullHeaderSize
}

// AppendHeader encodes h as a mini or full header.
func AppendHeader(b []byte, h Header, mini bool) []byte {
	if mini {
		b = le.AppendUint16(b, h.Type)
		return le.AppendUint32(b, h.Size)
	}
	b = le.AppendUint64(b, h.Serial)
	b = le.AppendUint16(b, h.Type)
	b = le.AppendUint32(b, h.Size)
	return le.AppendUint32(b, h.SubList)
}

// DecodeHeader decodes a header from b, which must hold HeaderSize(mini)
// bytes.
func DecodeHeader(b []byte, mini bool) Header {
	if mini {
		return Header{Type: le.Uint16(b), Size: le.Uint32(b[2:])}
	}
	return Header{Serial: le.Uint64(b), Type: le.Uint16(b[8:]), Size: le.Uint32(b[10:]), SubList: le.Uint32(b[14:])}
}

// Message is one data message.
type Message struct {
	Header
	Body []byte
}

// Reader reads framed data messages. Every header is checked against
// MaxSize before a body buffer is allocated.
type Reader struct {
	r       io.Reader
	mini    bool
	maxSize uint32
	hdr     [FullHeaderSize]byte
}

// NewReader reads messages from r with mini or full headers; maxSize 0
// means DefaultMaxMessageSize.
func NewReader(r io.Reader, mini bool, maxSize uint32) *Reader {
	if maxSize == 0 {
		maxSize = DefaultMaxMessageSize
	}
	return &Reader{r: r, mini: mini, maxSize: maxSize}
}

// ReadHeader reads and validates the next header. A size above the limit
// returns an error wrapping ErrTooLarge; the stream is then unusable.
func (r *Reader) ReadHeader() (Header, error) {
	b := r.hdr[:HeaderSize(r.mini)]
	if _, err := io.ReadFull(r.r, b); err != nil {
		return Header{}, err
	}
	h := DecodeHeader(b, r.mini)
	if h.Size > r.maxSize {
		return h, fmt.Errorf("%w: type %d claims %d bytes, limit %d", ErrTooLarge, h.Type, h.Size, r.maxSize)
	}
	return h, nil
}

// ReadMessage reads the next header and its body.
func (r *Reader) ReadMessage() (Message, error) {
	h, err := r.ReadHeader()
	if err != nil {
		return Message{Header: h}, err
	}
	body := make([]byte, h.Size)
	if _, err := io.ReadFull(r.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Message{Header: h}, err
	}
	return Message{Header: h, Body: body}, nil
}

// Writer writes framed data messages, numbering full-header serials from
// 1. It is safe for concurrent use; each message goes out in one Write,
// or for a large body in one net.Buffers write (a single writev on a
// TCP connection) so that the body is not copied.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	mini   bool
	serial uint64
	buf    []byte
}

// writevMin is the body size from which WriteMessage stops copying the
// body behind the header. Copying is cheaper below it; above it the copy
// (and, past 64 KiB, a fresh buffer per message) cost more than writev.
const writevMin = 8 << 10

// NewWriter writes to w with mini or full headers.
func NewWriter(w io.Writer, mini bool) *Writer { return &Writer{w: w, mini: mini} }

// WriteMessage sends one message of type typ.
func (w *Writer) WriteMessage(typ uint16, body []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.serial++
	w.buf = AppendHeader(w.buf[:0], Header{Serial: w.serial, Type: typ, Size: uint32(len(body))}, w.mini)
	if len(body) >= writevMin {
		bufs := net.Buffers{w.buf, body}
		_, err := bufs.WriteTo(w.w)
		return err
	}
	w.buf = append(w.buf, body...)
	_, err := w.w.Write(w.buf)
	return err
}
