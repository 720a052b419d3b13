package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/shell"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/scenarios"
)

func init() { register(newRunCmd) }

// targetFlags pick the proxy under test.
type targetFlags struct {
	cmd                                      *cobra.Command
	externalAPI, externalOut, externalReload string
	externalTTL                              time.Duration
	exec, execReload, execTokenFile          string
	execEnv, execReady                       []string
	execReadyWithin, execReloadWithin        time.Duration
	connectProxy                             string
	squid                                    bool
	websocket, wsTokenFile, wsOrigin         string
	websockify                               bool
}

func (f *targetFlags) add(cmd *cobra.Command) {
	f.cmd = cmd
	fl := cmd.Flags()
	fl.StringVar(&f.externalAPI, "external-api", "", "drive the Kerbside-style deployment behind this .vv API (or HARNESS_EXTERNAL_API); its token: HARNESS_EXTERNAL_TOKEN, or HARNESS_EXTERNAL_USER and HARNESS_EXTERNAL_PASSWORD for POST /auth")
	fl.StringVar(&f.externalOut, "external-sources", "", "with --external-api: the sources.yaml that deployment loads (or HARNESS_EXTERNAL_SOURCES)")
	fl.StringVar(&f.externalReload, "external-reload", "", "with --external-api: a shell command that makes it re-read the file (or HARNESS_EXTERNAL_RELOAD)")
	fl.DurationVar(&f.externalTTL, "external-token-ttl", 0, "with --external-api: its token lifetime, when known (or HARNESS_EXTERNAL_TOKEN_TTL)")
	fl.StringVar(&f.exec, "exec", "", "start this proxy per lane, in this directory (placeholders {sources} {dir} {plain_port} {tls_port} {api_port} {api} {token_ttl}; or HARNESS_EXEC)")
	fl.StringArrayVar(&f.execEnv, "exec-env", nil, "with --exec: KEY=VALUE added to its environment (repeatable; or HARNESS_EXEC_ENV)")
	fl.StringVar(&f.execTokenFile, "exec-token-file", "", "with --exec: a file holding its API's bearer token (or HARNESS_EXEC_TOKEN; never on a command line)")
	fl.StringVar(&f.execReload, "exec-reload", "", "with --exec: how it learns a rewritten sources.yaml: file (default), sighup or restart (or HARNESS_EXEC_RELOAD)")
	fl.StringArrayVar(&f.execReady, "exec-ready", nil, "with --exec: how to know it serves the lane: direct-vv (default), spice-link, http:/PATH, log:REGEXP, port:NAME (repeatable: all of them; or HARNESS_EXEC_READY)")
	fl.DurationVar(&f.execReadyWithin, "exec-ready-within", 0, "with --exec: bound on its start (default 30s; or HARNESS_EXEC_READY_WITHIN)")
	fl.DurationVar(&f.execReloadWithin, "exec-reload-within", 0, "with --exec: bound on each reload (default 10s; or HARNESS_EXEC_RELOAD_WITHIN)")
	fl.StringVar(&f.connectProxy, "connect-proxy", "", "drive the HTTP CONNECT proxy at this URL, http://HOST:PORT (or HARNESS_CONNECT_PROXY); it must let CONNECT through to the consoles")
	fl.BoolVar(&f.squid, "squid", false, "drive Debian's squid as a CONNECT proxy, started per lane with CONNECT allowed only to the console ports (or HARNESS_SQUID=1)")
	fl.StringVar(&f.websocket, "websocket", "", "drive the WebSocket gateway at this URL template, ws://HOST:PORT/PATH?token={token} (placeholders {token} {host} {port} {source} {uuid} {name}; or HARNESS_WEBSOCKET)")
	fl.StringVar(&f.wsTokenFile, "websocket-token-file", "", "with --websocket: the token file the gateway reads, written by the harness as `TOKEN: HOST:PORT` lines (or HARNESS_WEBSOCKET_TOKEN_FILE)")
	fl.StringVar(&f.wsOrigin, "websocket-origin", "", "with --websocket: the Origin the gateway accepts, sent by the Go client; others must be refused (or HARNESS_WEBSOCKET_ORIGIN)")
	fl.BoolVar(&f.websockify, "websockify", false, "drive Debian's websockify as a WebSocket gateway, started per lane with its token plugin and origin check (or HARNESS_WEBSOCKIFY=1)")
}

// execFlags are the flags of the exec target besides --exec.
var execFlags = []string{"exec-env", "exec-token-file", "exec-reload", "exec-ready", "exec-ready-within", "exec-reload-within"}

