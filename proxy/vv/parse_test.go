package vv

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var cmpEmpty = cmpopts.EquateEmpty()

func TestParse(t *testing.T) {
	in := "# a console.vv as remote-viewer reads it\r\n" +
		"\r\n" +
		"  [virt-viewer]  \r\n" +
		"type=spice\r\n" +
		"  host = 127.0.0.1\r\n" +
		"port=5900 \r\n" +
		"tls-port=05901\r\n" +
		"password=\\spass word \r\n" +
		"ca=-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\r\n" +
		"host-subject=C=XX,O=Test,CN=localhost\r\n" +
		"  # an indented comment\r\n" +
		"title=vm0 via proxy session abc\r\n" +
		"delete-this-file=1\r\n" +
		"secure-channels=main;display\\;x;;\r\n" +
		"fullscreen\t=\t1\r\n" +
		"title[fr]=la vm\r\n" +
		"usb-filter=-1,-1,-1,-1,1\r\n" +
		"x-raw=a\\qb\r\n" +
		"\r\n" +
		"[ovirt]\r\n" +
		"host=https://engine\r\n" +
		"jsessionid=abc"
	want := &File{
		Type: "spice", Host: "127.0.0.1", Port: 5900, TLSPort: 5901, Password: " pass word ",
		CA:          "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		HostSubject: "C=XX,O=Test,CN=localhost", Title: "vm0 via proxy session abc", DeleteThisFile: true,
		SecureChannels: []string{"main", "display;x", ""},
		Extra:          []Entry{{"fullscreen", "1"}, {"title[fr]", "la vm"}, {"usb-filter", "-1,-1,-1,-1,1"}, {"x-raw", `a\qb`}},
		Groups:         []Group{{Name: "ovirt", Entries: []Entry{{"host", "https://engine"}, {"jsessionid", "abc"}}}},
	}
	got, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unexpected File (-want +got):\n%s", diff)
	}
	if raw, ok := got.Get("fullscreen"); !ok || raw != "1" {
		t.Errorf(`Get("fullscreen") = %q, %v; want "1", true`, raw, ok)
	}
	if _, ok := got.Get("nope"); ok {
		t.Error(`Get("nope") found a value`)
	}
}

func TestRender(t *testing.T) {
	f := &File{
		Extra: []Entry{{"fullscreen", "1"}}, Title: "vm0", Type: "spice", Password: "tok", Host: "h", Port: 1,
		TLSPort: 2, CA: "A\nB\n", HostSubject: "CN=x", DeleteThisFile: true, SecureChannels: []string{"main", "display"},
		Groups: []Group{{Name: "ovirt", Entries: []Entry{{"host", "e"}}}, {Name: "empty"}},
	}
	want := "[virt-viewer]\ntype=spice\nhost=h\nport=1\ntls-port=2\npassword=tok\nca=A\\nB\\n\nhost-subject=CN=x\n" +
		"title=vm0\ndelete-this-file=1\nsecure-channels=main;display;\nfullscreen=1\n\n[ovirt]\nhost=e\n\n[empty]\n"
	got, err := Render(f)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("unexpected rendering (-want +got):\n%s", diff)
	}
	f.Set("fullscreen", "0")
	f.Set("x-new", Escape(" y"))
	if diff := cmp.Diff([]Entry{{"fullscreen", "0"}, {"x-new", `\sy`}}, f.Extra); diff != "" {
		t.Errorf("Set: unexpected Extra (-want +got):\n%s", diff)
	}
	minimal, err := Render(&File{Type: "spice"})
	if err != nil || string(minimal) != "[virt-viewer]\ntype=spice\n" {
		t.Errorf("Render(minimal) = %q, %v", minimal, err)
	}
}

func TestRenderErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		f    File
		want string
	}{
		{"no type", File{}, "type: is empty"},
		{"negative port", File{Type: "spice", Port: -1}, "port: -1 is not a port"},
		{"big tls port", File{Type: "spice", TLSPort: 65536}, "tls-port: 65536 is not a port"},
		{"NUL in password", File{Type: "spice", Password: "a\x00b"}, "password: contains control character U+0000 (NUL) at byte 2"},
		{"control in title", File{Type: "spice", Title: "a\x1bb"}, "title: contains control character U+001B"},
		{"invalid UTF-8", File{Type: "spice", Host: "\xff"}, "host: is not valid UTF-8"},
		{"bad list item", File{Type: "spice", SecureChannels: []string{"a\x01"}}, "secure-channels: an item contains"},
		{"field key in Extra", File{Type: "spice", Extra: []Entry{{"port", "1"}}}, `key "port" is in Extra but File has a field`},
		{"duplicate Extra key", File{Type: "spice", Extra: []Entry{{"a", "1"}, {"a", "2"}}}, `key "a" appears twice`},
		{"empty key", File{Type: "spice", Extra: []Entry{{"", "1"}}}, `key "": is empty`},
		{"key with =", File{Type: "spice", Extra: []Entry{{"a=b", "1"}}}, `contains '=' or ']'`},
		{"comment key", File{Type: "spice", Extra: []Entry{{"#a", "1"}}}, `starts with '#'`},
		{"key with space", File{Type: "spice", Extra: []Entry{{"a ", "1"}}}, `starts or ends with a space`},
		{"key with newline", File{Type: "spice", Extra: []Entry{{"a\nb", "1"}}}, `contains control character U+000A`},
		{"bad locale", File{Type: "spice", Extra: []Entry{{"a[b c]", "1"}}}, `invalid locale suffix`},
		{"raw newline", File{Type: "spice", Extra: []Entry{{"a", "x\ny"}}}, `raw value contains control character U+000A`},
		{"raw leading space", File{Type: "spice", Extra: []Entry{{"a", " x"}}}, `raw value starts with white space`},
		{"group virt-viewer", File{Type: "spice", Groups: []Group{{Name: MainGroup}}}, `group [virt-viewer] appears twice`},
		{"group twice", File{Type: "spice", Groups: []Group{{Name: "g"}, {Name: "g"}}}, `group [g] appears twice`},
		{"group with ]", File{Type: "spice", Groups: []Group{{Name: "a]"}}}, `group "a]": contains '[' or ']'`},
		{"empty group name", File{Type: "spice", Groups: []Group{{}}}, `group "": is empty`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Render(&c.f)
			if !errors.Is(err, ErrRender) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Render: got %v, want ErrRender with %q", err, c.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const head = "[virt-viewer]\ntype=spice\n"
	for _, c := range []struct {
		name, in string
		line     int
		err      error
		want     string
	}{
		{"empty", "", 0, ErrMissing, "vv: no [virt-viewer] group (it is mandatory)"},
		{"comments only", "# x\n\n", 0, ErrMissing, "no [virt-viewer] group"},
		{"other group only", "[ovirt]\nhost=x\n", 0, ErrMissing, "no [virt-viewer] group"},
		{"no type", "[virt-viewer]\nhost=x\n", 1, ErrMissing, "vv: line 1: [virt-viewer] has no type key (it is mandatory)"},
		{"empty type", "[virt-viewer]\ntype=\n", 2, ErrValue, "vv: line 2: type: is empty"},
		{"key before group", "type=spice\n[virt-viewer]\n", 1, ErrSyntax, `vv: line 1: key "type" comes before any group`},
		{"not a pair", head + "garbage\n", 3, ErrSyntax, "vv: line 3: is neither a group header"},
		{"empty key", head + "=v\n", 3, ErrSyntax, `key "" is empty`},
		{"group with trailer", "[virt-viewer]x\n", 1, ErrSyntax, "is not a group header"},
		{"unclosed group", "[virt-viewer\n", 1, ErrSyntax, "is not a group header"},
		{"empty group", head + "[]\n", 3, ErrSyntax, `group name "" is empty`},
		{"group with [", head + "[a[b]\n", 3, ErrSyntax, `group name "a[b" contains '[' or ']'`},
		{"duplicate key", head + "port=1\nport=2\n", 4, ErrDuplicate, "vv: line 4: port: is defined twice in [virt-viewer] (first at line 3)"},
		{"duplicate type", head + "type=vnc\n", 3, ErrDuplicate, "type: is defined twice"},
		{"duplicate group", head + "[g]\n[virt-viewer]\n", 4, ErrDuplicate, "group [virt-viewer] is defined twice (first at line 1)"},
		{"bad port", head + "port=59x\n", 3, ErrValue, `vv: line 3: port: "59x" is not a port (a decimal number 1-65535)`},
		{"port 0", head + "port=0\n", 3, ErrValue, `"0" is not a port`},
		{"port too big", head + "tls-port=65536\n", 3, ErrValue, `tls-port: "65536" is not a port`},
		{"signed port", head + "port=+5900\n", 3, ErrValue, `"+5900" is not a port`},
		{"empty port", head + "port=\n", 3, ErrValue, `"" is not a port`},
		{"delete-this-file 2", head + "delete-this-file=2\n", 3, ErrValue, `delete-this-file: "2" is not 0 or 1`},
		{"bad escape", head + "title=a\\qb\n", 3, ErrValue, `vv: line 3: title: invalid escape at byte 2 of the value`},
		{"trailing backslash", head + "host=a\\\n", 3, ErrValue, "a backslash ends the value"},
		{"list escape in string", head + "title=a\\;b\n", 3, ErrValue, `\; is only allowed in a list`},
		{"bad list escape", head + "secure-channels=main;\\x\n", 3, ErrValue, "secure-channels: invalid escape"},
		{"control character", head + "title=a\x01b\n", 3, ErrSyntax, "vv: line 3: contains control character U+0001 at column 8"},
		{"lone CR", head + "title=a\rb\n", 3, ErrSyntax, "control character U+000D (carriage return)"},
		{"NUL", head + "\x00\n", 3, ErrSyntax, "U+0000 (NUL)"},
		{"invalid UTF-8", head + "title=\xff\n", 3, ErrSyntax, "vv: line 3: is not valid UTF-8"},
		{"BOM", "\ufeff[virt-viewer]\ntype=spice\n", 1, ErrSyntax, "is neither a group header"},
		{"bad locale", head + "title[f r]=x\n", 3, ErrSyntax, "invalid locale suffix"},
		{"too large", head + "x=" + strings.Repeat("a", MaxSize) + "\n", 0, ErrTooLarge, "vv: more than 262144 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := Parse([]byte(c.in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse = %v, %v; want a *ParseError", f, err)
			}
			if !errors.Is(err, c.err) || pe.Line != c.line || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Parse error = %q (line %d, %v), want line %d, %v, containing %q", err, pe.Line, pe.Err, c.line, c.err, c.want)
			}
		})
	}
}

