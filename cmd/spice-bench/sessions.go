package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
)

// benchSessions opens o.sessions sessions of main, display, inputs and
// cursor at once through a proxy-helper process in front of one
// synthetic backend holding every session (spicetest MultiSession),
// keeps them all open, and reports failures, the per-channel handshake
// latency under that load and the proxy's RSS per established channel:
// (VmRSS with every channel up - VmRSS before) / channels, both read
// after a forced GC returned free memory to the OS, once the proxy had
// served one session (so one-time setup is not counted). It runs once
// per client leg (plain, TLS), each with a fresh proxy process.
func benchSessions(ctx context.Context, r *report, o *options) error {
	key, err := spice.GenerateLinkKey()
	if err != nil {
		return err
	}
	srv := &spicetest.Server{Password: randomTicket(), MultiSession: true, LinkKey: key, DisplayInitDelay: time.Millisecond}
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()
	for _, mode := range o.sessionsModes {
		if mode != "plain" && mode != "tls" {
			return fmt.Errorf("unknown client leg %q", mode)
		}
		if err := sessionsOnce(ctx, r, o, srv, mode == "tls"); err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
	}
	return nil
}

// liveSession is one open session and its channels.
type liveSession struct {
	main  *spice.Channel
	chans []*spice.Channel
}

func (s *liveSession) close() {
	for i := len(s.chans) - 1; i >= 0; i-- {
		s.chans[i].Close()
	}
	if s.main != nil {
		s.main.Close()
	}
}

func sessionsOnce(ctx context.Context, r *report, o *options, srv *spicetest.Server, secure bool) error {
	leg := "plain"
	if secure {
		leg = "tls"
	}
	syn, err := startSynthetic(ctx, srv, "")
	if err != nil {
		return err
	}
	defer syn.Close()

	// One session first: caps probes, TLS and metric setup, pools.
	d, err := syn.dialer(ctx, secure)
	if err != nil {
		return err
	}
	warm, err := openSession(ctx, d, nil)
	if err != nil {
		return fmt.Errorf("warm-up session: %w", err)
	}
	warm.close()
	if !waitFor(10*time.Second, func() bool { return srv.Sessions() == 0 && srv.Conns() == 0 }) {
		return fmt.Errorf("warm-up session still open on the backend")
	}
	time.Sleep(200 * time.Millisecond)
	before, err := syn.helper.mem(ctx, "gc")
	if err != nil {
		return err
	}
	rss0, err := syn.helper.rss()
	if err != nil {
		return err
	}

	dialers := make([]*spice.Dialer, o.sessions)
	for i := range dialers {
		if dialers[i], err = syn.dialer(ctx, secure); err != nil {
			return err
		}
	}
	par := o.sessionPar
	if par <= 0 {
		par = o.sessions
	}
	sem := make(chan struct{}, par)
	var (
		mu       sync.Mutex
		lat      []float64
		failures atomic.Int64
		firstErr error
		live     = make([]*liveSession, o.sessions)
		wg       sync.WaitGroup
	)
	progress("opening %d sessions x %d channels (%s client leg, %d at a time)", o.sessions, len(sessionChannels), leg, par)
	start := time.Now()
	for i := range o.sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var mine []float64
			s, err := openSession(ctx, dialers[i], &mine)
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, mine...)
			if err != nil {
				failures.Add(1)
				if firstErr == nil {
					firstErr = err
				}
			}
			live[i] = s
		}()
	}
	wg.Wait()
	openTime := time.Since(start)
	defer func() {
		var cw sync.WaitGroup
		for _, s := range live {
			if s != nil {
				cw.Add(1)
				go func() { defer cw.Done(); s.close() }()
			}
		}
		cw.Wait()
	}()
	channels := 0
	for _, s := range live {
		if s != nil {
			channels += 1 + len(s.chans)
		}
	}
	time.Sleep(time.Second)
	natural, err := syn.helper.rss()
	if err != nil {
		return err
	}
	after, err := syn.helper.mem(ctx, "gc")
	if err != nil {
		return err
	}
	rss1, err := syn.helper.rss()
	if err != nil {
		return err
	}

	p := fmt.Sprintf("sessions.%s.", leg)
	r.line(p+"failures", fmt.Sprintf("%d of %d sessions (%d channels established, proxy relaying %d; opened in %.1f s)",
		failures.Load(), o.sessions, channels, after.Channels, openTime.Seconds()))
	if firstErr != nil {
		r.line(p+"first_failure", oneLine(firstErr.Error()))
	}
	r.line(p+"handshake.p50", fmtMS(percentile(lat, 50)))
	r.line(p+"handshake.p99", fmtMS(percentile(lat, 99)))
	if channels > 0 {
		per := func(a, b int64) string { return fmtKiB(float64(b-a) / float64(channels) / 1024) }
		r.line(p+"rss_per_channel", per(rss0, rss1)+fmt.Sprintf(" (VmRSS %.1f → %.1f MiB after GC, %d channels)", float64(rss0)/(1<<20), float64(rss1)/(1<<20), channels))
		r.line(p+"rss_per_channel_before_gc", per(rss0, natural))
		r.line(p+"heap_per_channel", per(int64(before.HeapInuse), int64(after.HeapInuse)))
		r.line(p+"stack_per_channel", per(int64(before.StackInuse), int64(after.StackInuse)))
		r.line(p+"goroutines_per_channel", fmt.Sprintf("%.2f", float64(after.NumGoroutine-before.NumGoroutine)/float64(channels)))
	}
	return nil
}

// openSession links main, reads MAIN_INIT, then links display, inputs
// and cursor in parallel (as spice-gtk does), sends DISPLAY_INIT and
// waits for the first draw. Each link's latency (DialChannel) is
// appended to lat when lat is not nil.
func openSession(ctx context.Context, d *spice.Dialer, lat *[]float64) (*liveSession, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s := &liveSession{}
	start := time.Now()
	main, err := d.DialChannel(ctx, 0, spice.ChannelMain, 0)
	if err != nil {
		return s, err
	}
	record := func(since time.Time) {
		if lat != nil {
			*lat = append(*lat, ms(time.Since(since)))
		}
	}
	record(start)
	s.main = main
	msg, err := main.WaitFor(ctx, spice.MsgMainInit)
	if err != nil {
		return s, fmt.Errorf("waiting for MAIN_INIT: %w", err)
	}
	init, err := spice.ParseMainInit(msg.Body)
	if err != nil {
		return s, err
	}
	if err := main.Send(spice.MsgcMainAttachChannels, nil); err != nil {
		return s, err
	}
	type res struct {
		ch  *spice.Channel
		d   time.Duration
		err error
	}
	results := make([]res, len(sessionChannels)-1)
	var wg sync.WaitGroup
	for i, t := range sessionChannels[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			ch, err := d.DialChannel(ctx, init.SessionID, t, 0)
			results[i] = res{ch, time.Since(start), err}
		}()
	}
	wg.Wait()
	var firstErr error
	for _, r := range results {
		if r.err != nil {
			firstErr = cmpErr(firstErr, r.err)
			continue
		}
		if lat != nil {
			*lat = append(*lat, ms(r.d))
		}
		s.chans = append(s.chans, r.ch)
	}
	if firstErr != nil {
		return s, firstErr
	}
	disp := s.chans[0]
	if err := disp.InitDisplay(); err != nil {
		return s, err
	}
	if _, _, err := disp.WaitFirstDraw(ctx); err != nil {
		return s, err
	}
	return s, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func waitFor(d time.Duration, f func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if f() {
			return true
		}
	}
	return f()
}