// execFlagSet names the first --exec-* flag given, "" for none.
func (f *targetFlags) execFlagSet() string {
	if f.cmd == nil {
		return ""
	}
	for _, n := range execFlags {
		if f.cmd.Flags().Changed(n) {
			return "--" + n
		}
	}
	return ""
}

// execOption is the exec target: the HARNESS_EXEC_* variables, each
// overridden by its flag.
func (f *targetFlags) execOption() (harness.Option, []string, error) {
	cfg, err := harness.ExecConfigFromEnv()
	if err != nil {
		return nil, nil, usageError(err)
	}
	if f.exec != "" {
		cfg.Command = f.exec
	}
	if cfg.Command == "" {
		return nil, nil, usageError(fmt.Errorf("%s needs --exec COMMAND (or %s)", f.execFlagSet(), harness.EnvExec))
	}
	args := []string{"--exec", cfg.Command}
	if len(f.execEnv) > 0 {
		for _, kv := range f.execEnv {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				return nil, nil, usageError(fmt.Errorf("--exec-env %q: want KEY=VALUE", kv))
			}
			args = append(args, "--exec-env", kv)
		}
		cfg.Env = f.execEnv
	}
	if f.execTokenFile != "" {
		b, err := os.ReadFile(f.execTokenFile)
		if err != nil {
			return nil, nil, usageError(fmt.Errorf("--exec-token-file: %w", err))
		}
		cfg.Token = strings.TrimSpace(string(b))
		args = append(args, "--exec-token-file", f.execTokenFile)
	}
	if f.execReload != "" {
		r, err := harness.ParseReload(f.execReload)
		if err != nil {
			return nil, nil, usageError(fmt.Errorf("--exec-reload: %w", err))
		}
		cfg.Reload = r
		args = append(args, "--exec-reload", f.execReload)
	}
	if len(f.execReady) > 0 {
		var ws []harness.Wait
		for _, v := range f.execReady {
			w, err := harness.ParseWait(v)
			if err != nil {
				return nil, nil, usageError(fmt.Errorf("--exec-ready: %w", err))
			}
			ws = append(ws, w)
			args = append(args, "--exec-ready", v)
		}
		cfg.Ready = ws[0]
		if len(ws) > 1 {
			cfg.Ready = harness.WaitAll(ws...)
		}
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
		dst  *time.Duration
	}{{"exec-ready-within", f.execReadyWithin, &cfg.ReadyWithin}, {"exec-reload-within", f.execReloadWithin, &cfg.ReloadWithin}} {
		if f.cmd != nil && f.cmd.Flags().Changed(d.flag) {
			if d.v <= 0 {
				return nil, nil, usageError(fmt.Errorf("--%s %v: want a positive duration", d.flag, d.v))
			}
			*d.dst = d.v
			args = append(args, "--"+d.flag, d.v.String())
		}
	}
	// Catch a bad combination (a readiness that cannot judge a reload in
	// place) before any lane boots.
	if _, err := harness.ExecTarget(cfg)(harness.Settings{}); err != nil {
		return nil, nil, usageError(err)
	}
	return harness.WithTarget(harness.ExecTarget(cfg)), args, nil
}

