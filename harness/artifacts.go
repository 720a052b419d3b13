package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ArtifactDirer is a T that keeps files for the report: *testing.T
// (`go test -artifacts -outputdir DIR` keeps them under
// DIR/_artifacts/…; without -artifacts go test removes them with the
// test) and the scenario runner of `harness run` (--artifacts DIR). A T
// whose ArtifactDir returns "" keeps none.
type ArtifactDirer interface {
	ArtifactDir() string
}

// Attacher is a T that lists the files it kept in its report (harness
// run: the JSON result's artifacts and JUnit's system-out).
type Attacher interface {
	Attach(path string)
}

// SaveArtifact writes data as name into t's artifact directory and
// reports it: `[[ATTACHMENT|PATH]]` in the test's log, the line Jenkins'
// and GitLab's JUnit readers turn into an attachment, and Attach when t
// keeps a list. It returns the path, or "" when t keeps no artifacts.
func SaveArtifact(t T, name string, data []byte) (string, error) {
	a, ok := t.(ArtifactDirer)
	if !ok {
		return "", nil
	}
	dir := a.ArtifactDir()
	if dir == "" {
		return "", nil
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return "", fmt.Errorf("harness: artifact %s: %w", name, err)
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	t.Logf("[[ATTACHMENT|%s]]", p)
	if at, ok := t.(Attacher); ok {
		at.Attach(p)
	}
	return p, nil
}

// saveFailureArtifacts keeps what the lane's open pages show: a PNG of
// each (what a person would have seen when the test failed) and its
// console. Pages are the lane's: still open here, closed by Close.
func (e *Env) saveFailureArtifacts(t T) {
	e.mu.Lock()
	b := e.browser
	e.mu.Unlock()
	if b == nil {
		return
	}
	b.mu.Lock()
	pages := append([]*Page(nil), b.pages...)
	b.mu.Unlock()
	for i, p := range pages {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		png, err := p.Screenshot(ctx)
		if err == nil {
			_, err = SaveArtifact(t, fmt.Sprintf("page-%d.png", i+1), png)
		}
		if err != nil {
			t.Logf("--- page %d: no screenshot: %v", i+1, err)
		}
		if st, err := p.State(ctx); err == nil {
			t.Logf("--- page %d (%s): connected %v, %d draws, errors %q, sockets %+v", i+1, p.ep.Redacted(), st.Connected, st.Draws, st.Errors, st.Sockets)
		}
		cancel()
		if c := p.Console(); len(c) > 0 {
			t.Logf("--- page %d console (last %d):\n%s", i+1, min(20, len(c)), joinLines(c[max(0, len(c)-20):]))
		}
	}
}

func joinLines(ls []string) string {
	s := ""
	for _, l := range ls {
		s += l + "\n"
	}
	return s
}
