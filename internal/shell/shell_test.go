package shell_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/internal/shell"
)

func ExampleJoin() {
	fmt.Println(shell.Join([]string{"/usr/bin/qemu", "-spice", "port=1,addr=127.0.0.1", "a b", "it's", ""}))
	// Output: /usr/bin/qemu -spice port=1,addr=127.0.0.1 'a b' 'it'\''s' ''
}

// TestQuoteRoundTrip: sh reads every quoted word back as the word.
func TestQuoteRoundTrip(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	words := []string{"", "plain", "a b", "it's", `"dq"`, "$HOME", "`id`", "a\nb", "*", "~", "tab\there", "x;y", "ünï", "'", "''"}
	script := `for w in ` + shell.Join(words) + `; do printf '%s\0' "$w"; done`
	out, err := exec.Command(sh, "-c", script).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if diff := cmp.Diff(words, got); diff != "" {
		t.Errorf("unexpected words read back by sh (-want +got):\n%s", diff)
	}
}

func TestSplit(t *testing.T) {
	for in, want := range map[string][]string{
		`a b  c`:                    {"a", "b", "c"},
		`proxy --sources {sources}`: {"proxy", "--sources", "{sources}"},
		`'a b' "c d" e\ f`:          {"a b", "c d", "e f"},
		`"say \"hi\"" 'it''s'`:      {`say "hi"`, "its"},
		`x=$HOME`:                   {"x=$HOME"}, // nothing is expanded
		``:                          nil,
	} {
		got, err := shell.Split(in)
		if err != nil {
			t.Fatalf("Split(%q): %v", in, err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("shell.Split(%q) (-want +got):\n%s", in, d)
		}
	}
	for _, bad := range []string{`'open`, `"open`} {
		if _, err := shell.Split(bad); err == nil {
			t.Errorf("Split(%q): no error for an unterminated quote", bad)
		}
	}
}

// TestSplitInvertsJoin: Split reads back every word Join quoted.
func TestSplitInvertsJoin(t *testing.T) {
	words := []string{"", "plain", "a b", "it's", `"dq"`, "$HOME", "`id`", "a\nb", "*", "tab\there", "x;y", "ünï", "'", "''", `back\slash`}
	got, err := shell.Split(shell.Join(words))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(words, got); diff != "" {
		t.Errorf("unexpected words (-want +got):\n%s", diff)
	}
}
