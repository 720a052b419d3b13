package vv

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRoundTrip is the property parse(render(x)) == x over random Files
// biased towards GKeyFile's special characters, and render(parse(render(x)))
// == render(x).
func TestRoundTrip(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 500
	}
	g := newGen(1)
	for i := range n {
		f := g.file()
		out, err := Render(f)
		if err != nil {
			t.Fatalf("#%d: Render(%#v): %v", i, f, err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("#%d: Parse(Render(x)): %v\n%s", i, err, out)
		}
		if diff := cmp.Diff(f, back, cmpEmpty); diff != "" {
			t.Fatalf("#%d: parse(render(x)) != x (-want +got):\n%s\nrendered:\n%q", i, diff, out)
		}
		again, err := Render(back)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("#%d: render is not stable: %v\n%q\n%q", i, err, out, again)
		}
	}
}
