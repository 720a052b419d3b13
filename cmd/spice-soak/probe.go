package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
)

// snapshot is the harness process at one moment.
type snapshot struct {
	at         time.Time
	rss        int64 // bytes, /proc/PID/stat
	fds        int   // /proc/PID/fd
	goroutines int   // go_goroutines from its /metrics
	heapInuse  int64 // go_memstats_heap_inuse_bytes
	stackInuse int64 // go_memstats_stack_inuse_bytes
	// The proxy's own gauges and counters.
	handshaking int // connections accepted and not relaying
	channels    int // relaying channels
	refused     int // spice_proxy_connections_refused_total
}

func (s snapshot) String() string {
	return fmt.Sprintf("RSS %5.1f MiB  fds %4d  goroutines %4d  (Go heap in use %5.1f MiB, stacks %4.1f MiB; handshaking %3d, channels %2d)",
		mib(s.rss), s.fds, s.goroutines, mib(s.heapInuse), mib(s.stackInuse), s.handshaking, s.channels)
}

// measure reads the harness's RSS and fds from /proc and its metrics.
func measure(ctx context.Context, l *lane) (snapshot, error) {
	s := snapshot{at: time.Now()}
	p, err := procfs.NewProc(l.pid())
	if err != nil {
		return s, err
	}
	st, err := p.Stat()
	if err != nil {
		return s, err
	}
	s.rss = int64(st.ResidentMemory())
	if s.fds, err = p.FileDescriptorsLen(); err != nil {
		return s, err
	}
	fams, err := l.metrics(ctx)
	if err != nil {
		return s, err
	}
	s.goroutines = int(sum(fams, "go_goroutines"))
	s.heapInuse = int64(sum(fams, "go_memstats_heap_inuse_bytes"))
	s.stackInuse = int64(sum(fams, "go_memstats_stack_inuse_bytes"))
	s.channels = int(sum(fams, "spice_proxy_channels_active"))
	s.handshaking = int(sum(fams, "spice_proxy_connections_active")) - s.channels
	s.refused = int(sum(fams, "spice_proxy_connections_refused_total"))
	return s, nil
}

// metrics scrapes the lane's /metrics (served by its API).
func (l *lane) metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	b, _, err := l.get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(b))
}

// sum adds every series of a counter or gauge family whose labels
// include the given name, value pairs.
func sum(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	var v float64
	f := fams[name]
	if f == nil {
		return 0
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		v += m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue()
	}
	return v
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
		}
		if !found {
			return false
		}
	}
	return true
}

// handshakeResults is spice_proxy_handshakes_total by result.
func handshakeResults(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range fams["spice_proxy_handshakes_total"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "result" {
				out[lp.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// sampler measures the harness every interval until stopped, for RSS
// slopes and peaks.
type sampler struct {
	mu      sync.Mutex
	samples []snapshot
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func startSampler(ctx context.Context, l *lane, every time.Duration) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if snap, err := measure(ctx, l); err == nil {
				s.mu.Lock()
				s.samples = append(s.samples, snap)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// close stops the sampler and waits for it; it may be called again.
func (s *sampler) close() { s.once.Do(func() { close(s.stop) }); <-s.done }

// between returns the samples taken in [from, to].
func (s *sampler) between(from, to time.Time) []snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []snapshot
	for _, x := range s.samples {
		if !x.at.Before(from) && !x.at.After(to) {
			out = append(out, x)
		}
	}
	return out
}

// rssSlope is the least-squares slope of RSS over the samples, in MiB a
// minute (NaN with fewer than 3 samples).
func rssSlope(xs []snapshot) float64 {
	if len(xs) < 3 {
		return math.NaN()
	}
	var sx, sy, sxx, sxy float64
	n := float64(len(xs))
	for _, x := range xs {
		t := x.at.Sub(xs[0].at).Minutes()
		y := float64(x.rss) / (1 << 20)
		sx, sy, sxx, sxy = sx+t, sy+y, sxx+t*t, sxy+t*y
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// peak is the largest value of f over the samples.
func peak(xs []snapshot, f func(snapshot) int) int {
	m := 0
	for _, x := range xs {
		m = max(m, f(x))
	}
	return m
}

// listing describes GET /session?...: items over all pages, pages, and
// the bytes of the first (default) page.
func listing(ctx context.Context, l *lane, query string) (items, pages, firstBytes int, err error) {
	path := "/session" + query
	for path != "" {
		b, h, err := l.get(ctx, path)
		if err != nil {
			return 0, 0, 0, err
		}
		if pages == 0 {
			firstBytes = len(b)
		}
		pages++
		items += strings.Count(string(b), `"id":`)
		path = ""
		if link := h.Get("Link"); link != "" {
			if i, j := strings.IndexByte(link, '<'), strings.IndexByte(link, '>'); i >= 0 && j > i {
				path = link[i+1 : j]
			}
		}
	}
	return items, pages, firstBytes, nil
}
