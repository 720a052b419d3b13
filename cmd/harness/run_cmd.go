package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	externalAPI, externalOut, externalReload string
	externalTTL                              time.Duration
	exec, execReload                         string
	connectProxy                             string
	squid                                    bool
	websocket, wsTokenFile, wsOrigin         string
	websockify                               bool
}

func (f *targetFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.externalAPI, "external-api", "", "drive the Kerbside-style deployment behind this .vv API (or HARNESS_EXTERNAL_API); its token: HARNESS_EXTERNAL_TOKEN, or HARNESS_EXTERNAL_USER and HARNESS_EXTERNAL_PASSWORD for POST /auth")
	fl.StringVar(&f.externalOut, "external-sources", "", "with --external-api: the sources.yaml that deployment loads (or HARNESS_EXTERNAL_SOURCES)")
	fl.StringVar(&f.externalReload, "external-reload", "", "with --external-api: a shell command that makes it re-read the file (or HARNESS_EXTERNAL_RELOAD)")
	fl.DurationVar(&f.externalTTL, "external-token-ttl", 0, "with --external-api: its token lifetime, when known (or HARNESS_EXTERNAL_TOKEN_TTL)")
	fl.StringVar(&f.exec, "exec", "", "start this proxy per lane (placeholders {sources} {dir} {plain_port} {tls_port} {api_port} {api} {token_ttl}; or HARNESS_EXEC); its API token: HARNESS_EXEC_TOKEN")
	fl.StringVar(&f.execReload, "exec-reload", "", "with --exec: how it learns a rewritten sources.yaml: file (default), sighup or restart")
	fl.StringVar(&f.connectProxy, "connect-proxy", "", "drive the HTTP CONNECT proxy at this URL, http://HOST:PORT (or HARNESS_CONNECT_PROXY); it must let CONNECT through to the consoles")
	fl.BoolVar(&f.squid, "squid", false, "drive Debian's squid as a CONNECT proxy, started per lane with CONNECT allowed only to the console ports (or HARNESS_SQUID=1)")
	fl.StringVar(&f.websocket, "websocket", "", "drive the WebSocket gateway at this URL template, ws://HOST:PORT/PATH?token={token} (placeholders {token} {host} {port} {source} {uuid} {name}; or HARNESS_WEBSOCKET)")
	fl.StringVar(&f.wsTokenFile, "websocket-token-file", "", "with --websocket: the token file the gateway reads, written by the harness as `TOKEN: HOST:PORT` lines (or HARNESS_WEBSOCKET_TOKEN_FILE)")
	fl.StringVar(&f.wsOrigin, "websocket-origin", "", "with --websocket: the Origin the gateway accepts, sent by the Go client; others must be refused (or HARNESS_WEBSOCKET_ORIGIN)")
	fl.BoolVar(&f.websockify, "websockify", false, "drive Debian's websockify as a WebSocket gateway, started per lane with its token plugin and origin check (or HARNESS_WEBSOCKIFY=1)")
}