// option returns the target option the flags ask for, nil for the
// default (the environment, then the in-process proxy), and the flags
// that select it again (for repro lines; no secrets).
func (f *targetFlags) option() (harness.Option, []string, error) {
	var picked []string
	for _, p := range []struct {
		flag string
		set  bool
	}{{"--external-api", f.externalAPI != ""}, {"--exec", f.exec != "" || f.execFlagSet() != ""}, {"--connect-proxy", f.connectProxy != ""}, {"--squid", f.squid},
		{"--websocket", f.websocket != ""}, {"--websockify", f.websockify}} {
		if p.set {
			picked = append(picked, p.flag)
		}
	}
	switch {
	case len(picked) > 1:
		return nil, nil, usageError(fmt.Errorf("%s each pick the proxy under test: give one", strings.Join(picked, " and ")))
	case f.externalAPI != "":
		kc := harness.KerbsideConfig{API: f.externalAPI, SourcesPath: f.externalOut, ReloadCommand: f.externalReload, TokenTTL: f.externalTTL,
			Token: os.Getenv(harness.EnvExternalToken), User: os.Getenv(harness.EnvExternalUser), Password: os.Getenv(harness.EnvExternalPassword)}
		if kc.SourcesPath == "" {
			kc.SourcesPath = os.Getenv(harness.EnvExternalSource)
		}
		if kc.SourcesPath == "" {
			return nil, nil, usageError(errString("--external-api needs --external-sources FILE (the sources.yaml that proxy loads)"))
		}
		if kc.ReloadCommand == "" {
			kc.ReloadCommand = os.Getenv(harness.EnvExternalReload)
		}
		args := []string{"--external-api", f.externalAPI, "--external-sources", kc.SourcesPath}
		if f.externalReload != "" {
			args = append(args, "--external-reload", f.externalReload)
		}
		if f.externalTTL > 0 {
			args = append(args, "--external-token-ttl", f.externalTTL.String())
		}
		return harness.WithTarget(harness.Kerbside(kc)), args, nil
	case f.exec != "" || f.execFlagSet() != "":
		return f.execOption()
	case f.connectProxy != "":
		if _, _, err := spice.ParseProxyURL(f.connectProxy); err != nil {
			return nil, nil, usageError(fmt.Errorf("--connect-proxy %q: want http://HOST:PORT", redactProxyURL(f.connectProxy)))
		}
		return harness.WithTarget(harness.ConnectProxy(harness.ConnectProxyConfig{URL: f.connectProxy})), []string{"--connect-proxy", redactProxyURL(f.connectProxy)}, nil
	case f.squid:
		return harness.WithTarget(harness.ConnectProxy(harness.ConnectProxyConfig{Squid: true})), []string{"--squid"}, nil
	case f.websocket != "":
		wc := harness.WebSocketConfig{URL: f.websocket, TokenFile: f.wsTokenFile, Origin: f.wsOrigin}
		if wc.TokenFile == "" {
			wc.TokenFile = os.Getenv(harness.EnvWebSocketTokenFile)
		}
		if wc.Origin == "" {
			wc.Origin = os.Getenv(harness.EnvWebSocketOrigin)
		}
		args := []string{"--websocket", f.websocket}
		if wc.TokenFile != "" {
			args = append(args, "--websocket-token-file", wc.TokenFile)
		}
		if wc.Origin != "" {
			args = append(args, "--websocket-origin", wc.Origin)
		}
		if _, err := harness.WebSocket(wc)(harness.Settings{}); err != nil {
			return nil, nil, usageError(err)
		}
		return harness.WithTarget(harness.WebSocket(wc)), args, nil
	case f.websockify:
		return harness.WithTarget(harness.WebSocket(harness.WebSocketConfig{Websockify: true})), []string{"--websockify"}, nil
	}
	return nil, nil, nil
}

