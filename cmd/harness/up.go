package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/harness/inproc"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/qemu"
)

func init() { register(newUpCmd) }

// readyLine is the one JSON line `up --json` and `serve --json` print
// once everything is ready. Scripts rely on its field names; it never
// holds a ticket or token.
type readyLine struct {
	API         string         `json:"api"`
	Proxy       readyProxy     `json:"proxy"`
	SourcesYAML string         `json:"sources_yaml"`
	Consoles    []readyConsole `json:"consoles"`
}

type readyProxy struct {
	Host    string `json:"host"`
	Port    int    `json:"port"`
	TLSPort int    `json:"tls_port"`
	CAFile  string `json:"ca_file"`
	// ConnectPort is the HTTP CONNECT listener's port (--connect-listen;
	// 0 and left out when off).
	ConnectPort int `json:"connect_port,omitempty"`
	// WebSocketPort is the WebSocket listener's port (spice-html5's
	// transport; --ws-listen; 0 and left out when off).
	WebSocketPort int `json:"ws_port,omitempty"`
}

type readyConsole struct {
	// Hypervisor is the host the VM runs on (--hosts only).
	Hypervisor string      `json:"hypervisor,omitempty"`
	Source     string      `json:"source"`
	UUID       string      `json:"uuid"`
	Name       string      `json:"name"`
	Direct     readyDirect `json:"direct"`
	VVFile     string      `json:"vv_file,omitempty"`
	VVURL      string      `json:"vv_url"`
	// TunnelVVURL answers a .vv through the CONNECT listener (only with
	// --connect-listen).
	TunnelVVURL string `json:"tunnel_vv_url,omitempty"`
	// WebSocketURL answers, in JSON, a WebSocket URL and password for one
	// session through the WebSocket listener (no secret in the line).
	WebSocketURL string `json:"ws_url,omitempty"`
}

type readyDirect struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// laneFlags are shared by up and run. Only the flags a person sets
// become options, so the HARNESS_* variables (HARNESS_VMS, HARNESS_ACCEL,
// HARNESS_LIBVIRT, HARNESS_TOKEN_TTL, HARNESS_TIMEOUT, …) apply
// otherwise; a flag beats its variable.
type laneFlags struct {
	cmd         *cobra.Command
	vms         int
	accel       string
	libvirt     string
	tlsBackends bool
	allowPlain  bool
	tokenTTL    time.Duration
	timeout     time.Duration
	hostsFile   string
	host        string
	labels      []string
}

func (f *laneFlags) add(cmd *cobra.Command, tokenTTL time.Duration) {
	f.cmd = cmd
	fl := cmd.Flags()
	fl.IntVar(&f.vms, "vms", 1, "number of VMs to boot (or HARNESS_VMS)")
	fl.StringVar(&f.accel, "accel", "auto", "qemu accelerator: auto, kvm or tcg (or HARNESS_ACCEL; auto: TCG for the built-in guest, measured faster here)")
	fl.StringVar(&f.libvirt, "libvirt", "", "boot the VMs as libvirt domains on this libvirtd (qemu:///system, qemu+tcp://HOST/system; or HARNESS_LIBVIRT)")
	fl.BoolVar(&f.tlsBackends, "tls-backends", false, "qemu serves SPICE over TLS too (harness CA); the proxy then reaches it over TLS (or HARNESS_TLS_BACKENDS=1)")
	fl.BoolVar(&f.allowPlain, "allow-plain", false, "serve sessions on the proxy's plain port instead of answering NEED_SECURED")
	fl.DurationVar(&f.tokenTTL, "token-ttl", tokenTTL, "how long a minted token may open its session (or HARNESS_TOKEN_TTL)")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "bound on booting the lane (or HARNESS_TIMEOUT)")
	fl.StringVar(&f.hostsFile, "hosts", "", "place the lanes on the hypervisor hosts of this hosts file, reached through their libvirtd (or HARNESS_HOSTS; see docs/hosts.md)")
	fl.StringVar(&f.host, "host", "", "with --hosts: only this host (or HARNESS_HOST; failure repro lines set it)")
	fl.StringSliceVar(&f.labels, "labels", nil, "with --hosts: only hosts that carry these labels (kvm, spice-tls, …)")
}

