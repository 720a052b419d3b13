package static

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// lines renders problems as `harness validate` prints them.
func lines(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// modelOnly compares what a source means, not where it was read.
var modelOnly = cmp.Options{
	cmpopts.IgnoreUnexported(Source{}),
	cmpopts.IgnoreFields(Source{}, "Line", "Col", "Errors", "Warnings"),
	cmpopts.EquateEmpty(),
}

const console1 = `    - uuid: "u1"
      name: "vm1"
      hypervisor: "hv1"
      hypervisor_ip: "127.0.0.1"
      insecure_port: 5930
      ticket: "t1"
`

func TestParseValid(t *testing.T) {
	c1 := Console{UUID: "u1", Name: "vm1", Hypervisor: "hv1", HypervisorIP: "127.0.0.1", InsecurePort: 5930, Ticket: "t1"}
	tests := []struct {
		name     string
		in       string
		want     []Source
		warnings []string
	}{{
		name: "empty list",
		in:   "[]\n",
	}, {
		name: "minimal static source",
		in:   "- source: lab\n  type: static\n  consoles:\n" + console1,
		want: []Source{{Name: "lab", Type: "static", Consoles: []Console{c1}}},
	}, {
		name: "no consoles",
		in:   "- source: lab\n  type: static\n  ca_cert: null\n  consoles: []\n",
		want: []Source{{Name: "lab", Type: "static"}},
	}, {
		name: "optional keys present, plain and quoted strings, explicit tags",
		in: `- source: lab
  type: static
  consoles:
    - uuid: 'u1'
      name: my vm # a comment
      hypervisor: hv1.example.com
      hypervisor_ip: "::1"
      insecure_port: 5930
      secure_port: 5931
      ticket: !!str yes
      host_subject: "C=XX,O=Test,CN=hv1"
`,
		want: []Source{{Name: "lab", Type: "static", Consoles: []Console{{UUID: "u1", Name: "my vm", Hypervisor: "hv1.example.com",
			HypervisorIP: "::1", InsecurePort: 5930, SecurePort: 5931, Ticket: "yes", HostSubject: "C=XX,O=Test,CN=hv1"}}}},
	}, {
		name: "optional keys null in every spelling",
		in:   "- source: lab\n  type: static\n  consoles:\n" + console1 + "      secure_port: ~\n      host_subject:\n",
		want: []Source{{Name: "lab", Type: "static", Consoles: []Console{c1}}},
	}, {
		name: "ticket of 59 bytes, unicode",
		in:   "- source: lab\n  type: static\n  consoles:\n" + strings.Replace(console1, `"t1"`, `"`+strings.Repeat("é", 29)+`x"`, 1),
		want: []Source{{Name: "lab", Type: "static", Consoles: []Console{{UUID: "u1", Name: "vm1", Hypervisor: "hv1", HypervisorIP: "127.0.0.1",
			InsecurePort: 5930, Ticket: strings.Repeat("é", 29) + "x"}}}},
	}, {
		name: "kerbside mixed file: shakenfist source with its own keys",
		in: `- source: sf
  type: shakenfist
  url: https://sf.example.com/api
  username: system
  password: secret
  ca_cert: |
    not checked for unsupported sources
- source: os
  type: openstack
  url: https://keystone
  nested: {a: [1, 2, {b: c}]}
- source: lab
  type: static
  consoles:
` + console1,
		want: []Source{{Name: "sf", Type: "shakenfist"}, {Name: "os", Type: "openstack"}, {Name: "lab", Type: "static", Consoles: []Console{c1}}},
	}, {
		name: "duplicate uuid in one source: first position, last values",
		in: "- source: lab\n  type: static\n  consoles:\n" + console1 +
			strings.Replace(strings.Replace(console1, `"vm1"`, `"second"`, 1), `"u1"`, `"u2"`, 1) +
			strings.Replace(console1, `"vm1"`, `"vm1-again"`, 1),
		want: []Source{{Name: "lab", Type: "static", Consoles: []Console{
			{UUID: "u1", Name: "vm1-again", Hypervisor: "hv1", HypervisorIP: "127.0.0.1", InsecurePort: 5930, Ticket: "t1"},
			{UUID: "u2", Name: "second", Hypervisor: "hv1", HypervisorIP: "127.0.0.1", InsecurePort: 5930, Ticket: "t1"},
		}}},
		warnings: []string{`t.yaml:16:13: sources[0].consoles[2].uuid: warning: duplicate uuid "u1" in this source (first at line 4); the last definition wins, as in Kerbside`},
	}, {
		name: "same uuid in two sources: both kept",
		in:   "- source: a\n  type: static\n  consoles:\n" + console1 + "- source: b\n  type: static\n  consoles:\n" + console1,
		want: []Source{{Name: "a", Type: "static", Consoles: []Console{c1}}, {Name: "b", Type: "static", Consoles: []Console{c1}}},
		warnings: []string{`t.yaml:13:13: sources[1].consoles[0].uuid: warning: uuid "u1" is also used by source "a" (line 4); consoles are keyed by ` +
			`(source, uuid), so both stay reachable, but a client that looks consoles up by uuid alone sees only one`},
	}, {
		name: "host_subject without secure_port",
		in:   "- source: lab\n  type: static\n  consoles:\n" + console1 + "      host_subject: \"CN=x\"\n",
		want: []Source{{Name: "lab", Type: "static", Consoles: []Console{{UUID: "u1", Name: "vm1", Hypervisor: "hv1", HypervisorIP: "127.0.0.1",
			InsecurePort: 5930, Ticket: "t1", HostSubject: "CN=x"}}}},
		warnings: []string{`t.yaml:10:21: sources[0].consoles[0].host_subject: warning: has no effect without secure_port: the hypervisor's certificate is checked on TLS connections only`},
	}, {
		name: "UTF-8 byte order mark and CRLF line ends",
		in:   "\xEF\xBB\xBF- source: lab\r\n  type: static\r\n  consoles: []\r\n",
		want: []Source{{Name: "lab", Type: "static"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("t.yaml", []byte(tt.in))
			if err != nil {
				t.Fatalf("unexpected error: %v\nall problems:\n%s", err, strings.Join(lines(f.Problems), "\n"))
			}
			if diff := cmp.Diff(tt.want, f.Sources, modelOnly); diff != "" {
				t.Errorf("unexpected sources (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.warnings, lines(f.Warnings()), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("unexpected warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	static := "- source: lab\n  type: static\n  consoles:\n"
	tests := []struct {
		name string
		in   string
		want []string
		is   error
	}{{
		name: "not a list",
		in:   "source: lab\ntype: static\n",
		want: []string{`t.yaml:1:1: sources: must be a list of sources, got a mapping; a sources.yaml is a YAML list of mappings (- source: NAME)`},
		is:   ErrType,
	}, {
		name: "every required console key missing",
		in:   static + "    - {}\n",
		want: []string{
			`t.yaml:4:7: sources[0].consoles[0].uuid: is missing (required)`,
			`t.yaml:4:7: sources[0].consoles[0].name: is missing (required)`,
			`t.yaml:4:7: sources[0].consoles[0].hypervisor: is missing (required)`,
			`t.yaml:4:7: sources[0].consoles[0].hypervisor_ip: is missing (required)`,
			`t.yaml:4:7: sources[0].consoles[0].insecure_port: is missing (required)`,
			`t.yaml:4:7: sources[0].consoles[0].ticket: is missing (required)`,
		},
		is: ErrMissing,
	}, {
		name: "port as a string",
		in:   static + strings.Replace(console1, "5930", `"5930"`, 1),
		want: []string{`t.yaml:8:22: sources[0].consoles[0].insecure_port: must be an integer port (1-65535), got string "5930" (remove the quotes)`},
		is:   ErrType,
	}, {
		name: "ticket as an integer is never quoted back",
		in:   static + strings.Replace(console1, `"t1"`, `123456`, 1),
		want: []string{`t.yaml:9:15: sources[0].consoles[0].ticket: must be a string, got an integer (quote it to make it a string)`},
		is:   ErrType,
	}, {
		name: "uuid as a mapping",
		in:   static + strings.Replace(console1, `"u1"`, `{a: b}`, 1),
		want: []string{`t.yaml:4:13: sources[0].consoles[0].uuid: must be a string, got a mapping`},
		is:   ErrType,
	}, {
		name: "ports out of range",
		in:   static + strings.Replace(console1, "5930", "0", 1) + "      secure_port: 70000\n",
		want: []string{
			`t.yaml:8:22: sources[0].consoles[0].insecure_port: is 0; a port is 1-65535`,
			`t.yaml:10:20: sources[0].consoles[0].secure_port: is 70000; a port is 1-65535`,
		},
		is: ErrValue,
	}, {
		name: "port spelled in hex",
		in:   static + strings.Replace(console1, "5930", "0x172A", 1),
		want: []string{`t.yaml:8:22: sources[0].consoles[0].insecure_port: is 0x172A; write a port as a plain decimal number (YAML 1.1 and 1.2 readers disagree on 0x, 0o, 0b, leading zeros, underscores and signs)`},
		is:   ErrValue,
	}, {
		name: "60-byte ticket",
		in:   static + strings.Replace(console1, `"t1"`, `"`+strings.Repeat("x", 60)+`"`, 1),
		want: []string{`t.yaml:9:15: sources[0].consoles[0].ticket: is 60 bytes; a ticket is at most 59 bytes: spice-server stores only the first 59 bytes of a password (a 60-byte buffer with its NUL), so a longer ticket silently never matches`},
		is:   ErrValue,
	}, {
		name: "empty ticket",
		in:   static + strings.Replace(console1, `"t1"`, `""`, 1),
		want: []string{`t.yaml:9:15: sources[0].consoles[0].ticket: is empty; a ticket is 1-59 bytes (spice-server refuses every client while its password is empty)`},
		is:   ErrValue,
	}, {
		name: "ticket with a control character",
		in:   static + strings.Replace(console1, `"t1"`, `"a\tb"`, 1),
		want: []string{`t.yaml:9:15: sources[0].consoles[0].ticket: contains U+0009 (tab) at byte 1; values must be printable text on one line`},
		is:   ErrValue,
	}, {
		name: "typo in a console key",
		in:   static + strings.Replace(console1, "insecure_port", "insecure_prot", 1),
		want: []string{
			`t.yaml:4:7: sources[0].consoles[0].insecure_port: is missing (required)`,
			`t.yaml:8:7: sources[0].consoles[0].insecure_prot: unknown key "insecure_prot" (did you mean "insecure_port"?); a console has uuid, name, hypervisor, hypervisor_ip, insecure_port, ticket, secure_port and host_subject`,
		},
	}, {
		name: "plain scalar YAML 1.1 reads as a boolean",
		in:   static + strings.Replace(console1, `"vm1"`, `on`, 1),
		want: []string{`t.yaml:5:13: sources[0].consoles[0].name: is the plain scalar on: a string to yaml.v3 but a boolean to YAML 1.1 readers such as Kerbside's PyYAML; quote it`},
		is:   ErrAmbiguous,
	}, {
		name: "consoles as a map",
		in:   static + "    vm1: {}\n",
		want: []string{`t.yaml:4:5: sources[0].consoles: must be a list of consoles, got a mapping`},
		is:   ErrType,
	}, {
		name: "console is a string",
		in:   static + "    - vm1\n",
		want: []string{`t.yaml:4:7: sources[0].consoles[0]: must be a mapping (uuid: …, name: …), got string "vm1"`},
		is:   ErrType,
	}, {
		name: "consoles missing, unknown source key",
		in:   "- source: lab\n  type: static\n  console: []\n",
		want: []string{
			`t.yaml:1:3: sources[0].consoles: is missing; a static source lists its consoles (write consoles: [] for none)`,
			`t.yaml:3:3: sources[0].console: unknown key "console" in a static source (did you mean "consoles"?); a static source has source, type, ca_cert and consoles`,
		},
	}, {
		name: "duplicate source names",
		in:   "- source: lab\n  type: static\n  consoles: []\n- source: lab\n  type: shakenfist\n",
		want: []string{`t.yaml:4:11: sources[1].source: source name "lab" is already used at line 1; Kerbside stores sources by name, so one would silently replace the other`},
		is:   ErrDuplicate,
	}, {
		name: "duplicate key",
		in:   static + console1 + "      ticket: \"t2\"\n",
		want: []string{`t.yaml:10:7: sources[0].consoles[0].ticket: is defined twice in one mapping (first at line 9); YAML readers disagree on which one counts`},
		is:   ErrDuplicateKey,
	}, {
		name: "unknown type, missing name",
		in:   "- type: statik\n",
		want: []string{
			`t.yaml:1:3: sources[0].source: is missing; every source has a name`,
			`t.yaml:1:9: sources[0].type: unknown source type "statik"; Kerbside knows static, shakenfist, ovirt and openstack (and marks any other type errored); did you mean "static"?`,
		},
	}, {
		name: "secure_port equals insecure_port",
		in:   static + console1 + "      secure_port: 5930\n",
		want: []string{`t.yaml:10:20: sources[0].consoles[0].secure_port: is 5930, the same as insecure_port; qemu cannot serve plain and TLS SPICE on one port`},
	}, {
		name: "ca_cert not PEM, empty host_subject",
		in:   "- source: lab\n  type: static\n  ca_cert: hello\n  consoles:\n" + console1 + "      host_subject: \"\"\n",
		want: []string{
			`t.yaml:3:12: sources[0].ca_cert: is not PEM: expected -----BEGIN CERTIFICATE-----`,
			`t.yaml:11:21: sources[0].consoles[0].host_subject: is empty; write null (or leave the key out) for none`,
		},
	}, {
		name: "alias and merge key",
		in:   "- source: lab\n  type: static\n  consoles:\n    - &c {uuid: a}\n    - <<: *c\n",
		want: []string{
			`t.yaml:4:7: sources[0].consoles[0].name: is missing (required)`,
			`t.yaml:4:7: sources[0].consoles[0].hypervisor: is missing (required)`,
			`t.yaml:4:7: sources[0].consoles[0].hypervisor_ip: is missing (required)`,
			`t.yaml:4:7: sources[0].consoles[0].insecure_port: is missing (required)`,
			`t.yaml:4:7: sources[0].consoles[0].ticket: is missing (required)`,
			`t.yaml:5:7: sources[0].consoles[1]["<<"]: merge keys (<<) are not allowed in sources.yaml; write the keys out`,
			`t.yaml:5:7: sources[0].consoles[1].uuid: is missing (required)`,
			`t.yaml:5:7: sources[0].consoles[1].name: is missing (required)`,
			`t.yaml:5:7: sources[0].consoles[1].hypervisor: is missing (required)`,
			`t.yaml:5:7: sources[0].consoles[1].hypervisor_ip: is missing (required)`,
			`t.yaml:5:7: sources[0].consoles[1].insecure_port: is missing (required)`,
			`t.yaml:5:7: sources[0].consoles[1].ticket: is missing (required)`,
			`t.yaml:5:11: sources[0].consoles[1]["<<"]: alias *c: YAML aliases are not allowed in sources.yaml (nested aliases expand exponentially: the "billion laughs" attack); write the value out`,
		},
		is: ErrAlias,
	}, {
		name: "tab indentation",
		in:   "- source: lab\n\ttype: static\n",
		want: []string{`t.yaml:2:1: yaml: a tab character in indentation; YAML indents with spaces only (yaml.v3: found a tab character that violates indentation)`},
		is:   ErrSyntax,
	}, {
		name: "binary junk",
		in:   "\x7fELF\x02\x01\x01\x00\x00",
		want: []string{`t.yaml:1:1: file: has U+007F (a control character), which YAML does not allow unescaped (and 5 more such bytes or characters); sources.yaml must be UTF-8 text, is this a binary file?`},
		is:   ErrEncoding,
	}, {
		name: "invalid UTF-8 on line 2",
		in:   "- source: lab\n  type: st\xffatic\n",
		want: []string{`t.yaml:2:11: file: has a byte that is not UTF-8 (0xFF); sources.yaml must be UTF-8 text, is this a binary file?`},
		is:   ErrEncoding,
	}, {
		name: "UTF-16",
		in:   "\xFF\xFE-\x00 \x00",
		want: []string{`t.yaml:1:1: file: is UTF-16 encoded; save it as UTF-8 (Kerbside reads UTF-8 only)`},
		is:   ErrEncoding,
	}, {
		name: "empty file",
		in:   "\n",
		want: []string{`t.yaml:1:1: sources: the file is empty; a sources.yaml is a list of sources (write [] for none)`},
	}, {
		name: "two documents",
		in:   "[]\n---\n[]\n",
		want: []string{`t.yaml:3:1: sources: a second YAML document; a sources.yaml is one document (Kerbside's yaml.safe_load refuses more)`},
		is:   ErrSyntax,
	}, {
		name: "unknown anchor",
		in:   "- source: lab\n  type: *nope\n",
		want: []string{`t.yaml:2:9: yaml: alias *nope refers to no anchor; YAML aliases are not allowed in sources.yaml anyway`},
		is:   ErrAlias,
	}, {
		name: "source that is not a mapping does not stop the others",
		in:   "- just a string\n- source: lab\n  type: static\n  consoles: 5\n",
		want: []string{
			`t.yaml:1:3: sources[0]: must be a mapping with source and type keys, got string "just a string"`,
			`t.yaml:4:13: sources[1].consoles: must be a list of consoles, got integer 5`,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("t.yaml", []byte(tt.in))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			if diff := cmp.Diff(tt.want, lines(f.Problems)); diff != "" {
				t.Errorf("unexpected problems (-want +got):\n%s", diff)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(err, %v) = false for %v", tt.is, err)
			}
		})
	}
}

func TestParseErroredSourceDoesNotStopOthers(t *testing.T) {
	in := "- source: bad\n  type: static\n  consoles:\n" + strings.Replace(console1, "5930", "0", 1) +
		"- source: good\n  type: static\n  consoles:\n" + console1 +
		"- source: sf\n  type: shakenfist\n"
	f, err := Parse("t.yaml", []byte(in))
	var pe *ParseError
	if !errors.As(err, &pe) || len(pe.Problems) != 1 {
		t.Fatalf("unexpected error %v, want a *ParseError with one problem", err)
	}
	if got := len(f.Sources); got != 3 {
		t.Fatalf("got %d sources, want 3", got)
	}
	bad, good, sf := &f.Sources[0], &f.Sources[1], &f.Sources[2]

	if cs, err := bad.Load(); cs != nil || !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrValue) {
		t.Errorf("bad.Load() = %v, %v; want nil and an error matching ErrInvalid and ErrValue", cs, err)
	}
	var se *SourceError
	if err := bad.Err(); !errors.As(err, &se) || se.Source != "bad" || len(se.Problems) != 1 {
		t.Errorf("bad.Err() = %#v, want a *SourceError for bad with one problem", err)
	}
	cs, err := good.Load()
	if err != nil {
		t.Fatalf("good.Load(): %v", err)
	}
	if diff := cmp.Diff([]Console{{UUID: "u1", Name: "vm1", Hypervisor: "hv1", HypervisorIP: "127.0.0.1", InsecurePort: 5930, Ticket: "t1"}}, cs); diff != "" {
		t.Errorf("unexpected consoles (-want +got):\n%s", diff)
	}
	cs[0].Ticket = "changed"
	if good.Consoles[0].Ticket != "t1" {
		t.Error("Load returned the source's own slice, want a copy")
	}
	if _, err := sf.Load(); !errors.Is(err, ErrUnsupportedType) || errors.Is(err, ErrInvalid) {
		t.Errorf("sf.Load() error = %v, want ErrUnsupportedType only", err)
	}
	if !sf.Unsupported() || sf.Supported() || good.Unsupported() {
		t.Error("Supported/Unsupported disagree with the source types")
	}
	want := map[Key]Console{{Source: "good", UUID: "u1"}: good.Consoles[0]}
	if diff := cmp.Diff(want, f.Consoles()); diff != "" {
		t.Errorf("unexpected File.Consoles (-want +got):\n%s", diff)
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "f.yaml", Line: 3, Col: 5, Field: "sources[0].type", Message: "bad"}, "f.yaml:3:5: sources[0].type: bad"},
		{Problem{File: "f.yaml", Line: 3, Col: 5, Field: "x", Message: "meh", Severity: SeverityWarning}, "f.yaml:3:5: x: warning: meh"},
		{Problem{Field: "ticket", Message: "is empty"}, "ticket: is empty"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	for word, want := range map[string]string{
		"insecure_prot": "insecure_port", "ticekt": "ticket", "UUID": "uuid", "hypervisorip": "hypervisor_ip",
		"host-subject": "host_subject", "colour": "", "": "",
	} {
		if got := suggest(word, consoleKeys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", word, got, want)
		}
	}
}
