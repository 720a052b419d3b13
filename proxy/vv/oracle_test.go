package vv

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// glibOracle builds testdata/glib_oracle.c against the GLib on this
// machine (the runtime library that remote-viewer uses; no -dev package
// needed) or skips. It is an extra check: the escape tables in
// escape_test.go, recorded from GLib 2.74.6, always run.
func glibOracle(t *testing.T) string {
	t.Helper()
	testenv.Short(t, "gcc and GLib, to build the oracle")
	// Under CI=true a missing gcc fails: the oracle is part of the lane.
	gcc := testenv.NeedCommand(t, "gcc", "gcc")
	bin := filepath.Join(t.TempDir(), "glib_oracle")
	out, err := exec.Command(gcc, "-o", bin, "testdata/glib_oracle.c", "-l:libglib-2.0.so.0").CombinedOutput()
	if err != nil {
		testenv.Missing(t, "libglib-2.0.so.0 to link the GLib oracle", fmt.Sprintf("install libglib2.0-0 (make deps; virt-viewer pulls it in): %v\n%s", err, out))
	}
	return bin
}

func runOracle(t *testing.T, bin, mode string, stdin []byte) string {
	t.Helper()
	cmd := exec.Command(bin, mode)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("glib_oracle %s: %v", mode, err)
	}
	return string(out)
}

func hexItem(s string) string {
	if s == "" {
		return "-"
	}
	return hex.EncodeToString([]byte(s))
}

func unhexItem(t *testing.T, s string) string {
	t.Helper()
	if s == "-" {
		return ""
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("oracle output %q: %v", s, err)
	}
	return string(b)
}

// TestGLibEscape compares Escape and EscapeList with GLib's
// g_key_file_set_string and g_key_file_set_string_list on the tables and
// on random strings.
func TestGLibEscape(t *testing.T) {
	bin := glibOracle(t)
	g := newGen(7)
	var strs []string
	for _, c := range escapeCases {
		strs = append(strs, c.in)
	}
	for range 3000 {
		strs = append(strs, g.str(24))
	}
	var in strings.Builder
	for _, s := range strs {
		in.WriteString(hex.EncodeToString([]byte(s)) + "\n")
	}
	got := strings.Split(runOracle(t, bin, "escape", []byte(in.String())), "\n")
	for i, s := range strs {
		if Escape(s) != got[i] {
			t.Errorf("Escape(%q) = %q, GLib writes %q", s, Escape(s), got[i])
		}
	}

	var lists [][]string
	for _, c := range escapeListCases {
		lists = append(lists, c.in)
	}
	for range 1000 {
		lists = append(lists, g.list())
	}
	in.Reset()
	for _, l := range lists {
		items := make([]string, len(l))
		for i, it := range l {
			items[i] = hexItem(it)
		}
		in.WriteString(strings.Join(items, ",") + "\n")
	}
	got = strings.Split(runOracle(t, bin, "list", []byte(in.String())), "\n")
	for i, l := range lists {
		if EscapeList(l) != got[i] {
			t.Errorf("EscapeList(%q) = %q, GLib writes %q", l, EscapeList(l), got[i])
		}
	}
}

