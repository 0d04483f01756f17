package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/wharfhq/wharf/admin"
	"github.com/wharfhq/wharf/internal/textlog"
	"github.com/wharfhq/wharf/manifest"
)

// operatorCommands reach a running `wharf serve` through the admin socket
// in its data directory.
func operatorCommands() []*cobra.Command {
	var dataDir string
	client := func() *admin.Client { return admin.NewClient(dataDir) }
	withDataDir := func(c *cobra.Command) *cobra.Command {
		c.Flags().StringVar(&dataDir, "data-dir", manifest.DefaultStateDir, "data directory of the running wharf serve")
		return c
	}
	objectArgs := "<binding> <name|id:HEX> | id:HEX"

	var all, noTrunc bool
	var format string
	ps := &cobra.Command{
		Use:   "ps",
		Short: "List the running containers of a wharf: objects and their names, states, ages, addresses",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format must be table or json, got %q", format)
			}
			list, err := client().Containers(cmd.Context())
			if err != nil {
				return err
			}
			if !all {
				list = slices.DeleteFunc(list, func(c admin.Container) bool { return c.Exited() })
			}
			if format == "json" {
				return printJSON(cmd.OutOrStdout(), list)
			}
			return printContainers(cmd.OutOrStdout(), list, noTrunc)
		},
	}
	ps.Flags().BoolVarP(&all, "all", "a", false, "also show containers that exited")
	ps.Flags().StringVar(&format, "format", "table", "table or json")
	noTruncFlag(ps, &noTrunc, ", --format json never does")
	stop := &cobra.Command{
		Use:   "stop " + objectArgs,
		Short: "Stop an object's container (SIGTERM, then SIGKILL after 10s)",
		Args:  objectArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			binding, name := objectRef(args)
			return echoOnSuccess(cmd, args, client().Stop(cmd.Context(), binding, name))
		},
	}
	destroy := &cobra.Command{
		Use:   "destroy " + objectArgs,
		Short: "Remove an object's container at once",
		Args:  objectArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			binding, name := objectRef(args)
			return echoOnSuccess(cmd, args, client().Destroy(cmd.Context(), binding, name))
		},
	}
	var follow bool
	logs := &cobra.Command{
		Use:   "logs " + objectArgs,
		Short: "Print an object's container output (stdout and stderr of its main process)",
		Args:  objectArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			binding, name := objectRef(args)
			return client().Logs(ctx, binding, name, follow, cmd.OutOrStdout())
		},
	}
	logs.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the container exits")
	var noTTY bool
	var user string
	exec := &cobra.Command{
		Use:   "exec " + objectArgs + " -- cmd [args...]",
		Short: "Run a command in an object's container (with a TTY when the terminal is one)",
		Args: func(_ *cobra.Command, args []string) error {
			switch {
			case len(args) >= 2 && strings.HasPrefix(args[0], "id:"):
				return nil
			case len(args) < 3:
				return fmt.Errorf("usage: wharf exec %s -- cmd [args...] (got %s)", objectArgs, gotArgs(args))
			}
			return nonEmpty(args[:2])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			binding, name, cmdArgs := args[0], args[1], args[2:]
			if strings.HasPrefix(args[0], "id:") {
				binding, name, cmdArgs = anyBinding, args[0], args[1:]
			}
			code, err := runExec(cmd.Context(), client(), binding, name, admin.ExecRequest{Cmd: cmdArgs, User: user}, !noTTY)
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
	exec.Flags().StringVarP(&user, "user", "u", "", "run as this user of the image's /etc/passwd, by name or uid (default: the container's)")
	// docker exec's -i and -t, out of habit: stdin is always passed on,
	// and the terminal follows stdin's.
	for _, f := range [][2]string{{"interactive", "i"}, {"tty", "t"}} {
		exec.Flags().BoolP(f[0], f[1], false, "accepted as docker exec's: stdin is always passed on, with a terminal when it is one")
		exec.Flags().MarkHidden(f[0])
	}
	inspect := &cobra.Command{
		Use:   "inspect " + objectArgs,
		Short: "Print an object's full state as JSON: name, liveness, storage, container, labels, resource use",
		Args:  objectArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			binding, name := objectRef(args)
			obj, err := client().Inspect(cmd.Context(), binding, name)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), obj)
		},
	}
	var noStream, statsNoTrunc bool
	var interval time.Duration
	stats := &cobra.Command{
		Use:   "stats",
		Short: "Show each running container's CPU, memory, pids and block I/O (from its cgroup), refreshed live",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			out := cmd.OutOrStdout()
			f, isFile := out.(*os.File)
			return runStats(ctx, client(), out, interval, noStream, isFile && term.IsTerminal(int(f.Fd())), statsNoTrunc)
		},
	}
	stats.Flags().BoolVar(&noStream, "no-stream", false, "print one table (CPU over one interval) and exit")
	noTruncFlag(stats, &statsNoTrunc, "")
	durationFlag(stats.Flags(), &interval, "interval", time.Second, false, "how often to refresh (and the CPU sampling window)")
	var filter admin.TailFilter
	var tailFormat string
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Follow the log of a running wharf live: what the Worker and objects log, container lifecycle (no line per request)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tailFormat != "text" && tailFormat != "json" {
				return fmt.Errorf("--format must be text or json, got %q", tailFormat)
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			out := cmd.OutOrStdout()
			if tailFormat == "text" {
				out = &jsonToText{w: out}
			}
			err := client().Tail(ctx, filter, out)
			if errors.Is(err, admin.ErrHostStopped) {
				fmt.Fprintln(cmd.ErrOrStderr(), "wharf:", err)
				return nil
			}
			return err
		},
	}
	tail.Flags().StringVar(&filter.Level, "level", "", "lowest level shown: debug, info, warn or error")
	tail.Flags().StringVar(&filter.Class, "class", "", "only this Durable Object class (its events and its containers)")
	tail.Flags().StringVar(&filter.Object, "object", "", "only objects whose id starts with this (as ps shows it)")
	tail.Flags().StringVar(&filter.Grep, "grep", "", "only lines containing this text")
	tail.Flags().StringVar(&tailFormat, "format", "text", "text or json (one record per line)")
	cmds := []*cobra.Command{ps, stop, destroy, logs, exec, inspect, stats, tail}
	for _, c := range cmds {
		withDataDir(c)
	}
	return cmds
}

