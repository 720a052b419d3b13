package static

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse: Parse never panics, every problem has a position, and a file
// that parses without errors re-emits and re-parses to the same value, and
// emitting that again gives the same bytes.
func FuzzParse(f *testing.F) {
	var ex bytes.Buffer
	if err := Emit(&ex, ExampleSources()); err != nil {
		f.Fatal(err)
	}
	f.Add(ex.Bytes())
	f.Add([]byte("- source: lab\n  type: static\n  consoles:\n" + console1))
	f.Add([]byte("- source: sf\n  type: shakenfist\n  url: x\n- source: lab\n  type: static\n  consoles: []\n"))
	f.Add([]byte("a: &a [1, 2]\nb: [*a, *a]\n"))
	f.Add([]byte("- source: lab\n\ttype: static\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.yaml", data)
		if file == nil {
			t.Fatal("Parse returned a nil *File")
		}
		for _, p := range file.Problems {
			if p.File != "fuzz.yaml" || p.Line < 1 || p.Col < 1 || p.Field == "" || p.Message == "" || p.Err == nil {
				t.Fatalf("problem without position, field, message or sentinel: %#v", p)
			}
		}
		if err != nil {
			return
		}
		var once bytes.Buffer
		if err := Emit(&once, file.Sources); err != nil {
			t.Fatalf("parsed without errors but Emit refuses it: %v", err)
		}
		again, err := Parse("again.yaml", once.Bytes())
		if err != nil {
			t.Fatalf("Parse(Emit(Parse(data))): %v\n%s", err, once.Bytes())
		}
		if diff := cmp.Diff(file.Sources, again.Sources, modelOnly); diff != "" {
			t.Fatalf("unexpected sources after a round trip (-want +got):\n%s", diff)
		}
		var twice bytes.Buffer
		if err := Emit(&twice, again.Sources); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(once.String(), twice.String()); diff != "" {
			t.Fatalf("unexpected second emission (-want +got):\n%s", diff)
		}
	})
}

// FuzzEmitRoundTrip: Emit refuses every invalid console and writes every
// valid one so that Parse gives it back.
func FuzzEmitRoundTrip(f *testing.F) {
	f.Add("lab", "6f4e2c1a-0000-4000-8000-000000000001", "vm 1", "localhost", "127.0.0.1", 5930, 0, "ticket", "", false)
	f.Add("lab", "u", "yes", "hv", "::1", 5930, 5931, "null", "C=XX,O=a,CN=b", true)
	f.Add("a: b", "#", "'\"", "h", "i", 1, 65535, "  leading", "~", false)
	f.Add("x", "y", "0x10", "h", "i", 70000, 0, "012345678901234567890123456789012345678901234567890123456789", "", false)
	f.Add("x", "y", "multi\nline", "h", "i", 1, 1, "", "", true)
	f.Fuzz(func(t *testing.T, source, uuid, name, hv, ip string, port, securePort int, ticket, subject string, withCA bool) {
		src := Source{Name: source, Type: TypeStatic, Consoles: []Console{{UUID: uuid, Name: name, Hypervisor: hv, HypervisorIP: ip,
			InsecurePort: port, SecurePort: securePort, Ticket: ticket, HostSubject: subject}}}
		if withCA {
			src.CACert = testCerts(t)[0]
		}
		var b bytes.Buffer
		err := Emit(&b, []Source{src})
		if src.Validate() != nil {
			if err == nil || b.Len() > 0 {
				t.Fatalf("Emit accepted an invalid source (%v): %v, %d bytes", src.Validate(), err, b.Len())
			}
			return
		}
		if err != nil {
			t.Fatalf("Emit refused a valid source: %v", err)
		}
		f, err := Parse("rt.yaml", b.Bytes())
		if err != nil {
			t.Fatalf("Parse(Emit(x)): %v\n%s", err, b.Bytes())
		}
		if diff := cmp.Diff([]Source{src}, f.Sources, modelOnly); diff != "" {
			t.Fatalf("unexpected Parse(Emit(x)) (-want +got):\n%s", diff)
		}
	})
}