func (f *laneFlags) set(name string) bool { return f.cmd.Flags().Changed(name) }

func (f *laneFlags) options() ([]harness.Option, error) {
	var opts []harness.Option
	if f.set("vms") {
		opts = append(opts, harness.VMs(f.vms))
	}
	if f.set("accel") {
		accel, err := qemu.ParseAccelerator(f.accel)
		if err != nil {
			return nil, usageError(fmt.Errorf("--accel: %w", err))
		}
		opts = append(opts, harness.Accel(accel))
	}
	// This command's own default lifetime applies unless the flag or
	// HARNESS_TOKEN_TTL says otherwise.
	if f.set("token-ttl") || os.Getenv(harness.EnvTokenTTL) == "" {
		if f.tokenTTL <= 0 {
			return nil, usageError(fmt.Errorf("--token-ttl %v: want a positive duration", f.tokenTTL))
		}
		opts = append(opts, harness.TokenTTL(f.tokenTTL))
	}
	if f.set("timeout") {
		if f.timeout <= 0 {
			return nil, usageError(fmt.Errorf("--timeout %v: want a positive duration", f.timeout))
		}
		opts = append(opts, harness.Timeout(f.timeout))
	}
	if f.set("libvirt") {
		if f.set("hosts") {
			return nil, usageError(errString("--libvirt and --hosts both say where the VMs run: give one"))
		}
		opts = append(opts, harness.Libvirt(f.libvirt))
	}
	if f.set("hosts") {
		hs, err := harness.LoadHosts(f.hostsFile)
		if err != nil {
			return nil, usageError(hostsProblems(err))
		}
		opts = append(opts, harness.WithHosts(hs))
	}
	if f.set("host") {
		opts = append(opts, harness.OnHost(f.host))
	}
	if len(f.labels) > 0 {
		opts = append(opts, harness.RequireLabels(f.labels...))
	}
	if f.tlsBackends {
		opts = append(opts, harness.TLSBackends())
	}
	if f.allowPlain {
		opts = append(opts, harness.AllowPlain())
	}
	return opts, nil
}

