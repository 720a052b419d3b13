package guestimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// AgentPackage is the guest agent's main package (/init).
const AgentPackage = "github.com/spiceharness/spiceharness/internal/guestagent/init"

type agentBin struct {
	path string
	sum  string // hex sha256
}

// buildAgent builds the agent statically for linux/amd64 into dir. It
// runs in the current directory, which must be inside a module that has
// spice-harness (this module, or one that requires it).
func buildAgent(ctx context.Context, dir string) (agentBin, error) {
	out := filepath.Join(dir, "init")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, AgentPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return agentBin{}, fmt.Errorf("guestimage: go build %s: %v\n%s", AgentPackage, err, stderr.Bytes())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return agentBin{}, err
	}
	s := sha256.Sum256(b)
	return agentBin{path: out, sum: hex.EncodeToString(s[:])}, nil
}
