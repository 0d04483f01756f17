package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/wharfhq/wharf/admin"
	"github.com/wharfhq/wharf/plugins"
)

// operatorCommands reach a running `wharf serve` through the admin socket
// in its data directory.
func operatorCommands() []*cobra.Command {
	var dataDir string
	client := func() *admin.Client { return admin.NewClient(dataDir) }
	withDataDir := func(c *cobra.Command) *cobra.Command {
		c.Flags().StringVar(&dataDir, "data-dir", plugins.DefaultStateDir, "data directory of the running wharf serve")
		return c
	}
	objectArgs := "<binding> <name|id:HEX>"

	ps := &cobra.Command{
		Use:   "ps",
		Short: "List the containers of a running wharf: objects, states, ages, addresses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := client().Containers(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BINDING\tCLASS\tOBJECT\tSTATE\tAGE\tADDRESS\tPID\tLABELS")
			for _, c := range list {
				var labels []string
				for k, v := range c.Labels {
					labels = append(labels, k+"="+v)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", strings.Join(c.Bindings, ","), c.Class, c.Object[:min(16, len(c.Object))],
					c.State, time.Since(c.Started).Round(time.Second), c.Address, c.Pid, strings.Join(labels, ","))
			}
			return tw.Flush()
		},
	}
	stop := &cobra.Command{
		Use:   "stop " + objectArgs,
		Short: "Stop an object's container (SIGTERM, then SIGKILL after 10s)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return client().Stop(cmd.Context(), args[0], args[1])
		},
	}
	destroy := &cobra.Command{
		Use:   "destroy " + objectArgs,
		Short: "Remove an object's container at once",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return client().Destroy(cmd.Context(), args[0], args[1])
		},
	}
	var follow bool
	logs := &cobra.Command{
		Use:   "logs " + objectArgs,
		Short: "Print an object's container output (stdout and stderr of its main process)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			return client().Logs(ctx, args[0], args[1], follow, cmd.OutOrStdout())
		},
	}
	logs.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the container exits")
	var noTTY bool
	exec := &cobra.Command{
		Use:   "exec " + objectArgs + " -- cmd [args...]",
		Short: "Run a command in an object's container (with a TTY when the terminal is one)",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 3 {
				return fmt.Errorf("usage: wharf exec %s -- cmd [args...] (got %d arguments)", objectArgs, len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := runExec(cmd.Context(), client(), args[0], args[1], args[2:], !noTTY)
			if err != nil {
				return err
			}
			if code != 0 {
				os.Exit(code)
			}
			return nil
		},
	}
	exec.Flags().BoolVarP(&noTTY, "no-tty", "T", false, "no terminal even if stdin is one")
	cmds := []*cobra.Command{ps, stop, destroy, logs, exec}
	for _, c := range cmds {
		withDataDir(c)
	}
	return cmds
}

// runExec runs cmd, on a TTY (raw mode, resized with the terminal) when
// stdin is a terminal and tty is allowed.
func runExec(ctx context.Context, c *admin.Client, binding, name string, cmd []string, tty bool) (int, error) {
	fd := int(os.Stdin.Fd())
	tty = tty && term.IsTerminal(fd)
	req := admin.ExecRequest{Cmd: cmd, TTY: tty}
	resize := make(chan [2]uint16, 1)
	if tty {
		if w, h, err := term.GetSize(fd); err == nil {
			req.Cols, req.Rows = uint16(w), uint16(h)
		}
		old, err := term.MakeRaw(fd)
		if err != nil {
			return 0, err
		}
		defer term.Restore(fd, old)
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if w, h, err := term.GetSize(fd); err == nil {
					resize <- [2]uint16{uint16(w), uint16(h)}
				}
			}
		}()
	}
	return c.Exec(ctx, binding, name, req, os.Stdin, os.Stdout, os.Stderr, resize)
}
