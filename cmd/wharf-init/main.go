// Command wharf-init is the agent wharf runs as PID 1 in a container (see
// internal/agent). wharf bind-mounts it read-only at /.wharf/init and runs
//
//	/.wharf/init --uid UID --gid GID [--groups G,G...] -- ENTRYPOINT...
//
// It is built static (CGO_ENABLED=0): `make build` puts it next to wharf.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/wharfhq/wharf/internal/agent"
	"github.com/wharfhq/wharf/internal/agent/wire"
)

func main() {
	uid := flag.Uint("uid", 0, "user id of the main process and of execs by default")
	gid := flag.Uint("gid", 0, "group id of the main process and of execs by default")
	groups := flag.String("groups", "", "supplementary group ids, comma-separated")
	socket := flag.String("socket", wire.Socket, "path of the socket wharf connects to")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: wharf-init [--uid N] [--gid N] [--groups N,N] -- COMMAND [ARG...]")
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
	os.Exit(agent.Run(agent.Config{Socket: *socket, Main: flag.Args(), User: cred}))
}
