package proxy

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHandshakeLimitValues(t *testing.T) {
	type limits struct{ Global, PerSource int }
	for _, tc := range []struct {
		set, want limits
	}{
		{limits{0, 0}, limits{DefaultMaxHandshakes, DefaultMaxHandshakesPerSource}},
		{limits{-1, -1}, limits{-1, -1}}, // negative: no cap (admitLocked checks > 0)
		{limits{5, 2}, limits{5, 2}},
	} {
		p := &Proxy{MaxHandshakes: tc.set.Global, MaxHandshakesPerSource: tc.set.PerSource}
		if diff := cmp.Diff(tc.want, limits{p.maxHandshakes(), p.maxHandshakesPerSource()}); diff != "" {
			t.Errorf("unexpected limits for %+v (-want +got):\n%s", tc.set, diff)
		}
	}
}

func TestRateLog(t *testing.T) {
	var r rateLog
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	type step struct {
		key  string
		at   time.Duration
		n    int
		logs bool
	}
	var got []step
	for _, s := range []step{
		{key: "a", at: 0}, {key: "a", at: time.Second}, {key: "b", at: time.Second},
		{key: "a", at: 2 * time.Second}, {key: "a", at: refusalLogInterval}, {key: "a", at: refusalLogInterval + time.Second},
	} {
		s.n, s.logs = r.allow(s.key, t0.Add(s.at))
		got = append(got, s)
	}
	want := []step{
		{"a", 0, 1, true}, // the first one logs
		{"a", time.Second, 0, false},
		{"b", time.Second, 1, true}, // keys are independent
		{"a", 2 * time.Second, 0, false},
		{"a", refusalLogInterval, 3, true}, // the interval passed: counts the two held back and itself
		{"a", refusalLogInterval + time.Second, 0, false},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(step{})); diff != "" {
		t.Errorf("unexpected log decisions (-want +got):\n%s", diff)
	}
}
