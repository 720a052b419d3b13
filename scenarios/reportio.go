package scenarios

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Report is a run's results as a report file holds them: what `harness
// run --junit` or `--json` wrote, read back (ReadReport) to merge the
// shards of a CI matrix or to balance the next split by durations.
type Report struct {
	Target  string
	Started time.Time // the earliest suite timestamp (JUnit only; zero otherwise)
	Results []Result
}

// ReadReport reads a JUnit XML report or JSON lines (one Result per
// line), telling them apart by their first byte.
func ReadReport(r io.Reader) (*Report, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) == 0:
		return &Report{}, nil
	case trimmed[0] == '<':
		return readJUnit(trimmed)
	case trimmed[0] == '{':
		return readJSONLines(trimmed)
	}
	return nil, fmt.Errorf("scenarios: not a report: want JUnit XML (harness run --junit) or JSON lines (harness run --json)")
}

func readJSONLines(data []byte) (*Report, error) {
	rep := &Report{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r Result
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("scenarios: JSON report line %d: %w", n, err)
		}
		if r.Name == "" || r.Status == "" {
			return nil, fmt.Errorf("scenarios: JSON report line %d: no name or status", n)
		}
		r.Duration = time.Duration(r.Seconds * float64(time.Second))
		if rep.Target == "" {
			rep.Target = r.Target
		}
		rep.Results = append(rep.Results, r)
	}
	return rep, sc.Err()
}

func readJUnit(data []byte) (*Report, error) {
	var root junitSuites
	if err := xml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("scenarios: JUnit report: %w", err)
	}
	rep := &Report{}
	for _, s := range root.Suites {
		if ts, err := time.Parse(time.RFC3339, s.Timestamp); err == nil && (rep.Started.IsZero() || ts.Before(rep.Started)) {
			rep.Started = ts
		}
		suiteTarget := prop(s.Properties, "target")
		if rep.Target == "" {
			rep.Target = suiteTarget
		}
		for _, c := range s.Cases {
			r := Result{Name: c.Name, Tier: Tier(prop(c.Properties, "tier")), Status: Status(prop(c.Properties, "status")), Target: suiteTarget}
			if t := prop(c.Properties, "target"); t != "" {
				r.Target = t
			}
			if r.Tier == "" {
				r.Tier = Tier(strings.TrimPrefix(c.Classname, "scenarios."))
			}
			ex, err := ParseSurface(prop(c.Properties, "exercises"))
			if err != nil {
				return nil, fmt.Errorf("scenarios: JUnit report, testcase %s: %w", c.Name, err)
			}
			r.Exercises = ex
			secs, _ := strconv.ParseFloat(c.Time, 64)
			r.Duration = time.Duration(secs * float64(time.Second))
			r.Seconds = r.Duration.Round(time.Millisecond).Seconds()
			switch {
			case c.Failure != nil:
				r.Reason = c.Failure.Message
				body := c.Failure.Body
				if i := strings.LastIndex(body, "\nrepro: "); i >= 0 {
					r.Repro = body[i+len("\nrepro: "):]
					body = body[:i]
				} else if strings.HasPrefix(body, "repro: ") {
					r.Repro, body = strings.TrimPrefix(body, "repro: "), ""
				}
				if body != "" {
					r.Log = strings.Split(body, "\n")
				}
				if r.Status == "" {
					r.Status = Failed
				}
			case c.Skipped != nil:
				r.Reason = c.Skipped.Message
				if r.Status == NotRun || (r.Status == "" && strings.HasPrefix(r.Reason, notRunPrefix)) {
					r.Status, r.Reason = NotRun, strings.TrimPrefix(r.Reason, notRunPrefix)
				} else if r.Status == "" {
					r.Status = Skipped
				}
			case r.Status == "":
				r.Status = Passed
			}
			rep.Results = append(rep.Results, r)
		}
	}
	return rep, nil
}

func prop(ps []junitProperty, name string) string {
	for _, p := range ps {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// DuplicateError: a scenario is in more than one of the reports merged
// (the shards of a matrix overlap).
type DuplicateError struct{ Names []string }

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("scenarios: %s in more than one report: the shards overlap (give every runner the same --shard N and scenarios)", strings.Join(e.Names, ", "))
}

// Merge joins reports into one, sorted by tier then name. A scenario in
// two reports is a *DuplicateError. The target is the reports' common
// one, or their names joined when they differ.
func Merge(reps ...*Report) (*Report, error) {
	out := &Report{}
	seen := map[string]bool{}
	var dups, targets []string
	for _, rep := range reps {
		if rep.Target != "" && !slices.Contains(targets, rep.Target) {
			targets = append(targets, rep.Target)
		}
		if !rep.Started.IsZero() && (out.Started.IsZero() || rep.Started.Before(out.Started)) {
			out.Started = rep.Started
		}
		for _, r := range rep.Results {
			if seen[r.Name] {
				dups = append(dups, r.Name)
				continue
			}
			seen[r.Name] = true
			out.Results = append(out.Results, r)
		}
	}
	if len(dups) > 0 {
		sort.Strings(dups)
		return nil, &DuplicateError{Names: dups}
	}
	out.Target = strings.Join(targets, "; ")
	tierIndex := map[Tier]int{}
	for i, t := range Tiers {
		tierIndex[t] = i
	}
	sort.SliceStable(out.Results, func(i, j int) bool {
		a, b := out.Results[i], out.Results[j]
		if tierIndex[a.Tier] != tierIndex[b.Tier] {
			return tierIndex[a.Tier] < tierIndex[b.Tier]
		}
		return a.Name < b.Name
	})
	return out, nil
}

// WriteJSONLines writes rs as JSON lines, one Result each.
func WriteJSONLines(w io.Writer, rs []Result) error {
	for _, r := range rs {
		if err := WriteJSON(w, r); err != nil {
			return err
		}
	}
	return nil
}