func newUpCmd() *cobra.Command {
	var (
		lane          laneFlags
		limits        handshakeFlags
		emit          string
		asJSON        bool
		verbose       bool
		connectListen string
		wsListen      string
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Boot VMs behind the proxy, print a ready console.vv, wait for Ctrl-C",
		Long: `up boots VMs with the built-in guest, sets fresh tickets over QMP, starts
the SPICE proxy (TLS with an ephemeral CA; the plain port answers
NEED_SECURED unless --allow-plain) and the .vv API on loopback, writes a
ready console.vv per VM and the sources.yaml into its state directory,
prints what to run, then waits for SIGINT or SIGTERM and tears everything
down (no qemu left).

Progress goes to stderr. With --json, stdout gets exactly one JSON line
once everything is ready (no tickets or tokens in it):

  {"api":…,"proxy":{"host":…,"port":…,"tls_port":…,"ca_file":…[,"connect_port":…]},
   "sources_yaml":…,"consoles":[{"source":…,"uuid":…,"name":…,
   "direct":{"host":…,"port":…},"vv_file":…,"vv_url":…[,"tunnel_vv_url":…],"ws_url":…}]}

Each console.vv holds a one-session token valid for --token-ttl; fetch a
fresh one from its vv_url.

With --connect-listen ADDR the proxy also serves HTTP CONNECT tunnels
(the Proxmox spiceproxy / oVirt squid family, see docs/tunnels.md): the
ready line adds proxy.connect_port and a tunnel_vv_url per console,
whose .vv has proxy=, a signed host valid for 60 s and the console's
ticket.

The proxy also serves SPICE over WebSocket (spice-html5's transport, one
WebSocket per channel; --ws-listen ADDR, default a free loopback port):
proxy.ws_port, and a ws_url per console answering JSON with the URL (its
one-session token in ?token=) and the same token as the SPICE password;
see docs/websocket.md.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := lane.options()
			if err != nil {
				return err
			}
			opts = append(opts, limits.options(cmd)...)
			log := progressLogger(cmd, verbose)
			opts = append(opts, harness.Logger(log))
			if verbose {
				opts = append(opts, harness.ProxyLogger(log))
			}
			if connectListen != "" {
				opts = append(opts, harness.ConnectListen(connectListen))
			}
			if wsListen != "" {
				opts = append(opts, harness.WebSocketListen(wsListen))
			}
			ctx := cmd.Context()
			env, err := harness.Up(ctx, opts...)
			if err != nil {
				return &exitError{Code: exitFailure, Err: explain(err)}
			}
			defer env.Close()
			ready, err := writeReady(ctx, env)
			if err != nil {
				return &exitError{Code: exitFailure, Err: err}
			}
			if emit != "" {
				if err := copyFile(env.SourcesYAML, emit); err != nil {
					return &exitError{Code: exitFailure, Err: err}
				}
				log.Info("sources.yaml copied", "path", emit)
			}
			printReady(cmd, ready, asJSON)
			return waitForSignal(ctx, env, log)
		},
	}
	lane.add(cmd, 10*time.Minute)
	limits.add(cmd)
	cmd.Flags().StringVar(&emit, "emit", "", "also write the lane's sources.yaml to this file (it holds the tickets; mode 0600)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON line on stdout when ready")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also log the proxy's audit events")
	cmd.Flags().StringVar(&connectListen, "connect-listen", "", "also serve HTTP CONNECT tunnels on this address (127.0.0.1:0 for a free port); see docs/tunnels.md")
	cmd.Flags().StringVar(&wsListen, "ws-listen", "", "serve SPICE over WebSocket (spice-html5) on this address (default: a free loopback port); see docs/websocket.md")
	return cmd
}

// handshakeFlags cap the proxy's connections still in their handshake
// (up runs the proxy as an operator would; run's scenarios keep the
// proxy's defaults).
type handshakeFlags struct {
	total, perSource int
}

func (f *handshakeFlags) add(cmd *cobra.Command) {
	addHandshakeFlags(cmd.Flags(), &f.total, &f.perSource)
}

// addHandshakeFlags defines --max-handshakes and
// --max-handshakes-per-source (up and serve).
func addHandshakeFlags(fl *pflag.FlagSet, total, perSource *int) {
	fl.IntVar(total, "max-handshakes", 0, fmt.Sprintf(
		"connections the proxy lets be in their TLS or link handshake at once, over both ports; more are closed at once (0: %d; negative: no cap)", proxy.DefaultMaxHandshakes))
	fl.IntVar(perSource, "max-handshakes-per-source", 0, fmt.Sprintf(
		"the same cap per client IP address (0: %d; negative: no cap)", proxy.DefaultMaxHandshakesPerSource))
}

// options passes only the caps the user set.
func (f *handshakeFlags) options(cmd *cobra.Command) []harness.Option {
	fl := cmd.Flags()
	if !fl.Changed("max-handshakes") && !fl.Changed("max-handshakes-per-source") {
		return nil
	}
	return []harness.Option{harness.HandshakeLimits(f.total, f.perSource)}
}

// writeReady writes the proxy CA and a proxy console.vv per VM into the
// state dir and describes the lane.
func writeReady(ctx context.Context, env *harness.Env) (readyLine, error) {
	ready := readyLine{API: env.APIURL, SourcesYAML: env.SourcesYAML}
	if t, ok := inproc.Of(env); ok {
		p := t.Proxy()
		ca := filepath.Join(env.Dir, "proxy-ca.pem")
		if err := os.WriteFile(ca, p.CAPEM(), 0o644); err != nil {
			return ready, err
		}
		ready.Proxy = readyProxy{Host: "127.0.0.1", Port: p.PlainAddr().Port, TLSPort: p.TLSAddr().Port, CAFile: ca}
		if a := p.ConnectAddr(); a != nil {
			ready.Proxy.ConnectPort = a.Port
		}
		if a := p.WebSocketAddr(); a != nil {
			ready.Proxy.WebSocketPort = a.Port
		}
	}
	for _, vm := range env.VMs {
		c := vm.Console()
		rc := readyConsole{Source: vm.Key.Source, UUID: c.UUID, Name: c.Name,
			Direct: readyDirect{Host: c.HypervisorIP, Port: c.InsecurePort},
			VVURL:  harness.VVURL(env.APIURL, harness.Proxy, vm.Key), Hypervisor: env.HostName()}
		if ready.Proxy.ConnectPort != 0 {
			rc.TunnelVVURL = harness.VVURL(env.APIURL, harness.Tunnel, vm.Key)
		}
		if ready.Proxy.WebSocketPort != 0 {
			rc.WebSocketURL = harness.WebSocketEndpointURL(env.APIURL, vm.Key)
		}
		f, err := env.FetchVV(ctx, harness.Proxy, vm)
		if err != nil {
			return ready, err
		}
		rc.VVFile = filepath.Join(env.Dir, c.Name+".vv")
		if err := os.WriteFile(rc.VVFile, f.Raw, 0o600); err != nil {
			return ready, err
		}
		ready.Consoles = append(ready.Consoles, rc)
	}
	return ready, nil
}

func printReady(cmd *cobra.Command, r readyLine, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintln(cmd.OutOrStdout(), string(b))
		return
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "ready: API %s, proxy TLS 127.0.0.1:%d (plain %d), sources.yaml %s\n", r.API, r.Proxy.TLSPort, r.Proxy.Port, r.SourcesYAML)
	if r.Proxy.ConnectPort != 0 {
		fmt.Fprintf(w, "CONNECT proxy: http://127.0.0.1:%d\n", r.Proxy.ConnectPort)
	}
	if r.Proxy.WebSocketPort != 0 {
		fmt.Fprintf(w, "WebSocket (spice-html5): ws://%s:%d%s\n", r.Proxy.Host, r.Proxy.WebSocketPort, proxy.DefaultWebSocketPath)
	}
	for _, c := range r.Consoles {
		on := ""
		if c.Hypervisor != "" {
			on = " on host " + c.Hypervisor
		}
		fmt.Fprintf(w, "\n%s (%s/%s), qemu SPICE at %s:%d%s\n", c.Name, c.Source, c.UUID, c.Direct.Host, c.Direct.Port, on)
		if c.VVFile != "" {
			fmt.Fprintf(w, "  remote-viewer %s\n", c.VVFile)
		}
		fmt.Fprintf(w, "  fresh .vv: curl -sO %s\n", c.VVURL)
		if c.TunnelVVURL != "" {
			fmt.Fprintf(w, "  through the CONNECT proxy: curl -sO %s\n", c.TunnelVVURL)
		}
		if c.WebSocketURL != "" {
			fmt.Fprintf(w, "  WebSocket URL and password (JSON): curl -s %s\n", c.WebSocketURL)
		}
	}
	fmt.Fprintln(w, "\nCtrl-C tears everything down.")
}

// waitForSignal blocks until ctx ends (SIGINT/SIGTERM) or a VM dies.
func waitForSignal(ctx context.Context, env *harness.Env, log *slog.Logger) error {
	died := make(chan error, len(env.VMs))
	for _, vm := range env.VMs {
		go func() {
			select {
			case <-vm.Exited():
				died <- fmt.Errorf("%s exited: %w", vm, vm.Wait(context.Background()))
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
		log.Info("signal received: tearing down")
		if err := env.Close(); err != nil {
			return &exitError{Code: exitFailure, Err: err}
		}
		log.Info("stopped: no qemu left")
		return nil
	case err := <-died:
		env.Close()
		return &exitError{Code: exitFailure, Err: err}
	}
}

// progressLogger logs progress as text on stderr.
func progressLogger(cmd *cobra.Command, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
}

// explain adds how to fix the machine to errors that have a known fix.
func explain(err error) error {
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("%w\nqemu-system-x86_64 is not installed: run `make deps` (Debian package qemu-system-x86), or point HARNESS_QEMU at a qemu binary", err)
	}
	return err
}

// hostsProblems lists every problem of a bad hosts file, one a line.
func hostsProblems(err error) error {
	var he *harness.HostsError
	if !errors.As(err, &he) {
		return err
	}
	lines := []string{fmt.Sprintf("--hosts %s has %s (harness validate --hosts lists them)", he.File, count(len(he.Problems), "problem"))}
	for _, p := range he.Problems {
		lines = append(lines, "  "+p.String())
	}
	return errors.New(strings.Join(lines, "\n"))
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}
