package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/build"
	"github.com/wharfhq/wharf/host"
)

type backendFlags struct {
	dataDir, address string
	registryFlags
}

func (f *backendFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.dataDir, "data-dir", ".wharf", "data directory: the containerd of a wharf serve running on it is used, else one is started under it")
	cmd.PersistentFlags().StringVar(&f.address, "containerd-address", "", "use the containerd at this socket instead of starting one")
	f.registryFlags.register(cmd.PersistentFlags())
}

// registryFlags say where registry credentials come from and which
// registries speak plain HTTP.
type registryFlags struct {
	auth     string
	insecure []string
}

func (f *registryFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.auth, "registry-auth", "", "registry credentials file in docker's config.json format (default ~/.docker/config.json)")
	fs.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry (host:port) to reach over plain HTTP; loopback registries always are")
}

func (f *registryFlags) load() (containerd.Registries, error) {
	auth, err := containerd.LoadRegistryAuth(f.auth)
	return containerd.Registries{Auth: auth, Insecure: f.insecure}, err
}

// run makes a cobra RunE that calls fn with an open backend, closed after.
// SIGINT or SIGTERM cancels fn's context (cmd.Context()), so that what fn
// started is stopped and cleaned up before wharf exits: killed outright,
// wharf left a build's running step (its shim, processes, mounts and
// cgroups) until the next start on the data directory. A second signal
// kills wharf. A command cut short says "stopped: interrupt signal
// received": the step it cut short fails with the cancellation, which
// misleads ("containerd did not start (see .../containerd.log): context
// canceled", "cleaning up after an interrupted build: context canceled").
func (f *backendFlags) run(fn func(cmd *cobra.Command, b *containerd.Backend, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return untilInterrupted(cmd.Context(), func(ctx context.Context) error {
			cmd.SetContext(ctx)
			return f.runBackend(cmd, fn, args)
		})
	}
}

// untilInterrupted runs fn with a context that ends at the first SIGINT
// or SIGTERM (a second one kills wharf). A run cut short says "stopped:
// interrupt signal received": the step it cut short fails with the
// cancellation, which misleads.
func untilInterrupted(ctx context.Context, fn func(context.Context) error) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	err := fn(ctx)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("stopped: %v", context.Cause(ctx))
	}
	return err
}

// runBackend calls fn with an open backend, closed after. A data
// directory that a running wharf owns is reached through that wharf's
// containerd, which serves the same image store, and which that wharf
// stops only once fn is done (containerd.ShareEmbedded).
func (f *backendFlags) runBackend(cmd *cobra.Command, fn func(cmd *cobra.Command, b *containerd.Backend, args []string) error, args []string) error {
	// share is of the containerd of the data directory's owner.
	var share *ownerShare
	if f.address == "" { // the embedded containerd lives in the data directory
		lock, s, err := lockOrShare(cmd.Context(), f.dataDir)
		if err != nil {
			return err
		}
		if share = s; share != nil {
			defer share.Release()
			f.address, f.dataDir = share.Address, share.dir
		} else {
			defer lock.Unlock()
			f.dataDir = lock.Path
		}
	}
	b, err := containerd.OpenBackend(cmd.Context(), f.dataDir, f.address, imagesLogger())
	if err != nil && share != nil { // a socket left by a containerd that was killed, say: the user named none
		return fmt.Errorf("%w (its containerd does not answer: %w)", share.inUse, err)
	}
	if err != nil {
		return err
	}
	defer b.Close()
	if share != nil {
		ctx, stop := share.untilOwnerGone(cmd.Context())
		defer stop()
		cmd.SetContext(ctx)
	}
	err = fn(cmd, b, args)
	if err != nil && share != nil && share.ownerGone(ownerExitLag) { // its containerd went with it: the error is a bare EOF, say
		return fmt.Errorf("the wharf that owned the data directory %s (pid %d) went away during the command, and its containerd with it: "+
			"the command did not finish", share.dir, share.pid)
	}
	return err
}

