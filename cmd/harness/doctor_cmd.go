package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spiceharness/spiceharness/harness"
)

func init() { register(newDoctorCmd) }

func newDoctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check that this machine can run lanes, and say what to install or start",
		Long: `doctor checks what the harness needs from the machine: qemu with SPICE,
KVM, the real clients (spicy-screenshot, remote-viewer under Xvfb), libvirtd
and squid. Each line is ok, FAIL or WARN (optional: lanes work without it,
slower or with fewer scenarios); a failing line says what needs it and
exactly what to run: an apt-get install (make deps installs everything) or
make services (starts libvirtd). harness run prints the same advice when a
lane cannot start.

Exit codes: 0 nothing required is missing, 1 something is.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			failed := 0
			for _, r := range harness.Doctor(cmd.Context()) {
				switch {
				case r.OK():
					fmt.Fprintf(out, "ok    %-17s %s\n", r.Name, r.Found)
				default:
					word := "FAIL"
					if r.Optional {
						word = "WARN"
					} else {
						failed++
					}
					fmt.Fprintf(out, "%-5s %-17s %v (needed by %s)\n      fix: %s\n", word, r.Name, r.Err, r.For, r.Fix)
				}
			}
			if failed > 0 {
				return &exitError{Code: exitFailure, Err: fmt.Errorf("doctor: %s missing (the fixes are above)", count(failed, "requirement"))}
			}
			return nil
		},
	}
}
