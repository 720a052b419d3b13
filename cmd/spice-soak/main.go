// Command spice-soak runs the proxy as an operator would before trusting
// it as a daemon, and says whether it stayed bounded. It starts
//
//	harness up --vms 4 --allow-plain --json
//
// takes one direct reference capture per VM, then runs four phases:
//
//	clean   real spicy-screenshot sessions through the proxy, one loop
//	        per VM, alternating TLS and plain, each picture compared
//	        with the VM's reference
//	abuse   the same, while hostile connections arrive at --rate (50/s):
//	        random bytes, a link header claiming 4 GiB, a TLS ClientHello
//	        then silence, a link written one byte a second, 4 bytes of bad
//	        magic
//	idle    nothing, for --idle (past the store's 30 s grace for ended
//	        sessions)
//	stop    SIGINT to the harness: it must tear down, leaving no qemu
//
// and prints sessions, failures, wrong pictures, hostile connections by
// kind and how each ended, and the harness process's RSS and fds (from
// /proc) and goroutines (from its /metrics) at the start, at the end of
// each phase and after the idle period, with a verdict. It exits 1 when
// the verdict fails.
//
// Each spicy-screenshot loop keeps one HOME for the whole run (a fresh
// HOME makes GStreamer rebuild its registry: +130-150 ms a capture).
// spicy-screenshot takes its password on argv only: the proxy captures
// get single-use tokens; the four direct reference captures get the
// console's ticket, which the lane's loopback API hands to any local
// user anyway (GET /console/direct/...).
//
// scripts/soak.sh (make soak) builds and runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

type options struct {
	harness  string
	vms      int
	duration time.Duration
	clean    time.Duration
	abuse    time.Duration
	idle     time.Duration
	rate     float64
	keep     bool
	verbose  bool
	clients  bool
	proxyLog bool
}

func main() {
	var o options
	flag.StringVar(&o.harness, "harness", "bin/harness", "the harness binary to run `up` with")
	flag.IntVar(&o.vms, "vms", 4, "VMs behind the proxy (one real-client loop each)")
	flag.DurationVar(&o.duration, "duration", 5*time.Minute, "whole run, boot to teardown; the clean and abuse phases share what boot and idle leave (1:2)")
	flag.DurationVar(&o.clean, "clean", 0, "length of the clean phase (0: from -duration)")
	flag.DurationVar(&o.abuse, "abuse", 0, "length of the abuse phase (0: from -duration)")
	flag.DurationVar(&o.idle, "idle", 45*time.Second, "idle period before the last measure (keep it past the store's 30 s grace for ended sessions)")
	flag.Float64Var(&o.rate, "rate", 50, "hostile connections per second in the abuse phase")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (spicy-screenshot homes, the harness log); it is kept anyway when the verdict fails")
	flag.BoolVar(&o.verbose, "v", false, "also print the harness's RSS, heap and goroutines every 10 s")
	flag.BoolVar(&o.clients, "clients", true, "run the real-client loops (false: hostile connections only, to study the proxy alone)")
	flag.BoolVar(&o.proxyLog, "proxy-log", false, "run harness up -v: the proxy's events go to the harness log (costs CPU at 50 hostile/s)")
	flag.Parse()
	if err := o.fill(); err != nil {
		fmt.Fprintln(os.Stderr, "spice-soak:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spice-soak:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// bootBudget is what -duration keeps for booting and the reference
// captures before the phases.
const bootBudget = 30 * time.Second

func (o *options) fill() error {
	if o.vms < 1 || o.vms > 16 {
		return fmt.Errorf("-vms %d: want 1-16", o.vms)
	}
	if o.rate <= 0 || o.rate > 1000 {
		return fmt.Errorf("-rate %v: want a rate in (0, 1000] connections a second", o.rate)
	}
	rest := o.duration - bootBudget - o.idle
	if o.clean == 0 {
		o.clean = rest / 3
	}
	if o.abuse == 0 {
		o.abuse = rest - rest/3
	}
	if o.clean < 10*time.Second || o.abuse < 20*time.Second {
		return fmt.Errorf("-duration %v leaves %v clean and %v abuse after boot (%v) and -idle %v: give at least 2m, or -clean and -abuse",
			o.duration, o.clean, o.abuse, bootBudget, o.idle)
	}
	bin, err := filepath.Abs(o.harness)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("-harness %s: %w (build it with make build)", o.harness, err)
	}
	o.harness = bin
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s soak: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