// option returns the target option the flags ask for, nil for the
// default (the environment, then the in-process proxy), and the flags
// that select it again (for repro lines; no secrets).
func (f *targetFlags) option() (harness.Option, []string, error) {
	var picked []string
	for _, p := range []struct {
		flag string
		set  bool
	}{{"--external-api", f.externalAPI != ""}, {"--exec", f.exec != ""}, {"--connect-proxy", f.connectProxy != ""}, {"--squid", f.squid},
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
	case f.exec != "":
		if f.execReload != "" && !slices.Contains(harness.ExecReloads, f.execReload) {
			return nil, nil, usageError(fmt.Errorf("--exec-reload %q: want one of %s", f.execReload, strings.Join(harness.ExecReloads, ", ")))
		}
		args := []string{"--exec", f.exec}
		if f.execReload != "" {
			args = append(args, "--exec-reload", f.execReload)
		}
		return harness.WithTarget(harness.Exec(harness.ExecConfig{Command: f.exec, Reload: f.execReload, Token: os.Getenv("HARNESS_EXEC_TOKEN")})), args, nil
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
		lane     laneFlags
		target   targetFlags
		names    []string
		tiers    []string
		list     bool
		verbose  bool
		junit    string
		asJSON   bool
		parallel int
	)
	cmd := &cobra.Command{
		Use:   "run [--scenario NAME]...",
		Short: "Run scenarios (all by default) against a proxy under test, each on a lane of its own",
		Long: `run runs the same scenario code as go test ./scenarios, outside go test,
and reports a conformance matrix: each scenario is core (SPICE correctness
every proxy must have) or hardening (what a trustworthy proxy also does).

The proxy under test is this repository's in-process proxy unless:
  --external-api URL --external-sources FILE
      a Kerbside-style deployment: the harness boots the VMs, writes their
      source into FILE, has it reload (--external-reload CMD, or its own
      re-read) and waits until its API serves them;
  --exec 'COMMAND {sources} …'
      a proxy the harness starts per lane and supervises: if it dies, the
      running scenario fails at once with its exit status and log tail,
      and the next lane starts a new one;
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
is skipped and says which. Secrets come from the environment only
(HARNESS_EXTERNAL_TOKEN, HARNESS_EXTERNAL_USER/PASSWORD, HARNESS_EXEC_TOKEN).

Reports: the go test style lines on stdout (--- PASS/FAIL/SKIP: name [tier]),
--junit FILE (JUnit XML: one testcase per scenario, tier as a property,
failure message and the command that reruns it) and --json (one JSON
object per scenario on stdout; the text lines then go to stderr).

Exit codes: 0 every scenario passed or was skipped, 1 a scenario failed or
did not run (interrupted), 2 usage error.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if list {
				for _, s := range scenarios.All() {
					req := ""
					if len(s.Requires) > 0 {
						req = " (needs " + harness.CapList(s.Requires) + ")"
					}
					fmt.Fprintf(out, "%-30s %-9s %s%s\n", s.Name, s.Tier, s.Description, req)
				}
				return nil
			}
			selected, err := selectScenarios(names, tiers)
			if err != nil {
				return err
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
			started := time.Now()
			results := runAll(cmd, selected, opts, runReport{text: text, json: asJSON, out: out, verbose: verbose, parallel: parallel,
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
			if jw != nil {
				if err := scenarios.WriteJUnit(jw, targetName, started, results); err != nil {
					return &exitError{Code: exitFailure, Err: fmt.Errorf("--junit: %w", err)}
				}
				if err := jw.Close(); err != nil {
					return &exitError{Code: exitFailure, Err: fmt.Errorf("--junit: %w", err)}
				}
			}
			if !sum.OK() {
				return &exitError{Code: exitFailure}
			}
			return nil
		},
	}
	lane.add(cmd, 60*time.Second)
	target.add(cmd)
	fl := cmd.Flags()
	fl.StringSliceVar(&names, "scenario", nil, "scenario to run (repeatable; default all)")
	fl.StringSliceVar(&tiers, "tier", nil, "run only this tier: core, hardening or browser (repeatable)")
	fl.BoolVar(&list, "list", false, "list the scenarios with their tier and needs, and exit")
	fl.BoolVarP(&verbose, "verbose", "v", false, "print every scenario's log as it runs")
	fl.StringVar(&junit, "junit", "", "also write a JUnit XML report to FILE")
	fl.BoolVar(&asJSON, "json", false, "print one JSON object per scenario on stdout (text lines go to stderr)")
	fl.IntVar(&parallel, "parallel", 1, "run this many scenarios at once (each has its own lane)")
	return cmd
}

func selectScenarios(names, tiers []string) ([]scenarios.Scenario, error) {
	for _, t := range tiers {
		if !slices.Contains(scenarios.Tiers, scenarios.Tier(t)) {
			return nil, usageError(fmt.Errorf("--tier %q: want core, hardening or browser", t))
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
}

// runAll runs the scenarios, at most rr.parallel at a time, printing
// each result as it ends; after Ctrl-C the rest are reported as not run.
func runAll(cmd *cobra.Command, selected []scenarios.Scenario, opts []harness.Option, rr runReport) []scenarios.Result {
	ctx := cmd.Context()
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
				if rr.parallel == 1 {
					fmt.Fprintf(rr.text, "=== RUN   %s\n", s.Name)
				}
				var log io.Writer
				if rr.verbose && rr.parallel == 1 {
					log = rr.text
				}
				r := scenarios.Run(ctx, s, scenarios.RunOptions{Log: log, Repro: rr.repro(s.Name)}, opts...)
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

func printResult(rr runReport, r scenarios.Result) {
	w := rr.text
	head := fmt.Sprintf("%s [%s] (%.2fs)", r.Name, r.Tier, r.Duration.Seconds())
	if r.Host != "" {
		head = fmt.Sprintf("%s [%s] (%.2fs, host %s)", r.Name, r.Tier, r.Duration.Seconds(), r.Host)
	}
	switch r.Status {
	case scenarios.Passed:
		fmt.Fprintf(w, "--- PASS: %s\n", head)
	case scenarios.Skipped:
		fmt.Fprintf(w, "--- SKIP: %s: %s\n", head, r.Reason)
	case scenarios.NotRun:
		fmt.Fprintf(w, "--- NOT RUN: %s: %s\n", head, r.Reason)
	default:
		fmt.Fprintf(w, "--- FAIL: %s\n", head)
		if !rr.verbose || rr.parallel > 1 {
			fmt.Fprintf(w, "    %s\n", strings.ReplaceAll(strings.Join(r.Log, "\n"), "\n", "\n    "))
		}
		fmt.Fprintf(w, "    repro: %s\n", r.Repro)
	}
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
