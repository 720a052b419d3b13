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
	{Name: "pixels", Tier: Core, Status: Passed, Exercises: ProxySPICE | QemuDirect, Duration: 1500 * time.Millisecond},
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
core         1 passed,   0 failed,   0 skipped,   0 not run (1 through the proxy's SPICE path)
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

// A core tier whose scenarios through the proxy's SPICE path all skipped
// is no plain pass, however many other scenarios passed.
func TestSummaryCountsSurfacesApart(t *testing.T) {
	rs := []Result{
		{Name: "a", Tier: Core, Status: Passed, Exercises: ProxyAPI},
		{Name: "b", Tier: Core, Status: Passed, Exercises: QemuDirect},
		{Name: "c", Tier: Core, Status: Passed, Exercises: ProxyAPI | QemuDirect},
		{Name: "d", Tier: Core, Status: Skipped, Exercises: ProxySPICE, Reason: "spicy-screenshot is not installed"},
		{Name: "e", Tier: Hardening, Status: Passed, Exercises: ProxySPICE},
	}
	s := Summarize(rs)
	var b bytes.Buffer
	s.Write(&b, "")
	want := `core         3 passed,   0 failed,   1 skipped,   0 not run (2 API only, 1 qemu direct)
hardening    1 passed,   0 failed,   0 skipped,   0 not run (1 through the proxy's SPICE path)
total        4 passed,   0 failed,   1 skipped,   0 not run
INCOMPLETE: the proxy's SPICE path was not exercised: none of the 1 core scenarios through it passed (see the skipped and not run ones above)
`
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("unexpected summary (-want +got):\n%s", d)
	}
	assert.True(t, s.OK(), "nothing failed")
	assert.False(t, s.Passes(), "the SPICE path was not exercised")
	rs[3].Status = Passed
	assert.Equal(t, "PASS", Summarize(rs).Verdict())
	assert.Equal(t, "PASS (no core scenario through the proxy's SPICE path was selected)", Summarize(rs[:3]).Verdict())
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
	for _, k := range []string{"name", "tier", "status", "reason", "repro", "seconds", "exercises", "artifacts"} {
		assert.Contains(t, m, k)
	}
	assert.NotContains(t, m, "Log", "logs stay out of the JSON line")
}

func TestReasonIsTheInformativeLine(t *testing.T) {
	for _, tc := range []struct{ name, msg, want string }{
		{"testify NoError",
			"\n\tError Trace:\t/work/scenarios/terminate.go:35\n\tError:      \tReceived unexpected error:\n\t            \tproxy under test exited (exit status 3)\n\tTest:       \tTestScenarios/terminate\n\tMessages:   \tterminate session 5\n",
			"terminate session 5: Received unexpected error: proxy under test exited (exit status 3)"},
		{"testify Equal, its Diff block left to the log",
			"\n\tError Trace:\t/w/x.go:1\n\tError:      \tNot equal: \n\t            \texpected: \"a\"\n\t            \tactual  : \"b\"\n\t            \t\n\t            \tDiff:\n\t            \t--- Expected\n\t            \t+++ Actual\n\t            \t@@ -1 +1 @@\n\t            \t-a\n\t            \t+b\n\tTest:       \tTestX\n\tMessages:   \theader X-Y\n",
			`header X-Y: Not equal: expected: "a" actual : "b"`},
		{"a cmp diff: its header and the changed lines",
			"unexpected link outcome (-want +got):\n  scenarios.linkOutcome{\n  \tStep: \"link result\",\n- \tCode: 8,\n+ \tCode: 7,\n  }\nerror: spice: link display:0: link result: PERMISSION_DENIED (7)",
			"unexpected link outcome (-want +got): - Code: 8,; + Code: 7,; error: spice: link display:0: link result: PERMISSION_DENIED (7)"},
		{"a header line ending with a colon keeps what follows",
			"spicy-screenshot failed:\nexit status 1\n(main channel event 23: ERROR_AUTH)", "spicy-screenshot failed: exit status 1; (main channel event 23: ERROR_AUTH)"},
		{"plain", "plain\nmore", "plain"},
	} {
		if got := reasonOf(tc.msg); got != tc.want {
			t.Errorf("%s: unexpected reason (-want +got):\n-%s\n+%s", tc.name, tc.want, got)
		}
	}
	long := reasonOf(strings.Repeat("x", 2*maxReason))
	assert.LessOrEqual(t, len(long), maxReason+len("…"))
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
