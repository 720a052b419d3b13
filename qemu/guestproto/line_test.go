package guestproto

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEventRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		ev   Event
		line string
	}{
		{NewEvent(1234*time.Millisecond, "ready", "ports", "a,b", "heads", "2"),
			"t=1.234 type=ready ports=a,b heads=2"},
		{NewEvent(65*time.Millisecond, "clipboard", "len", "0", "text", "hello world"),
			`t=0.065 type=clipboard len=0 text="hello world"`},
		{NewEvent(0, "x", "empty", "", "eq", "a=b", "q", `"`, "bs", `\`, "nl", "a\nb", "utf", "é"),
			`t=0.000 type=x empty="" eq="a=b" q="\"" bs="\\" nl="a\nb" utf="\u00e9"`},
		{NewEvent(12*time.Second+3*time.Microsecond, "key", "code", "30", "value", "1"),
			"t=12.000 type=key code=30 value=1"},
	} {
		if got := tc.ev.String(); got != tc.line {
			t.Errorf("unexpected line (-want +got):\n%s", cmp.Diff(tc.line, got))
		}
		back, err := Parse(tc.line + "\r\n")
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.line, err)
		}
		if diff := cmp.Diff(tc.ev, back); diff != "" {
			t.Errorf("unexpected event (-want +got):\n%s", diff)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, line := range []string{
		"", "hello", "[    1.23] kernel message", "type=ready t=1.0",
		"t=1.0", "t=x type=ready", "t=1.2345 type=ready", "t=1 type=Ready",
		`t=1 type=a k="open`, `t=1 type=a k="v"x`, "t=1 type=a K=v", "t=1 type=a k=a=b",
		"t=1 type=a =v",
	} {
		if ev, err := Parse(line); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, %v; want ErrSyntax", line, ev, err)
		}
	}
}

func TestParseSpaces(t *testing.T) {
	ev, err := Parse("  t=2.5  type=usb   vid=0627 ")
	if err != nil {
		t.Fatal(err)
	}
	want := Event{T: 2500 * time.Millisecond, Type: "usb", KV: []KV{{"vid", "0627"}}}
	if diff := cmp.Diff(want, ev); diff != "" {
		t.Errorf("unexpected event (-want +got):\n%s", diff)
	}
}

func TestCommandRoundTrip(t *testing.T) {
	c := NewCommand("port-write", 7, "port", PortEcho, "hex", "00ff")
	line := c.String()
	if want := "cmd=port-write id=7 port=org.spice-space.harness.echo hex=00ff"; line != want {
		t.Errorf("unexpected line (-want +got):\n%s", cmp.Diff(want, line))
	}
	back, err := ParseCommand(line)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, back); diff != "" {
		t.Errorf("unexpected command (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"id=1 cmd=x", "cmd=x id=y", "cmd=X id=1", "t=1 type=ready"} {
		if _, err := ParseCommand(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseCommand(%q): %v, want ErrSyntax", bad, err)
		}
	}
}

func TestAccessors(t *testing.T) {
	ev := NewEvent(0, "ready", "heads", "2", "ports", "a,b", "none", "")
	if n, err := ev.Int("heads"); err != nil || n != 2 {
		t.Errorf("Int(heads) = %d, %v", n, err)
	}
	if _, err := ev.Int("ports"); err == nil {
		t.Error("Int(ports) took a list")
	}
	if diff := cmp.Diff([]string{"a", "b"}, ev.List("ports")); diff != "" {
		t.Errorf("unexpected list (-want +got):\n%s", diff)
	}
	if got := ev.List("none"); got != nil {
		t.Errorf("List of an empty value = %q", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("t=1.234 type=ready ports=a,b")
	f.Add(`t=0 type=x k="a b\n"`)
	f.Fuzz(func(t *testing.T, line string) {
		ev, err := Parse(line)
		if err != nil {
			return
		}
		back, err := Parse(ev.String())
		if err != nil {
			t.Fatalf("re-parse of %q: %v", ev.String(), err)
		}
		if diff := cmp.Diff(ev, back); diff != "" {
			t.Fatalf("unexpected round trip (-want +got):\n%s", diff)
		}
	})
}