// imagesLogger is the log of the wharf images commands: their warnings
// and errors, on stderr.
func imagesLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// ownerShare is a share of the containerd of the wharf that owns a data
// directory: inUse is the refusal of the directory's lock, which names
// that wharf, dir the directory resolved through symlinks (the name
// that wharf locked), pid that wharf's process and owner a pidfd of it
// (-1 if its pid is not known).
type ownerShare struct {
	*containerd.Share
	inUse error
	dir   string
	pid   int
	owner int
}

// newOwnerShare makes the ownerShare of share, of the containerd of the
// wharf (of process pid) whose lock on dir refused this with inUse.
func newOwnerShare(share *containerd.Share, inUse error, dir string, pid int) *ownerShare {
	s := &ownerShare{Share: share, inUse: inUse, dir: dir, pid: pid, owner: -1}
	if pid > 0 {
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			s.owner = fd
		}
	}
	return s
}

// ownerExitLag is how long a command that failed waits for the owner to
// have exited: its containerd, which the kernel stops as the owner exits,
// may end, and fail the command, before the owner's exit is complete.
const ownerExitLag = 200 * time.Millisecond

// ownerGone reports whether the owner has exited, or does within wait
// (its containerd, which the kernel stops with it, with it).
func (s *ownerShare) ownerGone(wait time.Duration) bool {
	if s.owner < 0 {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(s.owner), Events: unix.POLLIN}} // readable once the process exited
	for deadline := time.Now().Add(wait); ; {
		n, err := unix.Poll(fds, int(max(time.Until(deadline), 0).Milliseconds()))
		if err != unix.EINTR {
			return err == nil && n > 0
		}
	}
}

// untilOwnerGone is ctx, ended when the owner exits: a command whose
// containerd went with it would otherwise wait for ever (containerd's
// content writer takes a gone server for a blob another writer holds, and
// tries again). stop ends the watch.
func (s *ownerShare) untilOwnerGone(ctx context.Context) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	if s.owner < 0 {
		return ctx, cancel
	}
	r, w, err := os.Pipe()
	if err != nil {
		return ctx, cancel
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer r.Close()
		fds := []unix.PollFd{{Fd: int32(s.owner), Events: unix.POLLIN}, {Fd: int32(r.Fd()), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if err == unix.EINTR {
				continue
			}
			if err == nil && fds[0].Revents != 0 {
				cancel()
			}
			return
		}
	}()
	return ctx, func() {
		w.Close() // ends the poll
		<-done
		cancel()
	}
}

// Release ends the share.
func (s *ownerShare) Release() {
	s.Share.Release()
	if s.owner >= 0 {
		unix.Close(s.owner)
	}
}

// ownerStartWait is how long after a wharf took a data directory a
// command on it waits for that wharf's containerd to answer: a wharf
// serve started in the same instant as the command starts its containerd
// only after it took the directory (and built the plugin). Past it, a
// directory with no containerd that answers is refused at once.
const ownerStartWait = 5 * time.Second

