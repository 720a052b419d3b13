package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/static"
)

// TestStaticSourcesDoc keeps docs/static-sources.md true: its worked
// example is what emit-example writes, and its validate output is what
// validate prints for that example with the first ticket key mistyped.
func TestStaticSourcesDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/static-sources.md")
	if err != nil {
		t.Fatal(err)
	}
	var example bytes.Buffer
	if err := static.Emit(&example, static.ExampleSources()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, []byte("```yaml\n"+example.String()+"```\n")) {
		t.Error("docs/static-sources.md does not hold the emit-example output in a yaml block")
	}
	typo := strings.Replace(example.String(), "      ticket:", "      tikcet:", 1)
	f, _ := static.Parse("sources.yaml", []byte(typo))
	var want strings.Builder
	for _, p := range f.Problems {
		want.WriteString(p.String() + "\n")
	}
	start := bytes.Index(doc, []byte("gives:\n\n```\n"))
	if start < 0 {
		t.Fatal("docs/static-sources.md: no validate output block")
	}
	block := doc[start+len("gives:\n\n```\n"):]
	block = block[:bytes.Index(block, []byte("```"))]
	if diff := cmp.Diff(want.String(), string(block)); diff != "" {
		t.Errorf("unexpected validate output in docs/static-sources.md (-want +got):\n%s", diff)
	}
}
