package vv

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The expectations below were recorded from GLib 2.74.6 itself
// (testdata/glib_oracle.c: g_key_file_set_string and
// g_key_file_set_string_list); oracle_test.go re-checks them and random
// inputs against the GLib on the machine when it can.
var escapeCases = []struct{ in, want string }{
	{"", ""},
	{"a", "a"},
	{" a", "\\sa"},
	{"  a b  ", "\\s\\sa b  "},
	{"\ta", "\\ta"},
	{"a\tb", "a\tb"},
	{" \t x", "\\s\\t\\sx"},
	{"\n a", "\\n\\sa"},
	{"a\n b", "a\\n b"},
	{" \n ", "\\s\\n\\s"},
	{"a\\b", "a\\\\b"},
	{"\\ a", "\\\\ a"},
	{"a\rb", "a\\rb"},
	{"x;y", "x;y"},
	{"trail  ", "trail  "},
	{"é ü", "é ü"},
	{"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n"},
	{"#not a comment", "#not a comment"},
	{"=", "="},
	{"[g]", "[g]"},
	{"\\s", "\\\\s"},
	{"a\\", "a\\\\"},
	{"\r\n", "\\r\\n"},
	{"\x7f", "\x7f"},
}

var escapeListCases = []struct {
	in   []string
	want string
}{
	{[]string{}, ""},
	{[]string{"main"}, "main;"},
	{[]string{"main", "display"}, "main;display;"},
	{[]string{""}, ";"},
	{[]string{"", ""}, ";;"},
	{[]string{" a", "b;c", ""}, "\\sa;b\\;c;;"},
	{[]string{"a\\"}, "a\\\\;"},
	{[]string{"a;"}, "a\\;;"},
	{[]string{";"}, "\\;;"},
	{[]string{" "}, "\\s;"},
	{[]string{"x y", "\tz"}, "x y;\\tz;"},
}

func TestEscape(t *testing.T) {
	for _, c := range escapeCases {
		if got := Escape(c.in); got != c.want {
			t.Errorf("Escape(%q) = %q, want %q (GLib)", c.in, got, c.want)
		}
		back, err := Unescape(c.want)
		if err != nil || back != c.in {
			t.Errorf("Unescape(%q) = %q, %v; want %q", c.want, back, err, c.in)
		}
	}
}

func TestEscapeList(t *testing.T) {
	for _, c := range escapeListCases {
		if got := EscapeList(c.in); got != c.want {
			t.Errorf("EscapeList(%q) = %q, want %q (GLib)", c.in, got, c.want)
		}
		back, err := UnescapeList(c.want)
		if err != nil {
			t.Errorf("UnescapeList(%q): %v", c.want, err)
		}
		if diff := cmp.Diff(c.in, back, cmpEmpty); diff != "" {
			t.Errorf("UnescapeList(%q): unexpected items (-want +got):\n%s", c.want, diff)
		}
	}
}

// TestUnescapeList covers inputs no GLib writer produces but GLib reads:
// items without a trailing separator, and empty items.
func TestUnescapeList(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a", []string{"a"}},
		{"a;b", []string{"a", "b"}},
		{"a;;b", []string{"a", "", "b"}},
		{";", []string{""}},
		{";\\;", []string{"", ";"}},
		{"a; b", []string{"a", " b"}},
		{`\sa;\tb;`, []string{" a", "\tb"}},
	} {
		got, err := UnescapeList(c.in)
		if err != nil {
			t.Errorf("UnescapeList(%q): %v", c.in, err)
			continue
		}
		if diff := cmp.Diff(c.want, got, cmpEmpty); diff != "" {
			t.Errorf("UnescapeList(%q): unexpected items (-want +got):\n%s", c.in, diff)
		}
	}
}

func TestUnescapeErrors(t *testing.T) {
	for _, in := range []string{`a\`, `\q`, `x\;y`, `\0`, `\x41`, `\u0041`, `\S`} {
		if _, err := Unescape(in); !errors.Is(err, errEscape) {
			t.Errorf("Unescape(%q) = %v, want an escape error", in, err)
		}
	}
	for _, in := range []string{`a\`, `\q;`, `a;\`} {
		if _, err := UnescapeList(in); !errors.Is(err, errEscape) {
			t.Errorf("UnescapeList(%q) = %v, want an escape error", in, err)
		}
	}
}
