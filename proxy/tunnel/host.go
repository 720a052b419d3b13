// Package tunnel signs and checks the opaque host strings of the proxy's
// HTTP CONNECT listener (the Proxmox `spiceproxy` way of naming a console).
//
// A `.vv` for a tunnel says `proxy=http://PROXY:PORT` and `host=H`, where H
// is a string only this proxy could have made: spice-gtk then sends
// `CONNECT H:PORT HTTP/1.0` to the proxy for every channel, with H passed
// through unchanged. H names a console and says until when it may be used;
// the proxy checks H, looks the console up in its store, and only then
// dials that console's SPICE port.
//
// H is one DNS label: 60 characters of lower-case base32 (RFC 4648, no
// padding) over 37 bytes:
//
//	version (1) | console hint (8) | port (2) | tls-port (2) | expiry (8) | MAC (16)
//
// The hint is a keyed hash of the console key (source, uuid), so H does not
// reveal which console it opens; the proxy finds the console by comparing
// hints. The MAC is HMAC-SHA256, truncated to 128 bits, with the proxy's
// secret over the version, the full console key, both ports and the expiry
// (unix seconds). Hosts are written in lower case, as Proxmox writes its
// signed hosts for virt-viewer; Decode accepts either case.
//
// H is a bearer credential until it expires: whoever holds it can open
// tunnels to that console's SPICE ports (the SPICE ticket is still needed
// to get a session). Never log it whole; Fingerprint is what logs carry.
package tunnel

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiceharness/spiceharness/static"
)

// Version is the format version in every host this package signs.
const Version = 1

// Sizes of the encoded parts.
const (
	hintLen    = 8
	macLen     = 16
	payloadLen = 1 + hintLen + 2 + 2 + 8
	rawLen     = payloadLen + macLen
	// HostLen is the length of a signed host label.
	HostLen = (rawLen*8 + 4) / 5
	// MinSecret is the shortest secret NewSigner accepts.
	MinSecret = 16
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Errors of Decode and Verify.
var (
	// ErrMalformed: the host is not a signed host of this format.
	ErrMalformed = errors.New("tunnel: not a signed host")
	// ErrBadMAC: the host does not carry this signer's MAC for that
	// console (tampered, signed by another proxy, or for another console).
	ErrBadMAC = errors.New("tunnel: host signature does not match")
	// ErrSecret: NewSigner was given a secret that is too short.
	ErrSecret = errors.New("tunnel: secret too short")
)

// Grant is what a signed host allows: tunnels to one console's ports
// until Expires.
type Grant struct {
	Key static.Key
	// Port and TLSPort are the console's plain and TLS SPICE ports
	// (0: none). A CONNECT may name either.
	Port, TLSPort int
	// Expires is when the host stops opening tunnels (second precision).
	Expires time.Time
}

// Signer signs and verifies hosts with one secret. It is safe for
// concurrent use.
type Signer struct {
	secret []byte
}

// NewSigner returns a signer keyed with a copy of secret (at least
// MinSecret bytes).
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < MinSecret {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrSecret, len(secret), MinSecret)
	}
	return &Signer{secret: append([]byte(nil), secret...)}, nil
}

// RandomSigner returns a signer with a fresh 32-byte secret: its hosts
// die with it.
func RandomSigner() *Signer {
	s := make([]byte, 32)
	rand.Read(s)
	return &Signer{secret: s}
}

// Hint is the keyed hash of k that a host carries instead of k.
func (s *Signer) Hint(k static.Key) [hintLen]byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("spice-harness tunnel hint\x00"))
	writeKey(m, k)
	var h [hintLen]byte
	copy(h[:], m.Sum(nil))
	return h
}

