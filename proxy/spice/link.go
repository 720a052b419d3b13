package spice

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

var le = binary.LittleEndian

// Limits on the link stage, checked before anything is allocated.
const (
	// DefaultMaxLinkSize bounds the size field of a link header. spice-gtk
	// sends 26 bytes of SpiceLinkMess and qemu 186 bytes of reply.
	DefaultMaxLinkSize = 4096
)

// LinkHeader is SpiceLinkHeader.
type LinkHeader struct {
	Magic uint32
	Major uint32
	Minor uint32
	Size  uint32
}

// AppendLinkHeader appends a valid header announcing size bytes.
func AppendLinkHeader(b []byte, size uint32) []byte {
	b = le.AppendUint32(b, Magic)
	b = le.AppendUint32(b, VersionMajor)
	b = le.AppendUint32(b, VersionMinor)
	return le.AppendUint32(b, size)
}

// ParseLinkHeader decodes 16 bytes and checks them the way spice-server
// does: magic first (INVALID_MAGIC), then the major version only
// (VERSION_MISMATCH; any minor is accepted), then size against
// [minSize, maxSize] (INVALID_DATA).
func ParseLinkHeader(b []byte, minSize, maxSize uint32) (LinkHeader, error) {
	if len(b) < LinkHeaderSize {
		return LinkHeader{}, fmt.Errorf("%w: link header of %d bytes", ErrMalformed, len(b))
	}
	h := LinkHeader{le.Uint32(b), le.Uint32(b[4:]), le.Uint32(b[8:]), le.Uint32(b[12:])}
	return h, h.check(LinkHeaderSize, minSize, maxSize)
}

// check validates the fields of h that lie in its first n bytes: magic
// (bytes 0-3), major (4-7), size (12-15).
func (h LinkHeader) check(n int, minSize, maxSize uint32) error {
	switch {
	case n >= 4 && h.Magic != Magic:
		return ErrInvalidMagic
	case n >= 8 && h.Major != VersionMajor:
		return ErrVersionMismatch
	case n >= 16 && (h.Size < minSize || h.Size > maxSize):
		return fmt.Errorf("%w: link size %d outside [%d, %d]", ErrInvalidData, h.Size, minSize, maxSize)
	}
	return nil
}

// ReadLinkHeader reads a SpiceLinkHeader from r field by field and checks
// each field as soon as its bytes have arrived: a peer that sends four
// bytes of bad magic gets INVALID_MAGIC at once instead of after the
// other twelve (or its deadline), and a wrong major version is refused
// before minor and size are read. The checks are ParseLinkHeader's. A
// connection that ends inside the header returns io.ErrUnexpectedEOF
// (io.EOF when nothing at all was read).
func ReadLinkHeader(r io.Reader, minSize, maxSize uint32) (LinkHeader, error) {
	var (
		b [LinkHeaderSize]byte
		h LinkHeader
	)
	// magic, then major, then minor and size together.
	for _, f := range [...]struct{ from, to int }{{0, 4}, {4, 8}, {8, LinkHeaderSize}} {
		if _, err := io.ReadFull(r, b[f.from:f.to]); err != nil {
			if f.from > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return LinkHeader{}, err
		}
		h = LinkHeader{le.Uint32(b[:]), le.Uint32(b[4:]), le.Uint32(b[8:]), le.Uint32(b[12:])}
		if err := h.check(f.to, minSize, maxSize); err != nil {
			return h, err
		}
	}
	return h, nil
}

// LinkMess is SpiceLinkMess: what a client sends to link one channel.
type LinkMess struct {
	// ConnectionID is 0 for a new session (main), else the session id.
	ConnectionID uint32
	ChannelType  ChannelType
	ChannelID    uint8
	CommonCaps   Caps
	ChannelCaps  Caps
}

// Marshal returns the link header and body, caps at offset 18.
func (m *LinkMess) Marshal() []byte {
	size := LinkMessSize + 4*(len(m.CommonCaps)+len(m.ChannelCaps))
	b := make([]byte, 0, LinkHeaderSize+size)
	b = AppendLinkHeader(b, uint32(size))
	b = le.AppendUint32(b, m.ConnectionID)
	b = append(b, byte(m.ChannelType), m.ChannelID)
	b = le.AppendUint32(b, uint32(len(m.CommonCaps)))
	b = le.AppendUint32(b, uint32(len(m.ChannelCaps)))
	b = le.AppendUint32(b, LinkMessSize)
	return appendCaps(appendCaps(b, m.CommonCaps), m.ChannelCaps)
}

