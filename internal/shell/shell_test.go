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
