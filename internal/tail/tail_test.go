package tail_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/internal/tail"
)

func ExampleLines() {
	fmt.Printf("%q\n", tail.Lines("one\ntwo\nthree\n\n", 2))
	// Output: "two\nthree"
}

func TestLines(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc", 0, ""},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"a\nb\nc\n", 1, "c"},
		{"a\r\nb\r\n", 1, "b"},
		{"a\n\nb", 2, "\nb"},
	} {
		if got := tail.Lines(c.s, c.n); got != c.want {
			t.Errorf("Lines(%q, %d): unexpected result (-want +got):\n%s", c.s, c.n, cmp.Diff(c.want, got))
		}
	}
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	if got := tail.File(filepath.Join(dir, "missing"), 3); got != "" {
		t.Errorf("File of a missing file: %q, want \"\"", got)
	}
	// A file larger than MaxFileRead: only its end is read.
	var b strings.Builder
	for i := 0; b.Len() <= 2*tail.MaxFileRead; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	p := filepath.Join(dir, "big")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	want := tail.Lines(b.String(), 2)
	if diff := cmp.Diff(want, tail.File(p, 2)); diff != "" {
		t.Errorf("unexpected tail (-want +got):\n%s", diff)
	}
}