func newRunCmd() *cobra.Command {
	var (
		lane      laneFlags
		target    targetFlags
		names     []string
		tiers     []string
		list      bool
		verbose   bool
		junit     string
		asJSON    bool
		parallel  int
		shard     string
		durations string
		artifacts string
	)
	cmd := &cobra.Command{
		Use:   "run [--scenario NAME]...",
		Short: "Run scenarios (all by default) against a proxy under test, each on a lane of its own",
		Long: `run runs the same scenario code as go test ./scenarios, outside go test,
and reports a conformance matrix: each scenario is core (SPICE correctness
every proxy must have) or hardening (what a trustworthy proxy also does),
and declares what its verdict rests on (the proxy's SPICE path, its API
only, or qemu directly); each tier's passes are counted apart by that.

The proxy under test is this repository's in-process proxy unless:
  --external-api URL --external-sources FILE
      a Kerbside-style deployment: the harness boots the VMs, writes their
      source into FILE, has it reload (--external-reload CMD, or its own
      re-read) and waits until its API serves them;
  --exec 'COMMAND {sources} …'
      a proxy the harness starts per lane, in this directory, and
      supervises: if it dies, the running scenario fails at once with its
      exit status and log tail, and the next lane starts a new one;
      --exec-reload, --exec-ready, --exec-env, --exec-token-file,
      --exec-ready-within and --exec-reload-within tune it (each also a
      HARNESS_EXEC_* variable);
  --connect-proxy http://HOST:PORT, or --squid
      an HTTP CONNECT proxy (oVirt's squid, Proxmox's spiceproxy): the
      harness writes each .vv itself (proxy=, the console's address and
      port, a fresh qemu ticket valid 30 s); --squid starts Debian's squid
      per lane, allowing CONNECT only to the console ports. Scenarios about
      a terminating proxy (tokens, sessions) are skipped.
  --websocket 'ws://HOST:PORT/PATH?token={token}' [--websocket-token-file F]
  [--websocket-origin O], or --websockify
      a WebSocket gateway (spice-html5's transport, one WebSocket per
      channel): the harness fills the URL per console, writes the tokens
      to F (TOKEN: HOST:PORT lines) and hands a fresh qemu ticket valid
      30 s as the password; --websockify starts Debian's websockify per
      lane with its token plugin and ExpectOrigin. The browser tier runs
      there (and against the in-process proxy's own WebSocket listener);
      scenarios that need spicy-screenshot or remote-viewer are skipped.

With --hosts FILE each scenario's lane goes to a hypervisor host of FILE
(docs/hosts.md): its VMs run there as libvirt domains, the proxy and the
clients run here. Lanes are placed by label (--labels, and spice-tls for
TLS backends) and free slots; a scenario no host can run is skipped and
says why; a host whose libvirtd goes away fails its own lanes, naming it,
and the run goes on on the others. Results name the host, and a failure's
repro line pins it (--host).

A scenario that needs a capability the target lacks (terminate, metrics, …)
is skipped and says which. Secrets come from the environment or a file only
(HARNESS_EXTERNAL_TOKEN, HARNESS_EXTERNAL_USER/PASSWORD, HARNESS_EXEC_TOKEN
or --exec-token-file).

Output: one block per scenario, printed whole when it ends (in the order
scenarios end, also with --parallel): with -v or on failure its log, then
"--- PASS/FAIL/SKIP: name [tier] (time)", for a failure the reason and the
command that reruns it. When a lane cannot start, the block also says what
harness doctor finds wrong with the machine. Reports: --junit FILE (JUnit
XML: one testcase per scenario, tier, status and surfaces as properties,
the failure's informative line, its log and repro) and --json (one JSON
object per scenario on stdout; the text then goes to stderr).

Sharding: --shard K/N runs the K-th of N deterministic shards (by
scenario; each scenario is its own lane), balanced by the durations in
--shard-durations REPORT (an earlier --junit or --json report) when given;
harness report merge joins the shards' reports.

Files a scenario keeps (a failed browser scenario's page screenshot) go in
--artifacts DIR/SCENARIO/, are listed as "artifact:" lines in its block, in
the JSON result's "artifacts" and as [[ATTACHMENT|PATH]] in the JUnit
system-out.

Exit codes: 0 every scenario passed or was skipped, 1 a scenario failed or
did not run (interrupted), or the core tier did not exercise the proxy's
SPICE path (INCOMPLETE), 2 usage error.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			selected, err := selectScenarios(names, tiers)
			if err != nil {
				return err
			}
			var sp scenarios.ShardSpec
			if shard != "" {
				if sp, err = scenarios.ParseShard(shard); err != nil {
					return usageError(fmt.Errorf("--shard: %w", err))
				}
				var d map[string]time.Duration
				if durations != "" {
					rep, err := readReportFile(durations)
					if err != nil {
						return usageError(fmt.Errorf("--shard-durations: %w", err))
					}
					d = scenarios.Durations(rep.Results)
				}
				selected = scenarios.Shard(selected, sp, d)
			} else if durations != "" {
				return usageError(errString("--shard-durations needs --shard K/N"))
			}
			if list {
				for _, s := range selected {
					req := ""
					if len(s.Requires) > 0 {
						req = " (needs " + harness.CapList(s.Requires) + ")"
					}
					fmt.Fprintf(out, "%-30s %-9s %-22s %s%s\n", s.Name, s.Tier, s.Exercises, s.Description, req)
				}
				return nil
			}
			opts, err := lane.options()
			if err != nil {
				return err
			}
			topt, targs, err := target.option()
			if err != nil {
				return err
			}
			if topt != nil {
				opts = append(opts, topt)
			}
			if parallel < 1 {
				return usageError(fmt.Errorf("--parallel %d: want 1 or more", parallel))
			}
			text := out
			if asJSON {
				text = cmd.ErrOrStderr()
			}
			var jw *os.File
			if junit != "" {
				if jw, err = os.Create(junit); err != nil {
					return &exitError{Code: exitUsage, Err: fmt.Errorf("--junit: %w", err)}
				}
				defer jw.Close()
			}
			if shard != "" {
				fmt.Fprintf(text, "shard %s: %d scenarios\n", sp, len(selected))
			}
			artDir, dropArtDir, err := artifactsDir(artifacts)
			if err != nil {
				return &exitError{Code: exitUsage, Err: err}
			}
			started := time.Now()
			results := runAll(cmd, selected, opts, runReport{text: text, json: asJSON, out: out, verbose: verbose, parallel: parallel, artifacts: artDir,
				repro: func(name string) string { return reproCommand(name, lane.cmd, targs) }})
			sum := scenarios.Summarize(results)
			targetName := ""
			for _, r := range results {
				if r.Target != "" {
					targetName = r.Target
					break
				}
			}
			sum.Write(text, targetName)
			if !dropArtDir() {
				fmt.Fprintf(text, "artifacts: %s\n", artDir)
			}
			if jw != nil {
				if err := scenarios.WriteJUnit(jw, targetName, started, results); err != nil {
					return &exitError{Code: exitFailure, Err: fmt.Errorf("--junit: %w", err)}
				}
				if err := jw.Close(); err != nil {
					return &exitError{Code: exitFailure, Err: fmt.Errorf("--junit: %w", err)}
				}
			}
			if !sum.Passes() {
				return &exitError{Code: exitFailure}
			}
			return nil
		},
	}
	lane.add(cmd, 60*time.Second)
	target.add(cmd)
	fl := cmd.Flags()
	fl.StringSliceVar(&names, "scenario", nil, "scenario to run (repeatable; default all)")
	fl.StringSliceVar(&tiers, "tier", nil, "run only this tier: core, hardening, browser or channels (repeatable)")
	fl.BoolVar(&list, "list", false, "list the scenarios (of the shard, with --shard) with their tier, surfaces and needs, and exit")
	fl.BoolVarP(&verbose, "verbose", "v", false, "print every scenario's log in its block, not only a failure's")
	fl.StringVar(&junit, "junit", "", "also write a JUnit XML report to FILE")
	fl.BoolVar(&asJSON, "json", false, "print one JSON object per scenario on stdout (text lines go to stderr)")
	fl.IntVar(&parallel, "parallel", 1, "run this many scenarios at once (each has its own lane)")
	fl.StringVar(&shard, "shard", "", "run only shard K of N (K/N, e.g. 2/4): the same split on every runner")
	fl.StringVar(&durations, "shard-durations", "", "with --shard: balance the shards by the durations in this earlier report (--junit XML or --json lines)")
	fl.StringVar(&artifacts, "artifacts", "", "keep the scenarios' report files (a failed browser scenario's page screenshots) in DIR/SCENARIO/ (default: a new temporary directory, named in the report when a scenario used it)")
	return cmd
}

func readReportFile(path string) (*scenarios.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rep, err := scenarios.ReadReport(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}

func selectScenarios(names, tiers []string) ([]scenarios.Scenario, error) {
	for _, t := range tiers {
		if !slices.Contains(scenarios.Tiers, scenarios.Tier(t)) {
			return nil, usageError(fmt.Errorf("--tier %q: want core, hardening, browser or channels", t))
		}
	}
	all := scenarios.All()
	if len(names) > 0 {
		all = nil
		for _, n := range names {
			s, ok := scenarios.Lookup(n)
			if !ok {
				return nil, usageError(fmt.Errorf("unknown scenario %q (harness run --list shows them)", n))
			}
			all = append(all, s)
		}
	}
	if len(tiers) == 0 {
		return all, nil
	}
	var out []scenarios.Scenario
	for _, s := range all {
		if slices.Contains(tiers, string(s.Tier)) {
			out = append(out, s)
		}
	}
	return out, nil
}

type runReport struct {
	text, out io.Writer
	json      bool
	verbose   bool
	parallel  int
	repro     func(name string) string
	// doctor is what harness doctor finds wrong with the machine, asked
	// once, the first time a lane cannot start.
	doctor    func() []harness.CheckResult
	artifacts string
}

// artifactsDir is where the scenarios' report files go: dir, or a new
// temporary directory. drop removes that temporary directory when no
// scenario wrote to it and reports whether it is gone; a directory the
// user named is always kept.
func artifactsDir(dir string) (string, func() bool, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, fmt.Errorf("--artifacts: %w", err)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", nil, fmt.Errorf("--artifacts: %w", err)
		}
		return abs, func() bool { return false }, nil
	}
	tmp, err := os.MkdirTemp("", "spice-harness-artifacts-")
	if err != nil {
		return "", nil, fmt.Errorf("artifacts: %w", err)
	}
	return tmp, func() bool {
		ents, err := os.ReadDir(tmp)
		if err != nil || len(ents) > 0 {
			return false
		}
		return os.Remove(tmp) == nil
	}, nil
}

// runAll runs the scenarios, at most rr.parallel at a time, printing
// each one's block as it ends; after Ctrl-C the rest are reported as not
// run.
func runAll(cmd *cobra.Command, selected []scenarios.Scenario, opts []harness.Option, rr runReport) []scenarios.Result {
	ctx := cmd.Context()
	if rr.doctor == nil {
		rr.doctor = sync.OnceValue(func() []harness.CheckResult { return harness.Doctor(ctx) })
	}
	results := make([]scenarios.Result, len(selected))
	type done struct {
		i int
		r scenarios.Result
	}
	ch := make(chan done)
	sem := make(chan struct{}, rr.parallel)
	go func() {
		for i, s := range selected {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				r := scenarios.Run(ctx, s, scenarios.RunOptions{Repro: rr.repro(s.Name), Artifacts: rr.artifacts}, opts...)
				if r.Host != "" && r.Repro != "" && !strings.Contains(r.Repro, "--host=") {
					r.Repro += " --host=" + shell.Quote(r.Host) // rerun it where it failed
				}
				ch <- done{i, r}
			}()
		}
	}()
	for range selected {
		d := <-ch
		results[d.i] = d.r
		printResult(rr, d.r)
	}
	return results
}

// printResult writes r's block in one write, so blocks of scenarios that
// run at once never interleave: with -v or on failure "=== RUN" and the
// log, then the verdict line, a failure's reason, the machine's problems
// when the lane could not start, and the repro line.
func printResult(rr runReport, r scenarios.Result) {
	var b strings.Builder
	showLog := (rr.verbose || r.Status == scenarios.Failed) && len(r.Log) > 0
	if showLog {
		fmt.Fprintf(&b, "=== RUN   %s\n", r.Name)
		fmt.Fprintf(&b, "    %s\n", strings.ReplaceAll(strings.Join(r.Log, "\n"), "\n", "\n    "))
	}
	head := fmt.Sprintf("%s [%s] (%.2fs)", r.Name, r.Tier, r.Duration.Seconds())
	if r.Host != "" {
		head = fmt.Sprintf("%s [%s] (%.2fs, host %s)", r.Name, r.Tier, r.Duration.Seconds(), r.Host)
	}
	switch r.Status {
	case scenarios.Passed:
		fmt.Fprintf(&b, "--- PASS: %s\n", head)
	case scenarios.Skipped:
		fmt.Fprintf(&b, "--- SKIP: %s: %s\n", head, r.Reason)
	case scenarios.NotRun:
		fmt.Fprintf(&b, "--- NOT RUN: %s: %s\n", head, r.Reason)
	default:
		fmt.Fprintf(&b, "--- FAIL: %s\n", head)
		fmt.Fprintf(&b, "    reason: %s\n", r.Reason)
		if r.LaneFailed && rr.doctor != nil {
			for _, c := range rr.doctor() {
				if !c.OK() {
					fmt.Fprintf(&b, "    machine: %s: %v (needed by %s); fix: %s\n", c.Name, c.Err, c.For, c.Fix)
				}
			}
		}
		fmt.Fprintf(&b, "    repro: %s\n", r.Repro)
	}
	for _, a := range r.Artifacts {
		fmt.Fprintf(&b, "    artifact: %s\n", a)
	}
	io.WriteString(rr.text, b.String())
	if rr.json {
		scenarios.WriteJSON(rr.out, r)
	}
}

// reproCommand reruns one scenario against the same target: this
// binary, the lane flags that were set, the target flags, and the
// HARNESS_* variables (secrets by name only), from this directory.
func reproCommand(name string, cmd *cobra.Command, targetArgs []string) string {
	self, err := os.Executable()
	if err != nil {
		self = "harness"
	}
	words := harness.ReproEnv()
	words = append(words, shell.Quote(self), "run", "--scenario", name, "-v")
	cmd.Flags().Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "vms", "accel", "libvirt", "tls-backends", "allow-plain", "token-ttl", "timeout", "hosts", "host", "labels":
			words = append(words, "--"+f.Name+"="+shell.Quote(f.Value.String()))
		}
	})
	for _, a := range targetArgs {
		words = append(words, shell.Quote(a))
	}
	line := strings.Join(words, " ")
	if wd, err := os.Getwd(); err == nil {
		line = "cd " + shell.Quote(filepath.Clean(wd)) + " && " + line
	}
	return line
}

// redactProxyURL hides a password in a proxy URL (repro lines, errors).
func redactProxyURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}
