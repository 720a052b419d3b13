package scenarios

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

// Summary counts results per tier and status, and the passes per tier by
// the surface they rest on.
type Summary struct {
	Counts map[Tier]map[Status]int
	Total  map[Status]int
	// Passed counts each tier's passes under their Exercises' Primary.
	Passed map[Tier]map[Surface]int
	// Selected counts each tier's results (any status) by Primary.
	Selected map[Tier]map[Surface]int
}

// Summarize counts rs.
func Summarize(rs []Result) Summary {
	s := Summary{Counts: map[Tier]map[Status]int{}, Total: map[Status]int{}, Passed: map[Tier]map[Surface]int{}, Selected: map[Tier]map[Surface]int{}}
	for _, r := range rs {
		if s.Counts[r.Tier] == nil {
			s.Counts[r.Tier] = map[Status]int{}
			s.Passed[r.Tier] = map[Surface]int{}
			s.Selected[r.Tier] = map[Surface]int{}
		}
		s.Counts[r.Tier][r.Status]++
		s.Total[r.Status]++
		s.Selected[r.Tier][r.Exercises.Primary()]++
		if r.Status == Passed {
			s.Passed[r.Tier][r.Exercises.Primary()]++
		}
	}
	return s
}

// OK reports whether nothing failed and everything ran.
func (s Summary) OK() bool { return s.Total[Failed] == 0 && s.Total[NotRun] == 0 }

// Unexercised says why the run cannot count as a pass of the core tier
// although nothing failed: core scenarios through the proxy's SPICE path
// were selected and none of them passed (all skipped or not run). ""
// when that is not so.
func (s Summary) Unexercised() string {
	sel := s.Selected[Core][ProxySPICE]
	if sel == 0 || s.Passed[Core][ProxySPICE] > 0 {
		return ""
	}
	return fmt.Sprintf("the proxy's SPICE path was not exercised: none of the %d core scenarios through it passed (see the skipped and not run ones above)", sel)
}

// Verdict is the run's last line: PASS, FAIL, or INCOMPLETE with why
// (nothing failed, but the core tier never went through the proxy's
// SPICE path).
func (s Summary) Verdict() string {
	switch {
	case !s.OK():
		return "FAIL"
	case s.Unexercised() != "":
		return "INCOMPLETE: " + s.Unexercised()
	case s.Counts[Core] != nil && s.Selected[Core][ProxySPICE] == 0:
		return "PASS (no core scenario through the proxy's SPICE path was selected)"
	}
	return "PASS"
}

// Passes reports whether the run counts as a pass: OK and the core tier
// exercised the proxy's SPICE path when it was asked to.
func (s Summary) Passes() bool { return s.OK() && s.Unexercised() == "" }

// surfacePhrase is how a tier line names its passes by surface.
var surfacePhrase = map[Surface]string{ProxySPICE: "through the proxy's SPICE path", ProxyAPI: "API only", QemuDirect: "qemu direct"}

// Write prints the conformance matrix: a line per tier (its passes
// counted by what they rest on), a total, and the verdict.
func (s Summary) Write(w io.Writer, target string) {
	if target != "" {
		fmt.Fprintf(w, "proxy under test: %s\n", target)
	}
	line := func(name string, c map[Status]int, passed map[Surface]int) {
		fmt.Fprintf(w, "%-10s %3d passed, %3d failed, %3d skipped, %3d not run", name, c[Passed], c[Failed], c[Skipped], c[NotRun])
		if c[Passed] > 0 && passed != nil {
			var parts []string
			for _, x := range Surfaces {
				if n := passed[x]; n > 0 {
					parts = append(parts, fmt.Sprintf("%d %s", n, surfacePhrase[x]))
				}
			}
			if passed[0] > 0 {
				parts = append(parts, fmt.Sprintf("%d undeclared", passed[0]))
			}
			fmt.Fprintf(w, " (%s)", strings.Join(parts, ", "))
		}
		fmt.Fprintln(w)
	}
	for _, t := range Tiers {
		if c := s.Counts[t]; c != nil {
			line(string(t), c, s.Passed[t])
		}
	}
	line("total", s.Total, nil)
	fmt.Fprintln(w, s.Verdict())
}

// WriteJSON writes r as one JSON object on one line.
func WriteJSON(w io.Writer, r Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// MarshalJSON writes s as the list of its names.
func (s Surface) MarshalJSON() ([]byte, error) {
	names := s.Names()
	if names == nil {
		names = []string{}
	}
	return json.Marshal(names)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (s *Surface) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return err
	}
	v, err := ParseSurface(strings.Join(names, "|"))
	*s = v
	return err
}

// JUnit XML, as CI systems (Jenkins, GitLab, GitHub reporters) read it.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name       string          `xml:"name,attr"`
	Classname  string          `xml:"classname,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Failure    *junitMessage   `xml:"failure"`
	Skipped    *junitMessage   `xml:"skipped"`
	SystemOut  string          `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",chardata"`
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// notRunPrefix marks, in a JUnit skipped message, a scenario that did not
// run (JUnit has no such status).
const notRunPrefix = "not run: "

// WriteJUnit writes rs as one JUnit test suite per tier: one testcase
// per scenario with its tier, status and surfaces (and the hypervisor
// host it ran on, if any) as properties, the failure message (the
// informative line), the log and the reproduction command, and its
// artifacts as `[[ATTACHMENT|PATH]]` lines in system-out. A scenario that
// did not run is a skipped testcase whose message says so.
func WriteJUnit(w io.Writer, target string, started time.Time, rs []Result) error {
	root := junitSuites{Name: "spice-harness"}
	var total time.Duration
	for _, tier := range Tiers {
		suite := junitSuite{Name: "spice-harness." + string(tier), Timestamp: started.UTC().Format(time.RFC3339),
			Properties: []junitProperty{{"tier", string(tier)}, {"target", target}}}
		var d time.Duration
		for _, r := range rs {
			if r.Tier != tier {
				continue
			}
			c := junitCase{Name: r.Name, Classname: "scenarios." + string(tier), Time: secs(r.Duration),
				Properties: []junitProperty{{"tier", string(tier)}, {"status", string(r.Status)}, {"exercises", r.Exercises.String()}}}
			if r.Target != "" && r.Target != target {
				c.Properties = append(c.Properties, junitProperty{"target", r.Target})
			}
			if r.Host != "" {
				c.Properties = append(c.Properties, junitProperty{"host", r.Host})
			}
			for _, a := range r.Artifacts {
				// The line Jenkins' JUnit attachments plugin and GitLab
				// read from system-out.
				c.SystemOut += "[[ATTACHMENT|" + a + "]]\n"
			}
			switch r.Status {
			case Failed:
				body := strings.Join(r.Log, "\n")
				if r.Repro != "" {
					body += "\nrepro: " + r.Repro
				}
				c.Failure = &junitMessage{Message: r.Reason, Type: "failure", Body: body}
				suite.Failures++
			case Skipped:
				c.Skipped = &junitMessage{Message: r.Reason}
				suite.Skipped++
			case NotRun:
				c.Skipped = &junitMessage{Message: notRunPrefix + r.Reason}
				suite.Skipped++
			}
			suite.Tests++
			d += r.Duration
			suite.Cases = append(suite.Cases, c)
		}
		if suite.Tests == 0 {
			continue
		}
		suite.Time = secs(d)
		total += d
		root.Tests += suite.Tests
		root.Failures += suite.Failures
		root.Skipped += suite.Skipped
		root.Suites = append(root.Suites, suite)
	}
	root.Time = secs(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(root); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
