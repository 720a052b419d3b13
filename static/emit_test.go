package static

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"gopkg.in/yaml.v3"
)

// emitted returns Emit's output or fails t.
func emitted(t testing.TB, sources []Source) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Emit(&b, sources); err != nil {
		t.Fatalf("Emit: %v", err)
	}
	return b.Bytes()
}

func tlsSource(t testing.TB) Source {
	return Source{Name: "tls-lab", Type: TypeStatic, CACert: testCerts(t)[0], Consoles: []Console{{
		UUID: "6f4e2c1a-0000-4000-8000-00000000000a", Name: "tls vm, 'quoted'", Hypervisor: "hv1.example.com", HypervisorIP: "192.0.2.10",
		InsecurePort: 5930, SecurePort: 5931, Ticket: `yes: #"'` + "\\", HostSubject: "C=XX,O=spice-harness,CN=hv1.example.com",
	}}}
}

// TestEmitKerbsideShape checks the emitted file with a schema-less YAML
// decode, the way Kerbside's static driver sees it: a list of dicts; static
// sources with source, type, ca_cert and consoles; consoles with the six
// required keys typed and the two optional keys null or typed.
func TestEmitKerbsideShape(t *testing.T) {
	out := emitted(t, append(ExampleSources(), tlsSource(t), Source{Name: "sf", Type: "shakenfist"}))
	var doc []map[string]any
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("emitted file is not a YAML list of mappings: %v", err)
	}
	if len(doc) != 3 {
		t.Fatalf("got %d sources, want 3", len(doc))
	}
	for _, src := range doc[:2] {
		if diff := cmp.Diff([]string{"ca_cert", "consoles", "source", "type"}, sortedKeys(src)); diff != "" {
			t.Errorf("unexpected static source keys (-want +got):\n%s", diff)
		}
		if src["type"] != "static" {
			t.Errorf("type = %#v, want \"static\"", src["type"])
		}
		if _, ok := src["source"].(string); !ok {
			t.Errorf("source = %#v, want a string", src["source"])
		}
		if ca, ok := src["ca_cert"].(string); src["ca_cert"] != nil && (!ok || !strings.HasPrefix(ca, "-----BEGIN CERTIFICATE-----\n")) {
			t.Errorf("ca_cert = %#v, want null or a PEM string", src["ca_cert"])
		}
		consoles, ok := src["consoles"].([]any)
		if !ok {
			t.Fatalf("consoles = %#v, want a list", src["consoles"])
		}
		for _, c := range consoles {
			c, ok := c.(map[string]any)
			if !ok {
				t.Fatalf("console = %#v, want a mapping", c)
			}
			if diff := cmp.Diff([]string{"host_subject", "hypervisor", "hypervisor_ip", "insecure_port", "name", "secure_port", "ticket", "uuid"}, sortedKeys(c)); diff != "" {
				t.Errorf("unexpected console keys (-want +got):\n%s", diff)
			}
			for _, k := range []string{"uuid", "name", "hypervisor", "hypervisor_ip", "ticket"} {
				if _, ok := c[k].(string); !ok {
					t.Errorf("%s = %#v, want a string", k, c[k])
				}
			}
			if _, ok := c["insecure_port"].(int); !ok {
				t.Errorf("insecure_port = %#v, want an int", c["insecure_port"])
			}
			if _, ok := c["secure_port"].(int); c["secure_port"] != nil && !ok {
				t.Errorf("secure_port = %#v, want null or an int", c["secure_port"])
			}
			if _, ok := c["host_subject"].(string); c["host_subject"] != nil && !ok {
				t.Errorf("host_subject = %#v, want null or a string", c["host_subject"])
			}
		}
	}
	if diff := cmp.Diff(map[string]any{"source": "sf", "type": "shakenfist"}, doc[2]); diff != "" {
		t.Errorf("unexpected unsupported source (-want +got):\n%s", diff)
	}
}

func sortedKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

