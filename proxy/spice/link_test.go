package spice

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// gtkMainLink is spice-gtk 0.42's main-channel link to qemu 7.2,
// captured on the wire (42 bytes: the 16-byte header, connection id 0,
// main:0, one common and one channel caps word at offset 18, 0xd and 0xf).
func gtkMainLink(t *testing.T) []byte {
	t.Helper()
	s := "52454451 02000000 02000000 1a000000 00000000 01 00 01000000 01000000 12000000 0d000000 0f000000"
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSpiceGtkMainLink(t *testing.T) {
	m, err := ReadLinkMess(bytes.NewReader(gtkMainLink(t)), DefaultMaxLinkSize)
	if err != nil {
		t.Fatal(err)
	}
	want := &LinkMess{ChannelType: ChannelMain, CommonCaps: Caps{0x0d}, ChannelCaps: Caps{0x0f}}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Fatalf("unexpected link mess (-want +got):\n%s", diff)
	}
	if got := m.Marshal(); !bytes.Equal(got, gtkMainLink(t)) {
		t.Fatalf("re-encoding differs from spice-gtk's bytes:\n got %x\nwant %x", got, gtkMainLink(t))
	}
	if !m.CommonCaps.Has(CapAuthSelection) || m.CommonCaps.Has(CapAuthSpice) || !m.CommonCaps.Has(CapAuthSASL) || !m.CommonCaps.Has(CapMiniHeader) {
		t.Fatalf("caps 0x0d decode wrongly: %v", m.CommonCaps)
	}
}

func TestLinkMessCapsOffset(t *testing.T) {
	// caps_offset 22 with 4 filler bytes is honoured (spice-server does).
	body := le.AppendUint32(nil, 7)
	body = append(body, byte(ChannelDisplay), 1)
	body = le.AppendUint32(body, 1)
	body = le.AppendUint32(body, 1)
	body = le.AppendUint32(body, 22)
	body = append(body, 0xde, 0xad, 0xbe, 0xef)
	body = le.AppendUint32(body, 0x0b)
	body = le.AppendUint32(body, 0x3bf)
	m, err := ParseLinkMess(body)
	if err != nil {
		t.Fatal(err)
	}
	want := &LinkMess{ConnectionID: 7, ChannelType: ChannelDisplay, ChannelID: 1, CommonCaps: Caps{0x0b}, ChannelCaps: Caps{0x3bf}}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Fatalf("unexpected link mess (-want +got):\n%s", diff)
	}
}

func TestLinkMessErrors(t *testing.T) {
	good := (&LinkMess{ChannelType: ChannelMain, CommonCaps: Caps{0xb}, ChannelCaps: Caps{0xf}}).Marshal()
	mutate := func(off int, v uint32) []byte {
		b := bytes.Clone(good)
		le.PutUint32(b[off:], v)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want LinkErr
	}{
		{"bad magic", mutate(0, 0x12345678), ErrInvalidMagic},
		{"major 1", mutate(4, 1), ErrVersionMismatch},
		{"major 3", mutate(4, 3), ErrVersionMismatch},
		{"size 0", mutate(12, 0), ErrInvalidData},
		{"size 1", mutate(12, 1), ErrInvalidData},
		{"size 4GiB", mutate(12, 0xffffffff), ErrInvalidData},
		{"caps_offset 10", mutate(16+14, 10), ErrInvalidData},
		{"caps_offset past end", mutate(16+14, 1000), ErrInvalidData},
		{"caps_offset 2^32-1", mutate(16+14, 0xffffffff), ErrInvalidData},
		{"common caps 2^31", mutate(16+6, 1<<31), ErrInvalidData},
		{"channel caps 2^31", mutate(16+10, 1<<31), ErrInvalidData},
		{"both caps 2^31 (sum overflows 32 bits)", mutate(16+6, 1<<31)[:0], 0},
	}
	for _, tc := range tests {
		if tc.want == 0 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadLinkMess(bytes.NewReader(tc.in), DefaultMaxLinkSize)
			if diff := cmp.Diff(error(tc.want), err, cmpopts.EquateErrors()); diff != "" {
				t.Fatalf("unexpected error (-want +got):\n%s", diff)
			}
		})
	}
	// Both counts at 2^31: 4*(2^31+2^31) overflows 32-bit arithmetic.
	b := mutate(16+6, 1<<31)
	le.PutUint32(b[16+10:], 1<<31)
	if _, err := ReadLinkMess(bytes.NewReader(b), DefaultMaxLinkSize); !errors.Is(err, ErrInvalidData) {
		t.Fatalf("caps counts overflowing 32 bits: got %v, want INVALID_DATA", err)
	}
	// Minor version is not checked (spice-server accepts minor 7).
	if _, err := ReadLinkMess(bytes.NewReader(mutate(8, 7)), DefaultMaxLinkSize); err != nil {
		t.Fatalf("minor 7 refused: %v", err)
	}
}

