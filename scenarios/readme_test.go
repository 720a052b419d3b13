package scenarios_test

import (
	"os"
	"strings"
	"testing"
)

// The README's worked example is a real scenario: keep the two identical.
func TestReadmeExampleIsReal(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile("banner_through_proxy.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+string(file)+"```") {
		t.Fatal("README's scenario example differs from scenarios/banner_through_proxy.go")
	}
}
