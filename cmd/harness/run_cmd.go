package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/scenarios"
)

func init() { register(newRunCmd) }

func newRunCmd() *cobra.Command {
	var (
		lane        laneFlags
		names       []string
		list        bool
		verbose     bool
		externalAPI string
		externalOut string
	)
	cmd := &cobra.Command{
		Use:   "run [--scenario NAME]...",
		Short: "Run scenarios (all by default), each on a lane of its own",
		Long: `run runs the same scenario code as go test ./scenarios, outside go test.

With --external-api URL the scenarios drive a proxy this harness did not
start: the harness boots the VMs, writes the sources.yaml that proxy must
load to --external-sources FILE, waits until its API lists the consoles,
and skips the scenarios that need the in-process proxy. The bearer key
for that API comes from HARNESS_EXTERNAL_TOKEN.

Exit codes: 0 every scenario passed or did not apply, 1 a scenario failed,
2 usage error (unknown scenario).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if list {
				for _, s := range scenarios.All() {
					fmt.Fprintf(out, "%-34s %s\n", s.Name, s.Description)
				}
				return nil
			}
			selected := scenarios.All()
			if len(names) > 0 {
				selected = nil
				for _, n := range names {
					s, ok := scenarios.Lookup(n)
					if !ok {
						return usageError(fmt.Errorf("unknown scenario %q (harness run --list shows them)", n))
					}
					selected = append(selected, s)
				}
			}
			opts, err := lane.options()
			if err != nil {
				return err
			}
			if externalAPI != "" {
				if externalOut == "" {
					return usageError(errString("--external-api needs --external-sources FILE"))
				}
				opts = append(opts, harness.External(externalAPI, os.Getenv("HARNESS_EXTERNAL_TOKEN"), externalOut))
			}
			failed := 0
			for _, s := range selected {
				var w = out
				if !verbose {
					w = nil
				}
				fmt.Fprintf(out, "=== RUN   %s\n", s.Name)
				r := scenarios.Run(cmd.Context(), s, w, opts...)
				switch {
				case r.Skipped != "":
					fmt.Fprintf(out, "--- SKIP: %s (%.2fs): %s\n", r.Name, r.Duration.Seconds(), r.Skipped)
				case r.Passed:
					fmt.Fprintf(out, "--- PASS: %s (%.2fs)\n", r.Name, r.Duration.Seconds())
				default:
					failed++
					fmt.Fprintf(out, "--- FAIL: %s (%.2fs)\n", r.Name, r.Duration.Seconds())
					if !verbose {
						fmt.Fprintf(out, "    %s\n", strings.ReplaceAll(strings.Join(r.Log, "\n"), "\n", "\n    "))
					}
				}
				if cmd.Context().Err() != nil {
					break
				}
			}
			if failed > 0 {
				fmt.Fprintf(out, "FAIL: %d of %d scenarios\n", failed, len(selected))
				return &exitError{Code: exitFailure}
			}
			fmt.Fprintf(out, "PASS: %d scenarios\n", len(selected))
			return nil
		},
	}
	lane.add(cmd, 60*time.Second)
	fl := cmd.Flags()
	fl.StringSliceVar(&names, "scenario", nil, "scenario to run (repeatable; default all)")
	fl.BoolVar(&list, "list", false, "list the scenarios and exit")
	fl.BoolVarP(&verbose, "verbose", "v", false, "print every scenario's log as it runs")
	fl.StringVar(&externalAPI, "external-api", "", "drive the proxy behind this .vv API instead of an in-process one")
	fl.StringVar(&externalOut, "external-sources", "", "with --external-api: where to write the sources.yaml that proxy loads")
	return cmd
}
