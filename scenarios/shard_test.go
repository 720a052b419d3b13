package scenarios

import (
	"bytes"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The shards of a split run every registered scenario exactly once,
// with or without durations, for any N.
func TestShardsCoverEveryScenarioOnce(t *testing.T) {
	all := All()
	durations := map[string]time.Duration{}
	for i, s := range all {
		if i%3 != 0 { // a report that does not know every scenario
			durations[s.Name] = time.Duration(1+(i*7)%23) * time.Second
		}
	}
	for _, d := range []map[string]time.Duration{nil, durations} {
		for n := 1; n <= 5; n++ {
			seen := map[string]int{}
			for k := 1; k <= n; k++ {
				for _, s := range Shard(all, ShardSpec{k, n}, d) {
					seen[s.Name]++
				}
			}
			for _, s := range all {
				if seen[s.Name] != 1 {
					t.Errorf("durations %v, N=%d: %s runs %d times", d != nil, n, s.Name, seen[s.Name])
				}
			}
			if len(seen) != len(all) {
				t.Errorf("N=%d: %d scenarios across the shards, %d registered", n, len(seen), len(all))
			}
		}
	}
	// Balanced by durations: no shard carries more than the others plus
	// the longest scenario.
	var longest time.Duration
	for _, d := range durations {
		longest = max(longest, d)
	}
	loads := make([]time.Duration, 4)
	for k := range loads {
		for _, s := range Shard(all, ShardSpec{k + 1, 4}, durations) {
			if d, ok := durations[s.Name]; ok {
				loads[k] += d
			}
		}
	}
	sort.Slice(loads, func(i, j int) bool { return loads[i] < loads[j] })
	assert.LessOrEqual(t, loads[3]-loads[0], 2*longest, "shard loads %v", loads)
}

func TestParseShard(t *testing.T) {
	sp, err := ParseShard("2/4")
	require.NoError(t, err)
	assert.Equal(t, ShardSpec{2, 4}, sp)
	for _, bad := range []string{"", "2", "0/4", "5/4", "a/b", "1/0", "-1/2"} {
		_, err := ParseShard(bad)
		assert.Error(t, err, bad)
	}
}

// Reports of two shards, merged, hold the same cases as the report of
// the unsharded run: JUnit and JSON, read back and written again.
func TestMergedShardsEqualTheUnshardedReport(t *testing.T) {
	all := All()
	statuses := []Status{Passed, Failed, Skipped, NotRun}
	result := func(i int, s Scenario) Result {
		r := Result{Name: s.Name, Tier: s.Tier, Exercises: s.Exercises, Status: statuses[i%len(statuses)], Target: "exec ./p",
			Duration: time.Duration(i+1) * 100 * time.Millisecond}
		r.Seconds = r.Duration.Seconds()
		switch r.Status {
		case Failed:
			r.Reason, r.Log, r.Repro = "unexpected x (-want +got): -1 +2", []string{"line one", "line two"}, "harness run --scenario "+s.Name
		case Skipped, NotRun:
			r.Reason = "because " + s.Name
		}
		return r
	}
	var unsharded []Result
	byName := map[string]Result{}
	for i, s := range all {
		r := result(i, s)
		unsharded = append(unsharded, r)
		byName[s.Name] = r
	}
	started := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, format := range []string{"junit", "json"} {
		t.Run(format, func(t *testing.T) {
			write := func(rs []Result) *bytes.Buffer {
				var b bytes.Buffer
				if format == "junit" {
					require.NoError(t, WriteJUnit(&b, "exec ./p", started, rs))
				} else {
					require.NoError(t, WriteJSONLines(&b, rs))
				}
				return &b
			}
			var reps []*Report
			for k := 1; k <= 2; k++ {
				var rs []Result
				for _, s := range Shard(all, ShardSpec{k, 2}, nil) {
					rs = append(rs, byName[s.Name])
				}
				rep, err := ReadReport(write(rs))
				require.NoError(t, err)
				reps = append(reps, rep)
			}
			merged, err := Merge(reps...)
			require.NoError(t, err)
			want, err := ReadReport(write(unsharded))
			require.NoError(t, err)
			assert.Equal(t, "exec ./p", merged.Target)
			key := func(rs []Result) []string {
				var out []string
				for _, r := range rs {
					out = append(out, fmt.Sprintf("%s %s %s %s %q %s %v", r.Tier, r.Name, r.Status, r.Exercises, r.Reason, r.Repro, r.Log))
				}
				sort.Strings(out)
				return out
			}
			if d := cmp.Diff(key(want.Results), key(merged.Results)); d != "" {
				t.Errorf("unexpected merged cases (-unsharded +merged):\n%s", d)
			}
			// Written again, the merged report is the unsharded one.
			if format == "junit" {
				if d := cmp.Diff(write(unsharded).String(), write(merged.Results).String()); d != "" {
					t.Errorf("unexpected merged JUnit (-unsharded +merged):\n%s", d)
				}
			}
			_, err = Merge(reps[0], reps[0])
			var de *DuplicateError
			require.ErrorAs(t, err, &de, "a shard merged twice")
		})
	}
	_, err := ReadReport(bytes.NewReader([]byte("hello")))
	assert.ErrorContains(t, err, "not a report")
}
