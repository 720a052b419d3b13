package spice

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFramingRoundTrip(t *testing.T) {
	for _, mini := range []bool{true, false} {
		var buf bytes.Buffer
		w := NewWriter(&buf, mini)
		msgs := []Message{
			{Header: Header{Type: MsgPing, Size: 12}, Body: Ping{ID: 1, Timestamp: 99}.Marshal()},
			{Header: Header{Type: MsgMainInit, Size: 32}, Body: MainInit{SessionID: 0x8657f94c, AgentTokens: 10}.Marshal()},
			{Header: Header{Type: MsgcAck}, Body: []byte{}},
		}
		for _, m := range msgs {
			if err := w.WriteMessage(m.Type, m.Body); err != nil {
				t.Fatal(err)
			}
		}
		wantLen := 0
		for _, m := range msgs {
			wantLen += HeaderSize(mini) + len(m.Body)
		}
		if buf.Len() != wantLen {
			t.Fatalf("mini=%v: wrote %d bytes, want %d", mini, buf.Len(), wantLen)
		}
		r := NewReader(&buf, mini, 0)
		for i, want := range msgs {
			got, err := r.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if !mini {
				want.Serial = uint64(i + 1) // serials count from 1
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("mini=%v message %d (-want +got):\n%s", mini, i, diff)
			}
		}
		if _, err := r.ReadMessage(); err != io.EOF {
			t.Fatalf("want io.EOF at the end, got %v", err)
		}
	}
}

func TestFullHeaderLayout(t *testing.T) {
	// The first header qemu sends without MINI_HEADER: 1, 103, 32, 0.
	b := AppendHeader(nil, Header{Serial: 1, Type: 103, Size: 32}, false)
	want := []byte{1, 0, 0, 0, 0, 0, 0, 0, 103, 0, 32, 0, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(b, want) {
		t.Fatalf("unexpected full header:\n got %v\nwant %v", b, want)
	}
	if got := DecodeHeader(b, false); got != (Header{Serial: 1, Type: 103, Size: 32}) {
		t.Fatalf("decode: %+v", got)
	}
}

func TestReaderRefusesHugeBeforeAllocating(t *testing.T) {
	for _, mini := range []bool{true, false} {
		hdr := AppendHeader(nil, Header{Type: 304, Size: 0xffffffff}, mini)
		var err error
		n := bytesPerRun(100, func() {
			_, err = NewReader(bytes.NewReader(hdr), mini, 1<<20).ReadMessage()
		})
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("mini=%v: got %v, want ErrTooLarge", mini, err)
		}
		if n > 4096 {
			t.Fatalf("mini=%v: a header claiming 4 GiB allocated %d bytes", mini, n)
		}
	}
}

