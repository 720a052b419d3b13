package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/daemon"
	"github.com/spiceharness/spiceharness/static"
)

func init() { register(newServeCmd) }

// EnvAPIKey is where serve reads its API key (never from argv).
const EnvAPIKey = "HARNESS_API_KEY"

// serveNames are the flags and variables a serve user sets, for the
// daemon's error messages.
var serveNames = map[daemon.Setting]string{
	daemon.SettingSources:      "--sources",
	daemon.SettingAllowErrors:  "--allow-errors",
	daemon.SettingPollInterval: "--poll",
	daemon.SettingPlainAddr:    "--listen",
	daemon.SettingTLSAddr:      "--tls-listen",
	daemon.SettingAPIAddr:      "--api",
	daemon.SettingConnectAddr:  "--connect-listen",
	daemon.SettingWebSocket:    "--ws-listen",
	daemon.SettingProxyHost:    "--proxy-host",
	daemon.SettingAPIKey:       EnvAPIKey,
	daemon.SettingTokenTTL:     "--token-ttl",
	daemon.SettingTLSCert:      "--tls-cert",
	daemon.SettingTLSKey:       "--tls-key",
	daemon.SettingCA:           "--ca",
	daemon.SettingStateDir:     "--state-dir",
}

// serveDrain is how long live sessions may finish after SIGINT/SIGTERM.
const serveDrain = time.Second

// defaultStateDir is $XDG_STATE_HOME/spice-harness, else
// ~/.local/state/spice-harness ("" when neither is known).
func defaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "spice-harness")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "spice-harness")
	}
	return ""
}

