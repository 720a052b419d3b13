package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() { register(newVersionCmd) }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the harness version and the Go version it was built with",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, _ := debug.ReadBuildInfo()
			fmt.Fprintln(cmd.OutOrStdout(), versionLine(info))
			return nil
		},
	}
}

// versionLine renders the build information as one line:
// "harness v1.2.3 (github.com/spiceharness/spiceharness) go1.26.0 linux/amd64 commit abc123def456+dirty".
func versionLine(info *debug.BuildInfo) string {
	version, path := "(unknown)", "github.com/spiceharness/spiceharness"
	var rev string
	var dirty bool
	if info != nil {
		if info.Main.Version != "" {
			version = info.Main.Version
		}
		if info.Main.Path != "" {
			path = info.Main.Path
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	line := fmt.Sprintf("harness %s (%s) %s %s/%s", version, path, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if rev != "" {
		line += " commit " + rev[:min(12, len(rev))]
		if dirty {
			line += "+dirty"
		}
	}
	return line
}