// runExec runs req, on a TTY (raw mode, resized with the terminal) when
// stdin is a terminal and tty is allowed.
func runExec(ctx context.Context, c *admin.Client, binding, name string, req admin.ExecRequest, tty bool) (int, error) {
	fd := int(os.Stdin.Fd())
	req.TTY = tty && term.IsTerminal(fd)
	resize := make(chan [2]uint16, 1)
	if req.TTY {
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

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// anyBinding is what the admin API takes for an object named by id alone.
const anyBinding = "*"

// objectArg accepts <binding> <name> or id:HEX alone.
func objectArg(_ *cobra.Command, args []string) error {
	switch {
	case len(args) == 2:
		return nonEmpty(args)
	case len(args) == 1 && strings.HasPrefix(args[0], "id:"):
		return nil
	}
	return fmt.Errorf("name an object by <binding> <name>, <binding> id:HEX or id:HEX alone (got %s)", gotArgs(args))
}

// noArgs refuses arguments to an operator command that takes none. Given a
// plugin's directory, as serve and dev take, it names the data directory
// in it that reaches its wharf serve.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if st, err := os.Stat(args[0]); err == nil && st.IsDir() {
		return fmt.Errorf("wharf %s takes no plugin directory: it reaches a running wharf serve through its data directory, e.g. --data-dir %s",
			cmd.Name(), filepath.Join(args[0], manifest.DefaultStateDir))
	}
	return fmt.Errorf("wharf %s takes no arguments (got %s)", cmd.Name(), gotArgs(args))
}

// gotArgs says what a command that wants an object was given instead.
func gotArgs(args []string) string {
	if len(args) == 1 {
		return strconv.Quote(args[0]) + " alone"
	}
	return strconv.Itoa(len(args)) + " arguments"
}

// nonEmpty refuses an empty binding or name, which the admin API's paths
// cannot carry (the answer was a bare "404 page not found").
func nonEmpty(objectArgs []string) error {
	if slices.Contains(objectArgs, "") {
		return errors.New(`the binding and the name must not be empty ("*" is any binding, id:HEX names an object by its id)`)
	}
	return nil
}

