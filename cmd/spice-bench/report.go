package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// report prints figures as "name: value (ratio vs direct)".
type report struct{ w io.Writer }

// line prints a figure with no direct counterpart.
func (r *report) line(name, value string) {
	fmt.Fprintf(r.w, "%s: %s\n", name, value)
}

// ratio prints a figure and its ratio to the direct one it was measured
// against (vs names it when it is not plain "direct").
func (r *report) ratio(name, value string, ratio float64, vs string) {
	if vs == "" {
		vs = "direct"
	}
	fmt.Fprintf(r.w, "%s: %s (%.2fx vs %s)\n", name, value, ratio, vs)
}

// median of xs (xs is not modified).
func median(xs []float64) float64 { return percentile(xs, 50) }

// percentile p (0–100) of xs by linear interpolation between closest
// ranks (xs is not modified); NaN when empty.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	pos := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMS(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func fmtMBps(v float64) string { return fmt.Sprintf("%.0f MB/s", v) }

func fmtKiB(v float64) string { return fmt.Sprintf("%.1f KiB", v) }

// ratios returns b[i]/a[i] for each round.
func ratios(a, b []float64) []float64 {
	out := make([]float64, 0, len(a))
	for i := range min(len(a), len(b)) {
		if a[i] > 0 {
			out = append(out, b[i]/a[i])
		}
	}
	return out
}