func newServeCmd() *cobra.Command {
	var (
		cfg     = daemon.Config{Names: serveNames, ReloadOnSIGHUP: true}
		poll    time.Duration
		asJSON  bool
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "serve --sources FILE",
		Short: "Serve the static sources of a sources.yaml through the proxy and .vv API",
		Long: `serve is a standalone static SPICE proxy and .vv API in front of qemus
you launched yourself (ports and tickets as in FILE; the format is in
docs/static-sources.md, an example from harness emit-example).

Reloads. serve re-reads FILE when it changes (inotify on its directory:
editors that save by renaming are seen; --poll reads it on a timer
instead), on SIGHUP, and on POST /reload. The last good configuration
wins: a file that cannot be parsed changes nothing; a source whose entry
has errors keeps serving its last good consoles and is marked errored
with its problems until the next good save; a source removed from a
valid file is removed. Live sessions are never cut by a reload. Each
reload is one log line; GET /reload shows the last one, GET /source and
/source/NAME each source's state, and /metrics counts them.

At start an invalid FILE is an error (exit 1, every problem listed)
unless --allow-errors.

Certificates. With --tls-cert and --tls-key (and --ca, the CA that .vv
files embed) serve uses yours; the .vv host-subject is your certificate's
subject. Otherwise it generates a CA and a certificate once and keeps
them in --state-dir, so restarts reuse them and .vv files already handed
out stay valid. Key files must be readable by their owner only. SIGHUP
and POST /reload also re-read the certificate files: a rotated
certificate is served to new connections without dropping a session,
and one that fails a check is refused (the served one is kept).

The API listens on loopback by default; on another address it needs a
key, read from the HARNESS_API_KEY environment variable (never from argv);
clients send "Authorization: Bearer KEY".
With --json, stdout gets one JSON line when ready (see harness up --help).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfg.Sources == "" {
				return usageError(errString("--sources FILE is required"))
			}
			if poll < 0 {
				return usageError(fmt.Errorf("--poll %v is negative; give an interval such as 2s, or leave it out to watch FILE with inotify", poll))
			}
			if poll > 0 {
				cfg.Watch, cfg.PollInterval = daemon.WatchPoll, poll
			}
			cfg.APIKey = os.Getenv(EnvAPIKey)
			log := progressLogger(cmd, verbose)
			cfg.Logger = log
			if verbose {
				cfg.AuditLogger = log
			}
			d, err := daemon.New(cfg)
			if err != nil {
				return usageError(err)
			}
			defer d.Close()
			ctx := cmd.Context()
			if err := d.Start(ctx); err != nil {
				return startError(cmd, cfg.Sources, err)
			}
			ready, cleanup, err := serveReady(d)
			defer cleanup()
			if err != nil {
				return &exitError{Code: exitFailure, Err: err}
			}
			printReady(cmd, ready, asJSON)
			<-ctx.Done()
			log.Info("signal received: stopping")
			sctx, cancel := context.WithTimeout(context.Background(), serveDrain)
			defer cancel()
			if err := d.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return &exitError{Code: exitFailure, Err: err}
			}
			log.Info("stopped")
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Sources, "sources", "", "the sources.yaml to serve (required)")
	fl.BoolVar(&cfg.AllowErrors, "allow-errors", false, "start even if FILE has errors or cannot be read: serve what is good, wait for a fix")
	fl.DurationVar(&poll, "poll", 0, "read FILE at this interval instead of watching it with inotify (for network file systems)")
	fl.StringVar(&cfg.PlainAddr, "listen", daemon.DefaultAddr, "the proxy's plain listener (answers NEED_SECURED unless --allow-plain)")
	fl.StringVar(&cfg.TLSAddr, "tls-listen", daemon.DefaultAddr, "the proxy's TLS listener")
	fl.StringVar(&cfg.APIAddr, "api", daemon.DefaultAddr, "the .vv API's listener (not loopback: set HARNESS_API_KEY)")
	fl.StringVar(&cfg.ProxyHost, "proxy-host", "", "host proxy .vv files send clients to (default: the --tls-listen host, or 127.0.0.1)")
	fl.BoolVar(&cfg.AllowPlain, "allow-plain", false, "serve sessions on the plain listener")
	addHandshakeFlags(fl, &cfg.MaxHandshakes, &cfg.MaxHandshakesPerSource)
	fl.StringVar(&cfg.ConnectAddr, "connect-listen", "", "also serve HTTP CONNECT tunnels on this address (127.0.0.1:0 for a free port; tunnel .vv files carry the stored ticket); see docs/tunnels.md")
	fl.StringVar(&cfg.WebSocketAddr, "ws-listen", "", "also serve SPICE over WebSocket (spice-html5's transport) on this address (127.0.0.1:0 for a free port); GET /console/ws/{source}/{uuid} answers its URL and token; see docs/websocket.md")
	fl.StringSliceVar(&cfg.WebSocketOrigins, "ws-origin", nil, "with --ws-listen: a browser Origin allowed besides the listener's own (scheme://host:port; repeatable)")
	fl.StringVar(&cfg.TLSCertFile, "tls-cert", "", "the proxy's TLS certificate (PEM; may hold the chain); with --tls-key")
	fl.StringVar(&cfg.TLSKeyFile, "tls-key", "", "its private key (PEM, mode 0600)")
	fl.StringVar(&cfg.CAFile, "ca", "", "the CA .vv files embed for --tls-cert (default: none, clients use their trust store; the certificate itself when self-signed)")
	fl.StringVar(&cfg.StateDir, "state-dir", defaultStateDir(), "where the generated CA and certificate are kept (\"\": a new CA in memory each start)")
	fl.BoolVar(&asJSON, "json", false, "print one JSON line on stdout when ready")
	fl.BoolVarP(&verbose, "verbose", "v", false, "also log the proxy's audit events and API requests")
	fl.DurationVar(&cfg.TokenTTL, "token-ttl", 60*time.Second, "how long a minted token may open its session")
	return cmd
}

// startError explains why Start failed: every problem of an invalid
// file on stderr (exit 1), an unreadable file (exit 2), else the
// daemon's message, which names the flag to change (exit 1).
func startError(cmd *cobra.Command, file string, err error) error {
	var pe *static.ParseError
	var perr *fs.PathError
	switch {
	case errors.As(err, &pe):
		for _, p := range pe.Problems {
			fmt.Fprintln(cmd.ErrOrStderr(), p)
		}
		return &exitError{Code: exitFailure, Err: fmt.Errorf("%s has %s; fix them (harness validate %s lists them too) or start with --allow-errors",
			file, count(len(pe.Problems), "error"), file)}
	case errors.As(err, &perr) && perr.Path == file:
		return &exitError{Code: exitUsage, Err: fmt.Errorf("--sources %s: cannot be read: %w", file, perr.Err)}
	}
	return &exitError{Code: exitFailure, Err: err}
}

// serveReady describes the running daemon. The proxy CA goes to a file
// when it has none (an in-memory CA); cleanup removes that file.
func serveReady(d *daemon.Daemon) (readyLine, func(), error) {
	p := d.Proxy()
	r := readyLine{API: d.APIURL(), SourcesYAML: d.SourcesFile(),
		Proxy: readyProxy{Host: d.ProxyHost(), Port: p.PlainAddr().Port, TLSPort: p.TLSAddr().Port, CAFile: d.CAFile()}}
	cleanup := func() {}
	if r.Proxy.CAFile == "" && len(d.CAPEM()) > 0 {
		ca, err := writeTemp("proxy-ca-*.pem", d.CAPEM())
		if err != nil {
			return r, cleanup, err
		}
		r.Proxy.CAFile, cleanup = ca, func() { os.Remove(ca) }
	}
	if a := p.ConnectAddr(); a != nil {
		r.Proxy.ConnectPort = a.Port
	}
	if a := p.WebSocketAddr(); a != nil {
		r.Proxy.WebSocketPort = a.Port
	}
	for _, c := range d.Store().Consoles() {
		k := static.Key{Source: c.Source, UUID: c.UUID}
		rc := readyConsole{Source: c.Source, UUID: c.UUID, Name: c.Name,
			Direct: readyDirect{Host: c.HypervisorIP, Port: c.InsecurePort}, VVURL: d.ProxyVVURL(k)}
		if r.Proxy.ConnectPort != 0 {
			rc.TunnelVVURL = harness.VVURL(d.APIURL(), harness.Tunnel, k)
		}
		if r.Proxy.WebSocketPort != 0 {
			rc.WebSocketURL = harness.WebSocketEndpointURL(d.APIURL(), k)
		}
		r.Consoles = append(r.Consoles, rc)
	}
	return r, cleanup, nil
}

type errString string

func (e errString) Error() string { return string(e) }

func writeTemp(pattern string, data []byte) (string, error) {
	f, err := os.CreateTemp("", pattern)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return "", err
	}
	return f.Name(), nil
}
