package vv

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse: Parse never panics; it fails with a *ParseError or returns
// a File that Render accepts and that survives render → parse unchanged,
// with a stable rendering.
func FuzzParse(f *testing.F) {
	f.Add([]byte("[virt-viewer]\ntype=spice\nhost=127.0.0.1\nport=5900\npassword=t\n"))
	f.Add([]byte("[virt-viewer]\r\ntype=spice\r\nca=A\\nB\\n\r\nsecure-channels=main;display\\;x;;\r\n\r\n[ovirt]\r\nhost=e\r\n"))
	f.Add([]byte("# c\n [virt-viewer] \n  type = \\s spice \nx[fr]=\\q\ntitle=\\\\\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse error is a %T, not a *ParseError: %v", err, err)
			}
			return
		}
		out, err := Render(file)
		if errors.Is(err, ErrTooLarge) && len(data)*5/3+64 > MaxSize {
			return // a blank line before each group can grow "[g]" to "\n[g]\n"
		}
		if err != nil {
			t.Fatalf("Render refused what Parse accepted: %v\n%q", err, data)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Render(Parse(x))): %v\n%q", err, out)
		}
		if diff := cmp.Diff(file, back, cmpEmpty); diff != "" {
			t.Fatalf("round trip changed the File (-want +got):\n%s", diff)
		}
		again, err := Render(back)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("unstable rendering: %v\n%q\n%q", err, out, again)
		}
	})
}

// FuzzRender: whatever Render accepts, Parse reads back equal.
func FuzzRender(f *testing.F) {
	f.Add("spice", "127.0.0.1", 5900, 5901, " pass", "A\nB\n", "CN=x", "t\\;", true, "main;display", "x-k", "v")
	f.Fuzz(func(t *testing.T, typ, host string, port, tlsPort int, password, ca, subject, title string, del bool, channels, key, raw string) {
		file := &File{Type: typ, Host: host, Port: port, TLSPort: tlsPort, Password: password, CA: ca, HostSubject: subject,
			Title: title, DeleteThisFile: del, Extra: []Entry{{Key: key, Value: raw}}}
		if channels != "" {
			file.SecureChannels = strings.Split(channels, ",")
		}
		out, err := Render(file)
		if err != nil {
			if !errors.Is(err, ErrRender) {
				t.Fatalf("Render error does not match ErrRender: %v", err)
			}
			return
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Render(x)): %v\n%q", err, out)
		}
		if diff := cmp.Diff(file, back, cmpEmpty); diff != "" {
			t.Fatalf("parse(render(x)) != x (-want +got):\n%s\n%q", diff, out)
		}
	})
}