// ParseLinkMess decodes a SpiceLinkMess body (the bytes after the
// header), honouring caps_offset. Errors wrap ErrInvalidData, which is
// what spice-server answers to a bad offset or caps count.
func ParseLinkMess(body []byte) (*LinkMess, error) {
	if len(body) < LinkMessSize {
		return nil, fmt.Errorf("%w: link message of %d bytes", ErrInvalidData, len(body))
	}
	m := &LinkMess{
		ConnectionID: le.Uint32(body),
		ChannelType:  ChannelType(body[4]),
		ChannelID:    body[5],
	}
	var err error
	m.CommonCaps, m.ChannelCaps, err = parseCaps(body, 6, LinkMessSize)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// ReadLinkMess reads a link header (with ReadLinkHeader: each field is
// checked as soon as it arrives) and SpiceLinkMess from r. A protocol
// violation returns an error wrapping the LinkErr the client should get
// (INVALID_MAGIC, VERSION_MISMATCH or INVALID_DATA); the body is
// allocated only after its size has been checked against maxSize.
func ReadLinkMess(r io.Reader, maxSize uint32) (*LinkMess, error) {
	h, err := ReadLinkHeader(r, LinkMessSize, maxSize)
	if err != nil {
		return nil, err
	}
	body := make([]byte, h.Size)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return ParseLinkMess(body)
}

// LinkReply is SpiceLinkReply: the server's answer to a LinkMess.
type LinkReply struct {
	Error LinkErr
	// PubKey is the RSA-1024 SubjectPublicKeyInfo (DER, 162 bytes) the
	// ticket must be encrypted with.
	PubKey      []byte
	CommonCaps  Caps
	ChannelCaps Caps
}

// Marshal returns the header and body. An error reply carries only the
// error, with a zero key, counts and offset, as spice-server sends it.
func (r *LinkReply) Marshal() []byte {
	if r.Error != LinkOK {
		return MarshalLinkError(r.Error)
	}
	size := LinkReplySize + 4*(len(r.CommonCaps)+len(r.ChannelCaps))
	b := make([]byte, 0, LinkHeaderSize+size)
	b = AppendLinkHeader(b, uint32(size))
	b = le.AppendUint32(b, uint32(r.Error))
	var key [PubKeySize]byte
	copy(key[:], r.PubKey)
	b = append(b, key[:]...)
	b = le.AppendUint32(b, uint32(len(r.CommonCaps)))
	b = le.AppendUint32(b, uint32(len(r.ChannelCaps)))
	b = le.AppendUint32(b, LinkReplySize)
	return appendCaps(appendCaps(b, r.CommonCaps), r.ChannelCaps)
}

// MarshalLinkError is the 16+178-byte error reply spice-server sends
// before closing (for bad magic, bad version, bad data, NEED_SECURED…).
func MarshalLinkError(code LinkErr) []byte {
	b := make([]byte, 0, LinkHeaderSize+LinkReplySize)
	b = AppendLinkHeader(b, LinkReplySize)
	b = le.AppendUint32(b, uint32(code))
	return append(b, make([]byte, LinkReplySize-4)...)
}

// ParseLinkReply decodes a SpiceLinkReply body. A non-zero error code is
// returned in the reply (not as an error) with nothing else parsed.
func ParseLinkReply(body []byte) (*LinkReply, error) {
	if len(body) < 4 {
		return nil, fmt.Errorf("%w: link reply of %d bytes", ErrMalformed, len(body))
	}
	r := &LinkReply{Error: LinkErr(le.Uint32(body))}
	if r.Error != LinkOK {
		return r, nil
	}
	if len(body) < LinkReplySize {
		return nil, fmt.Errorf("%w: link reply of %d bytes, want at least %d", ErrMalformed, len(body), LinkReplySize)
	}
	r.PubKey = append([]byte(nil), body[4:4+PubKeySize]...)
	var err error
	r.CommonCaps, r.ChannelCaps, err = parseCaps(body, 4+PubKeySize, LinkReplySize)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ReadLinkReply reads a link header and SpiceLinkReply from r.
func ReadLinkReply(r io.Reader, maxSize uint32) (*LinkReply, error) {
	h, err := ReadLinkHeader(r, 4, maxSize)
	if err != nil {
		return nil, err
	}
	return ReadLinkReplyBody(r, h.Size, maxSize)
}

// ReadLinkReplyBody reads and decodes a reply body of size bytes, after
// checking size against [4, maxSize].
func ReadLinkReplyBody(r io.Reader, size, maxSize uint32) (*LinkReply, error) {
	if size < 4 || size > maxSize {
		return nil, fmt.Errorf("%w: link reply size %d outside [4, %d]", ErrInvalidData, size, maxSize)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return ParseLinkReply(body)
}

// parseCaps reads num_common_caps, num_channel_caps and caps_offset at
// body[at:] and the caps words they describe. Every bound is checked in
// 64-bit arithmetic against len(body) before allocating.
func parseCaps(body []byte, at int, minOffset uint32) (common, channel Caps, err error) {
	nCommon := uint64(le.Uint32(body[at:]))
	nChannel := uint64(le.Uint32(body[at+4:]))
	off := uint64(le.Uint32(body[at+8:]))
	if off < uint64(minOffset) {
		return nil, nil, fmt.Errorf("%w: caps_offset %d below %d", ErrInvalidData, off, minOffset)
	}
	end := off + 4*(nCommon+nChannel)
	if off > uint64(len(body)) || end > uint64(len(body)) {
		return nil, nil, fmt.Errorf("%w: %d+%d caps words at offset %d overrun %d bytes", ErrInvalidData, nCommon, nChannel, off, len(body))
	}
	words := make([]uint32, nCommon+nChannel)
	for i := range words {
		words[i] = le.Uint32(body[off+4*uint64(i):])
	}
	return Caps(words[:nCommon:nCommon]), Caps(words[nCommon:]), nil
}

func appendCaps(b []byte, c Caps) []byte {
	for _, w := range c {
		b = le.AppendUint32(b, w)
	}
	return b
}
