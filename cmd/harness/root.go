package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// subcommands builds each subcommand. Every subcommand lives in its own
// file, which registers it with one line:
//
//	func init() { register(newValidateCmd) }
//
// Constructors (not shared command values) keep flag state from leaking
// between two executions in one process, as tests do.
var subcommands []func() *cobra.Command

func register(newCmd func() *cobra.Command) { subcommands = append(subcommands, newCmd) }

// newRoot builds the command tree.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "harness",
		Short: "spice-harness: drive SPICE proxies against real qemu",
		Long: `harness boots qemu with a SPICE server, writes the matching Kerbside
type: static sources.yaml, serves it through an in-process SPICE proxy and
.vv API, and runs scenario tests.

Exit codes: 0 success, 1 failure (validate: the file has errors),
2 usage error or unreadable input.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(fmt.Errorf("unknown command %q", args[0]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Usage()
			return &exitError{Code: exitUsage}
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	for _, newCmd := range subcommands {
		root.AddCommand(newCmd())
	}
	return root
}

// run executes harness with args and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot()
	if args == nil {
		args = []string{} // cobra reads os.Args for nil
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return exitCode(root.ExecuteContext(ctx), stderr)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// exitError carries the exit code of a failed command. A nil Err means the
// command has already said why (validate printed the problems).
type exitError struct {
	Code int
	Err  error
	// Usage adds a pointer to --help to the message.
	Usage bool
}

func (e *exitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *exitError) Unwrap() error { return e.Err }

func usageError(err error) error { return &exitError{Code: exitUsage, Err: err, Usage: true} }

// exactArgs is cobra.ExactArgs with a usage exit code.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		want := "no arguments"
		if n > 0 {
			want = count(n, "argument") + " (" + strings.TrimPrefix(cmd.Use, cmd.Name()+" ") + ")"
		}
		return usageError(fmt.Errorf("%s takes %s, got %d", cmd.Name(), want, len(args)))
	}
}

// exitCode prints err as one line on stderr and returns the exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	code, usage := exitFailure, false
	var ee *exitError
	if errors.As(err, &ee) {
		code, usage = ee.Code, ee.Usage
		if ee.Err == nil {
			return code
		}
	}
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
	if usage {
		msg += " (see harness --help)"
	}
	fmt.Fprintln(stderr, "harness: "+msg)
	return code
}
