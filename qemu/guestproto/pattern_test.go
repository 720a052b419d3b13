package guestproto

import (
	"bytes"
	"testing"
)

func TestPictureHeadsDiffer(t *testing.T) {
	a, b := Picture(0, 64, 48), Picture(1, 64, 48)
	if bytes.Equal(a.Pix, b.Pix) {
		t.Fatal("heads 0 and 1 draw the same picture")
	}
	if got := a.RGBAAt(0, 0); got != whiteC {
		t.Errorf("top-left pixel = %v, want white", got)
	}
	if got := b.RGBAAt(63, 0); got != whiteC {
		t.Errorf("head 1 top-right pixel = %v, want white", got)
	}
	if got := a.RGBAAt(63, 0); got == whiteC {
		t.Error("head 0 has a top-right square")
	}
}

func TestPatternBytes(t *testing.T) {
	a, b := PatternBytes(1, 4096), PatternBytes(1, 4096)
	if !bytes.Equal(a, b) {
		t.Fatal("PatternBytes is not deterministic")
	}
	if bytes.Equal(a, PatternBytes(2, 4096)) {
		t.Fatal("seeds 1 and 2 give the same bytes")
	}
	if !bytes.Equal(a[:100], PatternBytes(1, 100)) {
		t.Fatal("a shorter pattern is not a prefix of a longer one")
	}
	var hist [256]int
	for _, c := range a {
		hist[c]++
	}
	for v, n := range hist {
		if n > 64 {
			t.Fatalf("byte %d appears %d times in 4096: not spread", v, n)
		}
	}
}

var whiteC = PictureAt(0, 8, 8, 0, 0, 1)
