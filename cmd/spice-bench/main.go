// Command spice-bench measures spice-harness end to end against direct qemu
// and a synthetic SPICE backend, and prints one line per figure:
//
//	name: value (ratio vs direct)
//
// The machine it runs on is shared and noisy, so every comparison is
// measured side by side in one run: direct and proxied runs are
// interleaved round by round, figures are medians (or percentiles) over
// many runs, and ratios are taken per round before their median.
// scripts/bench.sh (make bench) runs it with the Go benchmarks;
// docs/bench.md explains each figure.
//
// Sections (-sections, default all):
//
//	screenshot  spicy-screenshot wall time: qemu's plain port, the proxy's
//	            plain and TLS listeners, qemu's TLS port, interleaved
//	trace       where a spicy-screenshot session's time goes: per-step
//	            timestamps on the wire and inside the proxy, four modes
//	viewer      remote-viewer time to its first frame, the same four modes
//	handshake   Go client link latency per channel, the same four modes
//	relay       display stream throughput, synthetic backend, direct vs proxy
//	sessions    250 sessions x 4 channels through a proxy process: failures,
//	            handshake latency, RSS per channel
//	up          `harness up --json` time to ready and clean teardown
//	browser     spice-html5 in headless Chromium: connect to first painted
//	            canvas, the proxy's WebSocket listener vs websockify
//	input       keystroke (Go client) to the display message drawing the
//	            guest's echo: direct, proxy plain, proxy TLS, on loopback
//	            and over a 20 ms client link, interleaved
//
// No ticket or token is ever put on a command line or printed, except the
// single-use credentials spicy-screenshot must take on its argv (a proxy
// token, or a qemu ticket replaced right after the capture).
//
// `bench proxy-helper --sources FILE` is the proxy process the relay and
// sessions sections start (harness.Serve, as `harness serve` runs it, plus
// a GC-and-report command on stdin).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

type options struct {
	sections        []string
	shots           int
	shotGap         time.Duration
	traceRounds     int
	viewerRounds    int
	handshakes      int
	relayBytes      int64
	relayRuns       int
	relayMsgSize    int
	relaySmallMsg   int
	relaySmallBytes int64
	sessions        int
	sessionPar      int
	upRuns          int
	browserRounds   int
	inputRounds     int
	harnessBin      string
	verbose         bool
	sessionsModes   []string
	relayModes      []string
	abHelper        string
}

var allSections = []string{"screenshot", "trace", "viewer", "handshake", "relay", "sessions", "up", "browser", "input"}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "proxy-helper" {
		if err := runHelper(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench proxy-helper:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	var sections, modes string
	flag.StringVar(&sections, "sections", strings.Join(allSections, ","), "comma-separated sections to run: "+strings.Join(allSections, ", "))
	flag.IntVar(&o.shots, "shots", 25, "spicy-screenshot rounds (each round times every mode once, interleaved)")
	flag.DurationVar(&o.shotGap, "shot-gap", 250*time.Millisecond, "pause after each real-client run, so the next starts on a lane at rest")
	flag.IntVar(&o.traceRounds, "trace-rounds", 9, "spicy-screenshot rounds of the trace section (per-step timestamps)")
	flag.IntVar(&o.viewerRounds, "viewer-rounds", 21, "remote-viewer rounds (first-frame time, every mode once per round)")
	flag.IntVar(&o.handshakes, "handshakes", 100, "Go client sessions per mode for the handshake latencies (interleaved)")
	flag.Int64Var(&o.relayBytes, "relay-bytes", 1<<30, "bytes of display messages streamed per relay run")
	flag.IntVar(&o.relayRuns, "relay-runs", 3, "relay runs per mode (interleaved)")
	flag.IntVar(&o.relayMsgSize, "relay-msg", 64<<10, "display message body size of the relay stream")
	flag.IntVar(&o.relaySmallMsg, "relay-small-msg", 4<<10, "message size of a second relay stream (0: none)")
	flag.Int64Var(&o.relaySmallBytes, "relay-small-bytes", 256<<20, "bytes per run of the second relay stream")
	flag.IntVar(&o.sessions, "sessions", 250, "concurrent sessions (x4 channels) for the sessions section")
	flag.IntVar(&o.sessionPar, "sessions-parallel", 0, "sessions opened at once (0: all of them)")
	flag.StringVar(&modes, "sessions-modes", "plain,tls", "client legs for the sessions section")
	relayModes := flag.String("relay-modes", "", "relay modes to run (default all: direct_plain,proxy_plain,direct_tls,proxy_tls)")
	flag.StringVar(&o.abHelper, "ab-helper", "", "another spice-bench build whose proxy-helper also runs in the relay section (proxy_*_b), for before/after comparisons")
	flag.IntVar(&o.upRuns, "up-runs", 5, "harness up runs")
	flag.IntVar(&o.browserRounds, "browser-rounds", 15, "spice-html5 first-paint rounds (each times the proxy's WebSocket listener and websockify once)")
	flag.IntVar(&o.inputRounds, "input-rounds", 12, "input rounds per link (each opens one session per mode, interleaved, and types 10 keys)")
	flag.StringVar(&o.harnessBin, "harness", "bin/harness", "the harness binary for the up section")
	flag.BoolVar(&o.verbose, "v", false, "progress details on stderr")
	cpuprofile := flag.String("cpuprofile", "", "write this process's CPU profile to FILE (the proxy helper's: BENCH_HELPER_CPUPROFILE=FILE)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	o.sections = strings.Split(sections, ",")
	o.sessionsModes = strings.Split(modes, ",")
	if *relayModes != "" {
		o.relayModes = strings.Split(*relayModes, ",")
	}
	for _, s := range o.sections {
		if !slices.Contains(allSections, s) {
			fmt.Fprintf(os.Stderr, "bench: unknown section %q (have %s)\n", s, strings.Join(allSections, ", "))
			os.Exit(2)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r := &report{w: os.Stdout}
	failed := false
	for _, s := range allSections {
		if !slices.Contains(o.sections, s) {
			continue
		}
		start := time.Now()
		progress("== %s", s)
		var err error
		switch s {
		case "screenshot":
			err = benchScreenshot(ctx, r, &o)
		case "trace":
			err = benchTrace(ctx, r, &o)
		case "viewer":
			err = benchViewer(ctx, r, &o)
		case "handshake":
			err = benchHandshake(ctx, r, &o)
		case "relay":
			err = benchRelay(ctx, r, &o)
		case "sessions":
			err = benchSessions(ctx, r, &o)
		case "up":
			err = benchUp(ctx, r, &o)
		case "browser":
			err = benchBrowser(ctx, r, &o)
		case "input":
			err = benchInput(ctx, r, &o)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", s, err)
			r.line(s+".error", oneLine(err.Error()))
			failed = true
		}
		progress("== %s done in %.1f s", s, time.Since(start).Seconds())
		if ctx.Err() != nil {
			break
		}
	}
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " | ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
