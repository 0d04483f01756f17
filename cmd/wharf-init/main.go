// Command wharf-init is the agent wharf runs as PID 1 in a container (see
// internal/agent). wharf bind-mounts it read-only at /.wharf/init and runs
//
//	/.wharf/init --uid UID --gid GID [--groups G,G...] [--home DIR] -- ENTRYPOINT...
//
// It is also the keeper of a container's output (package keptlog): the
// container's shim runs it on the host as its log binary, with
//
//	wharf-init -log PATH -log-max-bytes N
//
// and the container's stdout and stderr on descriptors 3 and 4.
//
// It is built static (CGO_ENABLED=0): `make build` puts it next to wharf.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/wharfhq/wharf/internal/agent"
	"github.com/wharfhq/wharf/internal/agent/wire"
	"github.com/wharfhq/wharf/internal/keptlog"
)

func main() {
	uid := flag.Uint("uid", 0, "user id of the main process and of execs by default")
	gid := flag.Uint("gid", 0, "group id of the main process and of execs by default")
	groups := flag.String("groups", "", "supplementary group ids, comma-separated")
	home := flag.String("home", "", "HOME of the main process (the user's home directory), in place of the agent's")
	socket := flag.String("socket", wire.Socket, "path of the socket wharf connects to")
	logPath := flag.String(strings.TrimPrefix(keptlog.Flag, "-"), "", "keep the output on descriptors 3 and 4 in this file (as a shim's log binary)")
	logMax := flag.Int64(strings.TrimPrefix(keptlog.MaxFlag, "-"), 0, "with -log: the most bytes of output kept")
	flag.Parse()
	if *logPath != "" {
		os.Exit(keepLog(*logPath, *logMax))
	}
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: wharf-init [--uid N] [--gid N] [--groups N,N] [--home DIR] -- COMMAND [ARG...]")
		os.Exit(2)
	}
	cred := wire.Cred{UID: uint32(*uid), GID: uint32(*gid)}
	for _, g := range strings.FieldsFunc(*groups, func(r rune) bool { return r == ',' }) {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			fmt.Fprintf(os.Stderr, "wharf-init: --groups: %v\n", err)
			os.Exit(2)
		}
		cred.Groups = append(cred.Groups, uint32(n))
	}
	if *home != "" {
		os.Setenv("HOME", *home) // the main process's environment is the agent's
	}
	os.Exit(agent.Run(agent.Config{Socket: *socket, Main: flag.Args(), User: cred}))
}

// keepLog runs as containerd's shim logger: descriptors 3 and 4 are the
// container's stdout and stderr, and closing 5 tells the shim it is ready.
func keepLog(path string, maxBytes int64) int {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	w, err := keptlog.Create(path, maxBytes)
	if err != nil {
		fmt.Fprintf(os.Stderr, "wharf-init: %v\n", err)
		return 1
	}
	defer w.Close()
	os.NewFile(5, "ready").Close()
	if err := keptlog.Keep(w, stop, os.NewFile(3, "stdout"), os.NewFile(4, "stderr")); err != nil {
		fmt.Fprintf(os.Stderr, "wharf-init: keeping %s: %v\n", path, err)
		return 1
	}
	return 0
}
