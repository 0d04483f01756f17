package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wharfhq/wharf/internal/keptthread"
	"github.com/wharfhq/wharf/plugins"
)

// compileCommand is the hidden command that compileApart runs.
const compileCommand = "compile-module"

// compileApart compiles a module into the compile cache in a wharf process
// of its own, which ctx's end kills at once: no engine stops a compile
// half-way (wasmtime's cannot be interrupted at all), so wharf serve
// stopped while compiling would wait for it, and in wharf dev a build a
// newer save replaced would keep compiling, competing with its successor
// for the CPU. The compiler's memory also leaves with the process: after
// a first start of examples/hello on wasmtime, wharf serve kept about 15
// MB more than after a start from the cache.
func compileApart(ctx context.Context, cfg plugins.Config) error {
	// This very binary, even if a newer build has replaced its file since:
	// another build would key the code it compiles differently.
	cmd := exec.CommandContext(ctx, "/proc/self/exe", compileCommand, "--engine", cmp.Or(cfg.Engine, plugins.EngineWazero),
		"--cache-dir", cfg.CacheDir, "--memory-limit-bytes", strconv.FormatUint(cfg.MemoryLimitBytes, 10), "--name", cfg.Name, cfg.Path)
	// It dies with wharf, even if wharf is killed (it is started from a
	// kept thread: see package keptthread). It is in a process group
	// of its own: a terminal's Ctrl-C, sent to the foreground group, would
	// kill it too, and wharf, finding it dead before its own context ended,
	// would take that for a failed compile and compile in-process, for
	// seconds that cannot be cut short. ctx's end stops it instead.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Args[0] = "wharf" // for ps, not "/proc/self/exe"
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	err := keptthread.StartProcess(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	out := output.Bytes()
	var exit *exec.ExitError
	switch {
	case err == nil || ctx.Err() != nil:
		return err
	case errors.As(err, &exit) && exit.ExitCode() == refusedModuleExit:
		return &plugins.RefusedModuleError{Reason: errors.New(strings.TrimSpace(string(out)))}
	}
	return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
}

// refusedModuleExit is compile-module's exit code for a module the engine
// refused, whose reason alone it writes to stderr.
const refusedModuleExit = 3

// newCompileCommand is compileApart's child: it compiles one module into a
// compile cache and exits.
func newCompileCommand() *cobra.Command {
	var cfg plugins.Config
	cmd := &cobra.Command{
		Use:    compileCommand + " --engine E --cache-dir DIR module.wasm",
		Short:  "Compile a module into a compile cache (wharf serve and dev run this apart, to stop it at once)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Named so in top and pgrep, not "exe" (after /proc/self/exe).
			os.WriteFile("/proc/self/comm", []byte("wharf"), 0)
			cfg.Path = args[0]
			err := plugins.Precompile(cmd.Context(), cfg)
			if refused := (*plugins.RefusedModuleError)(nil); errors.As(err, &refused) {
				fmt.Fprint(os.Stderr, refused.Reason)
				os.Exit(refusedModuleExit)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&cfg.Engine, "engine", plugins.EngineWazero, "the engine to compile for")
	cmd.Flags().StringVar(&cfg.CacheDir, "cache-dir", "", "the compile cache")
	cmd.Flags().Uint64Var(&cfg.MemoryLimitBytes, "memory-limit-bytes", 0, "each instance's memory limit")
	cmd.Flags().StringVar(&cfg.Name, "name", "", "the plugin's name, for errors")
	return cmd
}