// Sign returns the host label for g.
func (s *Signer) Sign(g Grant) (string, error) {
	for _, p := range []int{g.Port, g.TLSPort} {
		if p < 0 || p > 65535 {
			return "", fmt.Errorf("tunnel: %d is not a port", p)
		}
	}
	if g.Port == 0 && g.TLSPort == 0 {
		return "", errors.New("tunnel: the console has no SPICE port to tunnel to")
	}
	c := Claim{Version: Version, hint: s.Hint(g.Key), Port: g.Port, TLSPort: g.TLSPort, Expires: time.Unix(g.Expires.Unix(), 0)}
	raw := c.payload()
	raw = append(raw, s.mac(c, g.Key)...)
	return strings.ToLower(b32.EncodeToString(raw)), nil
}

// Claim is a decoded host whose MAC is not checked yet.
type Claim struct {
	Version       int
	Port, TLSPort int
	Expires       time.Time
	hint          [hintLen]byte
	mac           [macLen]byte
}

// Decode parses a host label (either case). It checks the format only:
// call Verify with the console whose Hint matches.
func Decode(host string) (Claim, error) {
	if len(host) != HostLen {
		return Claim{}, fmt.Errorf("%w: %d characters, want %d", ErrMalformed, len(host), HostLen)
	}
	raw, err := b32.DecodeString(strings.ToUpper(host))
	if err != nil || len(raw) != rawLen {
		return Claim{}, fmt.Errorf("%w: not base32", ErrMalformed)
	}
	// base32 of 37 bytes leaves 4 spare bits in the last character:
	// only the zero ones are what Sign wrote, so one host has one
	// spelling (per case).
	if strings.ToLower(b32.EncodeToString(raw)) != strings.ToLower(host) {
		return Claim{}, fmt.Errorf("%w: non-canonical base32", ErrMalformed)
	}
	if raw[0] != Version {
		return Claim{}, fmt.Errorf("%w: version %d, want %d", ErrMalformed, raw[0], Version)
	}
	c := Claim{Version: int(raw[0])}
	copy(c.hint[:], raw[1:1+hintLen])
	o := 1 + hintLen
	c.Port = int(binary.BigEndian.Uint16(raw[o:]))
	c.TLSPort = int(binary.BigEndian.Uint16(raw[o+2:]))
	exp := binary.BigEndian.Uint64(raw[o+4:])
	if exp > 1<<40 {
		return Claim{}, fmt.Errorf("%w: expiry out of range", ErrMalformed)
	}
	c.Expires = time.Unix(int64(exp), 0)
	copy(c.mac[:], raw[payloadLen:])
	return c, nil
}

// Hint is the console hint the host carries.
func (c Claim) Hint() [hintLen]byte { return c.hint }

// Allows reports whether port is one of the ports the host was signed for.
func (c Claim) Allows(port int) bool {
	return port != 0 && (port == c.Port || port == c.TLSPort)
}

// Verify checks, in constant time, that c was signed by s for console k.
func (s *Signer) Verify(c Claim, k static.Key) error {
	if !hmac.Equal(s.mac(c, k), c.mac[:]) {
		return ErrBadMAC
	}
	return nil
}

func (c Claim) payload() []byte {
	b := make([]byte, 0, rawLen)
	b = append(b, byte(c.Version))
	b = append(b, c.hint[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(c.Port))
	b = binary.BigEndian.AppendUint16(b, uint16(c.TLSPort))
	return binary.BigEndian.AppendUint64(b, uint64(c.Expires.Unix()))
}

func (s *Signer) mac(c Claim, k static.Key) []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("spice-harness tunnel host\x00"))
	writeKey(m, k)
	m.Write(c.payload())
	return m.Sum(nil)[:macLen]
}

// writeKey writes k unambiguously (each part length-prefixed).
func writeKey(w interface{ Write([]byte) (int, error) }, k static.Key) {
	for _, s := range []string{k.Source, k.UUID} {
		w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s))))
		w.Write([]byte(s))
	}
}

// Fingerprint is what logs and audit events carry instead of a host: the
// first 12 hex digits of its SHA-256 (lower-cased first, so both
// spellings match).
func Fingerprint(host string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(host)))
	return hex.EncodeToString(sum[:6])
}