func TestReaderTruncatedBody(t *testing.T) {
	b := AppendHeader(nil, Header{Type: 4, Size: 12}, true)
	b = append(b, 1, 2, 3)
	if _, err := NewReader(bytes.NewReader(b), true, 0).ReadMessage(); err != io.ErrUnexpectedEOF {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	mi := MainInit{1, 2, 3, 4, 5, 6, 7, 8}
	if got, err := ParseMainInit(mi.Marshal()); err != nil || got != mi {
		t.Fatalf("MainInit: %+v %v", got, err)
	}
	ids := []ChannelID{{ChannelDisplay, 0}, {ChannelCursor, 0}, {ChannelInputs, 0}}
	if got, err := ParseChannelsList(MarshalChannelsList(ids)); err != nil || !cmp.Equal(got, ids) {
		t.Fatalf("ChannelsList: %v %v", got, err)
	}
	n := Notify{Timestamp: 5, Severity: 1, Visibility: 2, What: 0, Message: "keyboard channel is insecure"}
	nb := n.Marshal()
	if len(nb) != 53 {
		t.Fatalf("NOTIFY body is %d bytes, qemu's was 53", len(nb))
	}
	if got, err := ParseNotify(nb); err != nil || got != n {
		t.Fatalf("Notify: %+v %v", got, err)
	}
	d := Disconnecting{Timestamp: 9, Reason: ErrPermissionDenied}
	if got, err := ParseDisconnecting(d.Marshal()); err != nil || got != d {
		t.Fatalf("Disconnecting: %+v %v", got, err)
	}
	if got := len(DefaultDisplayInit.Marshal()); got != 14 {
		t.Fatalf("DISPLAY_INIT is %d bytes, spice-gtk sends 14", got)
	}
	// PONG echoes the 12-byte head of a padded PING, never the padding.
	padded := append(Ping{ID: 3, Timestamp: 77}.Marshal(), make([]byte, 256000)...)
	p, err := ParsePing(padded)
	if err != nil || len(p.Marshal()) != PingSize || p.ID != 3 {
		t.Fatalf("Ping: %+v %v", p, err)
	}
	for name, f := range map[string]func([]byte) error{
		"MainInit":      func(b []byte) error { _, err := ParseMainInit(b); return err },
		"ChannelsList":  func(b []byte) error { _, err := ParseChannelsList(b); return err },
		"Notify":        func(b []byte) error { _, err := ParseNotify(b); return err },
		"SetAck":        func(b []byte) error { _, err := ParseSetAck(b); return err },
		"Ping":          func(b []byte) error { _, err := ParsePing(b); return err },
		"Disconnecting": func(b []byte) error { _, err := ParseDisconnecting(b); return err },
	} {
		if err := f([]byte{1, 2, 3}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s of 3 bytes: got %v, want ErrMalformed", name, err)
		}
	}
	// A CHANNELS_LIST claiming 2^32-1 entries in 4 bytes.
	if _, err := ParseChannelsList([]byte{0xff, 0xff, 0xff, 0xff}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("huge CHANNELS_LIST count: %v", err)
	}
}

func TestScancodes(t *testing.T) {
	if ScancodeDown(0x23) != 0x23 || ScancodeUp(0x23) != 0xa3 {
		t.Fatal("plain scancode encoding differs from spice-gtk")
	}
	// Right Ctrl is 0x11d: e0 1d down, e0 9d up.
	if ScancodeDown(0x11d) != 0x1de0 || ScancodeUp(0x11d) != 0x9de0 {
		t.Fatalf("extended scancode: %#x %#x", ScancodeDown(0x11d), ScancodeUp(0x11d))
	}
}

func TestTicketRoundTrip(t *testing.T) {
	k, err := GenerateLinkKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"", "hunter2", string(bytes.Repeat([]byte("x"), 59)), "tok\x01\xff"} {
		ct, err := EncryptTicket(k.Public, pw)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != TicketSize {
			t.Fatalf("ticket of %d bytes", len(ct))
		}
		got, err := DecryptTicket(k.Private, ct)
		if err != nil || got != pw {
			t.Fatalf("DecryptTicket = %q, %v; want %q", got, err, pw)
		}
	}
	// The NUL terminator is optional (spice-server accepts both).
	ct, err := rsa.EncryptOAEP(sha1New(), randReader, &k.Private.PublicKey, []byte("nonul"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecryptTicket(k.Private, ct); err != nil || got != "nonul" {
		t.Fatalf("ticket without NUL: %q %v", got, err)
	}
	// PKCS#1 v1.5 is refused, as by spice-server.
	ct, err = rsa.EncryptPKCS1v15(randReader, &k.Private.PublicKey, []byte("hunter2\x00"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecryptTicket(k.Private, ct); !errors.Is(err, ErrMalformed) {
		t.Fatalf("PKCS#1 v1.5 ticket: %v", err)
	}
	// Random bytes, and wrong lengths (127, 129).
	if _, err := DecryptTicket(k.Private, bytes.Repeat([]byte{0x42}, 128)); err == nil {
		t.Fatal("random ticket decrypted")
	}
	for _, n := range []int{0, 127, 129} {
		if _, err := DecryptTicket(k.Private, make([]byte, n)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ticket of %d bytes: %v", n, err)
		}
	}
	// A different key's ticket does not decrypt.
	k2, _ := GenerateLinkKey()
	ct, _ = EncryptTicket(k2.Public, "hunter2")
	if _, err := DecryptTicket(k.Private, ct); err == nil {
		t.Fatal("ticket for another key decrypted")
	}
}

// While the pool is at least half full, a key taken is replaced only
// after the quiet period; below half, at once.
func TestKeyPoolRefillsWhenQuiet(t *testing.T) {
	p := newKeyPool(4, time.Hour)
	defer p.Close()
	// Full, plus the key the generator holds until there is room.
	for p.made.Load() < 5 {
		time.Sleep(5 * time.Millisecond)
	}
	for range 2 {
		if _, err := p.Get(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // ~30 key generations' time
	if n, l := p.made.Load(), len(p.keys); n != 5 || l != 3 {
		t.Fatalf("unexpected refill while half full and busy (-want +got):\n-5 made, 3 ready\n+%d made, %d ready", n, l)
	}
	// Below half: refilled without waiting for quiet.
	for range 2 {
		if _, err := p.Get(); err != nil {
			t.Fatal(err)
		}
	}
	for end := time.Now().Add(10 * time.Second); len(p.keys) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("pool below half not refilled: %d ready", len(p.keys))
		}
	}
}

func TestKeyPool(t *testing.T) {
	p := NewKeyPool(4)
	defer p.Close()
	seen := map[string]bool{}
	for i := 0; i < 12; i++ {
		k, err := p.Get()
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(k.Public)] {
			t.Fatalf("key %d handed out twice", i)
		}
		seen[string(k.Public)] = true
	}
	hits, misses := p.Stats()
	if hits+misses != 12 {
		t.Fatalf("stats count %d+%d gets, want 12", hits, misses)
	}
}
