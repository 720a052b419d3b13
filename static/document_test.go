package static

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDocumentErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // DocumentErrors as lines
	}{
		{"valid", "- source: lab\n  type: static\n  consoles:\n" + console1, nil},
		{"errors in a named source", "- source: lab\n  type: static\n  consoles:\n" + console1 + "      tiket: x\n", nil},
		{"unknown type of a named source", "- source: lab\n  type: statik\n", nil},
		{"syntax", "- source: lab\n  type: [static\n", []string{
			"f:1:1: yaml: did not find expected ',' or ']'"}},
		{"not a list", "source: lab\n", []string{
			`f:1:1: sources: must be a list of sources, got a mapping; a sources.yaml is a YAML list of mappings (- source: NAME)`}},
		{"entry not a mapping", "- lab\n- source: ok\n  type: static\n  consoles: []\n", []string{
			`f:1:3: sources[0]: must be a mapping with source and type keys, got string "lab"`}},
		{"entry without a name", "- sourc: lab\n  type: static\n  consoles: []\n", []string{
			"f:1:3: sources[0].source: is missing; every source has a name",
			`f:1:3: sources[0].sourc: unknown key "sourc" in a static source (did you mean "source"?); a static source has source, type, ca_cert and consoles`}},
		{"invalid name", "- source: \"lab \"\n  type: static\n  consoles: []\n", []string{
			"f:1:11: sources[0].source: has leading or trailing white space"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := Parse("f", []byte(tt.in))
			if diff := cmp.Diff(tt.want, lines(f.DocumentErrors())); diff != "" {
				t.Errorf("unexpected document errors (-want +got):\n%s\nall problems:\n%v", diff, lines(f.Problems))
			}
		})
	}
}
