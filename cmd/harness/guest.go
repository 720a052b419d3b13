package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/spiceharness/spiceharness/internal/guestimage"
)

func init() { register(newGuestCmd) }

func newGuestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "guest",
		Short: "Build or show the Linux test guest (Debian kernel + Go agent initramfs)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Usage()
			return &exitError{Code: exitUsage}
		},
	}
	var dir string
	build := &cobra.Command{
		Use:   "build",
		Short: "Build the Linux guest into its cache unless it is up to date, and print its manifest",
		Long: `build downloads linux-image-amd64 with apt-get (once per kernel version), builds
the guest agent, and writes the initramfs into the cache directory
(--dir, else $HARNESS_GUEST_DIR, else ~/.cache/spice-harness/guest). Run it
inside the spice-harness module (or one that requires it). A second run with
nothing changed only rebuilds the agent from Go's cache and compares.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := guestimage.Ensure(cmd.Context(), guestimage.Options{Dir: dir, Logf: func(f string, a ...any) {
				fmt.Fprintf(cmd.ErrOrStderr(), "guest: "+f+"\n", a...)
			}})
			if err != nil {
				return err
			}
			return printManifest(cmd, img)
		},
	}
	build.Flags().StringVar(&dir, "dir", "", "cache directory (default $HARNESS_GUEST_DIR or ~/.cache/spice-harness/guest)")
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the manifest of the Linux guest last built, without building",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := guestimage.Find(dir)
			if err != nil {
				return err
			}
			return printManifest(cmd, img)
		},
	}
	show.Flags().StringVar(&dir, "dir", "", "cache directory (default $HARNESS_GUEST_DIR or ~/.cache/spice-harness/guest)")
	cmd.AddCommand(build, show)
	return cmd
}

func printManifest(cmd *cobra.Command, img guestimage.Image) error {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), string(b))
	return nil
}
