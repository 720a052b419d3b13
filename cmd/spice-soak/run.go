package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"
)

// Passing criteria.
const (
	// badMagicBound: bad magic must be refused in well under the 10 s
	// handshake deadline it used to wait for.
	badMagicBound = 50 * time.Millisecond
	// fdSlack, goroutineSlack: "back to baseline" after idle.
	fdSlack, goroutineSlack = 2, 2
	// rssSlopeBound: RSS growth in the steady state of the abuse phase
	// (it grew 2.8 MiB/min when ended sessions were kept for the token
	// lifetime; the first minute is the heap growing to its load).
	rssSlopeBound = 1.0 // MiB a minute
	// rssIdleSlack: RSS after idle may not exceed its level at the end of
	// the abuse phase by more than this.
	rssIdleSlack = 2 << 20
	// grace: the store keeps ended sessions this long (store.DefaultEndedRetention).
	grace = 30 * time.Second
)

type phase struct {
	name     string
	from, to time.Time
	end      snapshot
	clients  tally
	load     string // the machine's load average at the end
}

func run(ctx context.Context, o options) (bool, error) {
	dir, err := os.MkdirTemp("", "spice-soak-")
	if err != nil {
		return false, err
	}
	passed := false
	defer func() {
		if o.keep || !passed {
			progress("work directory %s kept (harness.log, failed-*.log)", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	progress("starting %s up --vms %d --allow-plain --json", o.harness, o.vms)
	bootStart := time.Now()
	l, err := startLane(ctx, o, dir)
	if err != nil {
		return false, err
	}
	stopped := false
	defer func() {
		if !stopped {
			l.kill()
		}
	}()
	progress("lane ready in %v: API %s, proxy plain %d TLS %d, pid %d", time.Since(bootStart).Round(100*time.Millisecond),
		l.ready.API, l.ready.Proxy.Port, l.ready.Proxy.TLSPort, l.pid())

	// Reference captures, straight to qemu.
	loops := make([]*vmLoop, len(l.ready.Consoles))
	for i, c := range l.ready.Consoles {
		sh, err := newShooter(dir, c.Name)
		if err != nil {
			return false, err
		}
		ref, err := reference(ctx, l, sh, c.Source, c.UUID)
		if err != nil {
			return false, fmt.Errorf("%s: direct reference capture: %w", c.Name, err)
		}
		if ref.Blank() {
			return false, fmt.Errorf("%s: the direct reference capture is blank", c.Name)
		}
		loops[i] = &vmLoop{name: c.Name, l: l, vv: c.VVURL, ref: ref, sh: sh}
	}
	progress("%d direct reference captures taken", len(loops))

	start, err := measure(ctx, l)
	if err != nil {
		return false, err
	}
	samp := startSampler(ctx, l, 2*time.Second)
	defer samp.close()

	var phases []phase
	runPhase := func(name string, d time.Duration, hostileRate float64) (*hostile, error) {
		progress("phase %s: %v", name, d)
		pctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		p := phase{name: name, from: time.Now()}
		var wg sync.WaitGroup
		for _, v := range loops {
			if !o.clients {
				break
			}
			wg.Add(1)
			go func() { defer wg.Done(); v.run(pctx) }()
		}
		var h *hostile
		if hostileRate > 0 {
			if h, err = newHostile(l, hostileRate); err != nil {
				return nil, err
			}
			wg.Add(1)
			go func() { defer wg.Done(); h.run(pctx) }()
		}
		<-pctx.Done()
		wg.Wait()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p.to = time.Now()
		p.clients = count(loops)
		if p.end, err = measure(ctx, l); err != nil {
			return nil, err
		}
		p.load = loadAvg()
		phases = append(phases, p)
		progress("phase %s: %d sessions, %d failures, %d wrong pictures; %s", name, p.clients.sessions, p.clients.failures, p.clients.mismatches, p.end)
		return h, nil
	}
	if _, err := runPhase("clean", o.clean, 0); err != nil {
		return false, err
	}
	h, err := runPhase("abuse", o.abuse, o.rate)
	if err != nil {
		return false, err
	}
	abuse := phases[1]
	// What a listing costs and what the store holds at the end of abuse.
	endedAtAbuse, pagesAtAbuse, _, err := listing(ctx, l, "?state=ended&limit=1000")
	if err != nil {
		return false, err
	}
	_, _, defaultPage, err := listing(ctx, l, "")
	if err != nil {
		return false, err
	}
	fams, err := l.metrics(ctx)
	if err != nil {
		return false, err
	}
	results := handshakeResults(fams)

	progress("phase idle: %v", o.idle)
	select {
	case <-time.After(o.idle):
	case <-ctx.Done():
		return false, ctx.Err()
	}
	idle, err := measure(ctx, l)
	if err != nil {
		return false, err
	}
	endedAfterIdle, _, _, err := listing(ctx, l, "?state=ended&limit=1000")
	if err != nil {
		return false, err
	}
	samp.close()
	progress("stopping the harness (SIGINT)")
	took, left, stopErr := l.stop()
	stopped = true

	// Report.
	var v verdict
	w := os.Stdout
	fmt.Fprintf(w, "\nspice-soak: harness up --vms %d --allow-plain; clean %v, abuse %v at %.0f hostile/s, idle %v\n\n",
		o.vms, o.clean, o.abuse, o.rate, o.idle)
	fmt.Fprintf(w, "real clients (spicy-screenshot through the proxy, TLS and plain alternating, one loop per VM):\n")
	for _, p := range phases {
		fmt.Fprintf(w, "  %-6s %6d sessions  %3d failures  %3d wrong pictures  (%.1f/s, mean capture %v)\n", p.name,
			p.clients.sessions, p.clients.failures, p.clients.mismatches, float64(p.clients.sessions)/p.to.Sub(p.from).Seconds(),
			p.clients.meanCapture.Round(time.Millisecond))
		if p.clients.firstErr != "" {
			fmt.Fprintf(w, "         first failure: %s\n", p.clients.firstErr)
		}
		fmt.Fprintf(w, "         machine load average at the end: %s\n", p.load)
		v.check(!o.clients || p.clients.sessions > 0, "%s: no real-client session ran", p.name)
		v.check(p.clients.failures == 0, "%s: %d real-client failures", p.name, p.clients.failures)
		v.check(p.clients.mismatches == 0, "%s: %d pictures differ from the direct reference", p.name, p.clients.mismatches)
	}

	kinds, openErrs := h.summary()
	total := 0
	fmt.Fprintf(w, "\nhostile connections (abuse phase), by kind and how each ended:\n")
	for _, k := range kinds {
		total += k.n
		var ends []string
		for e, n := range k.ends {
			ends = append(ends, fmt.Sprintf("%d %s", n, e))
			v.check(!strings.HasPrefix(e, "open") && !strings.HasPrefix(e, "the whole link") && !strings.HasPrefix(e, "error") && e != "data",
				"%s: %d connections ended as %q", k.kind, n, e)
		}
		sort.Strings(ends)
		fmt.Fprintf(w, "  %-36s %5d  connect to close p50 %8v max %8v  %s\n", k.kind, k.n, k.tookP50.Round(time.Millisecond),
			k.tookMax.Round(time.Millisecond), strings.Join(ends, "; "))
		if k.answerMax > 0 {
			fmt.Fprintf(w, "  %-36s        refused after its 4 bytes in p50 %v, p99 %v, max %v\n", "", k.answerP50.Round(time.Microsecond),
				k.answerP99.Round(time.Microsecond), k.answerMax.Round(time.Microsecond))
			v.check(k.answerP99 < badMagicBound, "bad magic refused in %v at the 99th percentile (bound %v)", k.answerP99, badMagicBound)
		}
	}
	fmt.Fprintf(w, "  %d in all (%.1f/s over the %v of the phase); %d could not connect\n", total, float64(total)/o.abuse.Seconds(), o.abuse, openErrs)
	v.check(openErrs == 0, "%d hostile connections could not connect", openErrs)
	var rs []string
	for r, n := range results {
		rs = append(rs, fmt.Sprintf("%s %.0f", r, n))
	}
	sort.Strings(rs)
	fmt.Fprintf(w, "  the proxy's handshake results (whole run): %s\n", strings.Join(rs, ", "))
	abuseSamples := samp.between(abuse.from, abuse.to)
	fmt.Fprintf(w, "  peak in handshake %d; refused at accept (handshake caps) %d\n",
		peak(abuseSamples, func(s snapshot) int { return s.handshaking }), abuse.end.refused)

	fmt.Fprintf(w, "\nthe harness process (RSS and fds from /proc/%d, goroutines from /metrics):\n", l.pid())
	fmt.Fprintf(w, "  %-22s %s\n", "start", start)
	for _, p := range phases {
		fmt.Fprintf(w, "  %-22s %s\n", "end of "+p.name, p.end)
	}
	fmt.Fprintf(w, "  %-22s %s\n", fmt.Sprintf("after %v idle", o.idle), idle)
	// The steady state: hostile connections are held 10 s, ended
	// sessions the grace, and the Go heap settles after them; measured
	// over the second half of the phase (or from grace+15 s if later).
	from := abuse.from.Add(max(grace+15*time.Second, o.abuse/2))
	slope := rssSlope(samp.between(from, abuse.to))
	if math.IsNaN(slope) {
		fmt.Fprintf(w, "  RSS slope over the second half of the abuse phase: n/a (phase too short)\n")
	} else {
		fmt.Fprintf(w, "  RSS slope over the second half of the abuse phase (steady state, past the %v grace): %+.2f MiB/min\n", grace, slope)
	}
	fmt.Fprintf(w, "  ended sessions held: %d at the end of abuse (%d pages of 1000), %d after idle; GET /session (one default page): %d bytes\n",
		endedAtAbuse, pagesAtAbuse, endedAfterIdle, defaultPage)
	fmt.Fprintf(w, "  shutdown (SIGINT): %v; child processes left: %d\n", took.Round(10*time.Millisecond), len(left))
	if o.verbose {
		fmt.Fprintf(w, "\nsamples (every 10 s):\n")
		var last time.Time
		for _, x := range samp.between(start.at, time.Now()) {
			if x.at.Sub(last) >= 10*time.Second {
				fmt.Fprintf(w, "  %s  %s\n", x.at.Format("15:04:05"), x)
				last = x.at
			}
		}
	}
	v.check(idle.fds <= start.fds+fdSlack, "fds after idle %d, start %d (slack %d)", idle.fds, start.fds, fdSlack)
	v.check(idle.goroutines <= start.goroutines+goroutineSlack, "goroutines after idle %d, start %d (slack %d)", idle.goroutines, start.goroutines, goroutineSlack)
	v.check(math.IsNaN(slope) || slope <= rssSlopeBound, "RSS grew %.2f MiB/min over the second half of the abuse phase (bound %.1f)", slope, rssSlopeBound)
	v.check(idle.rss <= abuse.end.rss+rssIdleSlack, "RSS after idle %.1f MiB, end of abuse %.1f MiB", mib(idle.rss), mib(abuse.end.rss))
	v.check(endedAfterIdle == 0, "%d ended sessions still held after %v idle (grace %v)", endedAfterIdle, o.idle, grace)
	v.check(stopErr == nil, "harness exit: %v", stopErr)
	v.check(len(left) == 0, "processes left after shutdown: %v", left)

	fmt.Fprintln(w)
	if len(v.failed) == 0 {
		fmt.Fprintln(w, "verdict: PASS (0 real-client failures or wrong pictures, every hostile connection closed, bad magic refused under",
			badMagicBound.String()+" (p99), fds and goroutines back to baseline after idle, RSS flat once the grace passed)")
		passed = true
		return true, nil
	}
	fmt.Fprintln(w, "verdict: FAIL")
	for _, f := range v.failed {
		fmt.Fprintln(w, "  -", f)
	}
	return false, nil
}

type verdict struct{ failed []string }

func (v *verdict) check(ok bool, format string, args ...any) {
	if !ok {
		v.failed = append(v.failed, fmt.Sprintf(format, args...))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// loadAvg is the machine's 1, 5 and 15 minute load averages.
func loadAvg() string {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return "?"
	}
	l, err := fs.LoadAvg()
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.2f %.2f %.2f (%d CPUs)", l.Load1, l.Load5, l.Load15, runtime.NumCPU())
}