// lockOrShare takes the lock of dataDir or, while a wharf that started
// a containerd there owns it, a share of that containerd. That wharf may
// be stopping it meanwhile (one wharf images command ending while another
// began): the directory is then soon free, and taken. It may also have
// taken the directory just now, and not have its containerd answer yet
// (none started, or one starting over the socket a killed one left): that
// is waited for until ownerStartWait after it took the directory, and
// no longer than that from the call: a clock set back since (or a touch)
// dates the directory's lock in the future. An owner that starts no
// containerd there (host.LockDataDirWithoutContainerd) is refused at once,
// saying so: it was waited for like one whose containerd was starting.
func lockOrShare(ctx context.Context, dataDir string) (*host.DataDirLock, *ownerShare, error) {
	began := time.Now()
	deadline := began.Add(5 * time.Second)
	for stopping := false; ; {
		lock, err := host.LockDataDir(dataDir)
		if !errors.Is(err, host.ErrDataDirInUse) {
			return lock, nil, err
		}
		dir, rerr := filepath.EvalSymlinks(dataDir) // LockDataDir made it
		if rerr != nil {
			return nil, nil, err
		}
		if dir, rerr = filepath.Abs(dir); rerr != nil {
			return nil, nil, err
		}
		owner := host.DataDirOwner(dir)
		if owner.NoContainerd { // nothing to wait for, or share
			return nil, nil, fmt.Errorf("%w (it runs no containerd there to share: a wharf serve of a plugin without [[containers]], or a wharf given --containerd-address)", err)
		}
		pid := owner.Pid
		starting := time.Since(owner.Since) < ownerStartWait && time.Since(began) < ownerStartWait
		share, serr := containerd.ShareEmbedded(dir)
		if serr == nil && (!starting || containerd.Answers(ctx, share.Address) == nil) {
			return nil, newOwnerShare(share, err, dir, pid), nil
		}
		if serr == nil {
			share.Release() // held while waiting, it would hold up its owner's stop
		}
		stopping = stopping || errors.Is(serr, containerd.ErrEmbeddedStopped)
		gone := serr == nil || errors.Is(serr, containerd.ErrNoEmbedded) || errors.Is(serr, containerd.ErrEmbeddedStopped)
		if !gone || !(starting || stopping && time.Now().Before(deadline)) {
			return nil, nil, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ownDataDir makes sure this command owns the data directory, whose build
// engine state it is about to use: a command on the embedded containerd
// owns it already; with --containerd-address it takes the lock for as
// long as the returned func is not called, and fails (ErrDataDirInUse)
// if a running wharf owns it, whose buildkitd may be building.
func (f *backendFlags) ownDataDir() (unlock func(), err error) {
	if f.address == "" {
		return func() {}, nil
	}
	lock, err := host.LockDataDirWithoutContainerd(f.dataDir)
	if err != nil {
		return nil, err
	}
	return func() { lock.Unlock() }, nil
}

// argKind is what a command's arguments name (an image, a file), for the
// refusal, before anything starts, of one that names nothing: empty, or
// only whitespace or other invisible characters (rm looked " " up:
// "removing image  : not found"; pull handed it to a parser that spoke of
// "dummy:// "; a zero-width space got the same "removing image ​: not
// found", which shows no name). A name or reference with whitespace or an
// invisible character before or after it is refused too: none has any. A
// path may have some (a file can be named so; one named only whitespace
// is reached as "./ ").
type argKind struct {
	article, noun string // "an", "image name"
	hint          string // after a refusal, as " (`wharf images ls` lists the images)"
	path          bool
	optional      bool // the argument may be left out
	// reference: a registry reference, which cannot hold a control
	// character (pull started containerd, then said "pulling a" and, on
	// the next line, "b: failed to resolve reference ...") nor an
	// invisible one anywhere.
	reference bool
}

// invisible is the rule, shared by the checks of names wharf is given,
// of a character that shows as nothing where it is printed: whitespace,
// or a format character (Unicode category Cf: a zero-width space U+200B,
// a byte order mark U+FEFF, a direction mark U+200E). A name that is only
// such characters names nothing a user can see; one with them around it
// looks like another name. Where whitespace is refused, these are too.
//
// Some characters drawn as nothing are not format characters: the other
// default-ignorable ones (a Hangul filler U+3164, which a terminal shows
// as a blank, a combining grapheme joiner U+034F) and the variation
// selectors (U+FE0F): rm "\u3164" said "removing image ㅤ: not found".
// They count as format characters here.
func invisible(r rune) bool { return unicode.IsSpace(r) || formatChar(r) }

// formatChar is a format character (Unicode category Cf), which
// unicode.IsSpace and unicode.IsControl leave out, or another character
// drawn as nothing (ignorable).
func formatChar(r rune) bool { return unicode.Is(unicode.Cf, r) || ignorable(r) }

// ignorable is a default-ignorable character that is not a format
// character, a variation selector, or the blank braille pattern U+2800
// (a symbol, but drawn as a blank cell and used as an invisible name):
// printable to strconv.Quote, which leaves it as it is, so a quoted name
// holding one still hides it.
func ignorable(r rune) bool {
	return r == '\u2800' || unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

// quoteName is s quoted as %q does, with its ignorable characters
// escaped too (then all its characters beyond ASCII, which no image name
// has), so a refusal shows them.
func quoteName(s string) string {
	if strings.ContainsFunc(s, ignorable) {
		return strconv.QuoteToASCII(s)
	}
	return strconv.Quote(s)
}

// firstFormatChar is the first format character in s, or 0.
func firstFormatChar(s string) rune {
	if i := strings.IndexFunc(s, formatChar); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return r
	}
	return 0
}

// invisibleAround is the first invisible character arg begins or ends
// with, described for a message ("whitespace", "an invisible character
// (U+200B)"), or "".
func invisibleAround(arg string) string {
	r, _ := utf8.DecodeRuneInString(arg)
	if !invisible(r) {
		r, _ = utf8.DecodeLastRuneInString(arg)
	}
	switch {
	case unicode.IsSpace(r):
		return "whitespace"
	case formatChar(r):
		return fmt.Sprintf("an invisible character (%U)", r)
	}
	return ""
}

// check is the refusal of arg, or nil.
func (k argKind) check(arg string) error {
	trimmed := strings.TrimFunc(arg, invisible)
	var not string
	switch {
	case arg == "":
		not = "an empty one"
	case trimmed == "":
		not = quoteName(arg)
	case trimmed != arg && !k.path:
		return fmt.Errorf("%s %s begins or ends with %s, which no %s does%s", k.noun, quoteName(arg), invisibleAround(arg), k.noun, k.hint)
	case k.reference && strings.ContainsFunc(arg, unicode.IsControl):
		return fmt.Errorf("%s %s has a control character (a tab, a newline), which no %s does%s", k.noun, quoteName(arg), k.noun, k.hint)
	case k.reference && strings.ContainsFunc(arg, formatChar):
		return fmt.Errorf("%s %s has an invisible character (%U), which no %s does%s", k.noun, quoteName(arg), firstFormatChar(arg), k.noun, k.hint)
	default:
		return nil
	}
	if k.optional {
		return fmt.Errorf("%s %s, if given, cannot be %s%s", k.article, k.noun, not, k.hint)
	}
	return fmt.Errorf("%s %s is required, not %s%s", k.article, k.noun, not, k.hint)
}

// argsOf is check, then the refusal (argKind.check) of the first argument
// that cannot be of kind, before anything starts. A wrong count says what
// is missing or what is too many (cobra said "accepts 1 arg(s), received
// 0").
func argsOf(check cobra.PositionalArgs, kind argKind) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			if len(args) == 0 {
				return fmt.Errorf("%s %s is required%s", kind.article, kind.noun, kind.hint)
			}
			most := "one"
			if kind.optional {
				most = "at most one"
			}
			return fmt.Errorf("%s takes %s %s, got %d: %s", cmd.CommandPath(), most, kind.noun, len(args), quoteAll(args))
		}
		for _, a := range args {
			if err := kind.check(a); err != nil {
				return err
			}
		}
		return nil
	}
}