func TestLinkMessTruncatedEveryByte(t *testing.T) {
	good := gtkMainLink(t)
	for n := 0; n < len(good); n++ {
		if _, err := ReadLinkMess(bytes.NewReader(good[:n]), DefaultMaxLinkSize); err == nil {
			t.Fatalf("link truncated to %d bytes decoded", n)
		}
	}
}

func TestHugeLinkSizeAllocatesNothing(t *testing.T) {
	b := AppendLinkHeader(nil, 0xffffffff)
	if n := bytesPerRun(100, func() { ReadLinkMess(bytes.NewReader(b), DefaultMaxLinkSize) }); n > 4096 {
		t.Fatalf("decoding a link header claiming 4 GiB allocated %d bytes", n)
	}
}

func TestLinkReplyRoundTrip(t *testing.T) {
	k, err := GenerateLinkKey()
	if err != nil {
		t.Fatal(err)
	}
	r := &LinkReply{PubKey: k.Public, CommonCaps: Caps{0x0b}, ChannelCaps: Caps{0xf}}
	b := r.Marshal()
	// qemu's success reply: size 186, caps_offset 178.
	if got := le.Uint32(b[12:]); got != 186 {
		t.Fatalf("reply size %d, qemu sends 186", got)
	}
	if got := le.Uint32(b[16+174:]); got != 178 {
		t.Fatalf("reply caps_offset %d, qemu sends 178", got)
	}
	got, err := ReadLinkReply(bytes.NewReader(b), DefaultMaxLinkSize)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, got); diff != "" {
		t.Fatalf("unexpected reply (-want +got):\n%s", diff)
	}
	// The key is the fixed SPKI prefix + modulus + e=65537, as qemu's.
	prefix, _ := hex.DecodeString("30819f300d06092a864886f70d010101050003818d0030818902818100")
	if !bytes.HasPrefix(k.Public, prefix) || !bytes.HasSuffix(k.Public, []byte{2, 3, 1, 0, 1}) {
		t.Fatalf("public key is not qemu's SPKI shape: %x", k.Public)
	}
}

func TestLinkErrorReply(t *testing.T) {
	b := MarshalLinkError(ErrNeedSecured)
	if len(b) != 16+178 {
		t.Fatalf("error reply is %d bytes, spice-server sends 194", len(b))
	}
	r, err := ReadLinkReply(bytes.NewReader(b), DefaultMaxLinkSize)
	if err != nil {
		t.Fatal(err)
	}
	if r.Error != ErrNeedSecured {
		t.Fatalf("unexpected error code: got %v want %v", r.Error, ErrNeedSecured)
	}
	if !bytes.Equal(b[20:], make([]byte, 174)) {
		t.Fatal("error reply must carry a zero key, counts and offset")
	}
}

func TestLinkErrorWrapping(t *testing.T) {
	err := error(&LinkError{Step: StepLinkResult, Channel: ChannelDisplay, Code: ErrPermissionDenied})
	if code, ok := CodeOf(err); !errors.Is(err, ErrPermissionDenied) || !ok || code != ErrPermissionDenied {
		t.Fatalf("LinkError does not unwrap to its code: %v", err)
	}
	if diff := cmp.Diff("spice: link display:0: link result: PERMISSION_DENIED (7)", err.Error()); diff != "" {
		t.Fatalf("unexpected message (-want +got):\n%s", diff)
	}
	if ErrPermissionDenied.Name() != "PERMISSION_DENIED" || LinkErr(42).Name() != "ERR_42" {
		t.Fatalf("Name: %q %q", ErrPermissionDenied.Name(), LinkErr(42).Name())
	}
}

