package scenarios

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ShardSpec is one shard of a run split over N runners: K of N, 1-based.
type ShardSpec struct{ K, N int }

// ParseShard reads "K/N" (1 ≤ K ≤ N).
func ParseShard(s string) (ShardSpec, error) {
	ks, ns, ok := strings.Cut(s, "/")
	k, kerr := strconv.Atoi(ks)
	n, nerr := strconv.Atoi(ns)
	if !ok || kerr != nil || nerr != nil || n < 1 || k < 1 || k > n {
		return ShardSpec{}, fmt.Errorf("shard %q: want K/N with 1 ≤ K ≤ N, e.g. 2/4", s)
	}
	return ShardSpec{k, n}, nil
}

func (s ShardSpec) String() string { return fmt.Sprintf("%d/%d", s.K, s.N) }

// Shard returns the scenarios of ss that shard sp runs. Every runner of a
// CI matrix given the same scenarios and durations computes the same
// split, so the N shards together run each scenario exactly once (each
// scenario is its own lane, so splitting by scenario splits the lanes).
//
// Without durations the scenarios, sorted by name, are dealt round-robin.
// With durations (seconds by scenario name, from an earlier report) they
// are balanced: longest first, each to the shard with the least time so
// far (ties to the lowest shard); a scenario the report does not know
// counts as the median of those it does.
func Shard(ss []Scenario, sp ShardSpec, durations map[string]time.Duration) []Scenario {
	all := slices.Clone(ss)
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	var out []Scenario
	if len(durations) == 0 {
		for i, s := range all {
			if i%sp.N == sp.K-1 {
				out = append(out, s)
			}
		}
		return out
	}
	var known []time.Duration
	for _, s := range all {
		if d, ok := durations[s.Name]; ok {
			known = append(known, d)
		}
	}
	var median time.Duration
	if len(known) > 0 {
		slices.Sort(known)
		median = known[len(known)/2]
	}
	cost := func(s Scenario) time.Duration {
		if d, ok := durations[s.Name]; ok {
			return d
		}
		return median
	}
	sort.SliceStable(all, func(i, j int) bool { return cost(all[i]) > cost(all[j]) })
	load := make([]time.Duration, sp.N)
	for _, s := range all {
		least := 0
		for i := range load {
			if load[i] < load[least] {
				least = i
			}
		}
		load[least] += cost(s)
		if least == sp.K-1 {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Durations reads each scenario's duration from results (an earlier
// report), for Shard.
func Durations(rs []Result) map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, r := range rs {
		if r.Status == Passed || r.Status == Failed {
			m[r.Name] = r.Duration
		}
	}
	return m
}
