package main

import (
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/host"
)

type backendFlags struct {
	dataDir, address string
}

func (f *backendFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.dataDir, "data-dir", ".wharf", "data directory (the embedded containerd lives under it)")
	cmd.PersistentFlags().StringVar(&f.address, "containerd-address", "", "use the containerd at this socket instead of starting one")
}

// run makes a cobra RunE that calls fn with an open backend, closed after.
func (f *backendFlags) run(fn func(cmd *cobra.Command, b *containerd.Backend, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if f.address == "" { // the embedded containerd lives in the data directory
			lock, err := host.LockDataDir(f.dataDir)
			if err != nil {
				return err
			}
			defer lock.Unlock()
		}
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		b, err := containerd.OpenBackend(cmd.Context(), f.dataDir, f.address, logger)
		if err != nil {
			return err
		}
		defer b.Close()
		return fn(cmd, b, args)
	}
}

func newImagesCommand() *cobra.Command {
	var f backendFlags
	cmd := &cobra.Command{Use: "images", Short: "Manage the container images wharf runs"}
	f.register(cmd)
	var name string
	importCmd := &cobra.Command{
		Use:   "import archive.tar",
		Short: "Import an OCI or Docker image archive",
		Args:  cobra.ExactArgs(1),
		RunE: f.run(func(cmd *cobra.Command, b *containerd.Backend, args []string) error {
			imgs, err := containerd.ImportArchive(cmd.Context(), b.Client, args[0], name)
			if err != nil {
				return err
			}
			for _, img := range imgs {
				fmt.Fprintf(cmd.OutOrStdout(), "imported %s (%s)\n", img.Name, img.Digest)
			}
			return nil
		}),
	}
	importCmd.Flags().StringVar(&name, "name", "", "name for images the archive leaves unnamed")
	lsCmd := &cobra.Command{
		Use:   "ls",
		Short: "List images",
		Args:  cobra.NoArgs,
		RunE: f.run(func(cmd *cobra.Command, b *containerd.Backend, _ []string) error {
			imgs, err := containerd.ListImages(cmd.Context(), b.Client)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tDIGEST\tSIZE")
			for _, img := range imgs {
				fmt.Fprintf(w, "%s\t%s\t%.1f MB\n", img.Name, img.Digest, float64(img.Size)/1e6)
			}
			return w.Flush()
		}),
	}
	rmCmd := &cobra.Command{
		Use:   "rm name...",
		Short: "Remove images",
		Args:  cobra.MinimumNArgs(1),
		RunE: f.run(func(cmd *cobra.Command, b *containerd.Backend, args []string) error {
			for _, n := range args {
				if err := containerd.RemoveImage(cmd.Context(), b.Client, n); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", n)
			}
			return nil
		}),
	}
	pullCmd := &cobra.Command{
		Use:   "pull reference",
		Short: "Pull an image from a registry, with progress on stderr",
		Args:  cobra.ExactArgs(1),
		RunE: f.run(func(cmd *cobra.Command, b *containerd.Backend, args []string) error {
			img, err := containerd.Pull(cmd.Context(), b.Client, args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pulled %s (%s, %.1f MB)\n", img.Name, img.Digest, float64(img.Size)/1e6)
			return nil
		}),
	}
	cmd.AddCommand(importCmd, pullCmd, lsCmd, rmCmd)
	return cmd
}