// maxNameCell is the widest an object's name is in a table: a longer one
// (a name can be any string a request carries) is cut with an ellipsis,
// as docker ps cuts a long command, so the table still fits a terminal.
const maxNameCell = 40

// nameCell is an object's name as a cell of a table: "-" if it has none,
// quoted if a character of it does not print (a tab or a newline would
// break the columns or the line), and cut to maxNameCell characters
// unless full.
func nameCell(name string, full bool) string {
	if name == "" {
		return "-"
	}
	if strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) {
		name = strconv.Quote(name)
	}
	if r := []rune(name); !full && len(r) > maxNameCell {
		name = string(r[:maxNameCell-1]) + "…"
	}
	return name
}

// noTruncFlag gives a table command (ps, stats) --no-trunc into noTrunc;
// more ends its help.
func noTruncFlag(cmd *cobra.Command, noTrunc *bool, more string) {
	cmd.Flags().BoolVar(noTrunc, "no-trunc", false, "show names and object ids in full (the table cuts names over "+strconv.Itoa(maxNameCell)+
		" characters and ids to their first "+strconv.Itoa(shortIDLen)+" hex digits"+more+")")
}

// shortIDLen is how many hex digits of an object's id a table shows:
// enough to tell the objects apart, and for id:HEX of a container's
// object. --no-trunc (ps, stats) shows the whole id, which is the only
// one that names an object without a container.
const shortIDLen = 16

// idCell is an object's id as a cell of a table: its first shortIDLen
// hex digits unless full.
func idCell(id string, full bool) string {
	if full {
		return id
	}
	return id[:min(shortIDLen, len(id))]
}

// printContainers prints ps's table of list, names and ids cut unless
// noTrunc.
func printContainers(w io.Writer, list []admin.Container, noTrunc bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BINDING\tNAME\tCLASS\tOBJECT\tSTATE\tAGE\tADDRESS\tPID\tLABELS")
	for _, c := range list {
		var labels []string
		for k, v := range c.Labels {
			labels = append(labels, k+"="+v)
		}
		slices.Sort(labels)
		pid := "" // none: an exited container released
		if c.Pid != 0 {
			pid = strconv.Itoa(int(c.Pid))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", strings.Join(c.Bindings, ","), nameCell(c.Name, noTrunc), c.Class, idCell(c.Object, noTrunc),
			c.State, time.Since(c.Started).Round(time.Second), c.Address, pid, strings.Join(labels, ","))
	}
	return tw.Flush()
}

// objectRef is the binding and name objectArg accepted.
func objectRef(args []string) (binding, name string) {
	if len(args) == 1 {
		return anyBinding, args[0]
	}
	return args[0], args[1]
}

// runStats prints a table of every running container's use, with CPU as
// a percentage of one core over the interval, until ctx ends (or once).
// On a terminal (tty) each table replaces the last, as top shows them;
// elsewhere (a pipe, a file) they follow each other, a blank line between
// two, with no terminal codes.
func runStats(ctx context.Context, c *admin.Client, w io.Writer, interval time.Duration, once, tty, noTrunc bool) error {
	prev, err := c.Stats(ctx)
	if err != nil {
		return err
	}
	for first := true; ; first = false {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		cur, err := c.Stats(ctx)
		if err != nil {
			return err
		}
		before := map[string]admin.ContainerStats{}
		for _, s := range prev {
			before[s.Class+"/"+s.Object] = s
		}
		switch {
		case tty && !once:
			fmt.Fprint(w, "\x1b[H\x1b[2J") // clear the screen, as top does
		case !first:
			fmt.Fprintln(w)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "BINDING\tNAME\tCLASS\tOBJECT\tCPU %\tMEM\tLIMIT\tMEM %\tPIDS\tREAD\tWRITTEN")
		for _, s := range cur {
			cpu := "-"
			if p, ok := before[s.Class+"/"+s.Object]; ok && s.At.After(p.At) && s.CPUNanos >= p.CPUNanos {
				cpu = fmt.Sprintf("%.1f", float64(s.CPUNanos-p.CPUNanos)/float64(s.At.Sub(p.At).Nanoseconds())*100)
			}
			memPct := "-"
			if s.MemoryLimitBytes > 0 && s.MemoryLimitBytes < 1<<62 {
				memPct = fmt.Sprintf("%.1f", float64(s.MemoryBytes)/float64(s.MemoryLimitBytes)*100)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", strings.Join(s.Bindings, ","), nameCell(s.Name, noTrunc), s.Class,
				idCell(s.Object, noTrunc), cpu, bytesIEC(s.MemoryBytes), bytesIEC(s.MemoryLimitBytes), memPct, s.Pids,
				bytesIEC(s.ReadBytes), bytesIEC(s.WriteBytes))
		}
		if err := tw.Flush(); err != nil || once {
			return err
		}
		prev = cur
	}
}