func TestEmitHeaderAndComments(t *testing.T) {
	out := string(emitted(t, []Source{tlsSource(t)}))
	for _, want := range []string{
		"# sources.yaml: console sources for a Kerbside-compatible SPICE proxy\n",
		"#   ticket         the SPICE password, 1-59 bytes",
		"#   host_subject   subject the hypervisor's TLS certificate must have",
		`#     -spice port=5930,tls-port=5931,addr=192.0.2.10,x509-dir=/etc/pki/qemu \`,
		`#     -qmp unix:/tmp/tls-vm-quoted.qmp,server=on,wait=off \`,
		`#     -name 'guest=tls vm,, '\''quoted'\''' -uuid 6f4e2c1a-0000-4000-8000-00000000000a`,
		`#   {"execute": "set_password", "arguments": {"protocol": "spice", "password": "yes: #\"'\\"}}`,
		`      ticket: "yes: #\"'\\"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("emitted file lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "password=") {
		t.Error("emitted qemu command line puts a password on argv")
	}
}

func TestEmitRefusesInvalid(t *testing.T) {
	good := ExampleSources()[0]
	withConsole := func(edit func(*Console)) Source {
		s := good
		s.Consoles = append([]Console(nil), good.Consoles...)
		edit(&s.Consoles[1])
		return s
	}
	tests := []struct {
		name    string
		sources []Source
		want    string
	}{
		{"60-byte ticket", []Source{withConsole(func(c *Console) { c.Ticket = strings.Repeat("x", 60) })}, "sources[0].consoles[1].ticket: is 60 bytes"},
		{"port 0", []Source{withConsole(func(c *Console) { c.InsecurePort = 0 })}, "sources[0].consoles[1].insecure_port: is 0; a port is 1-65535"},
		{"newline in name", []Source{withConsole(func(c *Console) { c.Name = "a\nb" })}, "sources[0].consoles[1].name: contains U+000A (line feed) at byte 1"},
		{"invalid UTF-8", []Source{withConsole(func(c *Console) { c.Hypervisor = "\xff" })}, "sources[0].consoles[1].hypervisor: is not valid UTF-8"},
		{"slash in uuid", []Source{withConsole(func(c *Console) { c.UUID = "a/b" })}, `sources[0].consoles[1].uuid: must not contain "/"`},
		{"duplicate uuid", []Source{withConsole(func(c *Console) { c.UUID = good.Consoles[0].UUID })}, "sources[0].consoles[1].uuid: duplicate uuid"},
		{"duplicate source", []Source{good, good}, `sources[1].source: source name "example-static" is also used by sources[0]`},
		{"unknown type", []Source{{Name: "x", Type: "statik"}}, `sources[0].type: unknown source type "statik"`},
		{"consoles on an unsupported source", []Source{{Name: "x", Type: "ovirt", Consoles: good.Consoles}}, "sources[0].consoles: only a static source has consoles"},
		{"bad CA", []Source{{Name: "x", Type: TypeStatic, CACert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}}, "sources[0].ca_cert: certificate 1 does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := Emit(&b, tt.sources)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Emit error = %v, want ErrInvalid mentioning %q", err, tt.want)
			}
			if b.Len() != 0 {
				t.Errorf("Emit wrote %d bytes for invalid input", b.Len())
			}
		})
	}
}

func TestEmitKeepsUnsupportedSourceKeys(t *testing.T) {
	in := "- source: sf\n  type: shakenfist\n  url: https://sf.example.com\n  # a comment\n  username: system\n  extra: {a: [1, 2]}\n"
	f, err := Parse("t.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var doc []map[string]any
	if err := yaml.Unmarshal(emitted(t, f.Sources), &doc); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{{"source": "sf", "type": "shakenfist", "url": "https://sf.example.com", "username": "system",
		"extra": map[string]any{"a": []any{1, 2}}}}
	if diff := cmp.Diff(want, doc); diff != "" {
		t.Errorf("unexpected re-emitted source (-want +got):\n%s", diff)
	}
}

// kerbsideDriver mirrors Kerbside's static source driver (yaml.safe_load,
// the required-field check, last definition wins). It reads a JSON list of
// sources.yaml texts and prints, for each, the consoles Kerbside would
// store or the reason it refuses the file.
const kerbsideDriver = `
import json, sys, yaml
REQUIRED = ('uuid', 'name', 'hypervisor', 'hypervisor_ip', 'insecure_port', 'ticket')
def read(text):
    out = []
    for source in yaml.safe_load(text):
        if source['type'] != 'static':
            continue
        consoles = source.get('consoles', [])
        assert isinstance(consoles, list), 'consoles is not a list'
        by_uuid = {}
        for entry in consoles:
            assert isinstance(entry, dict), 'console is not a dict'
            missing = [f for f in REQUIRED if f not in entry]
            assert not missing, 'missing %s' % missing
            assert isinstance(entry['insecure_port'], int) and not isinstance(entry['insecure_port'], bool)
            for f in ('uuid', 'name', 'hypervisor', 'hypervisor_ip', 'ticket'):
                assert isinstance(entry[f], str), '%s is %r' % (f, type(entry[f]))
            c = dict(entry)
            c['source'] = source['source']
            c['ca_cert'] = source.get('ca_cert')
            by_uuid[c['uuid']] = c
        out.extend(by_uuid.values())
    return out
results = []
for text in json.load(sys.stdin):
    try:
        results.append({'consoles': read(text)})
    except Exception as e:
        results.append({'error': '%s: %s' % (type(e).__name__, e)})
json.dump(results, sys.stdout)
`

type pyConsole struct {
	Source       string  `json:"source"`
	CACert       *string `json:"ca_cert"`
	UUID         string  `json:"uuid"`
	Name         string  `json:"name"`
	Hypervisor   string  `json:"hypervisor"`
	HypervisorIP string  `json:"hypervisor_ip"`
	InsecurePort int     `json:"insecure_port"`
	SecurePort   *int    `json:"secure_port"`
	Ticket       string  `json:"ticket"`
	HostSubject  *string `json:"host_subject"`
}

type pyResult struct {
	Consoles []pyConsole `json:"consoles"`
	Error    string      `json:"error"`
}

// kerbsideRead runs Kerbside's reading of each sources.yaml under PyYAML.
func kerbsideRead(t *testing.T, python string, files ...[]byte) []pyResult {
	t.Helper()
	texts := make([]string, len(files))
	for i, f := range files {
		texts[i] = string(f)
	}
	in, err := json.Marshal(texts)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-c", kerbsideDriver)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("running Kerbside's reader: %v\n%s", err, stderr.String())
	}
	var rs []pyResult
	if err := json.Unmarshal(out, &rs); err != nil || len(rs) != len(files) {
		t.Fatalf("decoding python output: %v (%d results for %d files)", err, len(rs), len(files))
	}
	return rs
}

// needPyYAML returns python3 when it can import yaml (Debian python3-yaml).
// Debian's /usr/bin/python3 comes first: python3-yaml installs there,
// while a python3 earlier in PATH (pyenv) may lack it.
func needPyYAML(t *testing.T) string {
	for _, p := range []string{"/usr/bin/python3"} {
		if exec.Command(p, "-c", "import yaml").Run() == nil {
			return p
		}
	}
	python := testenv.NeedCommand(t, "python3", "python3")
	if err := exec.Command(python, "-c", "import yaml").Run(); err != nil {
		testenv.Missing(t, "PyYAML", "install the Debian package python3-yaml")
	}
	return python
}

func toPy(sources []Source) []pyConsole {
	var out []pyConsole
	for _, s := range sources {
		if !s.Supported() {
			continue
		}
		for _, c := range s.Consoles {
			p := pyConsole{Source: s.Name, UUID: c.UUID, Name: c.Name, Hypervisor: c.Hypervisor, HypervisorIP: c.HypervisorIP,
				InsecurePort: c.InsecurePort, Ticket: c.Ticket}
			if s.CACert != "" {
				ca := s.CACert
				p.CACert = &ca
			}
			if c.SecurePort != 0 {
				sp := c.SecurePort
				p.SecurePort = &sp
			}
			if c.HostSubject != "" {
				hs := c.HostSubject
				p.HostSubject = &hs
			}
			out = append(out, p)
		}
	}
	return out
}

// TestKerbsideReadsEmitted feeds emitted files to Kerbside's reader under
// PyYAML (a YAML 1.1 parser) and checks it sees exactly our values.
func TestKerbsideReadsEmitted(t *testing.T) {
	python := needPyYAML(t)
	cases := [][]Source{ExampleSources(), {tlsSource(t), {Name: "sf", Type: "shakenfist"}}}
	cases = append(cases, genSources(t, 300, 7)...)
	files := make([][]byte, len(cases))
	for i, sources := range cases {
		files[i] = emitted(t, sources)
	}
	for i, r := range kerbsideRead(t, python, files...) {
		if r.Error != "" {
			t.Errorf("case %d: Kerbside's reader refuses the emitted file: %s\n%s", i, r.Error, files[i])
			continue
		}
		if diff := cmp.Diff(toPy(cases[i]), r.Consoles, cmpEmpty); diff != "" {
			t.Errorf("case %d: Kerbside reads other values (-want +got):\n%s", i, diff)
		}
	}
}

// TestKerbsideAgreesOnAmbiguousScalars shows why Parse refuses plain
// scalars that YAML 1.1 types differently: Kerbside does not read them as
// the string yaml.v3 reads.
func TestKerbsideAgreesOnAmbiguousScalars(t *testing.T) {
	python := needPyYAML(t)
	plains := []string{"yes", "off", "0o17", "1_000", "12:30", "2001-01-01", "~", ".inf", "0b101", "=", "<<", "y", "1e3", "0x1G"}
	files := make([][]byte, len(plains))
	for i, plain := range plains {
		files[i] = []byte("- source: lab\n  type: static\n  consoles:\n" + strings.Replace(console1, `"t1"`, plain, 1))
	}
	for i, r := range kerbsideRead(t, python, files...) {
		plain := plains[i]
		f, _ := Parse("t.yaml", files[i])
		goAccepts := f.Err() == nil
		pyString := r.Error == "" && len(r.Consoles) == 1 && r.Consoles[0].Ticket == plain
		switch {
		case goAccepts && !pyString:
			t.Errorf("ticket %s: Parse accepts it, but Kerbside does not read that string (%s %+v)", plain, r.Error, r.Consoles)
		case !goAccepts && pyString && !errors.Is(f.Err(), ErrType):
			// yaml.v3 reading a non-string (0o17, 1e3) is refused as ErrType, which is fine.
			t.Errorf("ticket %s: Parse refuses it (%v) although both readers see the same string", plain, f.Err())
		}
	}
}
