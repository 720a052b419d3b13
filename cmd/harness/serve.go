package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/harness/inproc"
	"github.com/spiceharness/spiceharness/static"
)

func init() { register(newServeCmd) }

func newServeCmd() *cobra.Command {
	var (
		sources    string
		plain, tls string
		apiAddr    string
		allowPlain bool
		asJSON     bool
		verbose    bool
		tokenTTL   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve --sources FILE",
		Short: "Serve the static sources of a sources.yaml through the proxy and .vv API",
		Long: `serve is a standalone static SPICE proxy and .vv API in front of qemus
you launched yourself (ports and tickets as in FILE). It reloads FILE when
it changes (and on SIGHUP): sources are replaced atomically, an errored
source is reported and serves nothing while the others keep working, and
live sessions are never cut by a reload.

The API listens on loopback by default; on another address it needs a key,
read from the HARNESS_API_KEY environment variable (never from argv).
With --json, stdout gets one JSON line when ready (see harness up --help).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sources == "" {
				return usageError(errString("--sources FILE is required"))
			}
			log := progressLogger(cmd, verbose)
			settings := harness.Settings{PlainAddr: plain, TLSAddr: tls, APIAddr: apiAddr, TokenTTL: tokenTTL,
				AllowPlain: allowPlain, APIKey: os.Getenv("HARNESS_API_KEY")}
			if verbose {
				settings.Logger = log
			}
			ctx := cmd.Context()
			env, err := inproc.Serve(ctx, sources, inproc.ServeConfig{Settings: settings, Logger: log})
			if err != nil {
				return &exitError{Code: exitFailure, Err: err}
			}
			defer env.Close()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			ready := readyLine{API: env.APIURL, SourcesYAML: sources,
				Proxy: readyProxy{Host: "127.0.0.1", Port: env.Proxy.PlainAddr().Port, TLSPort: env.Proxy.TLSAddr().Port}}
			ca, err := writeTemp("proxy-ca-*.pem", env.Proxy.CAPEM())
			if err != nil {
				return &exitError{Code: exitFailure, Err: err}
			}
			defer os.Remove(ca)
			ready.Proxy.CAFile = ca
			for _, c := range env.Store.Consoles() {
				ready.Consoles = append(ready.Consoles, readyConsole{Source: c.Source, UUID: c.UUID, Name: c.Name,
					Direct: readyDirect{Host: c.HypervisorIP, Port: c.InsecurePort},
					VVURL:  harness.VVURL(env.APIURL, harness.Proxy, static.Key{Source: c.Source, UUID: c.UUID})})
			}
			printReady(cmd, ready, asJSON)
			for {
				select {
				case <-ctx.Done():
					log.Info("signal received: stopping")
					if err := env.Close(); err != nil {
						return &exitError{Code: exitFailure, Err: err}
					}
					return nil
				case <-hup:
					env.Reload()
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&sources, "sources", "", "the sources.yaml to serve (required)")
	fl.StringVar(&plain, "listen", "127.0.0.1:0", "the proxy's plain listener (answers NEED_SECURED unless --allow-plain)")
	fl.StringVar(&tls, "tls-listen", "127.0.0.1:0", "the proxy's TLS listener")
	fl.StringVar(&apiAddr, "api", "127.0.0.1:0", "the .vv API's listener")
	fl.BoolVar(&allowPlain, "allow-plain", false, "serve sessions on the plain listener")
	fl.BoolVar(&asJSON, "json", false, "print one JSON line on stdout when ready")
	fl.BoolVarP(&verbose, "verbose", "v", false, "also log the proxy's audit events")
	fl.DurationVar(&tokenTTL, "token-ttl", 60*time.Second, "how long a minted token may open its session")
	return cmd
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
