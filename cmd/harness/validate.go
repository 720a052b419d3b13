package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/static"
)

func init() { register(newValidateCmd) }

func newValidateCmd() *cobra.Command {
	var hosts bool
	cmd := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a sources.yaml and list every problem",
		Long: `validate parses FILE (- for standard input) as a Kerbside sources.yaml
and prints every problem on stdout, one per line, as

    file:line:col: field: message

(warnings as "field: warning: message"), then a summary on stderr.
Sources of Kerbside's other types (shakenfist, ovirt, openstack) are
counted as unsupported, not errors.

With --hosts, FILE is a hosts file (harness run --hosts, docs/hosts.md)
and its problems are listed the same way.

Exit codes: 0 no errors (warnings allowed), 1 errors, 2 unreadable FILE.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if hosts {
				return validateHosts(cmd, args[0])
			}
			var (
				f   *static.File
				err error
			)
			if args[0] == "-" {
				f, err = static.ParseReader("<stdin>", cmd.InOrStdin())
			} else {
				f, err = static.ParseFile(args[0])
			}
			if f == nil {
				return &exitError{Code: exitUsage, Err: err}
			}
			out := cmd.OutOrStdout()
			for _, p := range f.Problems {
				fmt.Fprintln(out, p)
			}
			fmt.Fprintln(cmd.ErrOrStderr(), summary(f))
			if f.Err() != nil {
				return &exitError{Code: exitFailure}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&hosts, "hosts", false, "FILE is a hosts file, not a sources.yaml")
	return cmd
}

// validateHosts lists a hosts file's problems, or sums it up.
func validateHosts(cmd *cobra.Command, path string) error {
	hs, err := harness.ReadHostsFile(path)
	var he *harness.HostsError
	switch {
	case errors.As(err, &he):
		for _, p := range he.Problems {
			fmt.Fprintln(cmd.OutOrStdout(), p)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", path, count(len(he.Problems), "error"))
		return &exitError{Code: exitFailure}
	case err != nil:
		return &exitError{Code: exitUsage, Err: err}
	}
	slots := 0
	for _, h := range hs {
		slots += h.Slots
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s, %s, 0 errors\n", path, count(len(hs), "host"), count(slots, "slot"))
	return nil
}

// summary is validate's last line: "FILE: 3 sources, 5 consoles,
// 1 unsupported source, 0 errors, 1 warning".
func summary(f *static.File) string {
	consoles, unsupported := 0, 0
	for i := range f.Sources {
		s := &f.Sources[i]
		consoles += len(s.Consoles)
		if s.Unsupported() {
			unsupported++
		}
	}
	parts := []string{
		count(len(f.Sources), "source"),
		count(consoles, "console"),
		count(unsupported, "unsupported source"),
		count(len(f.Errors()), "error"),
		count(len(f.Warnings()), "warning"),
	}
	return f.Name + ": " + strings.Join(parts, ", ")
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
