package main

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRSSSlope(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var xs []snapshot
	for i := range 7 {
		// 3 MiB a minute, sampled every 10 s, with alternating noise.
		noise := int64(i%2) << 18
		xs = append(xs, snapshot{at: t0.Add(time.Duration(i) * 10 * time.Second), rss: 40<<20 + int64(i)*(1<<19) + noise})
	}
	if got := rssSlope(xs); math.Abs(got-3) > 0.1 {
		t.Errorf("unexpected slope (-want +got):\n%s", cmp.Diff(3.0, got))
	}
	if got := rssSlope(xs[:2]); !math.IsNaN(got) {
		t.Errorf("unexpected slope of 2 samples (-want +got):\n%s", cmp.Diff("NaN", got))
	}
}

func TestQuantiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	p50, p99, mx := quantiles(ds)
	if diff := cmp.Diff([]time.Duration{51 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}, []time.Duration{p50, p99, mx}); diff != "" {
		t.Errorf("unexpected quantiles (-want +got):\n%s", diff)
	}
}