// quoteAll is args quoted, separated by spaces.
func quoteAll(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = strconv.Quote(a)
	}
	return strings.Join(q, " ")
}

func newImagesCommand() *cobra.Command {
	var f backendFlags
	cmd := &cobra.Command{Use: "images", Short: "Manage the container images wharf runs"}
	f.register(cmd)
	var name string
	importCmd := &cobra.Command{
		Use:   "import archive.tar",
		Short: "Import an OCI or Docker image archive",
		Args: func(cmd *cobra.Command, args []string) error {
			if err := argsOf(cobra.ExactArgs(1), argKind{article: "an", noun: "archive path", path: true})(cmd, args); err != nil {
				return err
			}
			// An image named so broke the columns of wharf images ls.
			if strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
				return fmt.Errorf("--name %q has whitespace or a control character, which no image name does", name)
			}
			// One with an invisible character looked, there, like
			// another name, or like none.
			if r := firstFormatChar(name); r != 0 {
				return fmt.Errorf("--name %s has an invisible character (%U), which no image name does", quoteName(name), r)
			}
			return nil
		},
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
		Short: "List images, with the plugins of running wharf serves that use them",
		Args:  cobra.NoArgs,
		RunE: f.run(func(cmd *cobra.Command, b *containerd.Backend, _ []string) error {
			imgs, err := containerd.ListImages(cmd.Context(), b.Client)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tDIGEST\tSIZE\tUSED BY")
			for _, img := range imgs {
				usedBy := "-"
				if len(img.UsedBy) > 0 {
					usedBy = strings.Join(img.UsedBy, ",")
				}
				fmt.Fprintf(w, "%s\t%s\t%.1f MB\t%s\n", img.Name, img.Digest, float64(img.Size)/1e6, usedBy)
			}
			return w.Flush()
		}),
	}
	var force bool
	rmCmd := &cobra.Command{
		Use:   "rm name...",
		Short: "Remove images (not one a loaded plugin uses, unless --force)",
		Args:  argsOf(cobra.MinimumNArgs(1), argKind{article: "an", noun: "image name", hint: " (`wharf images ls` lists the images)"}),
		RunE: f.run(func(cmd *cobra.Command, b *containerd.Backend, args []string) error {
			for _, n := range args {
				if err := containerd.RemoveImage(cmd.Context(), b.Client, n, force); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", n)
			}
			return nil
		}),
	}
	rmCmd.Flags().BoolVar(&force, "force", false, "remove images even if a loaded plugin uses them")
	pruneCmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove every image no loaded plugin uses, and the build cache",
		Args:  cobra.NoArgs,
		RunE: f.run(func(cmd *cobra.Command, b *containerd.Backend, _ []string) error {
			removed, err := containerd.PruneImages(cmd.Context(), b.Client)
			for _, n := range removed {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", n)
			}
			if err != nil {
				return err
			}
			if len(removed) == 0 { // the output spoke of the build cache only, as if images had been left out
				fmt.Fprintln(cmd.OutOrStdout(), "images: nothing to prune (a loaded plugin uses every image, or there is none)")
			}
			unlock, err := f.ownDataDir()
			if errors.Is(err, host.ErrDataDirInUse) {
				// Its advice ("choose another --data-dir") is for a
				// command that needs the directory; pruning another
				// directory empties nothing of this one's cache.
				why := strings.Replace(err.Error(), "; stop it or choose another --data-dir", "", 1)
				fmt.Fprintf(cmd.OutOrStdout(), "build cache: kept: %s, which may be building; run `wharf images prune` again once it stopped to empty the build cache\n", why)
				return nil
			}
			if err != nil {
				return err
			}
			defer unlock()
			freed, err := build.PruneCache(cmd.Context(), b)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "build cache: freed %.1f MB\n", float64(freed)/1e6)
			return nil
		}),
	}
	pullCmd := &cobra.Command{
		Use:   "pull reference",
		Short: "Pull an image from a registry, with progress on stderr",
		Args:  argsOf(cobra.ExactArgs(1), argKind{article: "an", noun: "image reference", reference: true, hint: " (like docker.io/library/busybox:1.36)"}),
		RunE: f.run(func(cmd *cobra.Command, b *containerd.Backend, args []string) error {
			reg, err := f.load()
			if err != nil {
				return err
			}
			img, err := containerd.Pull(cmd.Context(), b.Client, reg, args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pulled %s (%s, %.1f MB)\n", img.Name, img.Digest, float64(img.Size)/1e6)
			return nil
		}),
	}
	cmd.AddCommand(importCmd, pullCmd, lsCmd, rmCmd, pruneCmd, newImagesBuildCommand(&f))
	return cmd
}