// bytesIEC formats n as 1.5MiB.
func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// quoteWord quotes s if it is empty or has a space, '=', '"' or a
// character that does not print (a newline): an attribute's name or value
// stays one word of its line, as slog's text handler keeps it. A guest
// names its attributes, and a name with a newline in it made a line of its
// own.
func quoteWord(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r == ' ' || r == '=' || r == '"' || !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

// jsonToText turns the JSON lines of wharf tail into text lines like
// wharf serve's: time, level and message first, then the attributes.
type jsonToText struct {
	w       io.Writer
	partial []byte
}

func (j *jsonToText) Write(p []byte) (int, error) {
	j.partial = append(j.partial, p...)
	for {
		line, rest, ok := bytes.Cut(j.partial, []byte("\n"))
		if !ok {
			return len(p), nil
		}
		j.partial = rest
		if _, err := io.WriteString(j.w, recordText(line)); err != nil {
			return len(p), err
		}
	}
}

// recordText formats one JSON record; its attributes keep their order (the
// plugin and request id first, as wharf serve writes them), a group's are
// named group.member, and the stack of a panic and a command's output go
// on lines of their own.
func recordText(line []byte) string {
	var attrs []field
	if err := jsonFields(line, "", func(f field) { attrs = append(attrs, f) }); err != nil {
		return string(line) + "\n"
	}
	head := map[string]string{}
	var b, lines strings.Builder
	for _, f := range attrs {
		switch {
		case f.key == slog.TimeKey || f.key == slog.LevelKey || f.key == slog.MessageKey:
			head[f.key] = f.value
		case textlog.OnLines(f.key) && f.text:
			lines.WriteString(textlog.IndentLines(f.value))
		default:
			fmt.Fprintf(&b, " %s=%s", quoteWord(f.key), quoteWord(f.value))
		}
	}
	msg := head[slog.MessageKey]
	if strings.ContainsFunc(msg, func(r rune) bool { return !unicode.IsPrint(r) }) {
		msg = strconv.Quote(msg)
	}
	when := head[slog.TimeKey]
	if t, err := time.Parse(time.RFC3339Nano, when); err == nil {
		when = t.Format("2006-01-02T15:04:05.000Z07:00") // to the millisecond, as wharf serve's text log
	}
	return fmt.Sprintf("%s %s %s%s\n%s", when, head[slog.LevelKey], msg, b.String(), lines.String())
}

// field is one attribute of a JSON record: its name, its value as text,
// and whether the value was a JSON string.
type field struct {
	key, value string
	text       bool
}

// jsonFields calls fn for each member of the JSON object data in order;
// the members of a nested object (a group) are named prefix.group.member.
func jsonFields(data []byte, prefix string, fn func(field)) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key := prefix + t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if raw[0] == '{' {
			if err := jsonFields(raw, key+".", fn); err != nil {
				return err
			}
			continue
		}
		var v any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			return err
		}
		s, text := v.(string)
		if !text {
			s = fmt.Sprint(v)
		}
		fn(field{key: key, value: s, text: text})
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') { // More is false at the end of a cut line too
		return fmt.Errorf("not a whole JSON object")
	}
	return nil
}

// echoOnSuccess prints the object as the command named it (as docker stop
// and docker rm do) if err is nil, and returns err.
func echoOnSuccess(cmd *cobra.Command, args []string, err error) error {
	if err == nil {
		fmt.Fprintln(cmd.OutOrStdout(), strings.Join(args, " "))
	}
	return err
}
