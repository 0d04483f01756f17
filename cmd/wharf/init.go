package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wharfhq/wharf/scaffold"
)

func newInitCommand() *cobra.Command {
	var opts scaffold.Options
	cmd := &cobra.Command{
		Use:   "init [dir]",
		Short: "Write a new plugin: wharf.toml, a Worker, a Durable Object, a test, go.mod and go.sum",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = argOrDot(args)
			if err := scaffold.Write(cmd.Context(), opts); err != nil {
				return err
			}
			serves := "serves it"
			if opts.Container {
				serves = "serves it once its image is imported (the comment in its wharf.toml shows how)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote a plugin in %s: `wharf serve %s` %s, `go test` there tests it\n", opts.Dir, shellQuote(opts.Dir), serves)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.SDK, "sdk", "", "wharf checkout for go.mod's replace (default: the one this wharf was built from)")
	cmd.Flags().BoolVar(&opts.Container, "container", false, "add a Container class and its [[containers]] entry")
	cmd.Flags().StringVar(&opts.ModulePath, "module", "", "module path of the new go.mod (default example.com/<name>)")
	cmd.Flags().StringVar(&opts.Name, "name", "", "plugin name (default: the directory's name)")
	return cmd
}

// shellQuote is s as one shell word: unchanged when it needs no quoting,
// else in single quotes.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