func newImagesBuildCommand(f *backendFlags) *cobra.Command {
	var tag, dockerfile string
	var buildArgs []string
	cmd := &cobra.Command{
		Use:   "build [dir|Dockerfile]",
		Short: "Build an image from a Dockerfile with BuildKit (no Docker daemon), progress on stderr",
		Args: func(cmd *cobra.Command, args []string) error {
			if err := argsOf(cobra.MaximumNArgs(1), argKind{article: "a", noun: "build context or Dockerfile", path: true, optional: true,
				hint: " (leave it out for the current directory)"})(cmd, args); err != nil {
				return err
			}
			return checkTag(tag)
		},
		RunE: f.run(func(cmd *cobra.Command, b *containerd.Backend, args []string) error {
			contextDir, df, err := build.Source(argOrDot(args), dockerfile)
			if err != nil {
				return err
			}
			unlock, err := f.ownDataDir()
			if errors.Is(err, host.ErrDataDirInUse) { // import, ls, rm and prune work then: say why build does not
				return fmt.Errorf("images build cannot share the data directory's build engine with the wharf that owns it: %w", err)
			}
			if err != nil {
				return err
			}
			defer unlock()
			bargs, err := parseBuildArgs(buildArgs, os.LookupEnv)
			if err != nil {
				return err
			}
			reg, err := f.load()
			if err != nil {
				return err
			}
			// As wharf serve builds: killed, its data directory then
			// removed, what the build left is the next wharf's to remove.
			releaseScope, err := b.HoldScope(imagesLogger())
			if err != nil {
				return err
			}
			defer releaseScope()
			e, err := build.Start(cmd.Context(), b, build.EngineOptions{InsecureRegistries: reg.Insecure})
			if err != nil {
				return err
			}
			defer e.Close()
			img, err := e.Build(cmd.Context(), build.Options{Context: contextDir, Dockerfile: df, Tag: tag,
				BuildArgs: bargs, Auth: reg.Auth, Progress: cmd.ErrOrStderr(), Exclude: build.ExcludeInside(contextDir, b.DataDir)})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "built %s (%s, %.1f MB)\n", img.Name, img.Digest, float64(img.Size)/1e6)
			return nil
		}),
	}
	cmd.Flags().StringVarP(&tag, "tag", "t", "", "name of the image (required)")
	cmd.Flags().StringVarP(&dockerfile, "file", "f", "", "Dockerfile (default <context>/Dockerfile)")
	cmd.Flags().StringArrayVar(&buildArgs, "build-arg", nil, "build argument K=V, or K for the environment variable K's value (repeatable)")
	return cmd
}