func TestParseReader(t *testing.T) {
	f, err := ParseReader(strings.NewReader("[virt-viewer]\ntype=spice\n"))
	if err != nil || f.Type != "spice" {
		t.Fatalf("ParseReader = %v, %v", f, err)
	}
	_, err = ParseReader(strings.NewReader(strings.Repeat("#", 10*MaxSize)))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ParseReader(huge) = %v, want ErrTooLarge", err)
	}
}

// TestParseErrorNeverQuotesSecrets: a broken password is reported by line
// and key only.
func TestParseErrorNeverQuotesSecrets(t *testing.T) {
	for _, secret := range []string{`sekrit\q`, `sekrit\`, `sek\;rit`} {
		_, err := Parse([]byte("[virt-viewer]\ntype=spice\npassword=" + secret + "\n"))
		if err == nil || strings.Contains(err.Error(), "sek") {
			t.Errorf("Parse error %q quotes the password (or is nil)", err)
		}
	}
}

// TestRenderTooLarge: a rendering can be larger than its input (GLib's
// blank line before each group); Render refuses one that Parse would.
func TestRenderTooLarge(t *testing.T) {
	var b strings.Builder
	b.WriteString("[virt-viewer]\ntype=spice\n")
	for i := 0; b.Len() < MaxSize-16; i++ {
		b.WriteString("[g" + strconv.Itoa(i) + "]\n")
	}
	f, err := Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Render(f); !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrRender) {
		t.Fatalf("Render = %v, want ErrRender and ErrTooLarge", err)
	}
}