// TestGLibReadsRender loads random rendered Files with GLib and checks
// that g_key_file_get_string / get_string_list / get_value read what the
// File holds.
func TestGLibReadsRender(t *testing.T) {
	bin := glibOracle(t)
	g := newGen(11)
	for i := range 150 {
		f := g.file()
		out, err := Render(f)
		if err != nil {
			t.Fatal(err)
		}
		type reading struct{ raw, str, list string }
		glib := map[[2]string]reading{}
		for _, line := range strings.Split(strings.TrimSpace(runOracle(t, bin, "read", out)), "\n") {
			if strings.HasPrefix(line, "ERROR") {
				t.Fatalf("#%d: GLib refused the rendering: %s\n%q", i, line, out)
			}
			p := strings.Split(line, " ")
			glib[[2]string{unhexItem(t, p[0]), unhexItem(t, p[1])}] = reading{unhexItem(t, p[2]), p[3], p[4]}
		}
		want := map[[2]string]string{} // key → the string value GLib must read
		str := func(k, v string) {
			if v != "" {
				want[[2]string{MainGroup, k}] = v
			}
		}
		str(KeyType, f.Type)
		str(KeyHost, f.Host)
		str(KeyPassword, f.Password)
		str(KeyCA, f.CA)
		str(KeyHostSubject, f.HostSubject)
		str(KeyTitle, f.Title)
		str(KeyProxy, f.Proxy)
		if f.Port != 0 {
			str(KeyPort, strconv.Itoa(f.Port))
		}
		if f.TLSPort != 0 {
			str(KeyTLSPort, strconv.Itoa(f.TLSPort))
		}
		if f.DeleteThisFile {
			str(KeyDeleteThisFile, "1")
		}
		n := len(want)
		for k, v := range want {
			r, ok := glib[k]
			if !ok || r.str == "!" || unhexItem(t, r.str) != v {
				t.Errorf("#%d: GLib reads %s as %+v, want string %q\n%q", i, k, r, v, out)
			}
		}
		if len(f.SecureChannels) > 0 {
			n++
			r := glib[[2]string{MainGroup, KeySecureChannels}]
			var items []string
			p := strings.Split(r.list, ",")
			for _, it := range p[1:] {
				items = append(items, unhexItem(t, it))
			}
			if diff := cmp.Diff(f.SecureChannels, items, cmpEmpty); diff != "" || p[0] != strconv.Itoa(len(f.SecureChannels)) {
				t.Errorf("#%d: GLib reads secure-channels differently (-want +got):\n%s\n%q", i, diff, out)
			}
		}
		raws := map[[2]string]string{}
		for _, e := range f.Extra {
			raws[[2]string{MainGroup, e.Key}] = e.Value
		}
		for _, gr := range f.Groups {
			for _, e := range gr.Entries {
				raws[[2]string{gr.Name, e.Key}] = e.Value
			}
		}
		for k, v := range raws {
			if r := glib[k]; r.raw != v {
				t.Errorf("#%d: GLib's raw value of %s is %q, want %q", i, k, r.raw, v)
			}
		}
		if n+len(raws) != len(glib) {
			t.Errorf("#%d: GLib sees %d keys, the File has %d\n%q", i, len(glib), n+len(raws), out)
		}
	}
}

// TestGLibAgreesWithParse: for files Parse accepts, GLib reads the same
// strings (and Parse refuses what GLib refuses).
func TestGLibAgreesWithParse(t *testing.T) {
	bin := glibOracle(t)
	for _, in := range []string{
		"[virt-viewer]\ntype=spice\n  host = \\s127.0.0.1 \t\n",
		"# c\n\n [virt-viewer] \t\r\ntype=spice\r\ntitle=a\\nb\\\\c\\td\\re\r\n",
		"[virt-viewer]\ntype=spice\npassword=p\\s\\s \n",
		"[virt-viewer]\ntype=spice\nk v\n",
		"type=spice\n[virt-viewer]\n",
		"[virt-viewer]x\ntype=spice\n",
		"[]\ntype=spice\n",
		"[virt-viewer]\ntype=spice\n=x\n",
	} {
		f, perr := Parse([]byte(in))
		out := runOracle(t, bin, "read", []byte(in))
		if strings.HasPrefix(out, "ERROR") {
			if perr == nil {
				t.Errorf("GLib refuses %q (%s) but Parse accepts it", in, strings.TrimSpace(out))
			}
			continue
		}
		if perr != nil {
			t.Errorf("Parse(%q): %v, GLib accepts it", in, perr)
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			p := strings.Split(line, " ")
			key, val := unhexItem(t, p[1]), unhexItem(t, p[3])
			var mine string
			switch key {
			case KeyType:
				mine = f.Type
			case KeyHost:
				mine = f.Host
			case KeyTitle:
				mine = f.Title
			case KeyPassword:
				mine = f.Password
			default:
				t.Fatalf("unexpected key %q", key)
			}
			if mine != val {
				t.Errorf("%q: %s: Parse reads %q, GLib %q", in, key, mine, val)
			}
		}
	}
}
