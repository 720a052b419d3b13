package scenarios

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var someResults = []Result{
	{Name: "pixels", Tier: Core, Status: Passed, Duration: 1500 * time.Millisecond},
	{Name: "terminate", Tier: Hardening, Status: Failed, Reason: "still open", Log: []string{"line 1", "still open"}, Repro: "harness run --scenario terminate",
		Artifacts: []string{"/tmp/a/terminate/page-1.png"}},
	{Name: "token-expired", Tier: Hardening, Status: Skipped, Reason: "needs the token-ttl capability"},
	{Name: "hostile-clients", Tier: Hardening, Status: NotRun, Reason: "interrupted"},
}

func TestSummary(t *testing.T) {
	s := Summarize(someResults)
	assert.False(t, s.OK())
	var b bytes.Buffer
	s.Write(&b, "kerbside http://x")
	want := `proxy under test: kerbside http://x
core         1 passed,   0 failed,   0 skipped,   0 not run
hardening    0 passed,   1 failed,   1 skipped,   1 not run
total        1 passed,   1 failed,   1 skipped,   1 not run
FAIL
`
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("unexpected summary (-want +got):\n%s", d)
	}
	assert.True(t, Summarize(someResults[:1]).OK())
	assert.False(t, Summarize(someResults[3:]).OK(), "a run with scenarios that did not run is no pass")
}

func TestJUnit(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteJUnit(&b, "exec ./p", time.Unix(0, 0), someResults))
	var got struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string          `xml:"name,attr"`
				Class   string          `xml:"classname,attr"`
				Props   []junitProperty `xml:"properties>property"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Body    string `xml:",chardata"`
				} `xml:"failure"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
				SystemOut string `xml:"system-out"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	require.NoError(t, xml.Unmarshal(b.Bytes(), &got), b.String())
	assert.Equal(t, []int{4, 1, 2}, []int{got.Tests, got.Failures, got.Skipped})
	require.Len(t, got.Suites, 2)
	assert.Equal(t, "spice-harness.core", got.Suites[0].Name)
	term := got.Suites[1].Cases[0]
	assert.Equal(t, "terminate", term.Name)
	assert.Equal(t, "scenarios.hardening", term.Class)
	assert.Contains(t, term.Props, junitProperty{"tier", "hardening"})
	require.NotNil(t, term.Failure)
	assert.Equal(t, "still open", term.Failure.Message)
	assert.True(t, strings.HasSuffix(term.Failure.Body, "repro: harness run --scenario terminate"), term.Failure.Body)
	assert.Equal(t, "not run: interrupted", got.Suites[1].Cases[2].Skipped.Message)
	// The attachment line Jenkins and GitLab read.
	assert.Equal(t, "[[ATTACHMENT|/tmp/a/terminate/page-1.png]]\n", term.SystemOut)
	assert.Empty(t, got.Suites[0].Cases[0].SystemOut)
}

func TestJSONLine(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteJSON(&b, someResults[1]))
	assert.Equal(t, 1, strings.Count(b.String(), "\n"), "one line")
	var m map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &m))
	for _, k := range []string{"name", "tier", "status", "reason", "repro", "seconds", "artifacts"} {
		assert.Contains(t, m, k)
	}
	assert.NotContains(t, m, "Log", "logs stay out of the JSON line")
}

func TestFirstLineOfATestifyFailure(t *testing.T) {
	msg := "\n\tError Trace:\t/work/scenarios/terminate.go:35\n\tError:      \tReceived unexpected error:\n\t            \tproxy under test exited (exit status 3)\n\tTest:       \tTestScenarios/terminate\n\tMessages:   \tterminate session 5\n"
	assert.Equal(t, "terminate session 5: Received unexpected error: proxy under test exited (exit status 3)", firstLine(msg))
	assert.Equal(t, "plain", firstLine("plain\nmore"))
}

// A missing program or package file names the Debian package to install.
func TestMissingNamesThePackage(t *testing.T) {
	for _, c := range []struct{ need, want string }{
		{"no-such-program-xyz:chromium", "no-such-program-xyz is not installed (Debian package chromium; run make deps)"},
		{"/no/such/dir/main.js:spice-html5", "/no/such/dir/main.js is missing (Debian package spice-html5; run make deps)"},
		{"sh:dash", ""},
	} {
		got := Missing(Scenario{Name: "x", Needs: []string{c.need}})
		assert.Equal(t, c.want, got, c.need)
	}
}