func TestCodeOf(t *testing.T) {
	type result struct {
		Code LinkErr
		OK   bool
	}
	dial := &LinkError{Step: StepDial, Channel: ChannelMain, Err: errors.New("connection refused")}
	for _, tc := range []struct {
		name string
		err  error
		want result
	}{
		{"nil", nil, result{LinkOK, false}},
		{"plain error", errors.New("x"), result{LinkOK, false}},
		{"EOF", io.EOF, result{LinkOK, false}},
		{"dial failure without a code", dial, result{LinkOK, false}},
		{"a LinkErr", ErrInvalidMagic, result{ErrInvalidMagic, true}},
		{"wrapped LinkErr", fmt.Errorf("%w: link size 0", ErrInvalidData), result{ErrInvalidData, true}},
		{"peer's code", &LinkError{Step: StepLinkResult, Code: ErrBadConnectionID}, result{ErrBadConnectionID, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, ok := CodeOf(tc.err)
			if diff := cmp.Diff(tc.want, result{code, ok}); diff != "" {
				t.Errorf("unexpected CodeOf(%v) (-want +got):\n%s", tc.err, diff)
			}
		})
	}
}

// stopReader fails the test if it is read: ReadLinkHeader must decide
// from the bytes before it.
type stopReader struct{ t *testing.T }

func (r stopReader) Read([]byte) (int, error) {
	r.t.Error("read past the field that decides the answer")
	return 0, io.ErrClosedPipe
}

// TestReadLinkHeaderEarly: each field is checked as soon as its bytes are
// in, without waiting for the rest of the header.
func TestReadLinkHeaderEarly(t *testing.T) {
	hdr := AppendLinkHeader(nil, 26)
	bad := func(off int, v uint32) []byte {
		b := bytes.Clone(hdr)
		le.PutUint32(b[off:], v)
		return b
	}
	for _, tc := range []struct {
		name string
		sent []byte // the bytes available before the reader would block
		want LinkErr
	}{
		{"bad magic: 4 bytes", bad(0, 0xdeadbeef)[:4], ErrInvalidMagic},
		{"HTTP request: 4 bytes", []byte("GET "), ErrInvalidMagic},
		{"major 3: 8 bytes", bad(4, 3)[:8], ErrVersionMismatch},
		{"major 1: 8 bytes", bad(4, 1)[:8], ErrVersionMismatch},
		{"size 4 GiB: 16 bytes", bad(12, 0xffffffff), ErrInvalidData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadLinkHeader(io.MultiReader(bytes.NewReader(tc.sent), stopReader{t}), LinkMessSize, DefaultMaxLinkSize)
			if diff := cmp.Diff(error(tc.want), err, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("unexpected error (-want +got):\n%s", diff)
			}
		})
	}
	// A good header is read whole; ending inside it is ErrUnexpectedEOF.
	if h, err := ReadLinkHeader(bytes.NewReader(hdr), LinkMessSize, DefaultMaxLinkSize); err != nil || h.Size != 26 {
		t.Errorf("unexpected good header: %+v, %v", h, err)
	}
	for n := range len(hdr) {
		want := io.ErrUnexpectedEOF
		if n == 0 {
			want = io.EOF
		}
		_, err := ReadLinkHeader(bytes.NewReader(hdr[:n]), LinkMessSize, DefaultMaxLinkSize)
		if diff := cmp.Diff(want, err, cmpopts.EquateErrors()); diff != "" {
			t.Errorf("header cut at %d bytes: unexpected error (-want +got):\n%s", n, diff)
		}
	}
}

func TestCaps(t *testing.T) {
	c := CapsOf(CapAuthSelection, CapAuthSpice, CapMiniHeader)
	if !c.Equal(Caps{0x0b}) {
		t.Fatalf("CapsOf = %v, want [0xb]", c)
	}
	c2 := c.With(40)
	if len(c2) != 2 || !c2.Has(40) || c.Has(40) {
		t.Fatalf("With(40) = %v (original %v)", c2, c)
	}
	if c2.Without(40).Has(40) || !c2.Without(40).Equal(c) {
		t.Fatal("Without(40) did not clear bit 40")
	}
	if !(Caps{0x3bf}).And(Caps{0x1052}).Equal(Caps{0x12}) {
		t.Fatal("And is not the intersection")
	}
	if (Caps{}).Has(0) || c.Has(-1) || c.Has(1000) {
		t.Fatal("absent words must read as unset")
	}
}

// bytesPerRun is the heap allocated by one call of f, averaged over n.
func bytesPerRun(n int, f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(n)
}
