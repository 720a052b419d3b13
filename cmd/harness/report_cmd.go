package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spiceharness/spiceharness/scenarios"
)

func init() { register(newReportCmd) }

func newReportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Work with run reports (merge the shards of a CI matrix)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Usage()
			return &exitError{Code: exitUsage}
		},
	}
	cmd.AddCommand(newReportMergeCmd())
	return cmd
}

func newReportMergeCmd() *cobra.Command {
	var (
		output string
		format string
	)
	cmd := &cobra.Command{
		Use:   "merge REPORT... -o FILE",
		Short: "Merge the reports of sharded runs into one",
		Long: `merge reads the reports of the shards of a run (harness run --shard K/N
--junit FILE, or --json lines; either kind, mixed), checks that no
scenario is in two of them, and writes one report: JUnit XML when FILE
ends in .xml (or --format junit), JSON lines otherwise (--format json);
-o - writes to stdout. It prints the merged conformance matrix on stderr.

Exit codes: 0 the merged run passes, 1 it does not (a failure, a scenario
not run, or INCOMPLETE), 2 usage error or an unreadable or overlapping
report.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError(errString("merge takes one or more reports"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				return usageError(errString("merge needs -o FILE (or -o - for stdout)"))
			}
			switch format {
			case "":
				format = "json"
				if strings.EqualFold(filepath.Ext(output), ".xml") {
					format = "junit"
				}
			case "junit", "json":
			default:
				return usageError(fmt.Errorf("--format %q: want junit or json", format))
			}
			var reps []*scenarios.Report
			for _, a := range args {
				rep, err := readReportFile(a)
				if err != nil {
					return &exitError{Code: exitUsage, Err: err}
				}
				reps = append(reps, rep)
			}
			merged, err := scenarios.Merge(reps...)
			if err != nil {
				return &exitError{Code: exitUsage, Err: err}
			}
			w := cmd.OutOrStdout()
			var f *os.File
			if output != "-" {
				if f, err = os.Create(output); err != nil {
					return &exitError{Code: exitUsage, Err: err}
				}
				defer f.Close()
				w = f
			}
			if format == "junit" {
				err = scenarios.WriteJUnit(w, merged.Target, merged.Started, merged.Results)
			} else {
				err = scenarios.WriteJSONLines(w, merged.Results)
			}
			if err == nil && f != nil {
				err = f.Close()
			}
			if err != nil {
				return &exitError{Code: exitFailure, Err: fmt.Errorf("writing %s: %w", output, err)}
			}
			sum := scenarios.Summarize(merged.Results)
			fmt.Fprintf(cmd.ErrOrStderr(), "merged %d reports, %d scenarios\n", len(reps), len(merged.Results))
			sum.Write(cmd.ErrOrStderr(), merged.Target)
			if !sum.Passes() {
				return &exitError{Code: exitFailure}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the merged report here (- for stdout)")
	cmd.Flags().StringVar(&format, "format", "", "junit or json (default: junit for a .xml FILE, json otherwise)")
	return cmd
}