// tagKind is what images build --tag names.
var tagKind = argKind{article: "an", noun: "image name", reference: true, hint: " (like myapp:1 or registry.example/team/app:v2)"}

// checkTag is the refusal of images build --tag tag, or nil, before
// anything starts: a blank one (" ") got the image name parser's message,
// "repository can only contain the characters ...", after containerd had
// started in the data directory.
func checkTag(tag string) error {
	if tag == "" {
		return errors.New("--tag is required")
	}
	if err := tagKind.check(tag); err != nil {
		return fmt.Errorf("--tag: %w", err)
	}
	if _, err := name.NewTag(tag); err != nil {
		return fmt.Errorf("--tag %q is not %s %s%s: %w", tag, tagKind.article, tagKind.noun, tagKind.hint, err)
	}
	// name.NewTag is lax: it took "a//b", "../x" and "-t", which
	// wharf then stored under those names, names no Dockerfile's FROM,
	// docker or a registry can write. Docker's own grammar decides.
	if _, err := reference.ParseNormalizedNamed(tag); err != nil {
		return fmt.Errorf("--tag %q is not %s %s%s: %w", tag, tagKind.article, tagKind.noun, tagKind.hint, err)
	}
	return nil
}

// parseBuildArgs reads images build's --build-arg values as docker build
// does: KEY=VALUE, or KEY alone for the value of the environment variable
// KEY (looked up with lookup), and no value, the Dockerfile's default,
// if there is no such variable. KEY alone was refused ("want KEY=VALUE").
func parseBuildArgs(kvs []string, lookup func(string) (string, bool)) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("--build-arg %q: want KEY=VALUE, or KEY for the value of the environment variable KEY", kv)
		}
		if !ok {
			if v, ok = lookup(k); !ok {
				continue
			}
		}
		out[k] = v
	}
	return out, nil
}
