package scenarios

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

// Summary counts results per tier and status.
type Summary struct {
	Counts map[Tier]map[Status]int
	Total  map[Status]int
}

// Summarize counts rs.
func Summarize(rs []Result) Summary {
	s := Summary{Counts: map[Tier]map[Status]int{}, Total: map[Status]int{}}
	for _, r := range rs {
		if s.Counts[r.Tier] == nil {
			s.Counts[r.Tier] = map[Status]int{}
		}
		s.Counts[r.Tier][r.Status]++
		s.Total[r.Status]++
	}
	return s
}

// OK reports whether nothing failed and everything ran.
func (s Summary) OK() bool { return s.Total[Failed] == 0 && s.Total[NotRun] == 0 }

// Write prints the conformance matrix: a line per tier and a total.
func (s Summary) Write(w io.Writer, target string) {
	if target != "" {
		fmt.Fprintf(w, "proxy under test: %s\n", target)
	}
	line := func(name string, c map[Status]int) {
		fmt.Fprintf(w, "%-10s %3d passed, %3d failed, %3d skipped, %3d not run\n", name, c[Passed], c[Failed], c[Skipped], c[NotRun])
	}
	for _, t := range Tiers {
		if c := s.Counts[t]; c != nil {
			line(string(t), c)
		}
	}
	line("total", s.Total)
	verdict := "PASS"
	if !s.OK() {
		verdict = "FAIL"
	}
	fmt.Fprintln(w, verdict)
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

// WriteJUnit writes rs as one JUnit test suite per tier: one testcase
// per scenario with its tier (and the hypervisor host it ran on, if any)
// as properties, the failure message, the log
// and the reproduction command. A scenario that did not run is a skipped
// testcase whose message says so.
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
				Properties: []junitProperty{{"tier", string(tier)}, {"status", string(r.Status)}}}
			if r.Host != "" {
				c.Properties = append(c.Properties, junitProperty{"host", r.Host})
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
				c.Skipped = &junitMessage{Message: "not run: " + r.Reason}
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
