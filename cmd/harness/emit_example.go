package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spiceharness/spiceharness/static"
)

func init() { register(newEmitExampleCmd) }

// exampleFile is where emit-example writes by default, in the working
// directory.
const exampleFile = "example-static-sources.yaml"

func newEmitExampleCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "emit-example [-o FILE]",
		Short: "Write an example sources.yaml: one static source, two consoles, commented",
		Long: `emit-example writes a commented sources.yaml with one static source of
two consoles, with the qemu command lines and QMP commands that serve them.
The repository ships the same file as fixtures/example-static-sources.yaml.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var b bytes.Buffer
			if err := static.Emit(&b, static.ExampleSources()); err != nil {
				return err
			}
			if output == "-" {
				_, err := cmd.OutOrStdout().Write(b.Bytes())
				return err
			}
			if err := os.WriteFile(output, b.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", output)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", exampleFile, "file to write, - for standard output")
	return cmd
}
